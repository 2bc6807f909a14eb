/**
 * File segments: remote reads of a registered file of a target process on
 * this host, by same-host access (the default: src/transport/file-same-host.ts)
 * and over loopback TCP (a second engine with TE_FILE_SAME_HOST=0), against a
 * local read of the same file in the same run, buffered and with direct I/O.
 *
 * A target process registers the file twice over (two copies: one opened
 * buffered, one with O_DIRECT; one file cannot be registered twice). This
 * process opens its segment and reads random `block`-sized, block-aligned
 * pieces, `batch` requests per batch (the pattern of Mooncake's
 * transfer_engine_nvmeof_generic_bench, pull request #793). The local
 * baselines read the same files here with plain fs.read at random block
 * offsets into the same amount of memory, keeping `inflight` reads queued
 * (default 64: the target's own depth, 8 workers x 8 queued each); the
 * direct baseline opens with O_DIRECT and reads into 4096-aligned memory.
 * Two more columns explain the TCP gap: the engine's local path (the same
 * file into registered memory on one engine, no network), and remote reads of
 * the target's *memory* over the same TCP path (no file at all: the
 * transport's ceiling here). Every round runs each measurement once, odd
 * rounds in reverse order; medians and (min-max) of the rounds. The run fails
 * if a same-host measurement did not go direct or a TCP one did not go over TCP.
 *
 *   node dist/benchmarks/file.js [--rounds 5] [--duration 3] [--blocks 65536,1048576]
 *     [--batch 128] [--pipeline 2] [--file-mb 1024] [--dir /tmp] [--inflight 64] [--no-direct]
 *
 * Engine measurements keep `pipeline` batches submitted at once (that Mooncake
 * bench does the same with --threads), so the engine's file pool, capped at 64
 * operations in flight (8 workers x 8) like the local reads, does not idle
 * while one batch's last reads finish; the OS sees the same depth on both sides.
 *
 * The buffered file is read once before measuring, so both sides read from
 * the page cache (this machine has far more RAM than the file).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { LOCAL_SEGMENT, TaskStatus, TransferEngine, TransferOpcode, type TransferRequest } from '../src/core.js';
import { allocateAligned } from '../src/shm/region.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '3' },
    blocks: { type: 'string', default: '65536,1048576' },
    batch: { type: 'string', default: '128' },
    'file-mb': { type: 'string', default: '1024' },
    dir: { type: 'string', default: os.tmpdir() },
    inflight: { type: 'string', default: '64' },
    pipeline: { type: 'string', default: '2' },
    'no-direct': { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const blocks = values.blocks!.split(',').map(Number);
const batch = Number(values.batch);
const fileSize = Number(values['file-mb']) * 1024 * 1024;
const inflight = Number(values.inflight);
const pipeline = Number(values.pipeline);
const direct = !values['no-direct'];

// ------------------------------------------------------------------ files

const dir = fs.mkdtempSync(path.join(values.dir!, 'te-file-bench-'));
const buffered = path.join(dir, 'buffered.bin');
const directFile = path.join(dir, 'direct.bin');
{
  const chunk = Buffer.allocUnsafe(8 << 20);
  const fd = fs.openSync(buffered, 'w');
  for (let off = 0; off < fileSize; off += chunk.length) {
    randomFillSync(chunk);
    fs.writeSync(fd, chunk, 0, Math.min(chunk.length, fileSize - off), off);
  }
  fs.closeSync(fd);
  if (direct) fs.copyFileSync(buffered, directFile);
  fs.readFileSync(buffered); // warm the page cache for the buffered runs (both sides)
}

// ----------------------------------------------------------------- target

const TARGET = `
const { TransferEngine } = await import(process.env.CORE_MODULE);
const e = new TransferEngine();
await e.init('127.0.0.1');
const ids = { buffered: e.registerLocalFile(process.env.BUFFERED, Number(process.env.SIZE)) };
if (process.env.DIRECT_FILE) ids.direct = e.registerLocalFile(process.env.DIRECT_FILE, Number(process.env.SIZE), { directIO: true });
const memAddr = e.registerLocalMemory(Buffer.alloc(Number(process.env.MEM_SIZE), 1)); // for the TCP ceiling column
process.send({ segment: e.segmentName, ids, memAddr });
process.on('disconnect', () => { void e.close().then(() => process.exit(0)); });`;

interface TargetInfo {
  segment: string;
  ids: { buffered: number; direct?: number };
  memAddr: number;
}

const MEM_SIZE = 256 << 20;

async function startTarget(): Promise<TargetInfo & { child: ChildProcess }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', TARGET], {
    env: {
      ...process.env,
      CORE_MODULE: new URL('../src/core.js', import.meta.url).href,
      BUFFERED: buffered,
      ...(direct ? { DIRECT_FILE: directFile } : {}),
      SIZE: String(fileSize),
      MEM_SIZE: String(MEM_SIZE),
    },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const m = await new Promise<TargetInfo>((resolve, reject) => {
    child.once('message', (msg: TargetInfo) => resolve(msg));
    child.once('exit', (c) => reject(new Error(`target exited (${c})`)));
  });
  return { ...m, child };
}

// ---------------------------------------------------------------- measure

function randomBlockOffset(block: number, size = fileSize): number {
  return block * Math.floor(Math.random() * Math.floor(size / block));
}

/**
 * GB/s of reads through the engine: batches of `batch` random blocks of file
 * `fileId` of segment `seg` (LOCAL_SEGMENT: this engine's own file), or with
 * `memBase`, of the segment's memory at [memBase, memBase + MEM_SIZE).
 */
async function viaEngine(engine: TransferEngine, seg: number, target: { fileId: number } | { memBase: number }, block: number, memAddr: number): Promise<number> {
  const reqs: TransferRequest[] = Array.from({ length: batch }, (_, i) => ({
    opcode: TransferOpcode.READ, source: memAddr + i * block, targetId: seg, targetOffset: 0, length: block,
    ...('fileId' in target ? { fileId: target.fileId } : {}),
  }));
  const once = async (): Promise<void> => {
    if ('fileId' in target) for (const r of reqs) r.targetOffset = randomBlockOffset(block);
    else for (const r of reqs) r.targetOffset = target.memBase + randomBlockOffset(block, MEM_SIZE);
    const b = engine.allocateBatchID(batch);
    engine.submitTransfer(b, reqs);
    const st = await engine.waitBatch(b);
    engine.freeBatchID(b);
    const bad = st.find((s) => s.status !== TaskStatus.COMPLETED);
    if (bad) throw new Error(`remote read failed: ${bad.error?.message}`);
  };
  await once(); // connections up
  const t0 = performance.now();
  const end = t0 + duration * 1000;
  let n = 0;
  const loop = async (): Promise<void> => {
    while (performance.now() < end) {
      await once();
      n++;
    }
  };
  await Promise.all(Array.from({ length: pipeline }, loop));
  return (n * batch * block) / ((performance.now() - t0) / 1000) / 1e9;
}

/** GB/s of local fs.read of random blocks with `inflight` reads queued, into `mem` (batch x block). */
async function local(file: string, flags: number, block: number, mem: Uint8Array): Promise<number> {
  const fd = fs.openSync(file, flags);
  try {
    let bytes = 0;
    let i = 0;
    const t0 = performance.now();
    const end = t0 + duration * 1000;
    await new Promise<void>((resolve, reject) => {
      let active = 0;
      const issue = (): void => {
        while (active < inflight && performance.now() < end) {
          const slot = (i++ % batch) * block;
          active++;
          fs.read(fd, mem, slot, block, randomBlockOffset(block), (err, n) => {
            active--;
            if (err) return reject(err);
            if (n !== block) return reject(new Error(`short read ${n}`));
            bytes += n;
            issue();
            if (active === 0) resolve();
          });
        }
      };
      issue();
    });
    return bytes / ((performance.now() - t0) / 1000) / 1e9;
  } finally {
    fs.closeSync(fd);
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const fmt = (x: number): string => x.toFixed(2);
const cell = (xs: number[]): string => (xs.length ? `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` : 'n/a');

const loadBefore = os.loadavg().map((x) => x.toFixed(2)).join(' ');
const target = await startTarget();
const engine = new TransferEngine();
await engine.init('127.0.0.1');
const seg = await engine.openSegment(target.segment);
const tcpEngine = new TransferEngine({ env: { ...process.env, TE_FILE_SAME_HOST: '0' } });
await tcpEngine.init('127.0.0.1');
const tcpSeg = await tcpEngine.openSegment(target.segment);

/** Run a same-host (`direct`) or TCP measurement and check that it took that path. */
async function checked(e: TransferEngine, direct: boolean, measure: () => Promise<number>): Promise<number> {
  const before = e.stats().fileSameHost;
  const v = await measure();
  if ((e.stats().fileSameHost > before) !== direct) throw new Error(`a ${direct ? 'same-host' : 'TCP'} measurement took the other path`);
  return v;
}
// The engine's local path: this engine registers the same file too (registration is per engine).
const localId = engine.registerLocalFile(buffered, fileSize);
const rows: Array<{ block: number; s: Record<string, number[]> }> = [];
try {
  for (const block of blocks) {
    const total = block * batch;
    const mem = Buffer.alloc(total);
    const memAddr = engine.registerLocalMemory(mem);
    const tcpMemAddr = tcpEngine.registerLocalMemory(mem);
    const aligned = allocateAligned(total, 4096);
    const s: Record<string, number[]> = {
      localBuffered: [], engineLocal: [], remoteBuffered: [], remoteBufferedTcp: [], remoteMemory: [], localDirect: [], remoteDirect: [], remoteDirectTcp: [],
    };
    // Each round runs every measurement once; odd rounds in reverse order, so warm-up and drift favour neither side.
    const steps: Array<[string, () => Promise<number>]> = [
      ['localBuffered', () => local(buffered, fs.constants.O_RDONLY, block, mem)],
      ['remoteBuffered', () => checked(engine, true, () => viaEngine(engine, seg, { fileId: target.ids.buffered }, block, memAddr))],
      ['remoteBufferedTcp', () => checked(tcpEngine, false, () => viaEngine(tcpEngine, tcpSeg, { fileId: target.ids.buffered }, block, tcpMemAddr))],
      ['engineLocal', () => viaEngine(engine, LOCAL_SEGMENT, { fileId: localId }, block, memAddr)],
      ['remoteMemory', () => viaEngine(tcpEngine, tcpSeg, { memBase: target.memAddr }, block, tcpMemAddr)],
      ...(direct && block % 4096 === 0
        ? ([
            ['localDirect', () => local(directFile, fs.constants.O_RDONLY | fs.constants.O_DIRECT, block, aligned)],
            ['remoteDirect', () => checked(engine, true, () => viaEngine(engine, seg, { fileId: target.ids.direct! }, block, memAddr))],
            ['remoteDirectTcp', () => checked(tcpEngine, false, () => viaEngine(tcpEngine, tcpSeg, { fileId: target.ids.direct! }, block, tcpMemAddr))],
          ] as Array<[string, () => Promise<number>]>)
        : []),
    ];
    for (let r = 0; r < rounds; r++) {
      for (const [key, measure] of r % 2 ? [...steps].reverse() : steps) s[key]!.push(await measure());
      process.stderr.write(`block ${block} round ${r + 1}/${rounds} done\n`);
    }
    engine.unregisterLocalMemory(memAddr);
    tcpEngine.unregisterLocalMemory(tcpMemAddr);
    rows.push({ block, s });
  }
} finally {
  await tcpEngine.close();
  await engine.close();
  target.child.disconnect();
  await new Promise((r) => target.child.once('exit', r));
  fs.rmSync(dir, { recursive: true, force: true });
}

const label = (block: number): string => (block >= 1 << 20 ? `${block / (1 << 20)} MiB` : `${block / 1024} KiB`);
const ratioOf = (s: Record<string, number[]>) => (a: string, b: string): string => (s[a]!.length && s[b]!.length ? fmt(median(s[a]!) / median(s[b]!)) : 'n/a');
console.log('Buffered (page cache):\n');
console.log(
  '| block | local fs.read | remote, same-host | same-host / local | remote over TCP | TCP / local | engine, local file | remote memory read (TCP ceiling) | ceiling / local |',
);
console.log('|---|---|---|---|---|---|---|---|---|');
for (const { block, s } of rows) {
  const ratio = ratioOf(s);
  console.log(
    `| ${label(block)} | ${cell(s['localBuffered']!)} | ${cell(s['remoteBuffered']!)} | ${ratio('remoteBuffered', 'localBuffered')} | ` +
      `${cell(s['remoteBufferedTcp']!)} | ${ratio('remoteBufferedTcp', 'localBuffered')} | ${cell(s['engineLocal']!)} | ` +
      `${cell(s['remoteMemory']!)} | ${ratio('remoteMemory', 'localBuffered')} |`,
  );
}
if (direct) {
  console.log('\nDirect I/O (O_DIRECT, the disk):\n');
  console.log('| block | local direct fs.read | remote, same-host | same-host / local | remote over TCP | TCP / local |');
  console.log('|---|---|---|---|---|---|');
  for (const { block, s } of rows) {
    const ratio = ratioOf(s);
    console.log(
      `| ${label(block)} | ${cell(s['localDirect']!)} | ${cell(s['remoteDirect']!)} | ${ratio('remoteDirect', 'localDirect')} | ` +
        `${cell(s['remoteDirectTcp']!)} | ${ratio('remoteDirectTcp', 'localDirect')} |`,
    );
  }
}
console.log(
  `\nGB/s (decimal), medians of ${rounds} rounds of ${duration} s with (min-max); ${fileSize >> 20} MiB files in ${values.dir}; ` +
    `batch ${batch}, ${pipeline} batch(es) in flight per engine measurement; local reads keep ${inflight} in flight; UV_THREADPOOL_SIZE=${process.env['UV_THREADPOOL_SIZE'] ?? '4 (default)'}; node ${process.version}; ` +
    `load average (1/5/15 min) ${loadBefore} before, ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} after, ${os.cpus().length} CPUs.`,
);
