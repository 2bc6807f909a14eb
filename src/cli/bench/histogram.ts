/**
 * Latency histogram with fixed memory (log-linear buckets, HDR-style): exact
 * below 256 ns, then 128 buckets per power of two (within 0.4%). Recording
 * is O(1) with no allocation, so a run of any length costs the same memory,
 * and histograms of worker threads merge by adding counts.
 */

const SUB_BITS = 7;
const SUB = 1 << SUB_BITS; // buckets per power of two
const LINEAR = 2 * SUB; // values below this have a bucket each
/** Up to 2^45 ns (about 9.8 hours); longer samples land in the last bucket. */
const MAX_EXP = 45 - SUB_BITS;
export const HISTOGRAM_BUCKETS = LINEAR + (MAX_EXP - 1) * SUB;

export interface Percentiles {
  /** Microseconds. */
  p50: number;
  p99: number;
  p999: number;
  mean: number;
  max: number;
  /** Samples recorded. */
  count: number;
}

/** The plain-data form of a histogram (posted between threads). */
export interface HistogramData {
  counts: Float64Array;
  count: number;
  sumNs: number;
  maxNs: number;
}

function bucketOf(ns: number): number {
  if (ns < LINEAR) return ns < 0 ? 0 : Math.floor(ns);
  const e = Math.floor(Math.log2(ns)) - SUB_BITS; // >= 1
  if (e >= MAX_EXP) return HISTOGRAM_BUCKETS - 1;
  let m = Math.floor(ns / 2 ** e); // in [SUB, 2*SUB), but log2 may round at the edges
  let ee = e;
  if (m >= 2 * SUB) {
    ee++;
    m = Math.floor(ns / 2 ** ee);
  } else if (m < SUB) {
    ee--;
    m = Math.floor(ns / 2 ** ee);
  }
  if (ee < 1) return Math.min(LINEAR - 1, Math.floor(ns));
  return Math.min(HISTOGRAM_BUCKETS - 1, LINEAR + (ee - 1) * SUB + (m - SUB));
}

/** The middle of a bucket, in ns. */
function valueOf(bucket: number): number {
  if (bucket < LINEAR) return bucket;
  const e = Math.floor((bucket - LINEAR) / SUB) + 1;
  const m = ((bucket - LINEAR) % SUB) + SUB;
  return (m + 0.5) * 2 ** e;
}

export class LatencyHistogram {
  readonly counts = new Float64Array(HISTOGRAM_BUCKETS);
  count = 0;
  sumNs = 0;
  maxNs = 0;

  /** Record one sample in microseconds. */
  recordUs(us: number): void {
    const ns = Math.round(us * 1000);
    this.counts[bucketOf(ns)]!++;
    this.count++;
    this.sumNs += ns;
    if (ns > this.maxNs) this.maxNs = ns;
  }

  /** Add another histogram's samples. */
  merge(other: HistogramData): void {
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) this.counts[i]! += other.counts[i]!;
    this.count += other.count;
    this.sumNs += other.sumNs;
    if (other.maxNs > this.maxNs) this.maxNs = other.maxNs;
  }

  data(): HistogramData {
    return { counts: this.counts, count: this.count, sumNs: this.sumNs, maxNs: this.maxNs };
  }

  /** The smallest value with at least q of the samples at or below it, in us. */
  quantileUs(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= rank) return Math.min(valueOf(i), this.maxNs) / 1000;
    }
    return this.maxNs / 1000;
  }

  percentiles(): Percentiles {
    const r = (x: number): number => Math.round(x * 10) / 10;
    return {
      p50: r(this.quantileUs(0.5)),
      p99: r(this.quantileUs(0.99)),
      p999: r(this.quantileUs(0.999)),
      mean: this.count ? r(this.sumNs / this.count / 1000) : 0,
      max: r(this.maxNs / 1000),
      count: this.count,
    };
  }
}
