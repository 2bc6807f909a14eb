/**
 * One `store-bench` worker: Mooncake's TestInstance. Its own store (setup,
 * segment, local buffer), its own registered buffer of batch x value bytes,
 * and the loop over its keys key0.. in batches: batchPutFrom (prefill) or
 * batchGetInto (decode), timed per batch call as Mooncake's script times it.
 */
import { MooncakeDistributedStore, storeErrorName } from '../../store.js';
import type { StoreBenchOptions } from './options.js';
import { formatBytes, PerformanceTracker } from './stats.js';

/** Mooncake's script sleeps this long after registering its buffer (inside its wall time). */
export const SETTLE_MS = 1000;
/** --verify compares values against this much of the expected byte at a time. */
const VERIFY_CHUNK = 64 * 1024;

/** Where a worker reports: lines for people, and failed batches (logged up to a limit). */
export interface WorkerSink {
  info(line: string): void;
  failures(worker: number, role: string, failed: Array<[key: string, code: number]>, detail: string | undefined): void;
  mismatch(worker: number, what: string): void;
}

export class SetupError extends Error {
  override readonly name = 'SetupError';
}

/** Resolves after `ms`, or at once when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted || ms <= 0) return resolve();
    const done = (): void => {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

export function codeText(code: number): string {
  const name = storeErrorName(code);
  return name ? `${code} (${name})` : String(code);
}

export class StoreWorker {
  readonly tracker = new PerformanceTracker();
  /** The store's segment name (host:port) once set up. */
  hostname = '';
  private store: MooncakeDistributedStore | null = null;
  private buffer = Buffer.alloc(0);
  private base = 0;

  constructor(
    /** 1-based, as Mooncake's Worker-1. */
    readonly index: number,
    /** Keys of this worker: key0 .. key{requests - 1}. */
    readonly requests: number,
    private readonly o: StoreBenchOptions,
    private readonly sink: WorkerSink,
  ) {}

  /** Mooncake's setup(): the timer starts before the store's setup; a 1 s settle at the end. */
  async setup(signal: AbortSignal): Promise<void> {
    const o = this.o;
    const store = new MooncakeDistributedStore();
    this.store = store;
    this.tracker.startTime = PerformanceTracker.now();
    const files = o.files?.[this.index - 1];
    const rc = files
      ? await store.setupWithFiles(o.localHostname, o.metadataServer, files, o.localBufferSize, o.protocol, o.deviceName, o.masterServer)
      : await store.setup(o.localHostname, o.metadataServer, o.globalSegmentSize, o.localBufferSize, o.protocol, o.deviceName, o.masterServer);
    if (rc !== 0) {
      throw new SetupError(`worker ${this.index}: store setup failed with return code ${codeText(rc)}: ${store.getLastError()?.message ?? 'no detail'}`);
    }
    this.hostname = store.getHostname();
    this.buffer = Buffer.alloc(o.batchSize * o.valueLength); // zeroed, as np.zeros
    const reg = store.registerBuffer(this.buffer);
    if (reg !== 0) {
      throw new SetupError(`worker ${this.index}: buffer registration failed with return code ${codeText(reg)}: ${store.getLastError()?.message ?? 'no detail'}`);
    }
    this.base = store.getBufferAddress(this.buffer);
    this.sink.info(
      `Worker ${this.index}: store ${this.hostname} set up (${files ? `files ${files.join(', ')}` : `segment ${formatBytes(o.globalSegmentSize)}`}, local buffer ${formatBytes(o.localBufferSize)}), ` +
        `registered a buffer of ${formatBytes(this.buffer.length)}; keys key0..key${this.requests - 1}`,
    );
    await sleep(SETTLE_MS, signal);
  }

  /**
   * Mooncake's _run_benchmark: batches of keys until this worker's share is
   * done or `signal` aborts (after the batch in flight). Returns whether it ran to the end.
   */
  async run(signal: AbortSignal): Promise<boolean> {
    const o = this.o;
    const store = this.store!;
    const t = this.tracker;
    const prefill = o.role === 'prefill';
    const vl = o.valueLength;
    const addrs = Array.from({ length: o.batchSize }, (_, i) => this.base + i * vl);
    const sizes = new Array<number>(o.batchSize).fill(vl);
    const expected = o.verify ? Buffer.alloc(Math.min(vl, VERIFY_CHUNK)) : null;
    let done = 0;
    t.phaseStart = PerformanceTracker.now();
    while (done < this.requests && !signal.aborted) {
      const n = Math.min(o.batchSize, this.requests - done);
      const keys = new Array<string>(n);
      for (let i = 0; i < n; i++) keys[i] = `key${done + i}`;
      if (expected) this.buffer.fill(0, 0, n * vl); // a get that writes nothing cannot pass for one that did
      // Timed as Mooncake's: the prefill's fill of the buffer is inside the timed call.
      const t0 = PerformanceTracker.now();
      let codes: number[];
      if (prefill) {
        for (let i = 0; i < n; i++) this.buffer.fill((done + i) % 256, i * vl, (i + 1) * vl);
        codes = await store.batchPutFrom(keys, n === o.batchSize ? addrs : addrs.slice(0, n), n === o.batchSize ? sizes : sizes.slice(0, n));
      } else {
        codes = await store.batchGetInto(keys, n === o.batchSize ? addrs : addrs.slice(0, n), n === o.batchSize ? sizes : sizes.slice(0, n));
      }
      const latency = PerformanceTracker.now() - t0;
      t.batchesRun++;
      t.totalOperations += n;
      let ok = 0;
      const failed: Array<[string, number]> = [];
      for (let i = 0; i < n; i++) {
        const c = codes[i] ?? -1;
        if (prefill ? c === 0 : c > 0) ok++;
        else {
          failed.push([keys[i]!, c]);
          t.recordError(c);
        }
      }
      if (failed.length > 0) this.sink.failures(this.index, o.role, failed, store.getLastError()?.message);
      if (ok > 0) t.recordOperation(latency, ok * vl);
      if (expected) this.verify(codes, done, n, expected);
      done += n;
    }
    t.endTime = PerformanceTracker.now();
    return done >= this.requests;
  }

  /** Check the values of the keys that were read: value-length bytes, all N % 256. */
  private verify(codes: number[], first: number, n: number, expected: Buffer): void {
    const vl = this.o.valueLength;
    const t = this.tracker;
    for (let i = 0; i < n; i++) {
      const c = codes[i] ?? -1;
      if (c <= 0) continue;
      t.verified++;
      const key = `key${first + i}`;
      const want = (first + i) % 256;
      let wrong: string | null = null;
      if (c !== vl) wrong = `${key}: read ${c} bytes, expected ${vl}`;
      else {
        expected.fill(want);
        const base = i * vl;
        for (let off = 0; off < vl && wrong === null; off += expected.length) {
          const len = Math.min(expected.length, vl - off);
          if (this.buffer.compare(expected, 0, len, base + off, base + off + len) !== 0) {
            let k = 0;
            while (this.buffer[base + off + k] === want) k++;
            wrong = `${key}: byte ${off + k} is ${this.buffer[base + off + k]}, expected ${want}`;
          }
        }
      }
      if (wrong !== null) {
        t.mismatches++;
        t.firstMismatch ??= wrong;
        this.sink.mismatch(this.index, wrong);
      }
    }
  }

  /** Close the store (unmounts its segment; the values in it go). Idempotent. */
  async close(): Promise<void> {
    const s = this.store;
    this.store = null;
    if (s) await s.close();
  }
}
