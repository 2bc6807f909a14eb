/** Helpers shared by the side-by-side benchmarks (compare.ts, store-compare.ts). */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The median of `xs` (NaN when empty). */
export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** "4 KiB", "1 MiB". */
export const sizeLabel = (size: number): string => (size >= 1 << 20 ? `${size / (1 << 20)} MiB` : `${size / 1024} KiB`);

/**
 * Wait until the 1-minute load is below `maxLoad` (the machines have 2 cores
 * and are noisy), at most `idleWaitS` seconds; returns the load measured at.
 */
export async function waitIdle(maxLoad: number, idleWaitS: number, log: (msg: string) => void): Promise<number> {
  const deadline = Date.now() + idleWaitS * 1000;
  let load = os.loadavg()[0]!;
  while (load >= maxLoad && Date.now() < deadline) {
    log(`1-min load ${load.toFixed(2)} >= ${maxLoad}: waiting for an idle machine...`);
    await new Promise((r) => setTimeout(r, 15_000));
    load = os.loadavg()[0]!;
  }
  if (load >= maxLoad) log(`still busy (load ${load.toFixed(2)}) after ${idleWaitS} s: measuring anyway`);
  return load;
}

/**
 * Put `text` into BENCHMARKS.md between the `begin` and `end` markers, or, the
 * first time, append a section `heading` holding them.
 */
export function updateBenchmarksMd(root: string, begin: string, end: string, heading: string, text: string, log: (msg: string) => void): void {
  const file = path.join(root, 'BENCHMARKS.md');
  const md = fs.readFileSync(file, 'utf8');
  const block = `${begin}\n${text}\n${end}`;
  const a = md.indexOf(begin);
  const b = md.indexOf(end);
  const next = a >= 0 && b > a ? md.slice(0, a) + block + md.slice(b + end.length) : `${md.trimEnd()}\n\n${heading}\n\n${block}\n`;
  fs.writeFileSync(file, next);
  log(`BENCHMARKS.md updated (${path.relative(process.cwd(), file)})`);
}
