/**
 * A store client in a child process, driven by JSON lines (one command in, one reply out, in
 * order): the part PythonStore (the wheel's client) and NodeStore (ours) share. Calls are
 * queued, so concurrent callers are fine; a driver that gives no reply within the call timeout
 * is SIGKILLed, so a stuck driver fails its calls instead of hanging the queue.
 */
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { isAlive, killOnExit, stopChild } from './master.js';

const STDERR_TAIL = 20_000;

/** One reply line of a driver. `rc`: a scalar result; `rcs`: a list result. */
export type Reply = Record<string, unknown> & { rc?: number; rcs?: number[]; error?: string };

export abstract class DriverProcess {
  private readonly lines: AsyncIterableIterator<string>;
  private queue: Promise<unknown> = Promise.resolve();
  private stderrTail = '';
  /** The store's segment name, `host:port` (what preferred_segments refers to). */
  hostname = '';

  protected constructor(
    readonly child: ChildProcess,
    /** For messages: "store driver", "node store driver". */
    private readonly label: string,
    private readonly callTimeoutMs: number,
    private readonly stopGraceMs: number,
  ) {
    killOnExit(child);
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    child.stderr!.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-STDERR_TAIL);
    });
  }

  /** Wait for the driver's ready line, then run `setup` (its reply's rc must be 0) and take the hostname it gives; SIGKILL on failure. */
  protected async open(setup: Record<string, unknown>, what: (r: Reply) => string): Promise<void> {
    try {
      const ready = await this.withTimeout(this.next(), 'start');
      if (!ready['ready']) throw new Error(`${this.label} did not start: ${this.stderr}`);
      const r = await this.call('setup', setup);
      if (r.rc !== 0) throw new Error(`${what(r)}\n${this.stderr.slice(-4000)}`);
      this.hostname = String(r['hostname']);
    } catch (e) {
      await stopChild(this.child, 'SIGKILL');
      throw e;
    }
  }

  /** The last ~20 KB of the client's log. */
  get stderr(): string {
    return this.stderrTail;
  }

  get alive(): boolean {
    return isAlive(this.child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Send one command and wait for its reply; an exception in the driver rejects with its message. */
  call(cmd: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const run = async (): Promise<Reply> => {
      if (!this.alive || !this.child.stdin!.writable) throw new Error(`${this.label} is gone (call "${cmd}"):\n${this.stderr.slice(-2000)}`);
      this.child.stdin!.write(`${JSON.stringify({ cmd, ...args })}\n`);
      const r = await this.withTimeout(this.next(), cmd);
      if (r.error) throw new Error(`${this.label}, ${cmd}: ${r.error}`);
      return r;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** SIGKILL: the client vanishes without unmounting; the master notices after client_ttl. */
  async kill(): Promise<void> {
    await stopChild(this.child, 'SIGKILL');
  }

  /** Close the store (if still open) and end the driver; SIGKILL after the stop grace. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const t = setTimeout(() => this.child.kill('SIGKILL'), this.stopGraceMs);
    await exited;
    clearTimeout(t);
  }

  private async next(): Promise<Reply> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`${this.label} exited:\n${this.stderr.slice(-2000)}`);
    return JSON.parse(r.value) as Reply;
  }

  private withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`${this.label}: "${what}" got no reply within ${this.callTimeoutMs} ms (driver killed):\n${this.stderr.slice(-2000)}`));
      }, this.callTimeoutMs);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}
