/**
 * `transfer-engine store-bench`: Mooncake's store stress benchmark
 * (mooncake-store/tests/stress_cluster_benchmark.py) with our store client.
 * Same flags and defaults (but --protocol tcp), same keys and values, same
 * batch calls and timing, the same report; plus --json and --verify.
 *
 * The pieces live in ./store-bench/: options (flags, help), worker (one store
 * and its loop: Mooncake's TestInstance), stats (PerformanceTracker, report).
 * Workers are concurrent async loops in this process, each with its own store.
 */
import { parseFlags, UsageError } from './args.js';
import { dashed, requestsPerWorker, resolveStoreBenchOptions, STORE_BENCH_FLAGS, STORE_BENCH_HELP, type StoreBenchOptions } from './store-bench/options.js';
import { formatBytes, formatReport, PerformanceTracker, type Statistics } from './store-bench/stats.js';
import { codeText, SetupError, sleep, StoreWorker, type WorkerSink } from './store-bench/worker.js';

export { STORE_BENCH_FLAGS, STORE_BENCH_HELP, resolveStoreBenchOptions, requestsPerWorker } from './store-bench/options.js';
export type { StoreBenchOptions } from './store-bench/options.js';

/** Failed batches logged (3 keys each, as Mooncake's script); later ones are only counted. */
const MAX_FAILURE_LOGS = 20;
const MAX_MISMATCH_LOGS = 10;

export async function runStoreBench(argv: readonly string[]): Promise<number> {
  let o: StoreBenchOptions;
  try {
    const parsed = parseFlags(argv, STORE_BENCH_FLAGS);
    if (parsed.help) {
      process.stdout.write(STORE_BENCH_HELP);
      return 0;
    }
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument "${parsed.positionals[0]}"`);
    o = resolveStoreBenchOptions(parsed);
  } catch (e) {
    // Mooncake's flag names: --max-requests, not the parser's --max_requests.
    if (e instanceof UsageError) throw new UsageError(dashed(e.message));
    throw e;
  }
  return run(o);
}

type Verdict = 'off' | 'passed' | 'failed' | 'incomplete';

async function run(o: StoreBenchOptions): Promise<number> {
  // With --json stdout carries JSON lines only; the text goes to stderr.
  const text = o.json ? process.stderr : process.stdout;
  const say = (line: string): void => void text.write(`${line}\n`);
  const event = (obj: object): void => {
    if (o.json) process.stdout.write(`${JSON.stringify(obj)}\n`);
  };
  const Role = o.role.toUpperCase();

  say('=== Mooncake Zero-Copy Batch Benchmark (transfer-engine store-bench) ===');
  say(`Role: ${Role}`);
  say(`Protocol: ${o.protocol}`);
  say(`Master: ${o.masterServer}, metadata: ${o.metadataServer}`);
  say(`Max requests: ${o.maxRequests}`);
  say(`Batch size: ${o.batchSize}`);
  say(`Value size: ${o.valueLength} bytes (${formatBytes(o.valueLength)})`);
  say(`Number of workers: ${o.numWorkers}${o.numWorkers > 1 ? ' (concurrent async loops in this process, each with its own store)' : ''}`);
  say('='.repeat(50));

  let failureLogs = 0;
  let mismatchLogs = 0;
  const sink: WorkerSink = {
    info: say,
    failures(worker, role, failed, detail) {
      if (failureLogs >= MAX_FAILURE_LOGS) return;
      failureLogs++;
      say(`Worker ${worker}: batch ${role} had ${failed.length} failures:`);
      for (const [key, code] of failed.slice(0, 3)) say(`  ${key}: error_code=${codeText(code)}`);
      if (failed.length > 3) say(`  ... and ${failed.length - 3} more failures`);
      if (detail) say(`  last error: ${detail}`);
      if (failureLogs === MAX_FAILURE_LOGS) say(`(${MAX_FAILURE_LOGS} failed batches logged; further failures are counted, not logged)`);
    },
    mismatch(worker, what) {
      if (mismatchLogs >= MAX_MISMATCH_LOGS) return;
      mismatchLogs++;
      say(`Worker ${worker}: VERIFY MISMATCH ${what}`);
    },
  };

  // SIGINT/SIGTERM: stop after the batches in flight (or end the wait), close the stores, report. A second one exits at once.
  const stop = new AbortController();
  let phase: 'setup' | 'run' | 'wait' | 'close' = 'setup';
  let interruptedIn: string | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stop.signal.aborted) process.exit(sig === 'SIGINT' ? 130 : 143);
    if (phase === 'setup' || phase === 'run') interruptedIn = phase;
    say(`${sig}: ${phase === 'run' ? 'stopping after the batches in flight' : phase === 'setup' ? 'stopping the setup' : 'ending the wait'}; closing the stores`);
    stop.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const workers = requestsPerWorker(o.maxRequests, o.numWorkers).map((n, i) => new StoreWorker(i + 1, n, o, sink));
  const combined = new PerformanceTracker();
  let error: string | null = null;
  try {
    const setups = await Promise.allSettled(workers.map((w) => w.setup(stop.signal)));
    const failed = setups.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) {
      const e: unknown = failed.reason;
      if (!(e instanceof SetupError)) throw e;
      error = e.message;
    } else if (!stop.signal.aborted) {
      event({ event: 'ready', role: o.role, workers: o.numWorkers, segments: workers.map((w) => w.hostname), pid: process.pid });
      phase = 'run';
      // Each worker reports when its own loop ends, as Mooncake's threads do.
      await Promise.all(
        workers.map(async (w) => {
          await w.run(stop.signal);
          say(formatReport(Role, w.tracker.statistics(), { rule: 47, ...(o.verify ? { verify: verdictText(verdict(o, w.tracker, false), w.tracker) } : {}) }));
        }),
      );
      for (const w of workers) combined.extend(w.tracker);
      if (o.numWorkers > 1) {
        if (o.detailedStats) workers.forEach((w) => say(formatReport(`Worker ${w.index} ${o.role}`, w.tracker.statistics(), { rule: 50 })));
        say(formatReport('COMBINED PERFORMANCE', combined.statistics(), { rule: 50, ...(o.verify ? { verify: verdictText(verdict(o, combined, false), combined) } : {}) }));
        say(`Precise wall time measurement: ${(combined.endTime - combined.startTime).toFixed(4)} seconds`);
      }
      if (!stop.signal.aborted) {
        const s = combined.statistics();
        const Name = o.role === 'prefill' ? 'Prefill' : 'Decode';
        event({ event: `${o.role}_done`, succeeded: s.succeeded_operations, failed: s.failed_operations, wait_time_s: o.waitTimeS, segments: workers.map((w) => w.hostname), pid: process.pid });
        const what = o.role === 'prefill' ? 'stored' : 'read';
        const keep = o.role === 'prefill' ? ' (values placed in our segments stay readable until then; SIGINT/SIGTERM ends the wait)' : '';
        say(`${Name} done: ${s.succeeded_operations} of ${s.total_operations} keys ${what}, ${s.failed_operations} failed. Waiting ${o.waitTimeS} seconds before exiting${keep}.`);
        phase = 'wait';
        await sleep(o.waitTimeS * 1000, stop.signal);
      }
    }
  } finally {
    phase = 'close';
    await Promise.all(workers.map((w) => w.close()));
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  if (error !== null) {
    process.stderr.write(`transfer-engine store-bench: ${error}\n`);
    event(result(o, workers, combined, { error, interrupted: interruptedIn !== null }));
    return 1;
  }
  const interrupted = interruptedIn !== null;
  const s = combined.statistics();
  const v = verdict(o, combined, interrupted);
  const code = s.failed_operations > 0 || v === 'failed' || v === 'incomplete' || interrupted ? 1 : 0;
  if (interrupted) say(`Interrupted during ${interruptedIn}: ${s.total_operations} of ${o.maxRequests} keys attempted.`);
  say(`Test ${code === 0 ? 'completed successfully' : 'FAILED'}: ${s.succeeded_operations} of ${o.maxRequests} ${o.role === 'prefill' ? 'puts' : 'gets'} succeeded${o.verify ? `, verify ${verdictText(v, combined)}` : ''}.`);
  event(result(o, workers, combined, { interrupted }));
  return code;
}

/** --verify: passed only if every key was read and every byte was right. */
function verdict(o: StoreBenchOptions, t: PerformanceTracker, interrupted: boolean): Verdict {
  if (!o.verify) return 'off';
  if (t.mismatches > 0) return 'failed';
  if (interrupted || t.failedOperations > 0 || t.verified !== t.totalOperations || t.totalOperations === 0) return 'incomplete';
  return 'passed';
}

function verdictText(v: Verdict, t: PerformanceTracker): string {
  const counts = `${t.verified} values checked, ${t.mismatches} wrong`;
  if (v === 'failed') return `failed (${counts}; first: ${t.firstMismatch ?? '?'})`;
  if (v === 'incomplete') return `incomplete (${counts}; ${t.failedOperations} gets failed, their values unchecked)`;
  return `${v} (${counts})`;
}

function result(o: StoreBenchOptions, workers: StoreWorker[], combined: PerformanceTracker, extra: { error?: string; interrupted: boolean }): object {
  const s: Statistics = combined.statistics();
  const v = verdict(o, combined, extra.interrupted);
  return {
    role: o.role,
    protocol: o.protocol,
    master_server: o.masterServer,
    metadata_server: o.metadataServer,
    local_hostname: o.localHostname,
    global_segment_size: o.globalSegmentSize,
    local_buffer_size: o.localBufferSize,
    max_requests: o.maxRequests,
    value_length: o.valueLength,
    batch_size: o.batchSize,
    num_workers: o.numWorkers,
    wait_time_s: o.waitTimeS,
    ...s,
    verify: v,
    verified_values: combined.verified,
    verify_mismatches: combined.mismatches,
    ...(combined.firstMismatch !== null ? { first_mismatch: combined.firstMismatch } : {}),
    segments: workers.map((w) => w.hostname),
    workers: workers.map((w) => ({ worker: w.index, requests: w.requests, segment: w.hostname, ...w.tracker.statistics() })),
    interrupted: extra.interrupted,
    ...(extra.error !== undefined ? { error: extra.error } : {}),
  };
}
