/**
 * Scale: many requests in flight at once, across many batches and peer
 * engines, round after round. Shows that every request completes correctly
 * and that memory follows what is in flight, not what has been done: the heap
 * after each round (after a GC) stays flat however many rounds run, and the
 * peak grows with the number of requests in flight, then falls back.
 *
 * The peers (--peers engines, one registered region each) live in a child
 * process, so this process's memory is the initiator's alone. Each round
 * WRITEs a fresh pattern with `--requests` requests spread round-robin over the
 * peers in `--batches` batches, all submitted before any is awaited, then READs
 * everything back into a second region and compares.
 *
 * The last rounds put a tenth of the requests in flight, then all again.
 *
 *   node --expose-gc dist/benchmarks/scale.js [--requests 10000] [--batches 64] [--peers 16]
 *     [--size 4096] [--rounds 8] [--json]
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TaskStatus, TransferEngine, TransferOpcode, type BatchID, type SegmentHandle, type TransferRequest } from '../src/core.js';

const SELF = fileURLToPath(import.meta.url);

interface PeerInfo {
  segment: string;
  addr: number;
}

/** Child: `n` engines with `bytes` registered each; reports their names, serves until the parent goes away. */
async function peersChild(n: number, bytes: number): Promise<void> {
  const engines: TransferEngine[] = [];
  const info: PeerInfo[] = [];
  for (let i = 0; i < n; i++) {
    const e = new TransferEngine();
    await e.init('127.0.0.1');
    const addr = e.registerLocalMemory(Buffer.alloc(bytes), 'cpu:0');
    engines.push(e);
    info.push({ segment: e.segmentName, addr });
  }
  process.send!(info);
  await new Promise<void>((resolve) => process.once('disconnect', () => resolve()));
  await Promise.all(engines.map((e) => e.close()));
}

if (process.argv[2] === '--peers-child') {
  await peersChild(Number(process.argv[3]), Number(process.argv[4]));
  process.exit(0);
}

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '10000' },
    batches: { type: 'string', default: '64' },
    peers: { type: 'string', default: '16' },
    size: { type: 'string', default: '4096' },
    rounds: { type: 'string', default: '8' },
    json: { type: 'boolean', default: false },
  },
});
const requests = Number(values.requests);
const batches = Number(values.batches);
const peers = Number(values.peers);
const size = Number(values.size);
const rounds = Number(values.rounds);
const perPeer = Math.ceil(requests / peers);

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) process.stderr.write('[scale] run with node --expose-gc for after-GC figures (npm run bench:scale does)\n');
const MB = 1 << 20;

function memory(): { rss: number; heap: number; external: number } {
  const m = process.memoryUsage();
  return { rss: m.rss / MB, heap: m.heapUsed / MB, external: m.external / MB };
}

interface RoundResult {
  round: number;
  inFlight: number;
  ms: number;
  ok: number;
  failed: number;
  mismatches: number;
  peakHeap: number;
  peakRss: number;
  heapAfter: number;
  rssAfter: number;
}

async function main(): Promise<void> {
  const child = fork(SELF, ['--peers-child', String(peers), String(perPeer * size)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const info = await new Promise<PeerInfo[]>((resolve, reject) => {
    child.once('message', (m) => resolve(m as PeerInfo[]));
    child.once('exit', (c) => reject(new Error(`peers exited (${c})`)));
  });
  const engine = new TransferEngine();
  await engine.init('127.0.0.1');
  const results: RoundResult[] = [];
  try {
    const handles: SegmentHandle[] = [];
    for (const p of info) handles.push(await engine.openSegment(p.segment));
    const src = Buffer.alloc(requests * size);
    const dst = Buffer.alloc(requests * size);
    const srcAddr = engine.registerLocalMemory(src, 'cpu:0');
    const dstAddr = engine.registerLocalMemory(dst, 'cpu:0');
    // Request i goes to peer i % peers, slot floor(i / peers) there, and into batch i % batches.
    const plan = (opcode: TransferOpcode, base: number, count: number): TransferRequest[][] => {
      const out: TransferRequest[][] = Array.from({ length: Math.min(batches, count) }, () => []);
      for (let i = 0; i < count; i++) {
        const peer = i % peers;
        out[i % out.length]!.push({
          opcode,
          source: base + i * size,
          targetId: handles[peer]!,
          targetOffset: info[peer]!.addr + Math.floor(i / peers) * size,
          length: size,
        });
      }
      return out;
    };
    // Full rounds, then one with a tenth in flight, then full again: the peak follows what is in flight.
    const schedule = [...Array.from({ length: Math.max(1, rounds - 2) }, () => requests), Math.max(1, Math.floor(requests / 10)), requests].slice(0, Math.max(rounds, 1));
    const plans = new Map<number, { writes: TransferRequest[][]; reads: TransferRequest[][] }>();
    for (const n of new Set(schedule)) plans.set(n, { writes: plan(TransferOpcode.WRITE, srcAddr, n), reads: plan(TransferOpcode.READ, dstAddr, n) });
    const baseline = memory();
    process.stderr.write(
      `[scale] ${requests} requests of ${size} B in flight across ${batches} batches and ${peers} peer engines, ${rounds} rounds; ` +
        `start: heap ${baseline.heap.toFixed(1)} MB, rss ${baseline.rss.toFixed(1)} MB\n`,
    );

    /** Submit every batch, then await them all; returns the peak memory seen with everything in flight. */
    const wave = async (set: TransferRequest[][]): Promise<{ ok: number; failed: number; heap: number; rss: number }> => {
      const ids: BatchID[] = set.map((reqs) => engine.allocateBatchID(reqs.length));
      set.forEach((reqs, b) => engine.submitTransfer(ids[b]!, reqs));
      const at = memory(); // all submitted, none awaited: the most bookkeeping alive at once
      const statuses = await Promise.all(ids.map((id) => engine.waitBatch(id)));
      let ok = 0;
      let failed = 0;
      for (const st of statuses) for (const s of st) s.status === TaskStatus.COMPLETED ? ok++ : failed++;
      for (const id of ids) engine.freeBatchID(id);
      return { ok, failed, heap: at.heap, rss: at.rss };
    };

    for (let round = 1; round <= schedule.length; round++) {
      const n = schedule[round - 1]!;
      const { writes, reads } = plans.get(n)!;
      // A pattern unique to this round and request: its index and the round in its first 8 bytes.
      src.fill(round & 0xff);
      dst.fill(0);
      for (let i = 0; i < n; i++) {
        src.writeUInt32LE(i, i * size);
        src.writeUInt32LE(round, i * size + 4);
      }
      const t0 = performance.now();
      const w = await wave(writes);
      const r = await wave(reads);
      const ms = performance.now() - t0;
      let mismatches = 0;
      for (let i = 0; i < n; i++) {
        if (!src.subarray(i * size, (i + 1) * size).equals(dst.subarray(i * size, (i + 1) * size))) mismatches++;
      }
      gc?.();
      const after = memory();
      const res: RoundResult = {
        round,
        inFlight: n,
        ms,
        ok: w.ok + r.ok,
        failed: w.failed + r.failed,
        mismatches,
        peakHeap: Math.max(w.heap, r.heap),
        peakRss: Math.max(w.rss, r.rss),
        heapAfter: after.heap,
        rssAfter: after.rss,
      };
      results.push(res);
      process.stderr.write(
        `[scale] round ${round}: ${res.ok} ok, ${res.failed} failed, ${mismatches} mismatched in ${ms.toFixed(0)} ms; ` +
          `in flight: heap ${res.peakHeap.toFixed(1)} MB, rss ${res.peakRss.toFixed(1)} MB; after GC: heap ${res.heapAfter.toFixed(1)} MB, rss ${res.rssAfter.toFixed(1)} MB\n`,
      );
    }
  } finally {
    await engine.close();
    child.disconnect();
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ requests, batches, peers, size, rounds: results })}\n`);
  } else {
    console.log(`| round | requests in flight | time (ms) | completed | failed | mismatched | heap in flight (MB) | rss in flight (MB) | heap after GC (MB) | rss after GC (MB) |`);
    console.log('|---|---|---|---|---|---|---|---|---|---|');
    for (const r of results) {
      console.log(
        `| ${r.round} | ${r.inFlight} | ${r.ms.toFixed(0)} | ${r.ok} | ${r.failed} | ${r.mismatches} | ${r.peakHeap.toFixed(1)} | ${r.peakRss.toFixed(1)} | ${r.heapAfter.toFixed(1)} | ${r.rssAfter.toFixed(1)} |`,
      );
    }
    const full = results.filter((r) => r.inFlight === requests);
    const first = full[1] ?? full[0]!;
    const last = full[full.length - 1]!;
    console.log(
      `\nHeap after GC, round ${first.round} -> round ${last.round}: ${first.heapAfter.toFixed(1)} -> ${last.heapAfter.toFixed(1)} MB ` +
        `(${((last.heapAfter - first.heapAfter) / Math.max(1, last.round - first.round)).toFixed(2)} MB per round); ` +
        `${results.reduce((a, r) => a + r.ok, 0)} requests done in all. node ${process.version}.`,
    );
  }
  if (results.some((r) => r.failed > 0 || r.mismatches > 0)) process.exitCode = 1;
}

await main();
