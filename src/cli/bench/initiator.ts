/**
 * The initiator side: `--threads` submitting threads against one target.
 * One thread runs on this event loop; more run as worker threads, each with
 * its own engine and registered memory, started together once all are ready,
 * stopped together (duration over, or SIGINT/SIGTERM), results aggregated.
 */
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { LatencyHistogram, type Percentiles } from './histogram.js';
import type { BenchOptions } from './options.js';
import { PROGRESS_FIELDS, ThreadRunner, type ThreadControl, type ThreadResult } from './thread.js';
import type { WorkerInput, WorkerMessage } from './worker.js';
import { REPORT_UNITS } from './options.js';

export interface BenchResult {
  remoteSegment: string;
  elapsedS: number;
  bytes: number;
  batches: number;
  requests: number;
  failures: number;
  integrity: 'passed' | 'failed' | 'off';
  integrityChecks: number;
  integrityFailures: number;
  interrupted: boolean;
  batchLatency: Percentiles;
  requestLatency: Percentiles;
  /** Per thread: bytes over that thread's own run time. */
  perThreadBps: number[];
  error: string | undefined;
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

/** Prints each distinct error message once, across threads. */
function errorLog(): (message: string) => void {
  const seen = new Set<string>();
  return (message) => {
    if (seen.has(message) || seen.size > 20) return;
    seen.add(message);
    process.stderr.write(`transfer-engine bench: ${message}\n`);
  };
}

/** Run the initiator against `segment` for o.durationS seconds (SIGINT/SIGTERM end it early). */
export async function runInitiator(o: BenchOptions, segment: string): Promise<BenchResult> {
  const shared = o.threads > 1;
  const control: ThreadControl = {
    stop: new Int32Array(shared ? new SharedArrayBuffer(4) : new ArrayBuffer(4)),
    progress: new Float64Array(shared ? new SharedArrayBuffer(8 * PROGRESS_FIELDS * o.threads) : new ArrayBuffer(8 * PROGRESS_FIELDS * o.threads)),
  };
  let interrupted = false;
  let signals = 0;
  const onSignal = (): void => {
    interrupted = true;
    Atomics.store(control.stop, 0, 1);
    // A second Ctrl-C while a batch hangs: give up at once.
    if (++signals >= 2) process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const log = errorLog();
  try {
    const group = shared ? await startWorkers(o, segment, control, log) : await startInline(o, segment, log);
    if (!o.json) process.stdout.write(`Running ${o.workload} against ${segment} for ${o.durationS} s (${o.threads} thread${o.threads > 1 ? 's' : ''})...\n`);
    const progress = process.stdout.isTTY && !o.json ? startProgress(o, control) : null;
    const t0 = performance.now();
    const timer = setTimeout(() => Atomics.store(control.stop, 0, 1), o.durationS * 1000);
    let results: ThreadResult[];
    try {
      results = await group.run(control);
    } finally {
      clearTimeout(timer);
      Atomics.store(control.stop, 0, 1); // a failed thread must not leave the others running
      progress?.stop();
    }
    const elapsedS = (performance.now() - t0) / 1000;
    await group.close();
    return aggregate(o, segment, results, elapsedS, interrupted);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

interface ThreadGroup {
  run(control: ThreadControl): Promise<ThreadResult[]>;
  close(): Promise<void>;
}

async function startInline(o: BenchOptions, segment: string, log: (m: string) => void): Promise<ThreadGroup> {
  const runner = await ThreadRunner.create(o, segment, 0, log);
  return {
    run: async (control) => [await runner.run(control)],
    close: () => runner.close(),
  };
}

/** Start one worker per thread; resolves once all are ready (or rejects with the first failure). */
async function startWorkers(o: BenchOptions, segment: string, control: ThreadControl, log: (m: string) => void): Promise<ThreadGroup> {
  const workers: Worker[] = [];
  const exited: Array<Promise<void>> = [];
  const results: Array<Promise<ThreadResult>> = [];
  const ready: Array<Promise<void>> = [];
  for (let thread = 0; thread < o.threads; thread++) {
    const input: WorkerInput = { options: o, segment, thread, stop: control.stop, progress: control.progress };
    const w = new Worker(WORKER_URL, { workerData: input });
    workers.push(w);
    exited.push(new Promise((resolve) => w.once('exit', () => resolve())));
    let onReady!: () => void;
    let onFailed!: (e: Error) => void;
    let onDone!: (r: ThreadResult) => void;
    ready.push(new Promise((res, rej) => ((onReady = res), (onFailed = rej))));
    const done = new Promise<ThreadResult>((res, rej) => {
      onDone = res;
      w.once('exit', (code) => rej(new Error(`worker thread ${thread} exited (code ${code}) without a result`)));
    });
    done.catch(() => undefined); // observed through `ready` or run()
    results.push(done);
    w.on('message', (m: WorkerMessage) => {
      if (m.type === 'ready') onReady();
      else if (m.type === 'failed') onFailed(new Error(m.message));
      else if (m.type === 'log') log(m.message);
      else onDone(m.result);
    });
    w.once('error', (e) => onFailed(e));
    w.once('exit', (code) => onFailed(new Error(`worker thread ${thread} exited (code ${code}) before it was ready`)));
  }
  const stopAll = async (): Promise<void> => {
    Atomics.store(control.stop, 0, 1);
    for (const w of workers) w.postMessage('go'); // the ready ones run zero batches and close their engines
    await Promise.race([Promise.all(exited), new Promise((r) => setTimeout(r, 10_000).unref())]);
    await Promise.all(workers.map((w) => w.terminate()));
  };
  try {
    await Promise.all(ready);
  } catch (e) {
    await stopAll();
    throw e;
  }
  return {
    run: async () => {
      for (const w of workers) w.postMessage('go');
      return Promise.all(results);
    },
    close: async () => {
      await Promise.all(exited);
    },
  };
}

/** A progress line on the terminal, rewritten every second. */
function startProgress(o: BenchOptions, control: ThreadControl): { stop(): void } {
  const t0 = performance.now();
  let lastBytes = 0;
  let lastT = t0;
  const sum = (field: number): number => {
    let s = 0;
    for (let t = 0; t < o.threads; t++) s += control.progress[t * PROGRESS_FIELDS + field]!;
    return s;
  };
  const unit = REPORT_UNITS[o.reportUnit];
  const timer = setInterval(() => {
    const now = performance.now();
    const bytes = sum(0);
    const rate = (bytes - lastBytes) / ((now - lastT) / 1000) / unit;
    lastBytes = bytes;
    lastT = now;
    const failures = sum(3);
    process.stdout.write(
      `\r\x1b[2K  ${((now - t0) / 1000).toFixed(0)}/${o.durationS} s  ${rate.toFixed(o.precision)} ${o.reportUnit}/s  ` +
        `${sum(1)} batches  ${sum(2)} requests${failures ? `  ${failures} failed` : ''}`,
    );
  }, 1000);
  return {
    stop: () => {
      clearInterval(timer);
      process.stdout.write('\r\x1b[2K');
    },
  };
}

function aggregate(o: BenchOptions, segment: string, results: ThreadResult[], elapsedS: number, interrupted: boolean): BenchResult {
  const batchLatency = new LatencyHistogram();
  const requestLatency = new LatencyHistogram();
  let bytes = 0;
  let batches = 0;
  let requests = 0;
  let failures = 0;
  let integrityChecks = 0;
  let integrityFailures = 0;
  let error: string | undefined;
  for (const r of results) {
    bytes += r.bytes;
    batches += r.batches;
    requests += r.requests;
    failures += r.failures;
    integrityChecks += r.integrityChecks;
    integrityFailures += r.integrityFailures;
    error ??= r.error;
    batchLatency.merge(r.batchLatency);
    requestLatency.merge(r.requestLatency);
  }
  let integrity: BenchResult['integrity'] = 'off';
  // No completed round trip proves nothing, so it does not pass.
  if (o.integrityCheck) integrity = integrityFailures === 0 && integrityChecks > 0 ? 'passed' : 'failed';
  return {
    remoteSegment: segment,
    elapsedS,
    bytes,
    batches,
    requests,
    failures,
    integrity,
    integrityChecks,
    integrityFailures,
    interrupted,
    batchLatency: batchLatency.percentiles(),
    requestLatency: requestLatency.percentiles(),
    perThreadBps: results.map((r) => (r.elapsedS > 0 ? r.bytes / r.elapsedS : 0)),
    error,
  };
}
