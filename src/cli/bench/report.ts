/** The initiator's report: text (Mooncake's summary line first) or one JSON line, and the exit code. */
import type { Percentiles } from './histogram.js';
import type { BenchResult } from './initiator.js';
import { REPORT_UNITS, type BenchOptions } from './options.js';

export interface TargetExit {
  pid: number;
  exitCode: number | null;
  signal: string | null;
  clean: boolean;
}

function round(x: number, decimals: number): number {
  const f = 10 ** decimals;
  return Math.round(x * f) / f;
}

/** Print the result (text, or one JSON line last) and return the exit code. */
export function report(o: BenchOptions, r: BenchResult, target: TargetExit | null): number {
  const bytesPerS = r.elapsedS > 0 ? r.bytes / r.elapsedS : 0;
  const throughput = bytesPerS / REPORT_UNITS[o.reportUnit];
  if (o.json) process.stdout.write(`${JSON.stringify(jsonReport(o, r, target, throughput, bytesPerS))}\n`);
  else if (o.csv) process.stdout.write(csvReport(o, r, bytesPerS));
  else process.stdout.write(textReport(o, r, target, throughput));
  return runFailed(r, target) ? 1 : 0;
}

/** Exit 1: a request failed, integrity is not a pass, the target was lost, or the loopback target did not exit cleanly. */
function runFailed(r: BenchResult, target: TargetExit | null): boolean {
  if (r.failures > 0) return true;
  if (r.integrity === 'failed' || r.integrity === 'incomplete') return true;
  if (r.stopReason === 'target_lost' || r.stopReason === 'all_failed') return true;
  return target !== null && !target.clean;
}

function jsonReport(o: BenchOptions, r: BenchResult, target: TargetExit | null, throughput: number, bytesPerS: number): object {
  return {
    mode: o.mode,
    workload: o.workload,
    protocol: 'tcp',
    shmfs: o.shmfs,
    tls: o.tls,
    remote_segment: r.remoteSegment,
    size: o.size,
    batch: o.batch,
    threads: o.threads,
    duration_s: round(r.elapsedS, 3),
    bytes: r.bytes,
    throughput_GBps: round(bytesPerS / 1e9, 6),
    throughput: round(throughput, o.precision),
    unit: o.reportUnit,
    per_thread_GBps: r.perThreadBps.map((b) => round(b / 1e9, 6)),
    batches: r.batches,
    requests: r.requests,
    failures: r.failures,
    integrity: r.integrity,
    integrity_checks: r.integrityChecks,
    integrity_failures: r.integrityFailures,
    interrupted: r.interrupted,
    stop_reason: r.stopReason,
    ...(r.stopMessage !== undefined ? { stop_message: r.stopMessage } : {}),
    latency_us: { batch: r.batchLatency, request: r.requestLatency },
    nixl: Object.fromEntries(NIXL_COLUMNS.map((c, i) => [c.key, nixlValues(o, r, bytesPerS)[i]])),
    ...(target ? { target: { pid: target.pid, exit_code: target.exitCode, signal: target.signal, clean: target.clean } } : {}),
    ...(r.error !== undefined ? { error: r.error } : {}),
  };
}

/** nixlbench's result columns, in its order and with its headings (a batch: prepare, post, transfer). */
const NIXL_COLUMNS = [
  { key: 'block_size', title: 'Block Size (B)' },
  { key: 'batch_size', title: 'Batch Size' },
  { key: 'bw_gbps', title: 'B/W (GB/Sec)' },
  { key: 'avg_lat_us', title: 'Avg Lat. (us)' },
  { key: 'avg_prep_us', title: 'Avg Prep (us)' },
  { key: 'p99_prep_us', title: 'P99 Prep (us)' },
  { key: 'avg_post_us', title: 'Avg Post (us)' },
  { key: 'p99_post_us', title: 'P99 Post (us)' },
  { key: 'avg_tx_us', title: 'Avg Tx (us)' },
  { key: 'p99_tx_us', title: 'P99 Tx (us)' },
] as const;

/** The values of NIXL_COLUMNS: Avg Lat. is the mean time of a whole batch; the phases are measured on untimed batches. */
function nixlValues(o: BenchOptions, r: BenchResult, bytesPerS: number): number[] {
  const { prep, post, tx } = r.phases;
  return [o.size, o.batch, round(bytesPerS / 1e9, 6), r.batchLatency.mean, prep.mean, prep.p99, post.mean, post.p99, tx.mean, tx.p99];
}

/** Our columns, then nixlbench's. */
const CSV_COLUMNS = ['mode', 'workload', 'threads', 'duration_s', 'bytes', 'batches', 'requests', 'failures', 'integrity', 'batch_p50_us', 'batch_p99_us', ...NIXL_COLUMNS.map((c) => c.key)];

function csvReport(o: BenchOptions, r: BenchResult, bytesPerS: number): string {
  const ours = [o.mode, o.workload, o.threads, round(r.elapsedS, 3), r.bytes, r.batches, r.requests, r.failures, r.integrity, r.batchLatency.p50, r.batchLatency.p99];
  return `${CSV_COLUMNS.join(',')}\n${[...ours, ...nixlValues(o, r, bytesPerS)].join(',')}\n`;
}

/** nixlbench's table: its headings over our values, each column as wide as its heading. */
function nixlTable(o: BenchOptions, r: BenchResult, bytesPerS: number): string[] {
  const values = nixlValues(o, r, bytesPerS);
  const widths = NIXL_COLUMNS.map((c) => c.title.length + 2);
  return [NIXL_COLUMNS.map((c, i) => c.title.padEnd(widths[i]!)).join('').trimEnd(), values.map((v, i) => String(v).padEnd(widths[i]!)).join('').trimEnd()];
}

function latencyLine(p: Percentiles, what: string): string {
  if (p.count === 0) return `no ${what} timed`;
  return `p50 ${p.p50} us, p99 ${p.p99} us, p99.9 ${p.p999} us (mean ${p.mean} us, max ${p.max} us; ${p.count} ${what})`;
}

/** Mooncake's word for a full run is "completed"; one cut short by a signal or a lost target is not. */
const ENDINGS: Readonly<Record<BenchResult['stopReason'], string>> = {
  duration: 'completed',
  signal: 'interrupted',
  target_lost: 'stopped early',
  all_failed: 'stopped early',
};

function integrityText(r: BenchResult): string {
  if (r.integrity === 'off') return 'off';
  const counts = `${r.integrityChecks} round trips, ${r.integrityFailures} mismatches`;
  if (r.integrity !== 'incomplete') return `${r.integrity} (${counts})`;
  const why = r.failures > 0 ? `${r.failures} requests failed, their round trips unchecked` : r.integrityChecks === 0 ? 'no round trip completed' : 'the run was cut short';
  return `incomplete (${counts}; ${why})`;
}

function textReport(o: BenchOptions, r: BenchResult, target: TargetExit | null, throughput: number): string {
  const rate = `${throughput.toFixed(o.precision)} ${o.reportUnit}/s`;
  const integrity = integrityText(r);
  const lines = [
    // Mooncake's own summary line first, so existing log scrapers still match a full run.
    `Test ${ENDINGS[r.stopReason]}: duration ${r.elapsedS.toFixed(2)}, batch count ${r.batches}, throughput ${rate}`,
    `  workload    ${o.workload} over tcp${o.tls ? ' with mutual TLS 1.3' : ''}${o.shmfs ? ' (shared memory on this host)' : ''} to ${r.remoteSegment}: size ${o.size} B, batch ${o.batch}, threads ${o.threads}`,
    `  throughput  ${rate}`,
    `  transferred ${r.bytes} bytes in ${r.elapsedS.toFixed(3)} s: ${r.batches} batches, ${r.requests} requests, ${r.failures} failed`,
    `  latency     per batch:   ${latencyLine(r.batchLatency, 'batches')}`,
    `              per request: ${latencyLine(r.requestLatency, 'requests')}`,
    `  integrity   ${integrity}`,
  ];
  const [head, row] = nixlTable(o, r, r.elapsedS > 0 ? r.bytes / r.elapsedS : 0);
  lines.push(`  nixlbench   ${head}`, `              ${row}`);
  if (o.threads > 1) {
    const unit = REPORT_UNITS[o.reportUnit];
    lines.push(`  per thread  ${r.perThreadBps.map((b) => (b / unit).toFixed(o.precision)).join(', ')} ${o.reportUnit}/s`);
  }
  if (r.stopMessage !== undefined) lines.push(`  stopped     ${r.stopMessage}`);
  if (target) lines.push(`  target      pid ${target.pid} ${target.clean ? 'exited cleanly' : 'did not exit cleanly'}`);
  if (r.error !== undefined) lines.push(`  first error ${r.error}`);
  return `${lines.join('\n')}\n`;
}
