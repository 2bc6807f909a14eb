/**
 * Loopback figures for BENCHMARKS.md: our engine (bench CLI, two processes,
 * P2PHANDSHAKE, TCP, batch 128, 1 thread) beside a raw Node socket between
 * two processes, in the same run, alternating A/B per round; medians and the
 * spread (min-max) of the rounds.
 *
 *   node dist/benchmarks/loopback.js [--rounds 5] [--duration 3] [--sizes 65536,1048576]
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { rawSocket } from './raw-socket.js';

const run = promisify(execFile);
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

async function engine(size: number, duration: number, workload: 'write' | 'read'): Promise<number> {
  const args = [CLI, 'bench', '--loopback', `--workload=${workload}`, `--size=${size}`, '--batch=128', '--threads=1',
    `--duration=${duration}`, '--integrity_check=false', '--json'];
  const { stdout } = await run(process.execPath, args, { maxBuffer: 1 << 20 });
  const last = stdout.trim().split('\n').pop()!;
  return (JSON.parse(last) as { throughput_GBps: number }).throughput_GBps;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (x: number): string => x.toFixed(2);
const spread = (xs: number[]): string => `${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))}`;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '3' },
    sizes: { type: 'string', default: '65536,1048576' },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const sizes = values.sizes!.split(',').map(Number);

type Series = Record<string, number[]>;
const rows: Array<{ size: number; s: Series }> = [];
for (const size of sizes) {
  const s: Series = { rawData: [], rawOnread: [], rawRegion: [], write: [], read: [] };
  for (let r = 0; r < rounds; r++) {
    // Alternate baselines and engine within each round so drift hits all alike.
    s['rawRegion']!.push((await rawSocket(size, duration, 'onread-region')).GBps);
    s['write']!.push(await engine(size, duration, 'write'));
    s['rawOnread']!.push((await rawSocket(size, duration, 'onread')).GBps);
    s['read']!.push(await engine(size, duration, 'read'));
    s['rawData']!.push((await rawSocket(size, duration, 'data')).GBps);
    process.stderr.write(`size ${size} round ${r + 1}/${rounds} done\n`);
  }
  rows.push({ size, s });
}

console.log(
  "| block | raw, 'data' | raw, onread, 1 MiB hot buffer | raw, onread, 128 MiB region | engine write | engine read | write / raw region | read / raw region |",
);
console.log('|---|---|---|---|---|---|---|---|');
for (const { size, s } of rows) {
  const m = (k: string): number => median(s[k]!);
  const cell = (k: string): string => `${fmt(m(k))} (${spread(s[k]!)})`;
  const label = size >= 1 << 20 ? `${size / (1 << 20)} MiB` : `${size / 1024} KiB`;
  console.log(
    `| ${label} | ${cell('rawData')} | ${cell('rawOnread')} | ${cell('rawRegion')} | ${cell('write')} | ${cell('read')} | ` +
      `${fmt(m('write') / m('rawRegion'))} | ${fmt(m('read') / m('rawRegion'))} |`,
  );
}
console.log(`\nGB/s (decimal), medians of ${rounds} rounds of ${duration} s with (min-max); node ${process.version}.`);
