/**
 * Shared by the fuzz suites (test/fuzz-codecs.test.ts, test/fuzz-servers.test.ts):
 * a reproducible generator, byte mutators, an input counter, and the
 * connection census used to prove that no server socket is left open.
 */
import fs from 'node:fs';

export const U64_MAX = (1n << 64n) - 1n;

/** mulberry32: a seeded float stream in [0, 1), for workloads (sizes, choices) that must replay exactly. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** xorshift32: small, fast and reproducible. */
export class Rng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0 || 1;
  }
  /**
   * The generator of input `index` under `seed`, independent of every other input's: parallel workers
   * take inputs in whatever order the event loop gives them, and input #i is still replayable alone.
   */
  static forInput(seed: number, index: number): Rng {
    // splitmix32-style mixing, so neighbouring indices start far apart.
    let h = (Math.imul(seed >>> 0, 0x9e3779b1) ^ Math.imul(index + 1, 0x85ebca6b)) >>> 0;
    h = Math.imul(h ^ (h >>> 16), 0x7feb352d);
    h = Math.imul(h ^ (h >>> 15), 0x846ca68b);
    return new Rng((h ^ (h >>> 16)) >>> 0);
  }
  u32(): number {
    let x = this.s;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.s = x >>> 0;
    return this.s;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return this.u32() % n;
  }
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
  /** A u64 biased towards boundaries: 0, 2^32, 2^53, 2^63, 2^64-1 and their neighbours. */
  u64(): bigint {
    switch (this.int(6)) {
      case 0:
        return this.pick([0n, 1n, 0xffff_ffffn, 1n << 32n, (1n << 53n) - 1n, 1n << 53n, (1n << 53n) + 1n, 1n << 63n, U64_MAX - 1n, U64_MAX]);
      case 1:
        return BigInt(this.u32());
      case 2:
        return (BigInt(this.int(1 << 21)) << 32n) | BigInt(this.u32()); // safe range
      default:
        return (BigInt(this.u32()) << 32n) | BigInt(this.u32());
    }
  }
}

export const show = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** Split `n` bytes into random chunk sizes (sometimes 0, sometimes all at once). */
export function chunkSizes(rng: Rng, n: number): number[] {
  if (rng.chance(0.15)) return [n];
  if (rng.chance(0.1)) return new Array<number>(n).fill(1);
  const sizes: number[] = [];
  let left = n;
  while (left > 0) {
    const s = rng.chance(0.05) ? 0 : 1 + rng.int(Math.min(left, rng.chance(0.5) ? 9 : 64));
    sizes.push(Math.min(s, left));
    left -= Math.min(s, left);
  }
  return sizes;
}

/** Inputs tried per parser in this process; each suite prints its table and checks its total. */
export class InputCounter {
  private readonly counts = new Map<string, number>();
  add(parser: string, n = 1): void {
    this.counts.set(parser, (this.counts.get(parser) ?? 0) + n);
  }
  get total(): number {
    let t = 0;
    for (const n of this.counts.values()) t += n;
    return t;
  }
  table(): string {
    const rows = [...this.counts].map(([k, n]) => `${k}: ${n}`);
    return `${rows.join(', ')}; total ${this.total}`;
  }
}

/**
 * Server-side sockets on `port` that a process still holds open, from the
 * kernel's table (independent of the server's own bookkeeping). Orphans
 * (inode 0: closed by the process, the kernel finishing the FIN exchange) and
 * TIME_WAIT entries do not count.
 */
export function openServerSockets(port: number): number {
  let n = 0;
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      const local = f[1]!;
      const state = f[3]!;
      const inode = f[9]!;
      if (parseInt(local.slice(local.lastIndexOf(':') + 1), 16) !== port) continue;
      if (state === '0A' || state === '06' || state === '07' || inode === '0') continue; // LISTEN, TIME_WAIT, CLOSE, orphan
      n++;
    }
  }
  return n;
}

/** Poll `cond` every few milliseconds; fail with `what` after `timeoutMs`. */
export async function waitFor(cond: () => boolean, timeoutMs: number, what: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
