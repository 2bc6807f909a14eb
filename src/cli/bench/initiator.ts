/**
 * The initiator side: `--threads` submitting threads against one target.
 * One thread runs on this event loop; more run as worker threads, each with
 * its own engine and registered memory, started together once all are ready,
 * stopped together (duration over, SIGINT/SIGTERM, or the target lost),
 * results aggregated.
 */
import { performance } from 'node:perf_hooks';
import { Worker } from 'node:worker_threads';
import { ErrorCode } from '../../core.js';
import { LatencyHistogram, type Percentiles } from './histogram.js';
import type { BenchOptions } from './options.js';
import { Progress, PROGRESS_FIELDS, ThreadRunner, type FailureInfo, type ThreadControl, type ThreadResult } from './thread.js';
import type { WorkerInput, WorkerMessage } from './worker.js';
import { REPORT_UNITS } from './options.js';

/**
 * Why a run ended: it ran its --duration; SIGINT/SIGTERM; its target was lost
 * (the --loopback target process exited, or requests failed in a row with
 * unreachable/timeout errors for --give_up_after seconds); or requests failed
 * in a row that long with other errors (the target answers, and refuses).
 */
export type StopReason = 'duration' | 'signal' | 'target_lost' | 'all_failed';

/**
 * The integrity check's verdict. 'passed' vouches for the whole run: round
 * trips ran, each read back what it wrote, no request failed (a failed one
 * leaves its round trip unchecked) and the target was not lost. 'failed': bytes
 * came back wrong. 'incomplete': nothing came back wrong, but that is not a pass.
 */
export type Integrity = 'passed' | 'failed' | 'incomplete' | 'off';

/** What runLoopback aborts a run with when its target process exits. */
export class TargetLostError extends Error {
  override readonly name = 'TargetLostError';
}

export interface BenchResult {
  remoteSegment: string;
  elapsedS: number;
  bytes: number;
  batches: number;
  requests: number;
  failures: number;
  integrity: Integrity;
  integrityChecks: number;
  integrityFailures: number;
  interrupted: boolean;
  stopReason: StopReason;
  /** Why the run stopped early, when its target was lost or every request failed: a sentence for people. */
  stopMessage: string | undefined;
  batchLatency: Percentiles;
  requestLatency: Percentiles;
  /** nixlbench's columns: a batch's prepare, post and transfer times. */
  phases: { prep: Percentiles; post: Percentiles; tx: Percentiles };
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

/** What ended a run before its duration; the first cause wins. */
export type EarlyStop = { kind: 'signal' } | { kind: 'target_exited'; message: string } | { kind: 'failing'; streak: FailureStreak };

/**
 * Run the initiator against `segment` for o.durationS seconds. SIGINT/SIGTERM
 * end it early, and so does a lost target: `targetLost` aborting (runLoopback
 * watches its child process), or requests failing in a row for o.giveUpAfterS.
 */
export async function runInitiator(o: BenchOptions, segment: string, targetLost?: AbortSignal): Promise<BenchResult> {
  const shared = o.threads > 1;
  const control: ThreadControl = {
    stop: new Int32Array(shared ? new SharedArrayBuffer(4) : new ArrayBuffer(4)),
    progress: new Float64Array(shared ? new SharedArrayBuffer(8 * PROGRESS_FIELDS * o.threads) : new ArrayBuffer(8 * PROGRESS_FIELDS * o.threads)),
  };
  // A holder, not a `let`: it is set from callbacks, which TypeScript's narrowing does not see.
  const ended: { early: EarlyStop | null } = { early: null };
  const stopEarly = (why: EarlyStop): void => {
    ended.early ??= why;
    Atomics.store(control.stop, 0, 1);
  };
  let interrupted = false;
  let signals = 0;
  const onSignal = (): void => {
    interrupted = true;
    stopEarly({ kind: 'signal' });
    // A second Ctrl-C while a batch hangs: give up at once.
    if (++signals >= 2) process.exit(130);
  };
  const onTargetLost = (): void => stopEarly({ kind: 'target_exited', message: abortMessage(targetLost?.reason) });
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  targetLost?.addEventListener('abort', onTargetLost);
  if (targetLost?.aborted) onTargetLost(); // lost while we were starting: the threads run no batch
  const log = errorLog();
  try {
    const group = shared ? await startWorkers(o, segment, control, log) : await startInline(o, segment, log);
    announceRun(o, segment);
    const progress = process.stdout.isTTY && !o.json && !o.csv ? startProgress(o, control) : null;
    const watch = o.giveUpAfterS > 0 ? watchFailures(o, control, (streak) => stopEarly({ kind: 'failing', streak })) : null;
    const t0 = performance.now();
    const timer = setTimeout(() => Atomics.store(control.stop, 0, 1), o.durationS * 1000);
    let results: ThreadResult[];
    try {
      results = await group.run(control);
    } finally {
      clearTimeout(timer);
      Atomics.store(control.stop, 0, 1); // a failed thread must not leave the others running
      progress?.stop();
      watch?.stop();
    }
    const elapsedS = (performance.now() - t0) / 1000;
    await group.close();
    const result = aggregate(o, segment, results, elapsedS, interrupted, ended.early);
    if (result.stopMessage !== undefined) process.stderr.write(`transfer-engine bench: stopped early: ${result.stopMessage}\n`);
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    targetLost?.removeEventListener('abort', onTargetLost);
  }
}

function abortMessage(reason: unknown): string {
  return reason instanceof Error ? reason.message : 'the target was lost';
}

/** The run starts now (every thread is connected): a line, or with --json an event line before the result. */
function announceRun(o: BenchOptions, segment: string): void {
  if (o.json) {
    const event = { event: 'run_started', workload: o.workload, remote_segment: segment, duration_s: o.durationS, threads: o.threads };
    process.stdout.write(`${JSON.stringify(event)}\n`);
  } else {
    // With --csv stdout holds the table alone: what is said along the way goes to stderr.
    (o.csv ? process.stderr : process.stdout).write(`Running ${o.workload} against ${segment} for ${o.durationS} s (${o.threads} thread${o.threads > 1 ? 's' : ''})...\n`);
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

/** One progress counter (a Progress field) summed over all threads. */
function progressSum(o: BenchOptions, control: ThreadControl, field: number): number {
  let s = 0;
  for (let t = 0; t < o.threads; t++) s += control.progress[t * PROGRESS_FIELDS + field]!;
  return s;
}

/** A progress line on the terminal, rewritten every second. */
function startProgress(o: BenchOptions, control: ThreadControl): { stop(): void } {
  const t0 = performance.now();
  let lastBytes = 0;
  let lastT = t0;
  const sum = (field: number): number => progressSum(o, control, field);
  const unit = REPORT_UNITS[o.reportUnit];
  const timer = setInterval(() => {
    const now = performance.now();
    const bytes = sum(Progress.BYTES);
    const rate = (bytes - lastBytes) / ((now - lastT) / 1000) / unit;
    lastBytes = bytes;
    lastT = now;
    const failures = sum(Progress.FAILURES);
    process.stdout.write(
      `\r\x1b[2K  ${((now - t0) / 1000).toFixed(0)}/${o.durationS} s  ${rate.toFixed(o.precision)} ${o.reportUnit}/s  ` +
        `${sum(Progress.BATCHES)} batches  ${sum(Progress.REQUESTS)} requests${failures ? `  ${failures} failed` : ''}`,
    );
  }, 1000);
  return {
    stop: () => {
      clearInterval(timer);
      process.stdout.write('\r\x1b[2K');
    },
  };
}

/** Failed requests with not one completed in between, on any thread, as the watcher sampled them. */
export interface FailureStreak {
  failed: number;
  /** performance.now() of the samples that saw the streak's first and latest failures. */
  firstAt: number;
  lastAt: number;
}

const WATCH_EVERY_MS = 250;

/**
 * Calls onGiveUp once requests have failed in a row for o.giveUpAfterS, none
 * completing on any thread: the target is gone (or refuses everything), and
 * running on to the end would only pile up failures. Measured from the streak's
 * first failure to its latest, not from the last success: one failed batch
 * followed by a slow one is not a dead target; failures that keep coming are.
 * Batches that hang end through the engine's timeouts (MC_TRANSFER_TIMEOUT),
 * as failures that count here.
 */
function watchFailures(o: BenchOptions, control: ThreadControl, onGiveUp: (streak: FailureStreak) => void): { stop(): void } {
  let completedSeen = 0;
  let failedSeen = 0;
  let streak: FailureStreak | null = null;
  const timer = setInterval(() => {
    const now = performance.now();
    const failed = progressSum(o, control, Progress.FAILURES);
    const completed = progressSum(o, control, Progress.REQUESTS) - failed;
    if (completed > completedSeen) streak = null;
    else if (failed > failedSeen) {
      streak ??= { failed: 0, firstAt: now, lastAt: now };
      streak.failed += failed - failedSeen;
      streak.lastAt = now;
    }
    completedSeen = completed;
    failedSeen = failed;
    if (streak !== null && streak.lastAt - streak.firstAt >= o.giveUpAfterS * 1000) {
      clearInterval(timer);
      onGiveUp(streak);
    }
  }, WATCH_EVERY_MS);
  return { stop: () => clearInterval(timer) };
}

/** Errors that say the target is not there, as opposed to there and refusing. */
const GONE_CODES: ReadonlySet<string | undefined> = new Set([ErrorCode.PEER_UNREACHABLE, ErrorCode.PEER_CHANGED, ErrorCode.TIMEOUT]);

/** The most recent failure of any thread: what the run's last streak ended on. */
function latestFailure(results: ThreadResult[]): FailureInfo | undefined {
  let latest: FailureInfo | undefined;
  for (const r of results) if (r.lastError && (!latest || r.lastError.atMs > latest.atMs)) latest = r.lastError;
  return latest;
}

/** The run's stop_reason, and for a lost target or an all-failing run the sentence that says so. Exported for tests. */
export function describeStop(early: EarlyStop | null, results: ThreadResult[]): { reason: StopReason; message: string | undefined } {
  if (early === null) return { reason: 'duration', message: undefined };
  switch (early.kind) {
    case 'signal':
      return { reason: 'signal', message: undefined };
    case 'target_exited':
      return { reason: 'target_lost', message: `the target died: ${early.message}` };
    case 'failing': {
      const { failed, firstAt, lastAt } = early.streak;
      const last = latestFailure(results);
      const streak = `${failed} requests failed in a row over ${((lastAt - firstAt) / 1000).toFixed(1)} s, none completed`;
      const cause = last ? ` (last error, ${last.code ?? 'not a TransferEngineError'}: ${last.message})` : '';
      if (last === undefined || GONE_CODES.has(last.code)) return { reason: 'target_lost', message: `the target is gone or unreachable: ${streak}${cause}` };
      return { reason: 'all_failed', message: `the target fails every request: ${streak}${cause}` };
    }
  }
}

/** Exported for tests. */
export function integrityVerdict(o: BenchOptions, checks: number, mismatches: number, failures: number, stop: StopReason): Integrity {
  if (!o.integrityCheck) return 'off';
  if (mismatches > 0) return 'failed';
  // No round trip at all proves nothing; a failed request left its round trip unchecked; a lost
  // target cut the run short. None of these saw wrong bytes, and none is a pass.
  if (checks === 0 || failures > 0 || stop === 'target_lost' || stop === 'all_failed') return 'incomplete';
  return 'passed';
}

function aggregate(o: BenchOptions, segment: string, results: ThreadResult[], elapsedS: number, interrupted: boolean, early: EarlyStop | null): BenchResult {
  const batchLatency = new LatencyHistogram();
  const requestLatency = new LatencyHistogram();
  const prep = new LatencyHistogram();
  const post = new LatencyHistogram();
  const tx = new LatencyHistogram();
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
    prep.merge(r.prepLatency);
    post.merge(r.postLatency);
    tx.merge(r.txLatency);
  }
  const stop = describeStop(early, results);
  return {
    remoteSegment: segment,
    elapsedS,
    bytes,
    batches,
    requests,
    failures,
    integrity: integrityVerdict(o, integrityChecks, integrityFailures, failures, stop.reason),
    integrityChecks,
    integrityFailures,
    interrupted,
    stopReason: stop.reason,
    stopMessage: stop.message,
    batchLatency: batchLatency.percentiles(),
    requestLatency: requestLatency.percentiles(),
    phases: { prep: prep.percentiles(), post: post.percentiles(), tx: tx.percentiles() },
    perThreadBps: results.map((r) => (r.elapsedS > 0 ? r.bytes / r.elapsedS : 0)),
    error,
  };
}
