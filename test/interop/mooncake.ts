/**
 * The Mooncake side of interop tests: the real engine from Mooncake's wheel,
 * driven through test/interop/mooncake_driver.py in a child process.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import fs from 'node:fs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
export const ROOT = path.resolve(HERE, '../../..'); // dist/test/interop -> repo root
const SRC_DIR = path.join(ROOT, 'test', 'interop');
export const PYTHON = path.join(ROOT, '.venv', 'bin', 'python');

/**
 * The wheel's own binaries (transfer_engine_bench, ...). Not .venv/bin: those are
 * Python wrappers that run the binary as a subprocess, which a signal would orphan.
 */
export function mooncakeBinary(name: string): string {
  const lib = path.join(ROOT, '.venv', 'lib');
  const py = fs.readdirSync(lib).find((d) => d.startsWith('python3'));
  if (!py) throw new Error(`no python3.* in ${lib}`);
  return path.join(lib, py, 'site-packages', 'mooncake', name);
}

/**
 * Make sure the pinned wheel is installed. Returns null when ready, else why
 * not. In CI a missing environment is a failure, never a skip.
 */
export function ensureInteropEnv(): string | null {
  const r = spawnSync('bash', [path.join(SRC_DIR, 'setup.sh')], { encoding: 'utf8', timeout: 600_000 });
  if (r.status === 0) return null;
  const why = `Mooncake interop environment unavailable: ${(r.stderr || r.stdout || String(r.error)).trim().split('\n').slice(-3).join(' | ')}`;
  if (process.env['CI']) throw new Error(why);
  return why;
}

/** Environment for Mooncake processes: TCP only (trap 5), quiet logs. */
export function mooncakeEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { ...process.env, MC_FORCE_TCP: '1', GLOG_minloglevel: '1', ...extra };
}

/** Servers started here die with the test process, whatever happens. */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of liveChildren) c.kill('SIGKILL');
});

export type Reply = Record<string, unknown> & { rc?: number; error?: string };

export class MooncakePeer {
  private readonly lines: AsyncIterableIterator<string>;
  segment = '';
  rpcPort = 0;
  stderr = '';

  private constructor(readonly child: ChildProcess) {
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
  }

  /**
   * Start a Mooncake engine. P2P (default): named `127.0.0.1:<rpc port>`. Central modes
   * (`metadata` a URL or etcd endpoint, optionally with `metadataType` for initialize_ext):
   * give a `name` unique in the store; the segment keeps it, and MC_TCP_BIND_ADDRESS=127.0.0.1
   * makes its rpc_meta publish the loopback address instead of the first non-lo interface.
   */
  static async start(
    init: {
      metadata?: string;
      metadataType?: string;
      name?: string;
      env?: Record<string, string>;
      /** How to start the driver (default: node:child_process spawn; a namespace's spawnIn puts it in another network namespace). */
      spawn?: (cmd: string, args: string[], options: SpawnOptions) => ChildProcess;
    } = {},
  ): Promise<MooncakePeer> {
    const metadata = init.metadata ?? 'P2PHANDSHAKE';
    const central = metadata !== 'P2PHANDSHAKE' && init.metadataType !== 'p2p';
    const child = (init.spawn ?? spawn)(PYTHON, [path.join(SRC_DIR, 'mooncake_driver.py')], {
      env: mooncakeEnv({ ...(central ? { MC_TCP_BIND_ADDRESS: '127.0.0.1' } : {}), ...init.env }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const p = new MooncakePeer(child);
    const ready = await p.next();
    if (!ready['ready']) throw new Error(`driver did not start: ${p.stderr}`);
    const r = await p.call('init', {
      host: init.name ?? '127.0.0.1',
      metadata,
      ...(init.metadataType ? { metadata_type: init.metadataType } : {}),
    });
    if (r.rc !== 0) throw new Error(`Mooncake initialize returned ${String(r.rc)}: ${p.stderr.slice(-2000)}`);
    p.segment = String(r['segment']);
    p.rpcPort = Number(r['rpc_port']);
    return p;
  }

  private async next(): Promise<Reply> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`Mooncake driver exited: ${this.stderr.slice(-2000)}`);
    return JSON.parse(r.value) as Reply;
  }

  async call(cmd: string, args: Record<string, unknown> = {}): Promise<Reply> {
    this.child.stdin!.write(`${JSON.stringify({ cmd, ...args })}\n`);
    const r = await this.next();
    if (r.error) throw new Error(`Mooncake driver: ${r.error}`);
    return r;
  }

  async alloc(size: number, random = false): Promise<{ addr: number; sha: string }> {
    const r = await this.call('alloc', { size, random });
    if (r.rc !== 0) throw new Error(`register_memory returned ${String(r.rc)}`);
    return { addr: Number(r['addr']), sha: String(r['sha']) };
  }

  async hash(addr: number, len: number): Promise<string> {
    return String((await this.call('hash', { addr, len }))['sha']);
  }

  /** Fill a range with random bytes; returns their sha256. */
  async fillRandom(addr: number, len: number): Promise<string> {
    return String((await this.call('fill_random', { addr, len }))['sha']);
  }

  /** `exit`: the driver destroys the engine and says so; resolves with its exit code (null: killed after 15 s). */
  async exit(): Promise<{ code: number | null; closed: boolean }> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return { code: this.child.exitCode, closed: false };
    const exited = new Promise<number | null>((r) => this.child.once('exit', (code) => r(code)));
    const closed = this.next().then(
      (r) => r['closed'] === true,
      () => false,
    );
    this.child.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 15_000);
    const code = await exited;
    clearTimeout(t);
    return { code, closed: await closed };
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}

/**
 * Mooncake's own HTTP metadata server from the wheel (`python -m
 * mooncake.http_metadata_server`, aiohttp). It has no way to list its keys, so
 * the keys it holds are followed through its access log (stderr, INFO):
 * every PUT answered 200 adds a key, every DELETE answered 200 removes one.
 */
export class MooncakeHttpMetadataServer {
  private log = '';
  private readonly held = new Set<string>();
  /** Every request the server logged: method, decoded key, raw (escaped) key, status. */
  readonly requests: Array<{ method: string; key: string; raw: string; status: number }> = [];

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {
    liveChildren.add(child);
    child.once('exit', () => liveChildren.delete(child));
    let pending = '';
    child.stderr!.on('data', (d: Buffer) => {
      const text = d.toString();
      this.log = (this.log + text).slice(-20_000);
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const l of lines) this.onLine(l);
    });
  }

  /** The URL clients use: `http://127.0.0.1:<port>/metadata`. */
  get url(): string {
    return `http://127.0.0.1:${this.port}/metadata`;
  }

  static async start(port: number): Promise<MooncakeHttpMetadataServer> {
    const child = spawn(PYTHON, ['-m', 'mooncake.http_metadata_server', '--port', String(port), '--host', '127.0.0.1'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    const s = new MooncakeHttpMetadataServer(child, port);
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`Mooncake's HTTP metadata server exited: ${s.log}`);
      const status = await fetch(`${s.url}?key=ready-probe`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.status,
        () => 0,
      );
      if (status === 404) return s;
      if (Date.now() > deadline) {
        await s.stop();
        throw new Error(`Mooncake's HTTP metadata server did not answer within 30 s: ${s.log}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  private onLine(line: string): void {
    const m = /"(GET|PUT|DELETE) \/metadata\?key=(\S*) HTTP\/1\.\d" (\d{3})/.exec(line);
    if (!m) return;
    const method = m[1]!;
    const raw = m[2]!;
    const key = decodeURIComponent(raw);
    const status = Number(m[3]);
    this.requests.push({ method, key, raw, status });
    if (status !== 200) return;
    if (method === 'PUT') this.held.add(key);
    if (method === 'DELETE') this.held.delete(key);
  }

  /** The keys the server holds, as far as its access log has been read (sorted). */
  keys(): string[] {
    return [...this.held].sort();
  }

  /** GET a key straight from the server: its value, or null on 404. */
  async get(key: string): Promise<string | null> {
    const r = await fetch(`${this.url}?key=${encodeURIComponent(key)}`, { signal: AbortSignal.timeout(3000) });
    if (r.status === 404) return null;
    if (r.status !== 200) throw new Error(`GET ${key}: HTTP ${r.status}`);
    return r.text();
  }

  get output(): string {
    return this.log;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}
