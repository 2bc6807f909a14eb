/**
 * Same-host transfers through the engine's shared-memory path against a
 * single-thread memcpy in Node (Buffer.copy) of the same blocks, and
 * (optionally) our TCP engine over loopback, in the same run, alternating per
 * round; medians and (min-max) of the rounds.
 *
 * A child process runs a peer engine whose memory comes from /dev/shm
 * (`shm: true`); this process's engine reads and writes it in batches of
 * `batch` requests of `size` bytes (submitTransfer + waitBatch), which the
 * engine serves as copies into the peer's mapping. The memcpy baseline copies
 * the same blocks between two ordinary buffers of the same total size.
 *
 *   node dist/benchmarks/shm.js [--rounds 5] [--duration 1] [--sizes 1048576,8388608] [--batch 16] [--tcp]
 */
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferRequest } from '../src/core.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '1' },
    sizes: { type: 'string', default: '1048576,8388608' },
    batch: { type: 'string', default: '16' },
    tcp: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const sizes = values.sizes!.split(',').map(Number);
const batch = Number(values.batch);

const OWNER = `
const { TransferEngine } = await import(process.env.CORE_MODULE);
const e = new TransferEngine({ shm: true });
await e.init('127.0.0.1');
const addr = e.allocateLocalMemory(Number(process.env.SIZE));
e.localView(addr, Number(process.env.SIZE)).fill(1);
process.send({ segment: e.segmentName, addr });
process.on('disconnect', () => { void e.close().then(() => process.exit(0)); });`;

async function startOwner(total: number): Promise<{ segment: string; addr: number; stop: () => void }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', OWNER], {
    env: { ...process.env, CORE_MODULE: new URL('../src/core.js', import.meta.url).href, SIZE: String(total) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const info = await new Promise<{ segment: string; addr: number }>((resolve, reject) => {
    child.once('message', (m: { segment: string; addr: number }) => resolve(m));
    child.once('exit', (c) => reject(new Error(`owner exited (${c})`)));
  });
  return { ...info, stop: () => child.disconnect() };
}

/** GB/s of `batchFn` (which moves `bytes` per call) over `duration` seconds. */
async function measure(bytesPerBatch: number, batchFn: () => void | Promise<void>): Promise<number> {
  await batchFn(); // warm
  const end = performance.now() + duration * 1000;
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t < end) {
    await batchFn();
    n++;
    t = performance.now();
  }
  return (n * bytesPerBatch) / ((t - t0) / 1000) / 1e9;
}

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
async function tcp(size: number, workload: 'write' | 'read'): Promise<number> {
  const args = [CLI, 'bench', '--loopback', `--workload=${workload}`, `--size=${size}`, `--batch=${batch}`, '--threads=1',
    `--duration=${Math.max(duration, 2)}`, '--integrity_check=false', '--json'];
  const { stdout } = await run(process.execPath, args, { maxBuffer: 1 << 20 });
  return (JSON.parse(stdout.trim().split('\n').pop()!) as { throughput_GBps: number }).throughput_GBps;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const fmt = (x: number): string => x.toFixed(2);
const cell = (xs: number[]): string => (xs.length ? `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` : 'n/a');

const engine = new TransferEngine();
await engine.init('127.0.0.1');
const rows: Array<{ size: number; s: Record<string, number[]> }> = [];
for (const size of sizes) {
  const total = size * batch;
  const owner = await startOwner(total);
  const seg = await engine.openSegment(owner.segment);
  const src = Buffer.alloc(total, 2);
  const dst = Buffer.alloc(total, 3);
  const local = engine.allocateLocalMemory(total);
  const requests = (opcode: TransferOpcode): TransferRequest[] =>
    Array.from({ length: batch }, (_, i) => ({ opcode, source: local + i * size, targetId: seg, targetOffset: owner.addr + i * size, length: size }));
  const writes = requests(TransferOpcode.WRITE);
  const reads = requests(TransferOpcode.READ);
  let issued = 0;
  const viaEngine = async (reqs: TransferRequest[]): Promise<void> => {
    issued += reqs.length;
    const b = engine.allocateBatchID(reqs.length);
    engine.submitTransfer(b, reqs);
    const st = await engine.waitBatch(b);
    engine.freeBatchID(b);
    if (st.some((x) => x.status !== TaskStatus.COMPLETED)) throw new Error(`transfer failed: ${st.find((x) => x.error)?.error?.message}`);
  };
  const s: Record<string, number[]> = { memcpy: [], shmWrite: [], shmRead: [], tcpWrite: [], tcpRead: [] };
  const memcpy = (): void => {
    for (let i = 0; i < batch; i++) src.copy(dst, i * size, i * size, (i + 1) * size);
  };
  const copiesBefore = engine.stats().shmCopies;
  for (let r = 0; r < rounds; r++) {
    s['memcpy']!.push(await measure(total, memcpy));
    s['shmWrite']!.push(await measure(total, () => viaEngine(writes)));
    s['shmRead']!.push(await measure(total, () => viaEngine(reads)));
    if (values.tcp) {
      try {
        s['tcpWrite']!.push(await tcp(size, 'write'));
        s['tcpRead']!.push(await tcp(size, 'read'));
      } catch (e) {
        process.stderr.write(`tcp bench failed: ${(e as Error).message.split('\n')[0]}\n`);
      }
    }
    process.stderr.write(`size ${size} round ${r + 1}/${rounds} done\n`);
  }
  // Every request must have gone through shared memory, none over TCP.
  if (engine.stats().shmCopies - copiesBefore !== issued) throw new Error('some requests did not take the shm path');
  engine.closeSegment(seg);
  engine.unregisterLocalMemory(local);
  owner.stop();
  rows.push({ size, s });
}
await engine.close();

console.log('| block | memcpy (Buffer.copy) | shm write | shm read | write / memcpy | read / memcpy | TCP write | TCP read | shm write / TCP write | shm read / TCP read |');
console.log('|---|---|---|---|---|---|---|---|---|---|');
for (const { size, s } of rows) {
  const m = (k: string): number => median(s[k]!);
  const ratio = (a: string, b: string): string => (s[a]!.length && s[b]!.length ? fmt(m(a) / m(b)) : 'n/a');
  console.log(
    `| ${size / (1 << 20)} MiB x ${batch} | ${cell(s['memcpy']!)} | ${cell(s['shmWrite']!)} | ${cell(s['shmRead']!)} | ` +
      `${ratio('shmWrite', 'memcpy')} | ${ratio('shmRead', 'memcpy')} | ${cell(s['tcpWrite']!)} | ${cell(s['tcpRead']!)} | ` +
      `${ratio('shmWrite', 'tcpWrite')} | ${ratio('shmRead', 'tcpRead')} |`,
  );
}
console.log(`\nGB/s (decimal), medians of ${rounds} rounds of ${duration} s with (min-max); 2 processes; node ${process.version}.`);
