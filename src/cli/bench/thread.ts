/**
 * One submitting thread of the initiator: its own engine, its own registered
 * memory, its own slice of the target's memory, and a loop of batches until
 * told to stop. Runs inline (--threads=1) or inside a worker thread.
 */
import { performance } from 'node:perf_hooks';
import { readdirSync } from 'node:fs';
import { isTransferEngineError, TaskStatus, TransferEngine, TransferOpcode, type BatchID, type SegmentDesc, type TransferRequest, type TransferStatus } from '../../core.js';
import type { EngineOptions } from '../../engine/types.js';
import { LatencyHistogram, type HistogramData } from './histogram.js';
import { MAX_THREADS, type BenchOptions } from './options.js';

/**
 * Timing each request of a batch costs about a microsecond per request (a
 * batch id and a promise each), which is noise for large requests and not for
 * small ones: one batch in `sampleEvery(size)` is timed per request, all of
 * them from 256 KiB, one in 4 at 64 KiB, one in 64 at 4 KiB and below.
 */
export function sampleEvery(size: number): number {
  return Math.max(1, Math.min(64, Math.round((256 * 1024) / size)));
}

/** Per-thread live counters in a shared Float64Array: [bytes, batches, requests, failures]. */
export const PROGRESS_FIELDS = 4;
/** Where each counter sits in a thread's PROGRESS_FIELDS. */
export const Progress = { BYTES: 0, BATCHES: 1, REQUESTS: 2, FAILURES: 3 } as const;

export interface ThreadControl {
  /** Non-zero: stop after the current batch. Shared with the main thread when in a worker. */
  stop: Int32Array;
  progress: Float64Array;
}

export interface ThreadResult {
  thread: number;
  elapsedS: number;
  bytes: number;
  batches: number;
  requests: number;
  failures: number;
  integrityChecks: number;
  integrityFailures: number;
  /** The first error this thread saw. */
  error: string | undefined;
  /** The latest failure: what a run of failures ended on, to say why the run gave up. */
  lastError: FailureInfo | undefined;
  batchLatency: HistogramData;
  requestLatency: HistogramData;
  /** nixlbench's phases of a batch (untimed batches only): allocateBatchID, submitTransfer, waitBatch. */
  prepLatency: HistogramData;
  postLatency: HistogramData;
  txLatency: HistogramData;
}

/** NUMA nodes of this host (Mooncake publishes one buffer per node); at least 1. */
export function numaNodeCount(): number {
  try {
    const n = readdirSync('/sys/devices/system/node').filter((d) => /^node\d+$/.test(d)).length;
    return Math.max(1, n);
  } catch {
    return 1;
  }
}

/**
 * The engine options every engine of the bench gets. With `thread` > 0 (the
 * initiator's second and later worker threads, each with its own engine)
 * the metrics port is off: TE_METRICS_PORT is served by thread 0's engine
 * only, the others would fail to bind it.
 */
export function engineOptions(o: BenchOptions, thread = 0): EngineOptions {
  return { metadataServer: o.metadataServer, ...(o.shmfs ? { shm: true } : {}), ...(thread > 0 ? { metricsPort: 0 } : {}) };
}

/** Where this thread's requests land: buffers[thread % n] of the target, past the threads that share it. */
function remoteSlice(desc: SegmentDesc, segment: string, o: BenchOptions, thread: number): bigint {
  const n = desc.buffers.length;
  const buf = desc.buffers[thread % Math.max(1, n)];
  if (!buf) throw new Error(`segment ${segment} publishes no memory buffer`);
  const slice = BigInt(o.size * o.batch);
  const perBuffer = BigInt(Math.ceil(o.threads / n));
  const need = perBuffer * slice;
  if (buf.length < need) {
    throw new Error(
      `segment ${segment} publishes ${buf.length} bytes but --size x --batch x --threads needs ${need}; ` +
        'start the target with the same --size, --batch and --threads',
    );
  }
  return buf.addr + BigInt(Math.floor(thread / n)) * slice;
}

/** A failed request's error: plain data, posted from worker threads. */
export interface FailureInfo {
  /** The TransferEngineError code (TE_PEER_UNREACHABLE, TE_TIMEOUT, ...); undefined for other errors. */
  code: string | undefined;
  message: string;
  /** When it happened, in ms since the epoch: comparable across worker threads (performance.now() is not). */
  atMs: number;
}

/** Keep the first error; `log` prints it once. */
type Log = (message: string) => void;

export class ThreadRunner {
  private readonly writes: TransferRequest[];
  private readonly reads: TransferRequest[];
  /** The same requests one per array: sampled batches submit each into its own batch to time it. */
  private readonly writeSingles: TransferRequest[][];
  private readonly readSingles: TransferRequest[][];
  private readonly slice: Buffer;
  private readonly expected: Buffer | null;
  private readonly word = Buffer.alloc(8);
  private readonly batchLatency = new LatencyHistogram();
  private readonly requestLatency = new LatencyHistogram();
  private readonly prepLatency = new LatencyHistogram();
  private readonly postLatency = new LatencyHistogram();
  private readonly txLatency = new LatencyHistogram();
  private bytes = 0;
  private batches = 0;
  private requests = 0;
  private failures = 0;
  private integrityChecks = 0;
  private integrityFailures = 0;
  private firstError: string | undefined;
  private lastError: FailureInfo | undefined;
  private stopped = false;
  private control: ThreadControl | null = null;

  private constructor(
    private readonly engine: TransferEngine,
    private readonly o: BenchOptions,
    readonly thread: number,
    local: { view: Uint8Array; addr: number },
    remote: { handle: number; base: bigint },
    private readonly log: Log,
  ) {
    this.slice = Buffer.from(local.view.buffer, local.view.byteOffset, local.view.byteLength);
    this.expected = o.integrityCheck ? Buffer.alloc(this.slice.length) : null;
    // Built once and reused: the hot loop allocates no request objects.
    const requests = (opcode: TransferOpcode): TransferRequest[] =>
      Array.from({ length: o.batch }, (_, i) => ({
        opcode,
        source: local.addr + i * o.size,
        targetId: remote.handle,
        targetOffset: remote.base + BigInt(i * o.size),
        length: o.size,
      }));
    this.writes = requests(TransferOpcode.WRITE);
    this.reads = requests(TransferOpcode.READ);
    this.writeSingles = this.writes.map((r) => [r]);
    this.readSingles = this.reads.map((r) => [r]);
  }

  /** Start an engine, open the target, allocate and register this thread's memory. */
  static async create(o: BenchOptions, segment: string, thread: number, log: Log): Promise<ThreadRunner> {
    const engine = new TransferEngine(engineOptions(o, thread));
    // P2P: the port is picked per engine, so threads share the host name. Central modes: names are keys.
    const central = o.metadataServer !== 'P2PHANDSHAKE';
    await engine.init(central && o.threads > 1 ? `${o.localSegment}-t${thread}` : o.localSegment);
    try {
      const handle = await engine.openSegment(segment);
      const base = remoteSlice(engine.getSegmentDescriptor(handle), segment, o, thread);
      const bytes = o.size * o.batch;
      const addr = engine.allocateLocalMemory(bytes, `cpu:${thread % numaNodeCount()}`);
      const view = engine.localView(addr, bytes);
      // Fresh memory is mapped on first touch, a page fault every 4 KiB: receive into it only after
      // touching it, so the clock measures transfers, not the kernel handing out pages. (WRITE-only
      // runs send it untouched, zero-filled, as Mooncake's bench does.)
      if (o.workload !== 'write') view.fill(0);
      return new ThreadRunner(engine, o, thread, { view, addr }, { handle, base }, log);
    } catch (e) {
      await engine.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.engine.close();
  }

  /** Run batches until control.stop is set or the duration is over. */
  async run(control: ThreadControl): Promise<ThreadResult> {
    this.control = control;
    const t0 = performance.now();
    const deadline = t0 + this.o.durationS * 1000;
    const timeEvery = sampleEvery(this.o.size);
    for (let iter = 0; !this.stopped && Atomics.load(control.stop, 0) === 0 && performance.now() < deadline; iter++) {
      const timed = iter % timeEvery === timeEvery - 1; // not the first batch of a sampled run: it opens the lanes
      switch (this.o.workload) {
        case 'read':
          await this.batchOnce(this.reads, this.readSingles, timed);
          break;
        case 'write':
          await this.batchOnce(this.writes, this.writeSingles, timed);
          break;
        case 'mix':
          if (this.expected) await this.checkedRoundTrip(iter, this.expected, timed);
          else if (iter % 2 === 0) await this.batchOnce(this.writes, this.writeSingles, timed);
          else await this.batchOnce(this.reads, this.readSingles, timed);
          break;
      }
    }
    return {
      thread: this.thread,
      elapsedS: (performance.now() - t0) / 1000,
      bytes: this.bytes,
      batches: this.batches,
      requests: this.requests,
      failures: this.failures,
      integrityChecks: this.integrityChecks,
      integrityFailures: this.integrityFailures,
      error: this.firstError,
      lastError: this.lastError,
      batchLatency: this.batchLatency.data(),
      requestLatency: this.requestLatency.data(),
      prepLatency: this.prepLatency.data(),
      postLatency: this.postLatency.data(),
      txLatency: this.txLatency.data(),
    };
  }

  private error(message: string): void {
    if (this.firstError !== undefined) return;
    this.firstError = message;
    this.log(message);
  }

  /** Fill with a fresh pattern, WRITE it, zero the slice, READ it back, compare. */
  private async checkedRoundTrip(iter: number, expected: Buffer, timed: boolean): Promise<void> {
    fillCheckPattern(this.slice, (iter * MAX_THREADS + this.thread + 1) >>> 0, this.word);
    expected.set(this.slice);
    if (!(await this.batchOnce(this.writes, this.writeSingles, timed))) return;
    this.slice.fill(0);
    if (!(await this.batchOnce(this.reads, this.readSingles, timed))) return;
    this.integrityChecks++;
    if (this.slice.equals(expected)) return;
    this.integrityFailures++;
    const at = firstDifference(this.slice, expected);
    this.error(`integrity check failed: thread ${this.thread}, iteration ${iter}: request ${Math.floor(at / this.o.size)}, byte ${at % this.o.size} differs`);
  }

  /** One batch, start to finish. Returns true if every request COMPLETED. */
  private async batchOnce(reqs: TransferRequest[], singles: TransferRequest[][], timed: boolean): Promise<boolean> {
    const t0 = performance.now();
    let statuses: TransferStatus[];
    try {
      statuses = timed ? await this.timedBatch(singles, t0) : await this.plainBatch(reqs);
    } catch (e) {
      // A thrown error (not a task status) would repeat on every batch: stop the run.
      this.requests += reqs.length;
      this.failures += reqs.length;
      this.lastError = { code: isTransferEngineError(e) ? e.code : undefined, message: e instanceof Error ? e.message : String(e), atMs: Date.now() };
      this.error(`batch failed: ${this.lastError.message}`);
      this.stopped = true;
      this.publish();
      return false;
    }
    this.batchLatency.recordUs((performance.now() - t0) * 1000);
    this.batches++;
    this.requests += reqs.length;
    let ok = true;
    for (let i = 0; i < statuses.length; i++) {
      const s = statuses[i]!;
      if (s.status === TaskStatus.COMPLETED) {
        this.bytes += reqs[i]!.length; // only completed requests count toward throughput
      } else {
        ok = false;
        this.failures++;
        this.lastError = { code: s.error?.code, message: s.error?.message ?? `${TaskStatus[s.status]} without an error message`, atMs: Date.now() };
        this.error(`transfer failed (${TaskStatus[s.status]}): ${s.error?.message ?? 'no error message'}`);
      }
    }
    this.publish();
    return ok;
  }

  /** One batch, its phases timed as nixlbench names them: prepare (allocate), post (submit), transfer (until done). */
  private async plainBatch(reqs: TransferRequest[]): Promise<TransferStatus[]> {
    const engine = this.engine;
    const t0 = performance.now();
    const id = engine.allocateBatchID(reqs.length);
    try {
      const t1 = performance.now();
      engine.submitTransfer(id, reqs);
      const t2 = performance.now();
      const st = await engine.waitBatch(id);
      const t3 = performance.now();
      this.prepLatency.recordUs((t1 - t0) * 1000);
      this.postLatency.recordUs((t2 - t1) * 1000);
      this.txLatency.recordUs((t3 - t2) * 1000);
      return st;
    } finally {
      engine.freeBatchID(id);
    }
  }

  /**
   * The same requests, each in a batch of its own, submitted in one go (so
   * they leave together, as one batch would): each one's completion is timed.
   */
  private async timedBatch(singles: TransferRequest[][], t0: number): Promise<TransferStatus[]> {
    const engine = this.engine;
    const hist = this.requestLatency;
    const ids: BatchID[] = [];
    const waits: Array<Promise<TransferStatus>> = [];
    try {
      for (const one of singles) {
        const id = engine.allocateBatchID(1);
        ids.push(id);
        engine.submitTransfer(id, one);
        waits.push(
          engine.waitBatch(id).then((st) => {
            hist.recordUs((performance.now() - t0) * 1000);
            return st[0]!;
          }),
        );
      }
      return await Promise.all(waits);
    } finally {
      await Promise.allSettled(waits); // a batch may only be freed once its tasks have ended
      for (const id of ids) {
        try {
          engine.freeBatchID(id);
        } catch {
          // never submitted (submitTransfer threw): freeing can still fail only if closed
        }
      }
    }
  }

  /** Live counters for the progress line. */
  private publish(): void {
    const p = this.control?.progress;
    if (!p) return;
    const at = this.thread * PROGRESS_FIELDS;
    p[at + Progress.BYTES] = this.bytes;
    p[at + Progress.BATCHES] = this.batches;
    p[at + Progress.REQUESTS] = this.requests;
    p[at + Progress.FAILURES] = this.failures;
  }
}

/**
 * A cheap pattern that differs per iteration and thread: a native fill with an
 * 8-byte word derived from `seed`, then every 4 KiB page stamped with its index
 * so misplaced pages are caught too.
 */
function fillCheckPattern(buf: Buffer, seed: number, word: Buffer): void {
  word.writeUInt32LE(mix32(seed), 0);
  word.writeUInt32LE(mix32(seed ^ 0x5bd1e995), 4);
  buf.fill(word);
  for (let off = 0, page = 0; off + 8 <= buf.length; off += 4096, page++) {
    buf.writeUInt32LE(page, off);
    buf.writeUInt32LE(seed, off + 4);
  }
}

/** murmur3's finalizer: spreads a counter over all 32 bits. */
function mix32(x: number): number {
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b);
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35);
  return (x ^ (x >>> 16)) >>> 0;
}

function firstDifference(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
