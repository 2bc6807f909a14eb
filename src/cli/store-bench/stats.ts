/**
 * The statistics of `store-bench`: Mooncake's stress_cluster_benchmark.py
 * PerformanceTracker and its report, with operations counted per key (see
 * STORE_BENCH_HELP) and the phase wall time added.
 */

const MiB = 1024 * 1024;

/** One worker's (or the combination's) measurements. Times in seconds (performance.now() / 1000). */
export class PerformanceTracker {
  /** Latency of each batch call that had a success, as Mooncake's script records them. */
  readonly latencies: number[] = [];
  /** Bytes of each such batch: its successes x value length. */
  readonly sizes: number[] = [];
  readonly errorCodes = new Map<number, number>();
  /** Setup started (Mooncake's start_timer: before setup). */
  startTime = Infinity;
  /** The last batch ended. */
  endTime = -Infinity;
  /** The first batch started (not in Mooncake's script). */
  phaseStart = Infinity;
  /** Keys attempted. */
  totalOperations = 0;
  failedOperations = 0;
  /** Batch calls made (with a success or not). */
  batchesRun = 0;
  /** --verify: values checked, values wrong, the first wrong one. */
  verified = 0;
  mismatches = 0;
  firstMismatch: string | null = null;

  static now(): number {
    return performance.now() / 1000;
  }

  recordOperation(latencyS: number, bytes: number): void {
    this.latencies.push(latencyS);
    this.sizes.push(bytes);
  }

  recordError(code: number): void {
    this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + 1);
    this.failedOperations++;
  }

  extend(o: PerformanceTracker): void {
    for (const x of o.latencies) this.latencies.push(x);
    for (const x of o.sizes) this.sizes.push(x);
    this.totalOperations += o.totalOperations;
    this.failedOperations += o.failedOperations;
    this.batchesRun += o.batchesRun;
    this.startTime = Math.min(this.startTime, o.startTime);
    this.endTime = Math.max(this.endTime, o.endTime);
    this.phaseStart = Math.min(this.phaseStart, o.phaseStart);
    for (const [code, n] of o.errorCodes) this.errorCodes.set(code, (this.errorCodes.get(code) ?? 0) + n);
    this.verified += o.verified;
    this.mismatches += o.mismatches;
    this.firstMismatch ??= o.firstMismatch;
  }

  statistics(): Statistics {
    const lat = this.latencies.map((s) => s * 1000);
    const totalTime = this.latencies.reduce((a, b) => a + b, 0);
    const totalBytes = this.sizes.reduce((a, b) => a + b, 0);
    const succeeded = this.totalOperations - this.failedOperations;
    const wall = this.endTime > this.startTime ? this.endTime - this.startTime : 0;
    const phaseWall = this.endTime > this.phaseStart ? this.endTime - this.phaseStart : 0;
    const per = (x: number, t: number): number => (t > 0 ? x / t : 0);
    const pct = (n: number): number | null => (lat.length === 0 ? null : lat.length >= n ? quantile(lat, n, n - 1) : maxOf(lat));
    return {
      total_operations: this.totalOperations,
      succeeded_operations: succeeded,
      failed_operations: this.failedOperations,
      batches: this.batchesRun,
      batches_with_success: lat.length,
      total_bytes: totalBytes,
      total_time_seconds: totalTime,
      wall_time_seconds: wall,
      phase_wall_time_seconds: phaseWall,
      mean_latency_ms: lat.length ? lat.reduce((a, b) => a + b, 0) / lat.length : null,
      min_latency_ms: lat.length ? minOf(lat) : null,
      max_latency_ms: lat.length ? maxOf(lat) : null,
      p90_latency_ms: pct(10),
      p99_latency_ms: pct(100),
      p999_latency_ms: pct(1000),
      operations_per_second: per(succeeded, totalTime),
      wall_operations_per_second: per(succeeded, wall),
      phase_wall_operations_per_second: per(succeeded, phaseWall),
      batches_per_second: per(lat.length, totalTime),
      throughput_mbps: per(totalBytes, totalTime) / MiB,
      wall_throughput_mbps: per(totalBytes, wall) / MiB,
      phase_wall_throughput_mbps: per(totalBytes, phaseWall) / MiB,
      throughput_bytes_per_second: per(totalBytes, totalTime),
      error_codes: Object.fromEntries([...this.errorCodes].map(([c, n]) => [String(c), n])),
    };
  }
}

const minOf = (xs: readonly number[]): number => xs.reduce((a, b) => (b < a ? b : a), Infinity);
const maxOf = (xs: readonly number[]): number => xs.reduce((a, b) => (b > a ? b : a), -Infinity);

/** Mooncake's statistics, under its names (operations are keys here); latencies null when no batch succeeded. */
export interface Statistics {
  total_operations: number;
  succeeded_operations: number;
  failed_operations: number;
  batches: number;
  batches_with_success: number;
  total_bytes: number;
  total_time_seconds: number;
  wall_time_seconds: number;
  phase_wall_time_seconds: number;
  mean_latency_ms: number | null;
  min_latency_ms: number | null;
  max_latency_ms: number | null;
  p90_latency_ms: number | null;
  p99_latency_ms: number | null;
  p999_latency_ms: number | null;
  operations_per_second: number;
  wall_operations_per_second: number;
  phase_wall_operations_per_second: number;
  batches_per_second: number;
  throughput_mbps: number;
  wall_throughput_mbps: number;
  phase_wall_throughput_mbps: number;
  throughput_bytes_per_second: number;
  error_codes: Record<string, number>;
}

/**
 * The (i)th of the n-quantiles of `data`: Python's statistics.quantiles(data,
 * n=n)[i - 1] (its default 'exclusive' method), needing at least 2 points.
 */
export function quantile(data: readonly number[], n: number, i: number): number {
  const d = [...data].sort((a, b) => a - b);
  const ld = d.length;
  if (ld < 2) {
    if (ld === 1) return d[0]!;
    throw new RangeError('quantile of no data');
  }
  const m = ld + 1;
  let j = Math.floor((i * m) / n);
  j = j < 1 ? 1 : j > ld - 1 ? ld - 1 : j;
  const delta = i * m - j * n;
  return (d[j - 1]! * (n - delta) + d[j]! * delta) / n;
}

/** Python's round(x, 2) printed as a float: "4.0", "4.5", "1023.99". */
function pyFloat2(x: number): string {
  const r = Math.round(x * 100) / 100;
  return Number.isInteger(r) ? r.toFixed(1) : String(r);
}

/** Mooncake's format_bytes: "0B", "4.0 MB", "1.5 GB" (powers of 1024). */
export function formatBytes(size: number): string {
  if (size === 0) return '0B';
  const names = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (i < names.length - 1 && size >= 1024 ** (i + 1)) i++;
  return `${pyFloat2(size / 1024 ** i)} ${names[i]}`;
}

const ms = (x: number | null): string => (x === null ? 'n/a' : `${x.toFixed(2)} ms`);

/**
 * Mooncake's report block (its _print_performance_stats / print_performance_stats),
 * with the phase wall time and, for a verified decode, the verdict added.
 * `rule`: the closing line (47 '=' after a phase, 50 after COMBINED and per-worker blocks, as there).
 */
export function formatReport(title: string, s: Statistics, opts: { rule: number; verify?: string }): string {
  const rate = s.total_operations > 0 ? (s.succeeded_operations / s.total_operations) * 100 : 0;
  const lines = [
    '',
    `=== ${title} PERFORMANCE STATISTICS ===`,
    `Total operations: ${s.total_operations}`,
    `  Succeeded: ${s.succeeded_operations} (${rate.toFixed(2)}%)`,
    `  Failed:    ${s.failed_operations}`,
    `Total data transferred: ${formatBytes(s.total_bytes)}`,
    `Total wall time: ${s.wall_time_seconds.toFixed(2)} seconds`,
    `Total operation time: ${s.total_time_seconds.toFixed(2)} seconds`,
    `Phase wall time: ${s.phase_wall_time_seconds.toFixed(2)} seconds (first batch to last)`,
    'Latency metrics:',
    `  Mean latency: ${ms(s.mean_latency_ms)}`,
    `  Min latency:  ${ms(s.min_latency_ms)}`,
    `  Max latency:  ${ms(s.max_latency_ms)}`,
    `  P90 latency:  ${ms(s.p90_latency_ms)}`,
    `  P99 latency:  ${ms(s.p99_latency_ms)}`,
    `  P999 latency: ${ms(s.p999_latency_ms)}`,
    'Throughput metrics:',
    `  Operations/sec (operation time): ${s.operations_per_second.toFixed(2)}`,
    `  Operations/sec (wall time):      ${s.wall_operations_per_second.toFixed(2)}`,
    `  Throughput (operation time):     ${s.throughput_mbps.toFixed(2)} MB/s`,
    `  Throughput (wall time):          ${s.wall_throughput_mbps.toFixed(2)} MB/s`,
    `  Throughput (phase wall time):    ${s.phase_wall_throughput_mbps.toFixed(2)} MB/s`,
  ];
  const codes = Object.entries(s.error_codes);
  if (codes.length > 0) {
    lines.push('Error codes encountered:');
    for (const [code, n] of codes) lines.push(`  Code ${code}: ${n} times`);
  }
  if (opts.verify !== undefined) lines.push(`Verify: ${opts.verify}`);
  lines.push('='.repeat(opts.rule), '');
  return lines.join('\n');
}
