/**
 * A Store master process for store tests: the real `mooncake_master` of the pinned wheel (the
 * binary itself, not the .venv/bin wrapper, which would be orphaned by a signal), or ours
 * (`transfer-engine master`, given the same flags), on free loopback ports, with its
 * embedded HTTP metadata server. The command line is the one test/store/CAPTURES.md recorded,
 * minus the 1 s lease (opt in with `leaseTtlMs`).
 *
 * Call ensureInteropEnv() (test/interop/mooncake.ts) first: it installs the wheel.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { mooncakeBinary, mooncakeEnv } from '../interop/mooncake.js';
import { freePort } from '../servers.js';

const LOG_TAIL = 20_000;
const READY_TIMEOUT_MS = 30_000;
const STOP_GRACE_MS = 5_000;

/**
 * Children started by the store harness die with the test process whatever happens (a failed
 * assertion, an uncaught error): the master holds ports and the drivers hold segments.
 */
const liveChildren = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of liveChildren) c.kill('SIGKILL');
});

/** Register a harness child so it is SIGKILLed when the test process exits. */
export function killOnExit(child: ChildProcess): void {
  liveChildren.add(child);
  child.once('exit', () => liveChildren.delete(child));
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `probe` until `done(value)`, or fail after `ms` with the last value and `why()`. */
export async function waitFor<T>(what: string, ms: number, probe: () => Promise<T>, done: (v: T) => boolean, why: () => string = () => ''): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (done(v)) return v;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms (last: ${JSON.stringify(v)})\n${why()}`);
    await sleep(100);
  }
}

export function isAlive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Signal a child, SIGKILL it if it is still there after `graceMs`, and wait for it to go. */
export async function stopChild(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = STOP_GRACE_MS): Promise<void> {
  if (!isAlive(child)) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill(signal);
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** Which master: the wheel's `mooncake_master`, or ours (`transfer-engine master`, same flags). */
export type MasterKind = 'mooncake' | 'ours';

/** Both, for suites that run against each. */
export const MASTER_KINDS: readonly MasterKind[] = ['mooncake', 'ours'];

/** Our CLI, as built by `npm run build:all` (this file runs from dist/test/store-harness). */
const OUR_CLI = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export interface MasterOptions {
  /** Default 'mooncake'. */
  kind?: MasterKind;
  /** `--default_kv_lease_ttl` in ms (the master's default is 10000). */
  leaseTtlMs?: number;
  /** `--client_ttl` in s: how long a client without a Ping keeps its segments (default 10). */
  clientTtlS?: number;
  /** Run the embedded HTTP metadata server (default true). */
  httpMetadata?: boolean;
  /** A fixed RPC port instead of a free one. */
  port?: number;
  /** More flags, appended last (gflags: the last occurrence wins). */
  extraArgs?: string[];
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
    s.setTimeout(1000, () => done(false));
  });
}

/** The embedded server answers 404 for a key it does not hold: that is "up". */
function metadataAnswers(url: string): Promise<boolean> {
  return fetch(`${url}?key=harness-ready-probe`, { signal: AbortSignal.timeout(1000) }).then(
    (r) => r.status === 404 || r.ok,
    () => false,
  );
}

export class MooncakeMaster {
  private child: ChildProcess | null = null;
  private output = '';

  private constructor(
    readonly kind: MasterKind,
    readonly rpcPort: number,
    readonly httpPort: number,
    readonly metricsPort: number,
    /** The full command line (binary first), the same for every (re)start. */
    readonly argv: readonly string[],
  ) {}

  static async start(opts: MasterOptions = {}): Promise<MooncakeMaster> {
    const http = opts.httpMetadata ?? true;
    const rpcPort = opts.port ?? (await freePort());
    const httpPort = http ? await distinctFreePort([rpcPort]) : 0;
    const metricsPort = await distinctFreePort([rpcPort, httpPort]);
    const kind = opts.kind ?? 'mooncake';
    const argv = [
      ...(kind === 'mooncake' ? [mooncakeBinary('mooncake_master')] : [process.execPath, OUR_CLI, 'master']),
      `--rpc_port=${rpcPort}`,
      '--rpc_address=127.0.0.1',
      // The admin/metrics server defaults to 0.0.0.0:9003: a free loopback port avoids clashes.
      `--metrics_port=${metricsPort}`,
      '--metrics_host=127.0.0.1',
      ...(http
        ? ['--enable_http_metadata_server=true', `--http_metadata_server_port=${httpPort}`, '--http_metadata_server_host=127.0.0.1']
        : []),
      ...(opts.leaseTtlMs !== undefined ? [`--default_kv_lease_ttl=${opts.leaseTtlMs}`] : []),
      ...(opts.clientTtlS !== undefined ? [`--client_ttl=${opts.clientTtlS}`] : []),
      // The log goes to our pipe (its tail is in error messages), not to files in /tmp.
      '--logtostderr=1',
      ...(opts.extraArgs ?? []),
    ];
    const m = new MooncakeMaster(kind, rpcPort, httpPort, metricsPort, argv);
    await m.launch();
    return m;
  }

  /** `127.0.0.1:<rpc port>`, the store's `master_server_addr`. */
  get address(): string {
    return `127.0.0.1:${this.rpcPort}`;
  }

  /** `http://127.0.0.1:<http port>/metadata`, the store's `metadata_server`. */
  get metadataUrl(): string {
    if (!this.httpPort) throw new Error('this master runs without its HTTP metadata server');
    return `http://127.0.0.1:${this.httpPort}/metadata`;
  }

  /** The last ~20 KB of the master's output (all its (re)starts), for failure messages. */
  get log(): string {
    return this.output;
  }

  get alive(): boolean {
    return this.child !== null && isAlive(this.child);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Send a signal and return at once (SIGKILL by default: a crash). */
  kill(signal: NodeJS.Signals = 'SIGKILL'): void {
    if (this.child && isAlive(this.child)) this.child.kill(signal);
  }

  /** SIGTERM, SIGKILL after 5 s; resolves once the process is gone. */
  async stop(): Promise<void> {
    if (this.child) await stopChild(this.child);
  }

  /**
   * Stop the master (SIGTERM by default, or `signal`, e.g. SIGKILL for a crash), stay down
   * `downMs`, and start it again with the same argv, so on the same ports. It comes back
   * empty (no HA, no snapshots): clients must remount and republish their metadata.
   */
  async restart(opts: { signal?: NodeJS.Signals; downMs?: number } = {}): Promise<void> {
    if (this.child) await stopChild(this.child, opts.signal ?? 'SIGTERM');
    if (opts.downMs) await sleep(opts.downMs);
    await this.launch();
  }

  private async launch(): Promise<void> {
    this.note(`--- harness: starting ${this.argv.join(' ')}`);
    // MC_FORCE_TCP as for every Mooncake process here; the master's INFO log is kept (it is
    // what explains a failure), so GLOG_minloglevel from mooncakeEnv() is overridden.
    const child = spawn(this.argv[0]!, this.argv.slice(1), {
      env: mooncakeEnv({ GLOG_minloglevel: '0' }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    killOnExit(child);
    const keep = (d: Buffer): void => this.note(d.toString(), false);
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    child.once('exit', (code, sig) => this.note(`--- harness: ${this.kind} master exited (${sig ?? code})`));
    try {
      await this.waitReady(child);
    } catch (e) {
      await stopChild(child, 'SIGKILL');
      throw e;
    }
  }

  private async waitReady(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + READY_TIMEOUT_MS;
    for (;;) {
      if (!isAlive(child)) throw new Error(`${this.kind} master exited before it was ready:\n${this.output}`);
      const rpc = await canConnect(this.rpcPort);
      if (rpc && (!this.httpPort || (await metadataAnswers(this.metadataUrl)))) return;
      if (Date.now() > deadline) throw new Error(`${this.kind} master was not ready within ${READY_TIMEOUT_MS} ms:\n${this.output}`);
      await sleep(100);
    }
  }

  private note(text: string, line = true): void {
    this.output = (this.output + text + (line ? '\n' : '')).slice(-LOG_TAIL);
  }
}

/** A free port that is not one of `taken` (freePort() can hand the same port out twice). */
async function distinctFreePort(taken: number[]): Promise<number> {
  for (;;) {
    const p = await freePort();
    if (!taken.includes(p)) return p;
  }
}
