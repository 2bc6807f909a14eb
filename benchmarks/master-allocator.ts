/**
 * Fragmentation of the master's segment allocator (src/master/allocator.ts)
 * under mixed sizes and churn, against naive free lists (sorted by address,
 * scanned from the start: first fit, and best fit unless --no-best-fit) run
 * on the same workload in the same run.
 *
 * Workload (seeded): a segment (1 GiB) is filled with objects until the first
 * allocation fails; then, as a store with eviction does, each failed put
 * frees random live objects until it fits, and the next object is drawn,
 * until --ops allocate + free calls have been made. Object sizes, log-uniform
 * within each class:
 *   mixed: 70% 4-64 KiB, 25% 64 KiB-1 MiB, 5% 1-16 MiB (~2.5k live objects)
 *   small: 4-16 KiB (~120k live objects; with 200k ops, ~120k of them fill
 *          the segment: it shows the cost of a free-list scan more than
 *          steady-state fragmentation)
 * Reported per allocator: utilization (used / capacity) when a put fails
 * (median, p5; once per failed put), frees needed per failed put,
 * largestFree / free at the end (1 = one free block), free blocks at the
 * end, and allocate + free calls per second.
 *
 *   node dist/benchmarks/master-allocator.js [--ops 200000] [--seed 1] [--capacity-mib 1024]
 *     [--workload mixed,small] [--no-best-fit] [--json]
 */
import { parseArgs } from 'node:util';
import { SegmentAllocator } from '../src/master/allocator.js';
import { mulberry32 } from '../test/fuzz-lib.js';

/** What the workload needs of an allocator (SegmentAllocator has it all). */
interface Allocator {
  readonly capacity: number;
  readonly used: number;
  readonly freeBytes: number;
  readonly largestFree: number;
  readonly freeBlocks: number;
  allocate(size: number): number | undefined;
  free(offset: number): void;
}

/**
 * The baselines: one free list sorted by address, coalescing on free (binary
 * search + splice); each allocate scans the list for the first block that
 * fits (first fit, known to fragment little), or with `bestFit` for the
 * smallest (lowest address among equals; what size-class allocators such as
 * TLSF approximate).
 */
class ListAllocator implements Allocator {
  readonly #offs: number[] = [0];
  readonly #sizes: number[];
  readonly #allocated = new Map<number, number>();
  #used = 0;

  constructor(readonly capacity: number, private readonly bestFit = false, private readonly alignment = 8) {
    this.#sizes = [capacity];
  }
  get used(): number {
    return this.#used;
  }
  get freeBytes(): number {
    return this.capacity - this.#used;
  }
  get freeBlocks(): number {
    return this.#offs.length;
  }
  get largestFree(): number {
    return this.#sizes.reduce((m, s) => Math.max(m, s), 0);
  }
  allocate(size: number): number | undefined {
    const need = Math.ceil(size / this.alignment) * this.alignment;
    let i = -1;
    for (let j = 0; j < this.#offs.length; j++) {
      if (this.#sizes[j]! < need || (i >= 0 && this.#sizes[j]! >= this.#sizes[i]!)) continue;
      i = j;
      if (!this.bestFit || this.#sizes[j] === need) break;
    }
    if (i < 0) return undefined;
    const off = this.#offs[i]!;
    if (this.#sizes[i] === need) {
      this.#offs.splice(i, 1);
      this.#sizes.splice(i, 1);
    } else {
      this.#offs[i] = off + need;
      this.#sizes[i]! -= need;
    }
    this.#allocated.set(off, need);
    this.#used += need;
    return off;
  }
  free(offset: number): void {
    const size = this.#allocated.get(offset);
    if (size === undefined) throw new RangeError(`no allocation at ${offset}`);
    this.#allocated.delete(offset);
    this.#used -= size;
    let lo = 0;
    let hi = this.#offs.length; // first free block after offset
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.#offs[mid]! < offset) lo = mid + 1;
      else hi = mid;
    }
    const joinsPrev = lo > 0 && this.#offs[lo - 1]! + this.#sizes[lo - 1]! === offset;
    const joinsNext = lo < this.#offs.length && offset + size === this.#offs[lo];
    if (joinsPrev && joinsNext) {
      this.#sizes[lo - 1]! += size + this.#sizes[lo]!;
      this.#offs.splice(lo, 1);
      this.#sizes.splice(lo, 1);
    } else if (joinsPrev) this.#sizes[lo - 1]! += size;
    else if (joinsNext) {
      this.#offs[lo] = offset;
      this.#sizes[lo]! += size;
    } else {
      this.#offs.splice(lo, 0, offset);
      this.#sizes.splice(lo, 0, size);
    }
  }
}

const KiB = 1024;
const MiB = 1024 * KiB;
const logUniform = (r: number, lo: number, hi: number): number => Math.floor(Math.exp(Math.log(lo) + r * (Math.log(hi) - Math.log(lo))));

/** Size classes: [cumulative probability, lo, hi]. */
const WORKLOADS: Record<string, [number, number, number][]> = {
  mixed: [
    [0.7, 4 * KiB, 64 * KiB],
    [0.95, 64 * KiB, MiB],
    [1, MiB, 16 * MiB],
  ],
  small: [[1, 4 * KiB, 16 * KiB]],
};

interface Result {
  workload: string;
  allocator: string;
  ops: number;
  failed_puts: number;
  util_at_failure_p50: number;
  util_at_failure_p5: number;
  frees_per_failed_put: number;
  live_objects_end: number;
  largest_free_over_free_end: number;
  free_blocks_end: number;
  ops_per_s: number;
}

/** The p-th percentile (nearest rank) of `xs`. */
function percentile(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

function run(workload: string, name: string, alloc: Allocator, seed: number, ops: number): Result {
  const classes = WORKLOADS[workload]!;
  const sizeRand = mulberry32(seed); // sizes and evictions from separate streams: the
  const evictRand = mulberry32(seed ^ 0x5bd1e995); // size sequence is the same for every allocator
  const nextSize = (): number => {
    const c = sizeRand();
    const [, lo, hi] = classes.find(([p]) => c < p)!;
    return logUniform(sizeRand(), lo, hi);
  };
  const live: number[] = [];
  const utilAtFailure: number[] = [];
  let evictions = 0;
  let pending = nextSize();
  let failedThisPut = false;
  const t0 = process.hrtime.bigint();
  for (let op = 0; op < ops; op++) {
    const off = alloc.allocate(pending);
    if (off !== undefined) {
      live.push(off);
      pending = nextSize();
      failedThisPut = false;
      continue;
    }
    if (!failedThisPut) utilAtFailure.push(alloc.used / alloc.capacity);
    failedThisPut = true;
    // Evict a random object (swap-remove), counted as an op.
    const i = Math.floor(evictRand() * live.length);
    const victim = live[i]!;
    live[i] = live[live.length - 1]!;
    live.pop();
    alloc.free(victim);
    evictions++;
    op++;
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  return {
    workload,
    allocator: name,
    ops,
    failed_puts: utilAtFailure.length,
    util_at_failure_p50: percentile(utilAtFailure, 50),
    util_at_failure_p5: percentile(utilAtFailure, 5),
    frees_per_failed_put: evictions / Math.max(1, utilAtFailure.length),
    live_objects_end: live.length,
    largest_free_over_free_end: alloc.freeBytes === 0 ? 1 : alloc.largestFree / alloc.freeBytes,
    free_blocks_end: alloc.freeBlocks,
    ops_per_s: ops / seconds,
  };
}

const { values } = parseArgs({
  options: {
    ops: { type: 'string', default: '200000' },
    seed: { type: 'string', default: '1' },
    'capacity-mib': { type: 'string', default: '1024' },
    workload: { type: 'string', default: 'mixed,small' },
    'no-best-fit': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
  },
});
const ops = Number(values.ops);
const seed = Number(values.seed);
const capacity = Number(values['capacity-mib']) * MiB;
const workloads = values.workload.split(',');
for (const w of workloads) if (!(w in WORKLOADS)) throw new Error(`unknown workload ${w} (${Object.keys(WORKLOADS).join(', ')})`);

const results: Result[] = [];
for (const w of workloads) {
  results.push(run(w, 'SegmentAllocator', new SegmentAllocator(capacity), seed, ops));
  results.push(run(w, 'first-fit list', new ListAllocator(capacity), seed, ops));
  if (!values['no-best-fit']) results.push(run(w, 'best-fit list', new ListAllocator(capacity, true), seed, ops));
}

if (values.json) {
  console.log(JSON.stringify({ node: process.version, capacity, ops, seed, results }));
} else {
  const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
  const rows = [
    ['workload', 'allocator', 'failed puts', 'util@fail p50', 'p5', 'frees/failed put', 'live at end', 'largestFree/free', 'free blocks', 'ops/s'],
    ...results.map((r) => [
      r.workload,
      r.allocator,
      String(r.failed_puts),
      pct(r.util_at_failure_p50),
      pct(r.util_at_failure_p5),
      r.frees_per_failed_put.toFixed(2),
      String(r.live_objects_end),
      r.largest_free_over_free_end.toFixed(3),
      String(r.free_blocks_end),
      Math.round(r.ops_per_s).toLocaleString('en-US'),
    ]),
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  console.log(`${capacity / MiB} MiB segment, ${ops} allocate+free calls, seed ${seed}, node ${process.version}`);
  for (const row of rows) console.log(row.map((cell, c) => (c < 2 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '));
}
