/**
 * Which worker pool for file I/O (src/file/io.ts): libuv's threadpool through
 * callback fs.read, the same through fs/promises FileHandle.read, or
 * worker_threads doing readSync. Every variant reads random block-aligned
 * blocks of one page-cached file into distinct slots of one ordinary Buffer
 * (as the engine reads into registered memory) with `workers` operations in
 * flight. A worker thread cannot write into a non-shared Buffer, so it reads
 * into its own SharedArrayBuffer and the main thread copies the block out.
 * Rounds alternate the variants; medians and (min-max).
 *
 *   node dist/benchmarks/file-workers.js [--rounds 5] [--duration 2] [--blocks 65536,1048576]
 *     [--workers 8] [--file-mb 512] [--dir /tmp]
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { randomFillSync } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Worker } from 'node:worker_threads';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '2' },
    blocks: { type: 'string', default: '65536,1048576' },
    workers: { type: 'string', default: '8' },
    'file-mb': { type: 'string', default: '512' },
    dir: { type: 'string', default: os.tmpdir() },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration) * 1000;
const blocks = values.blocks!.split(',').map(Number);
const workers = Number(values.workers);
const fileSize = Number(values['file-mb']) << 20;

const dir = fs.mkdtempSync(path.join(values.dir!, 'te-file-workers-'));
const file = path.join(dir, 'data.bin');
{
  const chunk = Buffer.allocUnsafe(8 << 20);
  const fd = fs.openSync(file, 'w');
  for (let off = 0; off < fileSize; off += chunk.length) fs.writeSync(fd, randomFillSync(chunk), 0, Math.min(chunk.length, fileSize - off), off);
  fs.closeSync(fd);
  fs.readFileSync(file); // page cache
}

const SLOTS = 64;
const offsetOf = (block: number): number => block * Math.floor(Math.random() * Math.floor(fileSize / block));

async function libuvCallback(block: number, dest: Buffer): Promise<number> {
  const fd = fs.openSync(file, 'r');
  let bytes = 0;
  let n = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve, reject) => {
    let active = 0;
    const issue = (): void => {
      while (active < workers && performance.now() - t0 < duration) {
        active++;
        fs.read(fd, dest, (n++ % SLOTS) * block, block, offsetOf(block), (err, got) => {
          active--;
          if (err) return reject(err);
          bytes += got;
          issue();
          if (active === 0) resolve();
        });
      }
    };
    issue();
  });
  fs.closeSync(fd);
  return bytes / (performance.now() - t0) / 1e6;
}

async function libuvPromises(block: number, dest: Buffer): Promise<number> {
  const fh = await fsp.open(file, 'r');
  let bytes = 0;
  let n = 0;
  const t0 = performance.now();
  const loop = async (): Promise<void> => {
    while (performance.now() - t0 < duration) {
      const r = await fh.read(dest, (n++ % SLOTS) * block, block, offsetOf(block));
      bytes += r.bytesRead; // not `bytes += await ...`: that reads `bytes` before the await and loses the other loops' counts
    }
  };
  await Promise.all(Array.from({ length: workers }, loop));
  await fh.close();
  return bytes / (performance.now() - t0) / 1e6;
}

const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
const fs = require('node:fs');
const fd = fs.openSync(workerData.file, 'r');
const stage = Buffer.from(workerData.sab);
parentPort.on('message', (m) => parentPort.postMessage(fs.readSync(fd, stage, 0, m.len, m.pos)));`;

async function workerThreads(block: number, dest: Buffer): Promise<number> {
  const pool = Array.from({ length: workers }, () => {
    const sab = new SharedArrayBuffer(block);
    return { stage: Buffer.from(sab), w: new Worker(WORKER, { eval: true, workerData: { file, sab } }) };
  });
  await Promise.all(pool.map(({ w }) => new Promise((r) => w.once('online', r))));
  let bytes = 0;
  let n = 0;
  const t0 = performance.now();
  await Promise.all(
    pool.map(
      ({ stage, w }) =>
        new Promise<void>((resolve) => {
          const next = (): void => {
            if (performance.now() - t0 >= duration) return resolve();
            const slot = (n++ % SLOTS) * block;
            w.once('message', (got: number) => {
              stage.copy(dest, slot, 0, got); // the copy a shared-memory-less worker costs
              bytes += got;
              next();
            });
            w.postMessage({ len: block, pos: offsetOf(block) });
          };
          next();
        }),
    ),
  );
  const rate = bytes / (performance.now() - t0) / 1e6;
  await Promise.all(pool.map(({ w }) => w.terminate()));
  return rate;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const cell = (xs: number[]): string => `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)})`;

console.log('| block | libuv threadpool, callback fs.read | libuv threadpool, FileHandle.read | worker_threads + copy |');
console.log('|---|---|---|---|');
try {
  for (const block of blocks) {
    const dest = Buffer.alloc(SLOTS * block);
    const s = { cb: [] as number[], pr: [] as number[], wt: [] as number[] };
    for (let r = 0; r < rounds; r++) {
      s.cb.push(await libuvCallback(block, dest));
      s.pr.push(await libuvPromises(block, dest));
      s.wt.push(await workerThreads(block, dest));
    }
    console.log(`| ${block >= 1 << 20 ? `${block >> 20} MiB` : `${block >> 10} KiB`} | ${cell(s.cb)} | ${cell(s.pr)} | ${cell(s.wt)} |`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
console.log(
  `\nGB/s, medians of ${rounds} rounds of ${duration / 1000} s with (min-max); ${workers} operations in flight; ` +
    `UV_THREADPOOL_SIZE=${process.env['UV_THREADPOOL_SIZE'] ?? '4 (default)'}; node ${process.version}.`,
);
