/**
 * `npm run bench:ab -- --base <tree>`: this tree against another checkout of
 * the project (built: `npm run build:all` there), in the same run, for a
 * change that must not cost anything on the data path. Each round runs every
 * case on both trees, the order reversed every other round (A/B/B/A...), so
 * drift hits both alike. Cases: 4 KiB and 1 MiB, read and write, batch 128
 * (throughput, GB/s), and 4 KiB batch 1 (latency, batch p50 and p99 in us).
 * Prints the medians, the spread (min-max) and ratios this/base.
 *
 *   node dist/benchmarks/ab.js --base ../old-tree [--rounds 5] [--duration 3]
 *     [--max-load 0.8] [--idle-wait 600] [--json FILE]
 *
 * A base tree: `git worktree add ../old-tree <commit> && cd ../old-tree &&
 * ln -s ../<this>/node_modules && cp -r ../<this>/build . && npm run build:all`.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import { median, sizeLabel, waitIdle } from './lib.js';

const run = promisify(execFile);
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const { values } = parseArgs({
  options: {
    base: { type: 'string' },
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '3' },
    'max-load': { type: 'string', default: '0.8' },
    'idle-wait': { type: 'string', default: '600' },
    json: { type: 'string' },
  },
});
if (!values.base) {
  process.stderr.write('usage: node dist/benchmarks/ab.js --base <other tree> [--rounds 5] [--duration 3]\n');
  process.exit(2);
}
const trees = { this: ROOT, base: path.resolve(values.base) };
for (const [k, t] of Object.entries(trees)) {
  if (!fs.existsSync(path.join(t, 'dist/src/cli/main.js'))) throw new Error(`${k} tree ${t}: no dist/src/cli/main.js (run npm run build:all there)`);
}
const rounds = Number(values.rounds);
const duration = Number(values.duration);

interface Case {
  name: string;
  size: number;
  batch: number;
  workload: 'read' | 'write';
}
const CASES: Case[] = [
  { name: '4 KiB read', size: 4096, batch: 128, workload: 'read' },
  { name: '4 KiB write', size: 4096, batch: 128, workload: 'write' },
  { name: '1 MiB read', size: 1 << 20, batch: 128, workload: 'read' },
  { name: '1 MiB write', size: 1 << 20, batch: 128, workload: 'write' },
  { name: '4 KiB read, batch 1', size: 4096, batch: 1, workload: 'read' },
];

interface Sample {
  GBps: number;
  p50: number;
  p99: number;
}

async function bench(tree: string, c: Case): Promise<Sample> {
  const args = [path.join(tree, 'dist/src/cli/main.js'), 'bench', '--loopback', `--workload=${c.workload}`, `--size=${c.size}`,
    `--batch=${c.batch}`, '--threads=1', `--duration=${duration}`, '--integrity_check=false', '--json'];
  const { stdout } = await run(process.execPath, args, { cwd: tree, maxBuffer: 1 << 20 });
  const r = JSON.parse(stdout.trim().split('\n').pop()!) as { throughput_GBps: number; latency_us: { batch: { p50: number; p99: number } } };
  return { GBps: r.throughput_GBps, p50: r.latency_us.batch.p50, p99: r.latency_us.batch.p99 };
}

async function main(): Promise<void> {
  const log = (m: string): void => void process.stderr.write(`[ab] ${m}\n`);
  const load = await waitIdle(Number(values['max-load']), Number(values['idle-wait']), log);
  const samples: Record<'this' | 'base', Sample[][]> = { this: CASES.map(() => []), base: CASES.map(() => []) };
  for (let r = 0; r < rounds; r++) {
    const order: Array<'this' | 'base'> = r % 2 === 0 ? ['base', 'this'] : ['this', 'base'];
    for (const [i, c] of CASES.entries()) for (const t of order) samples[t][i]!.push(await bench(trees[t], c));
    log(`round ${r + 1}/${rounds} done`);
  }
  const f = (xs: number[], d: number): string => `${median(xs).toFixed(d)} (${Math.min(...xs).toFixed(d)}-${Math.max(...xs).toFixed(d)})`;
  const lines = [
    `Command: \`node dist/benchmarks/ab.js --base ${values.base} --rounds ${rounds} --duration ${duration}\` (${new Date().toISOString().slice(0, 10)}, 1-min load ${load.toFixed(2)} at start); bench --loopback, 1 thread, P2PHANDSHAKE over TCP.`,
    '',
    '| case | base: median (min-max) | this: median (min-max) | this / base |',
    '|---|---:|---:|---:|',
  ];
  for (const [i, c] of CASES.entries()) {
    const [b, t] = [samples.base[i]!, samples.this[i]!];
    if (c.batch === 1) {
      for (const k of ['p50', 'p99'] as const) {
        const [bb, tt] = [b.map((s) => s[k]), t.map((s) => s[k])];
        lines.push(`| ${c.name}: batch ${k}, us (lower is better) | ${f(bb, 0)} | ${f(tt, 0)} | ${(median(tt) / median(bb)).toFixed(2)}x |`);
      }
    } else {
      const [bb, tt] = [b.map((s) => s.GBps), t.map((s) => s.GBps)];
      lines.push(`| ${sizeLabel(c.size)} ${c.workload}, batch ${c.batch}, GB/s | ${f(bb, 3)} | ${f(tt, 3)} | ${(median(tt) / median(bb)).toFixed(2)}x |`);
    }
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify({ rounds, duration, load, cases: CASES, samples }, null, 2));
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
