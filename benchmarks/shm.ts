/**
 * Shared-memory copies between two processes against a single-thread memcpy
 * in Node (Buffer.copy) of the same blocks, and (optionally) our TCP engine
 * over loopback, in the same run, alternating per round; medians and
 * (min-max) of the rounds.
 *
 * A child process owns a /dev/shm region of batch x size bytes; this process
 * maps it through ShmTransport and copies `batch` blocks of `size` bytes per
 * batch from/to its own ordinary memory. The memcpy baseline copies the same
 * blocks between two ordinary buffers of the same total size.
 *
 *   node dist/benchmarks/shm.js [--rounds 5] [--duration 1] [--sizes 1048576,8388608] [--batch 16] [--tcp]
 */
import { execFile, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { ShmTransport } from '../src/transport/shm.js';

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
const { allocateShmRegion } = await import(process.env.SHM_MODULE);
const r = allocateShmRegion(Number(process.env.SIZE));
r.bytes.fill(1);
process.send({ name: r.name });
process.on('disconnect', () => { r.free(); process.exit(0); });`;

async function startOwner(total: number): Promise<{ name: string; stop: () => void }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', OWNER], {
    env: { ...process.env, SHM_MODULE: new URL('../src/shm/index.js', import.meta.url).href, SIZE: String(total) },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const name = await new Promise<string>((resolve, reject) => {
    child.once('message', (m: { name: string }) => resolve(m.name));
    child.once('exit', (c) => reject(new Error(`owner exited (${c})`)));
  });
  return { name, stop: () => child.disconnect() };
}

/** GB/s of `batchFn` (which moves `bytes` per call) over `duration` seconds. */
function measure(bytesPerBatch: number, batchFn: () => void): number {
  batchFn(); // warm
  const end = performance.now() + duration * 1000;
  let n = 0;
  const t0 = performance.now();
  let t = t0;
  while (t < end) {
    batchFn();
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

const transport = new ShmTransport();
const rows: Array<{ size: number; s: Record<string, number[]> }> = [];
for (const size of sizes) {
  const total = size * batch;
  const owner = await startOwner(total);
  const desc = { shmName: owner.name, size: total, addr: 0x1000 };
  const src = Buffer.alloc(total, 2);
  const dst = Buffer.alloc(total, 3);
  const s: Record<string, number[]> = { memcpy: [], shmWrite: [], shmRead: [], tcpWrite: [], tcpRead: [] };
  const memcpy = (): void => {
    for (let i = 0; i < batch; i++) src.copy(dst, i * size, i * size, (i + 1) * size);
  };
  const shmWrite = (): void => {
    for (let i = 0; i < batch; i++) transport.copy(transport.machineId, desc, i * size, src.subarray(i * size, (i + 1) * size), true);
  };
  const shmRead = (): void => {
    for (let i = 0; i < batch; i++) transport.copy(transport.machineId, desc, i * size, dst.subarray(i * size, (i + 1) * size), false);
  };
  for (let r = 0; r < rounds; r++) {
    s['memcpy']!.push(measure(total, memcpy));
    s['shmWrite']!.push(measure(total, shmWrite));
    s['shmRead']!.push(measure(total, shmRead));
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
  transport.drop(owner.name);
  owner.stop();
  rows.push({ size, s });
}
transport.close();

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
