/**
 * `npm run bench:master`: our Store master (`transfer-engine master`) against
 * the wheel's `mooncake_master`, with the same client: the wheel's Python
 * MooncakeDistributedStore running benchmarks/store/master_bench.py. Rounds
 * alternate the masters (M O, O M, ...) so drift hits both alike; each round
 * starts a fresh master. Per operation: the median rate over the rounds with
 * its spread (min-max), the ratio ours/Mooncake, and the median per-call p50
 * and p99 latency. Small operations are calls per second (`exist` is a master
 * call and nothing else; put_small and get_small add a 64 B local copy); the
 * 1 MiB ones MiB/s. It refreshes its table in BENCHMARKS.md between its markers.
 *
 *   node dist/benchmarks/master-compare.js [--rounds 5] [--small 2000] [--large 64] [--warmup 3000] [--ha]
 *     [--busy-poll-us N]   (our masters' --busy_poll_us; default: theirs, 1000)
 *     [--max-load 0.8] [--idle-wait 600] [--no-update] [--json FILE]
 *
 * --ha adds a third master in the rotation: ours with `--ha` on a one-member
 * etcd started here (the client still talks to it directly): the cost of
 * committing every change to etcd before answering.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureInteropEnv, mooncakeEnv, PYTHON } from '../test/interop/mooncake.js';
import { MooncakeMaster } from '../test/store-harness/master.js';
import { EtcdCluster, requireServer } from '../test/servers.js';
import { median, updateBenchmarksMd, waitIdle } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SCRIPT = path.join(ROOT, 'benchmarks', 'store', 'master_bench.py');
const BEGIN = '<!-- bench:master:begin -->';
const END = '<!-- bench:master:end -->';
const SECTION = '## Store master: ours against mooncake_master (issue 18)';
const MiB = 1024 * 1024;

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    small: { type: 'string', default: '2000' },
    large: { type: 'string', default: '64' },
    warmup: { type: 'string', default: '3000' },
    'busy-poll-us': { type: 'string' },
    'max-load': { type: 'string', default: '0.8' },
    'idle-wait': { type: 'string', default: '600' },
    'no-update': { type: 'boolean', default: false },
    json: { type: 'string' },
    ha: { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const small = Number(values.small);
const large = Number(values.large);

interface OpResult {
  op: string;
  n: number;
  seconds: number;
  p50_us: number;
  p99_us: number;
  bytes: number;
}

const OPS = ['exist', 'put_small', 'get_small', 'put_1m', 'get_1m'] as const;
const log = (msg: string): void => {
  process.stderr.write(`[master-compare] ${msg}\n`);
};

type Variant = 'mooncake' | 'ours' | 'ours-ha';
const LABEL: Record<Variant, string> = { mooncake: 'mooncake_master', ours: 'ours', 'ours-ha': 'ours --ha (etcd)' };

function runClient(master: MooncakeMaster): Promise<OpResult[]> {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      [SCRIPT, master.address, master.metadataUrl, String(small), String(large), values.warmup!],
      { env: mooncakeEnv({ MC_TCP_BIND_ADDRESS: '127.0.0.1' }), timeout: 600_000, maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`master_bench.py against ${master.kind}: ${err.message}\n${stderr.slice(-2000)}`));
        else resolve(stdout.trim().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as OpResult));
      },
    );
  });
}

/** CPU time (user + system) a process has used so far, in ms, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) throw new Error('the master is not running');
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** Calls/s for small ops, MiB/s for 1 MiB ones. */
const rate = (r: OpResult): number => (r.bytes > 0 ? r.bytes / MiB / r.seconds : r.n / r.seconds);

async function main(): Promise<void> {
  const skip = ensureInteropEnv();
  if (skip) throw new Error(`the pinned wheel is needed: ${skip}`);
  const load = await waitIdle(Number(values['max-load']), Number(values['idle-wait']), log);
  const variants: Variant[] = values.ha ? ['mooncake', 'ours', 'ours-ha'] : ['mooncake', 'ours'];
  let etcd: EtcdCluster | null = null;
  if (values.ha) {
    const bin = requireServer('etcd');
    if (bin.skip) throw new Error(`--ha needs etcd: ${bin.skip}`);
    etcd = await EtcdCluster.start(bin.path, 1);
  }
  const results: Record<Variant, Record<string, OpResult[]>> = { mooncake: {}, ours: {}, 'ours-ha': {} };
  /** The master process's CPU time (user + system, ms) over each round's client run. */
  const cpu: Record<Variant, number[]> = { mooncake: [], ours: [], 'ours-ha': [] };
  for (let r = 0; r < rounds; r++) {
    // Rotate the order round by round, so drift hits every master alike.
    const order = variants.map((_, i) => variants[(i + r) % variants.length]!);
    for (const kind of order) {
      const poll = values['busy-poll-us'] !== undefined && kind !== 'mooncake' ? [`--busy_poll_us=${values['busy-poll-us']}`] : [];
      const extraArgs = [...poll, ...(kind === 'ours-ha' ? [`--ha=${etcd!.connString}`, `--cluster_id=bench-${process.pid}-${r}`] : [])];
      const master = await MooncakeMaster.start({ kind: kind === 'mooncake' ? 'mooncake' : 'ours', extraArgs });
      try {
        const before = cpuMs(master.pid);
        for (const res of await runClient(master)) (results[kind][res.op] ??= []).push(res);
        cpu[kind].push(cpuMs(master.pid) - before);
      } finally {
        await master.stop();
      }
      log(`round ${r + 1}/${rounds} ${kind}: done`);
    }
  }
  await etcd?.stop();
  const others = variants.filter((v) => v !== 'mooncake');
  const rows: string[] = [
    `| operation | unit | mooncake_master (median, min-max) | ${others.map((v) => `${LABEL[v]} (median, min-max) | ${LABEL[v]} / Mooncake`).join(' | ')} | p50 / p99 us: ${variants.map((v) => LABEL[v]).join(', ')} |`,
    `|---|---|---:|${others.map(() => '---:|---:|').join('')}---:|`,
  ];
  const summary: Record<string, unknown> = {};
  const f = (xs: number[]): string => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)})`;
  const lat = (xs: OpResult[]): string => `${median(xs.map((x) => x.p50_us)).toFixed(0)} / ${median(xs.map((x) => x.p99_us)).toFixed(0)}`;
  for (const op of OPS) {
    const unit = op.endsWith('1m') ? 'MiB/s' : 'calls/s';
    const base = (results.mooncake[op] ?? []).map(rate);
    const cells = others.map((v) => {
      const xs = (results[v][op] ?? []).map(rate);
      return `${f(xs)} | ${(median(xs) / median(base)).toFixed(2)}x`;
    });
    rows.push(`| ${op} | ${unit} | ${f(base)} | ${cells.join(' | ')} | ${variants.map((v) => lat(results[v][op] ?? [])).join(', ')} |`);
    summary[op] = Object.fromEntries(variants.map((v) => [v, { rates: (results[v][op] ?? []).map(rate), latency: (results[v][op] ?? []).map((x) => [x.p50_us, x.p99_us]) }]));
  }
  const cpuRow = `| master CPU per round | ms (user + sys) | ${f(cpu.mooncake)} | ${others.map((v) => `${f(cpu[v])} | ${(median(cpu[v]) / median(cpu.mooncake)).toFixed(2)}x`).join(' | ')} | |`;
  rows.push(cpuRow);
  summary.cpu_ms = cpu;
  const text = [
    `Command: \`npm run bench:master -- --rounds ${rounds} --small ${small} --large ${large} --warmup ${values.warmup}${values.ha ? " --ha" : ""}\` (${new Date().toISOString().slice(0, 10)}, 1-min load ${load.toFixed(2)} at start).`,
    `Client: the wheel's Python MooncakeDistributedStore (benchmarks/store/master_bench.py), one 512 MiB segment, on loopback; a fresh master per round, rounds alternating; each master first warmed up with ${values.warmup} unmeasured put/exist/get/remove rounds and a 1 s pause (ours compiles its hot paths as it runs: measured warm, as in production). The last row is the master's own CPU time over a whole client run, warm-up included: the price of our busy polling.`,
    '',
    ...rows,
  ].join('\n');
  process.stdout.write(`${text}\n`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify({ rounds, small, large, load, summary }, null, 2));
  if (!values['no-update']) updateBenchmarksMd(ROOT, BEGIN, END, SECTION, text, log);
}

main().catch((e: unknown) => {
  process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
