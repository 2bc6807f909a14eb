/**
 * How long a large same-host copy holds the event loop: two engines in this
 * process (shm), 64 MiB READs and WRITEs alternating, and a setImmediate
 * ticker beside them; per copy its duration and the longest gap between two
 * ticks (the longest any other I/O or timer of the process had to wait).
 * Medians of the rounds.
 *
 *   node dist/benchmarks/shm-stall.js [--rounds 7] [--size-mib 64] [--tree DIR]
 *
 * --tree runs another built checkout's engine (its dist/src/core.js): the
 * same measurement for the tree before a change.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { median } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const { values } = parseArgs({
  options: { rounds: { type: 'string', default: '7' }, 'size-mib': { type: 'string', default: '64' }, tree: { type: 'string' } },
});
const tree = path.resolve(values.tree ?? ROOT);
const size = Number(values['size-mib']) * 1024 * 1024;

interface Core {
  TransferEngine: new (o: { shm: boolean }) => {
    init(name: string): Promise<void>;
    allocateLocalMemory(n: number): number;
    localView(addr: number, n: number): Uint8Array;
    openSegment(name: string): Promise<number>;
    segmentName: string;
    allocateBatchID(n: number): number;
    submitTransfer(b: number, r: Array<{ opcode: number; source: number; targetId: number; targetOffset: number; length: number }>): void;
    waitBatch(b: number): Promise<unknown>;
    freeBatchID(b: number): void;
    stats(): { shmCopies: number };
    close(): Promise<void>;
  };
  TransferOpcode: { READ: number; WRITE: number };
}

const { TransferEngine, TransferOpcode } = (await import(path.join(tree, 'dist/src/core.js'))) as Core;
const a = new TransferEngine({ shm: true });
const b = new TransferEngine({ shm: true });
await a.init('127.0.0.1');
await b.init('127.0.0.1');
const la = a.allocateLocalMemory(size);
const lb = b.allocateLocalMemory(size);
b.localView(lb, size).fill(7);
const seg = await a.openSegment(b.segmentName);
const copyMs: number[] = [];
const gapMs: number[] = [];
for (let r = 0; r < Number(values.rounds); r++) {
  let last = performance.now();
  let maxGap = 0;
  let stop = false;
  const tick = (): void => {
    const t = performance.now();
    maxGap = Math.max(maxGap, t - last);
    last = t;
    if (!stop) setImmediate(tick);
  };
  setImmediate(tick);
  await new Promise((res) => setTimeout(res, 5));
  const t0 = performance.now();
  const bid = a.allocateBatchID(1);
  a.submitTransfer(bid, [{ opcode: r % 2 ? TransferOpcode.WRITE : TransferOpcode.READ, source: la, targetId: seg, targetOffset: lb, length: size }]);
  await a.waitBatch(bid);
  a.freeBatchID(bid);
  copyMs.push(performance.now() - t0);
  stop = true;
  await new Promise((res) => setTimeout(res, 5));
  gapMs.push(maxGap);
}
const copies = a.stats().shmCopies;
await a.close();
await b.close();
const f = (xs: number[]): string => `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})`;
process.stdout.write(`${tree}: ${size >> 20} MiB same-host copies through shared memory (${copies} of ${copyMs.length}): copy ms ${f(copyMs)}, longest event-loop gap ms ${f(gapMs)}\n`);
