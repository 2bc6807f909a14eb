/**
 * `npm run bench:store`: our store client against Mooncake's Python client,
 * both running Mooncake's store stress benchmark (stress_cluster_benchmark.py:
 * ours is `transfer-engine store-bench`, theirs the numpy-free copy in
 * benchmarks/store/stress_cluster_benchmark.py) against ONE mooncake_master of
 * the pinned wheel, on loopback, for each value length: a prefill
 * (batch_put_from) then a decode (batch_get_into) of the same keys, Node and
 * Python alternating round by round (N P, P N, ...) so drift hits both alike.
 * The table has the median of the rounds with the spread (min-max), and the
 * Node/Python ratio per size and op; it checks issue 17's requirement (Node
 * >= 1.0x Python for puts and gets at 1 MiB and above) and refreshes the table
 * in BENCHMARKS.md between its markers.
 *
 *   node dist/benchmarks/store-compare.js [--rounds 5] [--sizes 4096,65536,1048576,4194304] [--batch 8]
 *     [--volume 512] [--max-requests 4096] [--max-load 0.8] [--idle-wait 600] [--no-update] [--json FILE]
 *
 * Where the values live: a third client of the pinned wheel (a Python
 * MooncakeDistributedStore, test/store-harness) mounts the only segment; the
 * benchmark roles mount none (--global-segment-size 0). So every byte of every
 * put and get crosses TCP to the same Mooncake server for both clients, the
 * prefill's values outlive it (no --wait-time needed), and neither client gets
 * a local copy into its own segment (Mooncake's script sets MC_STORE_MEMCPY=0;
 * ours would copy locally). The holder is emptied (remove_all) after each decode.
 *
 * Throughput is MB/s (MiB/s, Mooncake's unit) over the phase's wall time: first
 * batch to last, the prefill's buffer fills included. Mooncake's own "wall time"
 * also counts setup and a 1 s settle, which would swamp short phases; its
 * operation-time figure (the sum of the batch calls) is in the JSON.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { ensureInteropEnv, mooncakeEnv, PYTHON } from '../test/interop/mooncake.js';
import { MooncakeMaster } from '../test/store-harness/master.js';
import { PythonStore } from '../test/store-harness/python-store.js';
import { median, sizeLabel, updateBenchmarksMd, waitIdle } from './lib.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..'); // dist/benchmarks -> repo root
const CLI = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const STRESS_PY = path.join(ROOT, 'benchmarks', 'store', 'stress_cluster_benchmark.py');
const MiB = 1024 * 1024;
const BEGIN = '<!-- bench:store:begin -->';
const END = '<!-- bench:store:end -->';
const SECTION = '## Store: Node client against Python client (issue 17)';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    sizes: { type: 'string', default: '4096,65536,1048576,4194304' },
    batch: { type: 'string', default: '8' },
    volume: { type: 'string', default: '512' },
    'max-requests': { type: 'string', default: '4096' },
    'max-load': { type: 'string', default: '0.8' },
    'idle-wait': { type: 'string', default: '600' },
    'no-update': { type: 'boolean', default: false },
    json: { type: 'string' },
  },
});
const rounds = Number(values.rounds);
const sizes = values.sizes!.split(',').map(Number);
const batch = Number(values.batch);
const volumeMiB = Number(values.volume);
const maxRequests = Number(values['max-requests']);
const maxLoad = Number(values['max-load']);
const idleWait = Number(values['idle-wait']);

type Client = 'node' | 'python';
type Op = 'put' | 'get';
const ROLE: Record<Op, 'prefill' | 'decode'> = { put: 'prefill', get: 'decode' };

function log(msg: string): void {
  process.stderr.write(`[store-compare] ${msg}\n`);
}

/** Keys per phase: --volume MiB of values, at most --max-requests keys, at least one batch. */
function requestsFor(size: number): number {
  return Math.max(batch, Math.min(maxRequests, Math.floor((volumeMiB * MiB) / size)));
}


/** What one role run reports (Mooncake's statistics keys; both sides print them). */
interface Stats {
  phase_wall_throughput_mbps: number;
  throughput_mbps: number;
  wall_throughput_mbps: number;
  mean_latency_ms: number;
  p99_latency_ms: number;
  total_bytes: number;
  failed_operations: number;
}

const ENV = mooncakeEnv({ MC_TCP_BIND_ADDRESS: '127.0.0.1' });

function runRole(client: Client, op: Op, master: MooncakeMaster, size: number, requests: number, verify = false): Promise<Stats> {
  const flags = [
    `--role=${ROLE[op]}`, `--master-server=${master.address}`, `--metadata-server=${master.metadataUrl}`, '--local-hostname=127.0.0.1',
    '--global-segment-size=0', '--local-buffer-size=16', `--max-requests=${requests}`, `--value-length=${size}`, `--batch-size=${batch}`,
    '--wait-time=0', '--json',
  ];
  const [cmd, args] =
    client === 'node'
      ? [process.execPath, [CLI, 'store-bench', ...flags, ...(verify ? ['--verify'] : [])]]
      : [PYTHON, [STRESS_PY, '--protocol=tcp', ...flags]];
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { env: ENV, timeout: 300_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const last = stdout.trim().split('\n').pop() ?? '';
      let s: Stats & { error?: string };
      try {
        s = JSON.parse(last) as typeof s;
      } catch {
        reject(new Error(`${client} ${ROLE[op]} exited ${err ? String(err.code ?? err.signal) : 0}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`));
        return;
      }
      const bytes = requests * size;
      if (err || s.error !== undefined || s.failed_operations !== 0 || s.total_bytes !== bytes) {
        reject(new Error(`${client} ${ROLE[op]}: exit ${err ? String(err.code) : 0}, ${s.error ?? `${s.failed_operations} failed, ${s.total_bytes} of ${bytes} bytes`}`));
        return;
      }
      resolve(s);
    });
  });
}

type Series = Record<Client, Stats[]>;
interface Row {
  size: number;
  requests: number;
  op: Op;
  s: Series;
}


const label = sizeLabel;

async function main(): Promise<void> {
  const skip = ensureInteropEnv();
  if (skip) throw new Error(skip);
  const started = new Date();
  const loads: number[] = [];
  const rows: Row[] = [];
  const biggest = Math.max(...sizes.map((s) => requestsFor(s) * s));
  const holderBytes = Math.max(1024 * MiB, 2 * biggest);
  const master = await MooncakeMaster.start();
  let holder: PythonStore | null = null;
  try {
    holder = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: holderBytes, localBufferSize: 16 * MiB });
    log(`mooncake_master on ${master.address}; the values live in a Python client's segment of ${holderBytes / MiB} MiB (${holder.hostname})`);
    const h = holder;
    const clear = async (want: number): Promise<void> => {
      const n = await h.removeAll(true);
      if (n !== want) throw new Error(`remove_all removed ${n} objects, not ${want}: the store was not what the round left`);
    };
    for (const size of sizes) {
      const requests = requestsFor(size);
      loads.push(await waitIdle(maxLoad, idleWait, log));
      log(`${label(size)} x ${requests} keys, batch ${batch} (load ${os.loadavg()[0]!.toFixed(2)})`);
      // Warm-up, not counted: each decodes the other's prefill (Node verifies every byte), which also faults in the holder's pages.
      await runRole('python', 'put', master, size, requests);
      await runRole('node', 'get', master, size, requests, true);
      await clear(requests);
      await runRole('node', 'put', master, size, requests);
      await runRole('python', 'get', master, size, requests);
      await clear(requests);
      const put: Series = { node: [], python: [] };
      const get: Series = { node: [], python: [] };
      for (let r = 0; r < rounds; r++) {
        const order: Client[] = r % 2 === 0 ? ['node', 'python'] : ['python', 'node'];
        for (const c of order) {
          try {
            const p = await runRole(c, 'put', master, size, requests);
            const g = await runRole(c, 'get', master, size, requests);
            put[c].push(p);
            get[c].push(g);
            log(`  round ${r + 1}/${rounds} ${c}: put ${p.phase_wall_throughput_mbps.toFixed(0)} MB/s, get ${g.phase_wall_throughput_mbps.toFixed(0)} MB/s`);
          } catch (e) {
            log(`  round ${r + 1}/${rounds} ${c} FAILED: ${(e as Error).message.split('\n')[0]}`);
          } finally {
            await h.removeAll(true);
          }
        }
      }
      rows.push({ size, requests, op: 'put', s: put }, { size, requests, op: 'get', s: get });
    }
  } finally {
    await holder?.stop();
    await master.stop();
  }
  const out = render(rows, loads, started);
  process.stdout.write(`${out.text}\n`);
  if (values.json) fs.writeFileSync(values.json, JSON.stringify(rows, null, 1));
  if (!values['no-update']) updateBenchmarksMd(ROOT, BEGIN, END, SECTION, out.text, log);
  process.exitCode = out.failed ? 1 : 0;
}

function render(rows: Row[], loads: number[], started: Date): { text: string; failed: boolean } {
  const pick = (xs: Stats[], k: keyof Stats): number[] => xs.map((x) => x[k]);
  const fmt = (x: number, d = 0): string => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const cell = (xs: number[], d = 0): string => (xs.length ? `${fmt(median(xs), d)} (${fmt(Math.min(...xs), d)}-${fmt(Math.max(...xs), d)})` : 'n/a');
  const ratio = (a: number, b: number): number => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
  const lines: string[] = [];
  const cmd = `npm run bench:store -- --rounds ${rounds} --batch ${batch} --volume ${volumeMiB} --max-requests ${maxRequests}`;
  lines.push(
    `Run ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC: \`${cmd}\` (node ${process.version}, ${os.cpus().length} cores, ` +
      `1-min load before each value length: ${loads.map((l) => l.toFixed(2)).join(', ')}).`,
  );
  lines.push('');
  lines.push('| value | keys | op | Node MB/s | Python MB/s | Node / Python | Node / Python, op time | mean batch ms, Node | mean batch ms, Python |');
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (const { size, requests, op, s } of rows) {
    const n = pick(s.node, 'phase_wall_throughput_mbps');
    const p = pick(s.python, 'phase_wall_throughput_mbps');
    const opTime = ratio(median(pick(s.node, 'throughput_mbps')), median(pick(s.python, 'throughput_mbps')));
    lines.push(
      `| ${label(size)} | ${requests} | ${op} | ${cell(n)} | ${cell(p)} | ${fmt(ratio(median(n), median(p)), 2)}x | ${fmt(opTime, 2)}x | ` +
        `${cell(pick(s.node, 'mean_latency_ms'), 2)} | ${cell(pick(s.python, 'mean_latency_ms'), 2)} |`,
    );
  }
  lines.push('');
  lines.push(
    `MB/s = MiB/s over each phase's wall time (first batch to last), median of ${rounds} rounds with (min-max); each round runs ` +
      `a prefill (batch_put_from) then a decode (batch_get_into) of the same keys per client, in the order Node, Python then Python, Node. ` +
      `Batch ${batch}; keys ${volumeMiB} MiB of values, at most ${maxRequests}; --global-segment-size 0 for both, the values in one ` +
      `Python client's segment (Mooncake's server side for both). "op time": the sum of the batch calls only, as Mooncake's script's ` +
      `"Throughput (operation time)". Mean batch latency per batch call.`,
  );
  lines.push('');
  lines.push('Required (issue 17): Node >= 1.0x Python for puts and gets at 1 MiB and above.');
  lines.push('');
  let failed = false;
  for (const { size, op, s } of rows) {
    if (size < MiB) continue;
    const r = ratio(median(pick(s.node, 'phase_wall_throughput_mbps')), median(pick(s.python, 'phase_wall_throughput_mbps')));
    const ok = Number.isFinite(r) && r >= 1.0;
    if (!ok) failed = true;
    lines.push(`- ${label(size)} ${op}: ${fmt(r, 2)}x ${ok ? 'PASS' : 'FAIL'}`);
  }
  return { text: lines.join('\n'), failed };
}


await main();
