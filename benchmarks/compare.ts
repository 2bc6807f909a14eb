/**
 * `npm run bench:compare`: our engine beside Mooncake's transfer_engine_bench
 * (its default mode, a connection per request, and its pooled mode,
 * MC_TCP_ENABLE_CONNECTION_POOL=1), iperf3 and a memcpy reference, in ONE run
 * on loopback: TCP, P2PHANDSHAKE, batch 128, 1 thread, for each block size
 * and for WRITE and READ. Every round runs every contender once, the order
 * reversed every other round (A/B/B/A...), so drift hits all alike; the table
 * has the median of the rounds and the spread (min-max). It checks the ratios
 * issue #6 requires and refreshes the table in BENCHMARKS.md between its markers,
 * and draws it as a chart, BENCHMARKS-compare.svg beside it (compare-chart.ts).
 *
 *   node dist/benchmarks/compare.js [--rounds 5] [--duration 4] [--sizes 4096,65536,1048576,8388608]
 *     [--ops write,read] [--max-load 0.8] [--idle-wait 600] [--no-update] [--json FILE]
 *   node dist/benchmarks/compare.js --chart-only
 *
 * --no-update leaves BENCHMARKS.md and the chart alone. --chart-only measures
 * nothing: it reads the table in BENCHMARKS.md and draws its chart again.
 *
 * Before each size it waits (up to --idle-wait seconds) for the 1-minute load
 * average to drop under --max-load; the loads seen are printed with the table.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { BEGIN, END, parseCompareTable, renderCompareChart, titleFromRunLine, type CompareChartInput, type Spread } from './compare-chart.js';
import { median, sizeLabel, updateBenchmarksMd, waitIdle } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..'); // dist/benchmarks -> repo root
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const SELF = fileURLToPath(import.meta.url);
const BATCH = 128;
const IPERF3_MAX_LEN = 1 << 20;
const CHART = path.join(ROOT, 'BENCHMARKS-compare.svg');

// ------------------------------------------------------------ memcpy child

/** Buffer.copy of `size`-byte blocks walking two 512 MiB regions (cache-cold, like the transfers' memory). */
function memcpyChild(size: number, seconds: number): void {
  const REGION = 512 << 20;
  const src = Buffer.alloc(REGION, 1);
  const dst = Buffer.alloc(REGION, 2); // touched: no page faults while timed
  const blocks = Math.max(1, Math.floor(REGION / size));
  let bytes = 0;
  let i = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  let t = t0;
  while (t < end) {
    for (let k = 0; k < 64; k++) {
      const off = (i++ % blocks) * size;
      src.copy(dst, off, off, off + size);
      bytes += size;
    }
    t = performance.now();
  }
  process.stdout.write(`${JSON.stringify({ GBps: bytes / ((t - t0) / 1000) / 1e9 })}\n`);
}

if (process.argv[2] === '--memcpy-child') {
  memcpyChild(Number(process.argv[3]), Number(process.argv[4]));
  process.exit(0);
}

// ------------------------------------------------------------------ setup

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '4' },
    sizes: { type: 'string', default: '4096,65536,1048576,8388608' },
    ops: { type: 'string', default: 'write,read' },
    'max-load': { type: 'string', default: '0.8' },
    'idle-wait': { type: 'string', default: '600' },
    'no-update': { type: 'boolean', default: false },
    json: { type: 'string' },
    'chart-only': { type: 'boolean', default: false },
  },
});
const rounds = Number(values.rounds);
const duration = Number(values.duration);
const sizes = values.sizes!.split(',').map(Number);
const ops = values.ops!.split(',') as Array<'write' | 'read'>;
const maxLoad = Number(values['max-load']);
const idleWait = Number(values['idle-wait']);

function log(msg: string): void {
  process.stderr.write(`[compare] ${msg}\n`);
}

function ensureIperf3(): string | null {
  const which = spawnSync('sh', ['-c', 'command -v iperf3'], { encoding: 'utf8' });
  if (which.status === 0) return which.stdout.trim();
  if (process.getuid?.() !== 0) {
    log('iperf3 is missing and we are not root to install it: the iperf3 column stays empty');
    return null;
  }
  log('installing iperf3 with apt-get...');
  const r = spawnSync('sh', ['-c', 'apt-get install -y -qq iperf3 >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iperf3 >/dev/null)'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const again = spawnSync('sh', ['-c', 'command -v iperf3'], { encoding: 'utf8' });
  if (r.status !== 0 || again.status !== 0) {
    log('iperf3 could not be installed: the iperf3 column stays empty');
    return null;
  }
  return again.stdout.trim();
}

/** Mooncake's transfer_engine_bench binary from the pinned wheel (test/interop/setup.sh). */
function ensureMooncake(): string | null {
  const r = spawnSync('bash', [path.join(ROOT, 'test', 'interop', 'setup.sh')], { encoding: 'utf8', timeout: 600_000 });
  if (r.status !== 0) {
    log(`Mooncake's wheel is unavailable (${(r.stderr || r.stdout).trim().split('\n').pop()}): its columns stay empty`);
    return null;
  }
  const lib = path.join(ROOT, '.venv', 'lib');
  const py = fs.readdirSync(lib).find((d) => d.startsWith('python3'));
  // Not .venv/bin's wrapper: that is a Python script running the binary as a subprocess, which a signal would orphan.
  const bin = py ? path.join(lib, py, 'site-packages', 'mooncake', 'transfer_engine_bench') : '';
  if (!bin || !fs.existsSync(bin)) {
    log('transfer_engine_bench not found in the wheel: its columns stay empty');
    return null;
  }
  return bin;
}

const mcEnv = (pooled: boolean): NodeJS.ProcessEnv => ({
  ...process.env,
  MC_FORCE_TCP: '1',
  GLOG_minloglevel: '0',
  GLOG_logtostderr: '1',
  ...(pooled ? { MC_TCP_ENABLE_CONNECTION_POOL: '1' } : { MC_TCP_ENABLE_CONNECTION_POOL: '0' }),
});

const children = new Set<ChildProcess>();
function track(c: ChildProcess): ChildProcess {
  children.add(c);
  c.once('exit', () => children.delete(c));
  return c;
}
function killAll(): void {
  for (const c of children) c.kill('SIGTERM');
}
process.on('SIGINT', () => {
  killAll();
  process.exit(130);
});
process.on('SIGTERM', () => {
  killAll();
  process.exit(143);
});

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = (duration + 60) * 1000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const c = track(execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    }));
    c.stdin?.end();
  });
}


// ---------------------------------------------------------------- targets

interface Target {
  segment: string;
  stop(): Promise<void>;
}

function stopper(c: ChildProcess): () => Promise<void> {
  return async () => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
  };
}

async function mooncakeTarget(bin: string, size: number): Promise<Target> {
  const c = track(
    spawn(bin, ['--mode=target', '--protocol=tcp', '--metadata_server=P2PHANDSHAKE', '--local_server_name=127.0.0.1',
      `--block_size=${size}`, `--batch_size=${BATCH}`, '--threads=1', `--buffer_size=${size * BATCH}`], { env: mcEnv(false), stdio: ['ignore', 'ignore', 'pipe'] }),
  );
  let logText = '';
  const segment = await new Promise<string>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no "listening on" from the Mooncake target: ${logText.slice(-500)}`)), 30_000);
    c.stderr!.on('data', (d: Buffer) => {
      logText = (logText + d.toString()).slice(-20_000);
      const m = /listening on (\S+:\d+)/.exec(logText);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    c.once('exit', (code) => reject(new Error(`the Mooncake target exited (${code}): ${logText.slice(-500)}`)));
  });
  await new Promise((r) => setTimeout(r, 1000)); // it registers its buffer right after announcing the port
  return { segment, stop: stopper(c) };
}

async function ourTarget(size: number): Promise<Target> {
  const c = track(
    spawn(process.execPath, [CLI, 'bench', '--mode=target', '--local_segment=127.0.0.1', `--size=${size}`, `--batch=${BATCH}`, '--threads=1', '--json'], {
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
  const first = await createInterface({ input: c.stdout! })[Symbol.asyncIterator]().next();
  const ready = JSON.parse(String(first.value)) as { segment: string };
  return { segment: ready.segment, stop: stopper(c) };
}

// ------------------------------------------------------------ contenders

async function iperf3Run(bin: string, port: number, size: number): Promise<number> {
  // iperf3 writes at most 1 MiB per call (-l); larger blocks are measured with 1 MiB writes.
  const r = await run(bin, ['-c', '127.0.0.1', '-p', String(port), '-t', String(duration), '-l', String(Math.min(size, IPERF3_MAX_LEN)), '-J']);
  const j = JSON.parse(r.stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  const bps = j.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number') throw new Error(`iperf3: ${j.error ?? r.stderr.slice(-300)}`);
  return bps / 8 / 1e9;
}

async function memcpyRun(size: number): Promise<number> {
  const r = await run(process.execPath, [SELF, '--memcpy-child', String(size), String(duration)]);
  return (JSON.parse(r.stdout.trim().split('\n').pop()!) as { GBps: number }).GBps;
}

async function mooncakeRun(bin: string, segment: string, size: number, op: string, pooled: boolean): Promise<number> {
  const r = await run(
    bin,
    ['--mode=initiator', '--protocol=tcp', '--metadata_server=P2PHANDSHAKE', '--local_server_name=127.0.0.1', `--segment_id=${segment}`,
      `--operation=${op}`, `--duration=${duration}`, '--threads=1', `--batch_size=${BATCH}`, `--block_size=${size}`, `--buffer_size=${size * BATCH}`],
    mcEnv(pooled),
  );
  const m = /Test completed: duration ([\d.]+), batch count (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`transfer_engine_bench (${pooled ? 'pooled' : 'default'}) exited ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return (Number(m[2]) * BATCH * size) / Number(m[1]) / 1e9;
}

async function oursRun(segment: string, size: number, op: string): Promise<number> {
  const r = await run(process.execPath, [CLI, 'bench', '--mode=initiator', `--remote_segment=${segment}`, `--workload=${op}`, `--size=${size}`,
    `--batch=${BATCH}`, '--threads=1', `--duration=${duration}`, '--json']);
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let j: { throughput_GBps?: number; failures?: number };
  try {
    j = JSON.parse(last) as typeof j;
  } catch {
    throw new Error(`our bench exited ${r.code}: ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`);
  }
  if (r.code !== 0 || j.failures !== 0 || typeof j.throughput_GBps !== 'number') throw new Error(`our bench exited ${r.code}: ${last}`);
  return j.throughput_GBps;
}

// --------------------------------------------------------------- the run

type Key = 'iperf3' | 'memcpy' | 'mcDefault' | 'mcPooled' | 'ours';
type Series = Record<Key, number[]>;
interface Row {
  size: number;
  op: 'write' | 'read';
  s: Series;
}


const fmt = (x: number, d = 2): string => (Number.isFinite(x) ? (x < 0.1 && d === 2 ? x.toFixed(3) : x.toFixed(d)) : 'n/a');
const cell = (xs: number[]): string => (xs.length ? `${fmt(median(xs))} (${fmt(Math.min(...xs))}-${fmt(Math.max(...xs))})` : 'n/a');
const label = sizeLabel;

async function attempt(what: string, f: () => Promise<number>, into: number[]): Promise<void> {
  try {
    const v = await f();
    into.push(v);
    log(`  ${what}: ${v.toFixed(3)} GB/s`);
  } catch (e) {
    log(`  ${what} FAILED: ${(e as Error).message.split('\n')[0]}`);
  }
}

async function main(): Promise<void> {
  const iperf3 = ensureIperf3();
  const mc = ensureMooncake();
  let iperfServer: ChildProcess | null = null;
  const iperfPort = 5201 + (process.pid % 500);
  if (iperf3) {
    iperfServer = track(spawn(iperf3, ['-s', '-p', String(iperfPort)], { stdio: 'ignore' }));
    await new Promise((r) => setTimeout(r, 500));
  }
  const rows: Row[] = [];
  const loads: number[] = [];
  const started = new Date();
  try {
    for (const size of sizes) {
      loads.push(await waitIdle(maxLoad, idleWait, log));
      log(`block ${label(size)}: starting targets (load ${os.loadavg()[0]!.toFixed(2)})`);
      const mcT = mc ? await mooncakeTarget(mc, size) : null;
      const ourT = await ourTarget(size);
      const series = new Map<string, Series>();
      for (const op of ops) series.set(op, { iperf3: [], memcpy: [], mcDefault: [], mcPooled: [], ours: [] });
      const shared: Pick<Series, 'iperf3' | 'memcpy'> = { iperf3: [], memcpy: [] };
      try {
        // Warm-up, not counted: fault in the targets' memory and the page cache of the binaries.
        const warm: number[] = [];
        for (const op of ops) {
          if (mc && mcT) await attempt(`warm-up Mooncake ${op}`, () => mooncakeRun(mc, mcT.segment, size, op, true), warm);
          await attempt(`warm-up ours ${op}`, () => oursRun(ourT.segment, size, op), warm);
        }
        for (let r = 0; r < rounds; r++) {
          log(`block ${label(size)} round ${r + 1}/${rounds} (load ${os.loadavg()[0]!.toFixed(2)})`);
          const steps: Array<() => Promise<void>> = [];
          if (iperf3) steps.push(() => attempt('iperf3', () => iperf3Run(iperf3, iperfPort, size), shared.iperf3));
          steps.push(() => attempt('memcpy', () => memcpyRun(size), shared.memcpy));
          for (const op of ops) {
            const s = series.get(op)!;
            if (mc && mcT) {
              steps.push(() => attempt(`Mooncake default ${op}`, () => mooncakeRun(mc, mcT.segment, size, op, false), s.mcDefault));
              steps.push(() => attempt(`Mooncake pooled ${op}`, () => mooncakeRun(mc, mcT.segment, size, op, true), s.mcPooled));
            }
            steps.push(() => attempt(`ours ${op}`, () => oursRun(ourT.segment, size, op), s.ours));
          }
          if (r % 2 === 1) steps.reverse(); // A/B/B/A: drift within a round hits both orders
          for (const step of steps) await step();
        }
      } finally {
        await Promise.all([mcT?.stop(), ourT.stop()]);
      }
      for (const op of ops) {
        const s = series.get(op)!;
        s.iperf3 = shared.iperf3;
        s.memcpy = shared.memcpy;
        rows.push({ size, op, s });
      }
    }
  } finally {
    iperfServer?.kill('SIGTERM');
  }
  const out = render(rows, loads, started);
  process.stdout.write(`${out.text}\n`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify(rows, null, 1));
  if (!values['no-update']) {
    updateBenchmarksMd(ROOT, BEGIN, END, '## Side by side: Mooncake, iperf3, memcpy (bench:compare)', out.text, log);
    writeChart({ ...titleFromRunLine(out.runLine), rows: rows.map(({ size, op, s }) => ({ block: size, op, values: spreads(s) })) });
  }
  process.exitCode = out.failed ? 1 : 0;
}

interface Requirement {
  size: number;
  against: 'best' | 'default' | 'iperf3';
  min: number;
}

const REQUIRED: Requirement[] = [
  { size: 4096, against: 'best', min: 3 },
  { size: 65536, against: 'best', min: 1.0 },
  { size: 1 << 20, against: 'best', min: 1.1 },
  { size: 8 << 20, against: 'best', min: 1.1 },
  { size: 4096, against: 'default', min: 10 },
  { size: 65536, against: 'default', min: 2 },
  { size: 1 << 20, against: 'default', min: 1.5 },
  { size: 8 << 20, against: 'default', min: 1.5 },
  { size: 1 << 20, against: 'iperf3', min: 0.6 },
];

function render(rows: Row[], loads: number[], started: Date): { text: string; failed: boolean; runLine: string } {
  const m = (xs: number[]): number => median(xs);
  const lines: string[] = [];
  const cmd = `npm run bench:compare -- --rounds ${rounds} --duration ${duration}`;
  const runLine = `Run ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC: \`${cmd}\` (node ${process.version}, ${os.cpus().length} cores, ` +
    `1-min load before each block size: ${loads.map((l) => l.toFixed(2)).join(', ')}).`;
  lines.push(runLine);
  lines.push('');
  lines.push('| block | op | iperf3 | memcpy (Buffer.copy) | Mooncake default | Mooncake pooled | ours | ours / Mooncake best | ours / Mooncake default | ours / iperf3 |');
  lines.push('|---|---|---|---|---|---|---|---|---|---|');
  const ratio = (a: number, b: number): string => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}x` : 'n/a');
  for (const { size, op, s } of rows) {
    const best = Math.max(m(s.mcDefault), m(s.mcPooled));
    lines.push(
      `| ${label(size)} | ${op} | ${cell(s.iperf3)} | ${cell(s.memcpy)} | ${cell(s.mcDefault)} | ${cell(s.mcPooled)} | ${cell(s.ours)} | ` +
        `${ratio(m(s.ours), best)} | ${ratio(m(s.ours), m(s.mcDefault))} | ${ratio(m(s.ours), m(s.iperf3))} |`,
    );
  }
  lines.push('');
  lines.push(`GB/s (decimal), median of ${rounds} rounds of ${duration} s per contender with (min-max); TCP on loopback, P2PHANDSHAKE, ` +
    `batch ${BATCH}, 1 thread, block x ${BATCH} bytes registered on each side. "Mooncake best" is the better of its two medians. ` +
    'iperf3: one stream, `-l` = the block (at most 1 MiB, its limit), one reused buffer on each side; memcpy: Buffer.copy of ' +
    'blocks walking two 512 MiB regions in one process.');
  lines.push('');
  lines.push('Required (issue #6), each for write and read:');
  lines.push('');
  let failed = false;
  for (const req of REQUIRED) {
    for (const op of ops) {
      const row = rows.find((r) => r.size === req.size && r.op === op);
      if (!row) continue;
      const s = row.s;
      const base = req.against === 'best' ? Math.max(m(s.mcDefault), m(s.mcPooled)) : req.against === 'default' ? m(s.mcDefault) : m(s.iperf3);
      const got = m(s.ours) / base;
      const ok = Number.isFinite(got) && got >= req.min;
      if (!ok) failed = true;
      const vs = req.against === 'best' ? "Mooncake's best mode" : req.against === 'default' ? "Mooncake's default mode" : 'iperf3';
      lines.push(`- ${label(req.size)} ${op}, ours vs ${vs} >= ${req.min}x: ${Number.isFinite(got) ? got.toFixed(2) : 'n/a'}x ${ok ? 'PASS' : 'FAIL'}`);
    }
  }
  return { text: lines.join('\n'), failed, runLine };
}

// ------------------------------------------------------------------ chart

const spread = (xs: number[]): Spread | null => (xs.length ? { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) } : null);
const spreads = (s: Series): Record<Key, Spread | null> => ({
  iperf3: spread(s.iperf3),
  memcpy: spread(s.memcpy),
  mcDefault: spread(s.mcDefault),
  mcPooled: spread(s.mcPooled),
  ours: spread(s.ours),
});

function writeChart(input: CompareChartInput): void {
  fs.writeFileSync(CHART, renderCompareChart(input));
  log(`chart written (${path.relative(process.cwd(), CHART)})`);
}

/** --chart-only: the chart of the run recorded in BENCHMARKS.md, nothing measured. */
function chartOnly(): void {
  try {
    writeChart(parseCompareTable(fs.readFileSync(path.join(ROOT, 'BENCHMARKS.md'), 'utf8')));
  } catch (e) {
    log(`--chart-only: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}


if (values['chart-only']) chartOnly();
else await main();
