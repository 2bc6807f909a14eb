/**
 * Our store client (`transfer-engine/store`) in a child process (node-store-driver.ts), driven by
 * JSON lines like PythonStore, so that tests can SIGKILL it in the middle of a call. The same
 * helpers as PythonStore's for what both do (put, get, remove, isExist, kill, stop), so a
 * workload can drive either kind of client through StoreClientProcess.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isAlive, killOnExit, stopChild } from './master.js';
import type { Reply, ValueDigest } from './python-store.js';

const DRIVER = fileURLToPath(new URL('./node-store-driver.js', import.meta.url));
const MIB = 1024 * 1024;
const STDERR_TAIL = 20_000;
const CALL_TIMEOUT_MS = 90_000;

/** What NodeStore and PythonStore both offer (values named by seed and length, reads as digests). */
export interface StoreClientProcess {
  readonly kind: 'node' | 'python';
  readonly hostname: string;
  readonly alive: boolean;
  readonly pid: number | undefined;
  put(key: string, seed: number, length: number, config?: { replica_num?: number; preferred_segments?: string[] }): Promise<number>;
  get(key: string): Promise<ValueDigest>;
  remove(key: string, force?: boolean): Promise<number>;
  isExist(key: string): Promise<number>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export interface NodeStoreInit {
  master: string;
  metadata: string;
  /** Bytes mounted for everybody's replicas (default 16 MiB; 0: none, a pure client). */
  globalSegmentSize?: number;
  localBufferSize?: number;
  env?: Record<string, string>;
}

/** A partial put's replicas, as put_partial reports them. */
export interface PartialPut {
  rc: number;
  written?: number;
  replicas?: Array<{ endpoint: string; address: number; size: number }>;
}

export class NodeStore implements StoreClientProcess {
  readonly kind = 'node' as const;
  private readonly lines: AsyncIterableIterator<string>;
  private queue: Promise<unknown> = Promise.resolve();
  private stderrTail = '';
  hostname = '';

  private constructor(readonly child: ChildProcess) {
    killOnExit(child);
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    child.stderr!.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-STDERR_TAIL);
    });
  }

  static async start(init: NodeStoreInit): Promise<NodeStore> {
    const child = spawn(process.execPath, [DRIVER], { env: { ...process.env, ...init.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const s = new NodeStore(child);
    try {
      const ready = await s.withTimeout(s.next(), 'start');
      if (!ready['ready']) throw new Error(`node store driver did not start: ${s.stderr}`);
      const r = await s.call('setup', {
        master: init.master,
        metadata: init.metadata,
        global_segment_size: init.globalSegmentSize ?? 16 * MIB,
        local_buffer_size: init.localBufferSize ?? 16 * MIB,
      });
      if (r.rc !== 0) throw new Error(`setup returned ${String(r.rc)}: ${String(r['message'])}\n${s.stderr.slice(-4000)}`);
      s.hostname = String(r['hostname']);
      return s;
    } catch (e) {
      await stopChild(child, 'SIGKILL');
      throw e;
    }
  }

  get stderr(): string {
    return this.stderrTail;
  }

  get alive(): boolean {
    return isAlive(this.child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  call(cmd: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const run = async (): Promise<Reply> => {
      if (!this.alive || !this.child.stdin!.writable) throw new Error(`node store driver is gone (call "${cmd}"):\n${this.stderr.slice(-2000)}`);
      this.child.stdin!.write(`${JSON.stringify({ cmd, ...args })}\n`);
      const r = await this.withTimeout(this.next(), cmd);
      if (r.error) throw new Error(`node store driver, ${cmd}: ${r.error}`);
      return r;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  async put(key: string, seed: number, length: number, config?: { replica_num?: number; preferred_segments?: string[] }): Promise<number> {
    return num((await this.call('put', { key, seed, length, config })).rc);
  }

  /** The value read ({length: 0} on failure), as PythonStore's get. */
  async get(key: string): Promise<ValueDigest> {
    return (await this.getWithCode(key)).value;
  }

  /** The value read and, when it failed, the code getLastError() gave (0 on success). */
  async getWithCode(key: string): Promise<{ value: ValueDigest; rc: number; message?: string }> {
    const r = await this.call('get', { key });
    return { value: r['value'] as ValueDigest, rc: num(r.rc), ...(r['message'] ? { message: String(r['message']) } : {}) };
  }

  async remove(key: string, force = false): Promise<number> {
    return num((await this.call('remove', { key, force })).rc);
  }

  async isExist(key: string): Promise<number> {
    return num((await this.call('is_exist', { key })).rc);
  }

  /** A PutStart and the first `fraction` of the value written into every replica; no PutEnd. */
  async putPartial(key: string, seed: number, length: number, fraction: number, config?: { replica_num?: number; preferred_segments?: string[] }): Promise<PartialPut> {
    return (await this.call('put_partial', { key, seed, length, fraction, config })) as unknown as PartialPut;
  }

  async kill(): Promise<void> {
    await stopChild(this.child, 'SIGKILL');
  }

  /** Close the store (unmounting its segment) and end the driver; SIGKILL after 10 s. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const t = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  }

  private async next(): Promise<Reply> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`node store driver exited:\n${this.stderr.slice(-2000)}`);
    return JSON.parse(r.value) as Reply;
  }

  private withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`node store driver: "${what}" got no reply within ${CALL_TIMEOUT_MS} ms (driver killed):\n${this.stderr.slice(-2000)}`));
      }, CALL_TIMEOUT_MS);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

function num(v: unknown): number {
  if (typeof v !== 'number') throw new Error(`node store driver: no rc (${JSON.stringify(v)})`);
  return v;
}
