/**
 * Real metadata servers for the tests, on free 127.0.0.1 ports with temporary
 * data directories: etcd (Debian etcd-server), redis-server, and our own HTTP
 * metadata server (the CLI in a child process).
 *
 * A missing binary is installed with apt-get when we are root. If that is not
 * possible the suite fails under CI=true and, outside CI, is skipped with a
 * loud reason. Every server started here is killed when the test process
 * exits, even after a failure (the suites also stop them in after()).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const MAIN_JS = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const children = new Set<ChildProcess>();
const tmpDirs = new Set<string>();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
  for (const d of tmpDirs) rmSync(d, { recursive: true, force: true });
});

const PACKAGES: Record<string, string> = { etcd: 'etcd-server', 'redis-server': 'redis-server' };

function which(bin: string): string | null {
  for (const dir of (process.env['PATH'] ?? '').split(':').concat(['/usr/bin', '/usr/sbin', '/usr/local/bin'])) {
    const p = path.join(dir, bin);
    if (dir && existsSync(p)) return p;
  }
  return null;
}

export interface Binary {
  path: string;
  /** A reason to skip (outside CI only), or false. */
  skip: string | false;
}

/**
 * Find a server binary, installing its Debian package if needed and possible.
 * Under CI=true a binary that cannot be had throws, so the suite fails.
 */
export function requireServer(bin: 'etcd' | 'redis-server'): Binary {
  let found = which(bin);
  let why = '';
  if (!found) {
    const pkg = PACKAGES[bin]!;
    if (process.getuid?.() === 0 && which('apt-get')) {
      process.stderr.write(`# ${bin} is missing: installing the Debian package ${pkg}\n`);
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      const up = spawnSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env, timeout: 300_000 });
      const inst = up.status === 0 ? spawnSync('apt-get', ['install', '-y', '-qq', pkg], { stdio: 'inherit', env, timeout: 600_000 }) : up;
      if (inst.status !== 0) why = `apt-get install ${pkg} failed (exit ${inst.status ?? inst.signal})`;
      found = which(bin);
    } else {
      why = `not root or no apt-get: install ${pkg} by hand`;
    }
  }
  if (found) return { path: found, skip: false };
  const reason = `${bin} is not available (${why || 'not found after install'})`;
  if (process.env['CI']) throw new Error(`${reason}: this suite needs it in CI`);
  process.stderr.write(`\n#### SKIPPING: ${reason}. The suite needs a real ${bin}; outside CI it is skipped. ####\n\n`);
  return { path: '', skip: reason };
}

export interface HttpReply {
  status: number;
  type: string;
  body: string;
}

/** One HTTP request to 127.0.0.1 on a fresh connection: status, content type and body as text. */
export function httpGet(port: number, path: string, method = 'GET'): Promise<HttpReply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A free TCP port on 127.0.0.1 (bound and released: a small race, fine for tests). */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen({ host: '127.0.0.1', port: 0 }, () => resolve());
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export function tempDir(prefix: string): string {
  const d = mkdtempSync(path.join(os.tmpdir(), prefix));
  tmpDirs.add(d);
  return d;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A server child process: killed at exit whatever happens. */
class ServerProcess {
  private output = '';
  constructor(
    readonly label: string,
    readonly child: ChildProcess,
  ) {
    children.add(child);
    child.on('exit', () => children.delete(child));
    const keep = (d: Buffer): void => {
      this.output = (this.output + d.toString()).slice(-8000);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** The last output, for failure messages. */
  get log(): string {
    return this.output;
  }

  kill(): Promise<void> {
    return this.stop('SIGKILL');
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill(signal);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  }
}

async function waitUntil(what: string, proc: ServerProcess, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!proc.alive) throw new Error(`${what} exited before it was ready:\n${proc.log}`);
    if (await check().catch(() => false)) return;
    await sleep(100);
  }
  throw new Error(`${what} was not ready within ${timeoutMs} ms:\n${proc.log}`);
}

function httpOk(url: string): Promise<boolean> {
  return fetch(url, { signal: AbortSignal.timeout(1000) }).then((r) => r.ok);
}

// ------------------------------------------------------------------ etcd

export interface EtcdMember {
  name: string;
  clientPort: number;
  peerPort: number;
  endpoint: string;
  proc: ServerProcess | null;
  dataDir: string;
}

export class EtcdCluster {
  private constructor(
    readonly bin: string,
    readonly members: EtcdMember[],
  ) {}

  /** `etcd://127.0.0.1:p1,127.0.0.1:p2,...` */
  get connString(): string {
    return `etcd://${this.members.map((m) => `127.0.0.1:${m.clientPort}`).join(',')}`;
  }

  static async start(bin: string, size = 1): Promise<EtcdCluster> {
    const members: EtcdMember[] = [];
    for (let i = 0; i < size; i++) {
      const clientPort = await freePort();
      let peerPort = await freePort();
      while (peerPort === clientPort) peerPort = await freePort();
      members.push({ name: `m${i}`, clientPort, peerPort, endpoint: `http://127.0.0.1:${clientPort}`, proc: null, dataDir: tempDir('te-etcd-') });
    }
    const cluster = new EtcdCluster(bin, members);
    for (const m of members) cluster.spawn(m);
    await Promise.all(members.map((m) => cluster.waitHealthy(m)));
    return cluster;
  }

  private spawn(m: EtcdMember): void {
    const initial = this.members.map((x) => `${x.name}=http://127.0.0.1:${x.peerPort}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.endpoint,
      '--advertise-client-urls', m.endpoint,
      '--listen-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${m.peerPort}`,
      '--initial-cluster', initial,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', `te-test-${process.pid}`,
      '--log-level', 'error',
      '--logger', 'zap',
    ];
    // etcd 3.4 refuses to start on arm64 unless told the architecture is fine.
    const env = process.arch === 'x64' ? process.env : { ...process.env, ETCD_UNSUPPORTED_ARCH: process.arch };
    m.proc = new ServerProcess(`etcd ${m.name}`, spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'], env }));
  }

  private waitHealthy(m: EtcdMember): Promise<void> {
    return waitUntil(`etcd member ${m.name} (${m.endpoint})`, m.proc!, () => httpOk(`${m.endpoint}/health`));
  }

  /** SIGKILL one member (its data stays, so it can be restarted). */
  async kill(i: number): Promise<void> {
    await this.members[i]!.proc?.kill();
  }

  async restart(i: number): Promise<void> {
    const m = this.members[i]!;
    await m.proc?.stop();
    this.spawn(m);
    await this.waitHealthy(m);
  }

  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.proc?.stop()));
  }
}

// ----------------------------------------------------------------- redis

export class RedisServer {
  private proc: ServerProcess | null = null;
  private readonly dir = tempDir('te-redis-');
  private constructor(
    readonly bin: string,
    readonly port: number,
    readonly password: string | undefined,
  ) {}

  get connString(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  static async start(bin: string, opts: { password?: string } = {}): Promise<RedisServer> {
    const s = new RedisServer(bin, await freePort(), opts.password);
    await s.spawn();
    return s;
  }

  private async spawn(): Promise<void> {
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', this.dir, '--daemonize', 'no', '--protected-mode', 'yes'];
    if (this.password) args.push('--requirepass', this.password);
    const proc = new ServerProcess(`redis-server :${this.port}`, spawn(this.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] }));
    this.proc = proc;
    await waitUntil(`redis-server on ${this.port}`, proc, async () => /Ready to accept connections/.test(proc.log));
  }

  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  /** Start again on the same port (an empty store: nothing is saved). */
  async restart(): Promise<void> {
    await this.proc?.stop();
    await this.spawn();
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }
}

// ------------------------------------------- our HTTP metadata server (CLI)

export class MetadataServerProcess {
  private proc: ServerProcess | null = null;
  url = '';
  private constructor(
    readonly port: number,
    readonly dataDir: string | undefined,
  ) {}

  static async start(opts: { port?: number; dataDir?: string } = {}): Promise<MetadataServerProcess> {
    const s = new MetadataServerProcess(opts.port ?? (await freePort()), opts.dataDir);
    await s.spawn();
    return s;
  }

  private async spawn(): Promise<void> {
    const args = [MAIN_JS, 'metadata-server', '--host', '127.0.0.1', '--port', String(this.port), '--json'];
    if (this.dataDir) args.push('--data-dir', this.dataDir);
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const proc = new ServerProcess(`metadata-server :${this.port}`, child);
    this.proc = proc;
    const ready = new Promise<string>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      lines.on('line', (l) => {
        try {
          const v = JSON.parse(l) as { event?: string; url?: string };
          if (v.event === 'metadata_server_ready' && v.url) resolve(v.url);
        } catch {
          // not the ready line
        }
      });
      child.once('exit', (code, sig) => reject(new Error(`metadata-server exited (${sig ?? code}) before it was ready:\n${proc.log}`)));
    });
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`metadata-server not ready within 20 s:\n${proc.log}`)), 20_000);
    });
    try {
      this.url = await Promise.race([ready, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  get alive(): boolean {
    return this.proc?.alive ?? false;
  }

  async kill(): Promise<void> {
    await this.proc?.kill();
  }

  async restart(): Promise<void> {
    await this.proc?.stop();
    await this.spawn();
  }

  async stop(): Promise<void> {
    await this.proc?.stop();
  }
}
