/**
 * The Mooncake side of interop tests: the real engine from Mooncake's wheel,
 * driven through test/interop/mooncake_driver.py in a child process.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
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

export type Reply = Record<string, unknown> & { rc?: number; error?: string };

export class MooncakePeer {
  private readonly lines: AsyncIterableIterator<string>;
  segment = '';
  stderr = '';

  private constructor(readonly child: ChildProcess) {
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    child.stderr!.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-20_000);
    });
  }

  static async start(init: { metadata?: string; metadataType?: string; env?: Record<string, string> } = {}): Promise<MooncakePeer> {
    const child = spawn(PYTHON, [path.join(SRC_DIR, 'mooncake_driver.py')], {
      env: mooncakeEnv(init.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const p = new MooncakePeer(child);
    const ready = await p.next();
    if (!ready['ready']) throw new Error(`driver did not start: ${p.stderr}`);
    const r = await p.call('init', {
      host: '127.0.0.1',
      metadata: init.metadata ?? 'P2PHANDSHAKE',
      ...(init.metadataType ? { metadata_type: init.metadataType } : {}),
    });
    if (r.rc !== 0) throw new Error(`Mooncake initialize returned ${String(r.rc)}: ${p.stderr.slice(-2000)}`);
    p.segment = String(r['segment']);
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

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }
}
