/**
 * `transfer-engine store-bench` (src/cli/store-bench.ts) as a real process
 * (dist/src/cli/main.js) against the real mooncake_master and Python store
 * clients of the pinned wheel (test/store-harness): a Node prefill read by a
 * Python client, a Python prefill (benchmarks/store/stress_cluster_benchmark.py,
 * Mooncake's script without numpy/tqdm) read and verified by a Node decode,
 * two workers each way, usage errors and an unreachable master.
 *
 * A prefill's values live in its own segment (it is the only one mounted when
 * it puts), which goes when its store closes: the prefill runs with a long
 * --wait-time, the decode runs once it says it is done, then it is stopped.
 * Each test has its own master: keys are key0.. in every run.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseFlags } from '../src/cli/args.js';
import { requestsPerWorker, resolveStoreBenchOptions, STORE_BENCH_FLAGS } from '../src/cli/store-bench.js';
import { formatBytes, quantile } from '../src/cli/store-bench/stats.js';
import { ensureInteropEnv, mooncakeEnv, PYTHON, ROOT } from './interop/mooncake.js';
import { MooncakeMaster, killOnExit, stopChild } from './store-harness/master.js';
import { PythonStore } from './store-harness/python-store.js';
import { freePort } from './servers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const STRESS_PY = path.join(ROOT, 'benchmarks', 'store', 'stress_cluster_benchmark.py');
const KiB = 1024;
const ENV = mooncakeEnv({ MC_TCP_BIND_ADDRESS: '127.0.0.1' });

type Json = Record<string, unknown>;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A process whose output is collected; `line(pred)` waits for a line of stdout (or stderr) matching. */
class Proc {
  stdout = '';
  stderr = '';
  readonly done: Promise<Run>;
  private readonly waiters: Array<{ pred: (l: string) => boolean; stream: 'stdout' | 'stderr'; resolve: (l: string) => void }> = [];

  constructor(readonly child: ChildProcess) {
    killOnExit(child);
    for (const stream of ['stdout', 'stderr'] as const) {
      createInterface({ input: child[stream]! }).on('line', (l) => {
        this[stream] += `${l}\n`;
        for (const w of [...this.waiters]) {
          if (w.stream === stream && w.pred(l)) {
            this.waiters.splice(this.waiters.indexOf(w), 1);
            w.resolve(l);
          }
        }
      });
    }
    this.done = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr })));
  }

  line(pred: (l: string) => boolean, stream: 'stdout' | 'stderr' = 'stdout', timeoutMs = 20_000): Promise<string> {
    const seen = this[stream].split('\n').find(pred);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no such line within ${timeoutMs} ms; stdout:\n${this.stdout}\nstderr:\n${this.stderr.slice(-3000)}`)), timeoutMs);
      this.done.then((r) => {
        clearTimeout(t);
        reject(new Error(`exited (${r.signal ?? r.code}) before the line; stdout:\n${r.stdout}\nstderr:\n${r.stderr.slice(-3000)}`));
      }, reject);
      this.waiters.push({
        pred,
        stream,
        resolve: (l) => {
          clearTimeout(t);
          resolve(l);
        },
      });
    });
  }
}

function storeBench(args: string[]): Proc {
  return new Proc(spawn(process.execPath, [MAIN, 'store-bench', ...args], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] }));
}

async function runToEnd(args: string[], timeoutMs = 30_000): Promise<Run> {
  const p = storeBench(args);
  const t = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  const r = await p.done;
  clearTimeout(t);
  return r;
}

function jsonLines(stdout: string): Json[] {
  return stdout
    .trim()
    .split('\n')
    .filter((l) => l.length > 0)
    .map((l) => JSON.parse(l) as Json);
}

const isEvent = (name: string) => (l: string): boolean => {
  try {
    return (JSON.parse(l) as Json)['event'] === name;
  } catch {
    return false;
  }
};

/** What a get of key{n} must return: value-length bytes of n % 256. */
function valueDigest(n: number, length: number): { length: number; sha: string } {
  return { length, sha: createHash('sha256').update(Buffer.alloc(length, n % 256)).digest('hex') };
}

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING store-bench runs against mooncake_master: ${skip} ***\n`);

// ------------------------------------------------------------ no master needed

test('store-bench usage errors exit 2 with one clear stderr line (Mooncake\'s dashed flag names)', async () => {
  const cases: Array<[string[], RegExp]> = [
    [[], /--role is required/],
    [['--role=encode'], /--role=encode: expected one of prefill, decode/],
    [['--role=prefill', '--max-requests=abc'], /--max-requests=abc: not an integer/],
    [['--role=prefill', '--value-length', '1.5'], /--value-length=1.5: not an integer/],
    [['--role=prefill', '--batch-size=0'], /--batch-size=0: must be at least 1/],
    [['--role=prefill', '--wait-time=-1'], /--wait-time=-1: must be 0 or more seconds/],
    [['--role=prefill', '--frobnicate'], /unknown flag --frobnicate/],
    [['--role=prefill', '--max-requets=3'], /unknown flag --max-requets \(did you mean --max-requests\?\)/],
    [['--role=prefill', '--protocol', 'rdma'], /--protocol=rdma: not supported on this host/],
    [['--role=prefill', '--protocol=carrier-pigeon'], /--protocol=carrier-pigeon: not supported on this host/],
    [['--role=prefill', '--verify'], /--verify checks what a decode reads/],
    [['--role=decode', '--num-workers=3', '--max-requests=2'], /--num-workers=3 is more than --max-requests=2/],
    [['--role=decode', '--master-server=localhost'], /--master-server=localhost: expected HOST:PORT/],
    [['--role=decode', '--metadata-server=ftp://x'], /--metadata-server=ftp:\/\/x: .*scheme/],
    [['--role=decode', 'extra'], /unexpected argument "extra"/],
  ];
  await Promise.all(
    cases.map(async ([args, pattern]) => {
      const r = await runToEnd(args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, pattern, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
      assert.match(r.stderr, /^transfer-engine store-bench: /);
      assert.equal(r.stdout, '');
    }),
  );
  const help = await runToEnd(['--help']);
  assert.equal(help.code, 0);
  for (const flag of ['--role', '--protocol', '--device-name', '--local-hostname', '--metadata-server', '--master-server', '--global-segment-size',
    '--local-buffer-size', '--max-requests', '--value-length', '--batch-size', '--wait-time', '--num-workers', '--detailed-stats', '--json', '--verify']) {
    assert.ok(help.stdout.includes(flag), flag);
  }
  assert.match(help.stdout, /concurrent async loops in this one\s+process, each with its own store/);
});

test("store-bench options: Mooncake's defaults (but tcp), underscores or dashes, and its split of requests over workers", () => {
  const o = resolveStoreBenchOptions(parseFlags(['--role=prefill'], STORE_BENCH_FLAGS));
  assert.deepEqual(o, {
    role: 'prefill', protocol: 'tcp', deviceName: 'erdma_0', localHostname: 'localhost', metadataServer: 'http://127.0.0.1:8080/metadata',
    masterServer: 'localhost:50051', globalSegmentSize: 10000 * 1024 * 1024, localBufferSize: 512 * 1024 * 1024, maxRequests: 1200,
    valueLength: 4 * 1024 * 1024, batchSize: 1, waitTimeS: 20, numWorkers: 1, detailedStats: false, json: false, verify: false, files: null,
  });
  const d = resolveStoreBenchOptions(parseFlags(['--role', 'decode', '--max_requests=10', '--batch-size', '4', '--verify', '--protocol=TCP'], STORE_BENCH_FLAGS));
  assert.deepEqual([d.role, d.maxRequests, d.batchSize, d.verify, d.protocol], ['decode', 10, 4, true, 'tcp']);
  assert.deepEqual(requestsPerWorker(1200, 1), [1200]);
  assert.deepEqual(requestsPerWorker(65, 2), [33, 32]);
  assert.deepEqual(requestsPerWorker(10, 4), [3, 3, 2, 2]);
});

test("store-bench statistics: Python's statistics.quantiles and Mooncake's format_bytes", { skip: skip ?? false }, async () => {
  const data = Array.from({ length: 1234 }, (_, i) => ((i * 7919) % 1000) / 7 + (i % 3) * 0.01);
  const py = spawn(PYTHON, ['-c', 'import json,statistics,sys; d=json.load(sys.stdin); print(json.dumps([statistics.quantiles(d, n=n)[n-2] for n in (10, 100, 1000)]))'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  py.stdin.end(JSON.stringify(data));
  let out = '';
  py.stdout.on('data', (b: Buffer) => (out += b.toString()));
  await new Promise((r) => py.once('close', r));
  const want = JSON.parse(out) as number[];
  const got = [10, 100, 1000].map((n) => quantile(data, n, n - 1));
  got.forEach((g, i) => assert.ok(Math.abs(g - want[i]!) < 1e-9, `${g} vs ${want[i]}`));
  for (const [n, s] of [[0, '0B'], [1000, '1000.0 B'], [1024, '1.0 KB'], [65536 * 64, '4.0 MB'], [1536 * 1024 * 1024, '1.5 GB'], [123456789, '117.74 MB']] as const) {
    assert.equal(formatBytes(n), s);
  }
});

// ------------------------------------------------------------ against mooncake_master

describe('store-bench against the real mooncake_master', { skip: skip ?? false }, () => {
  let master: MooncakeMaster;

  before(async () => {
    master = await MooncakeMaster.start();
  });

  after(async () => {
    await master?.stop();
  });

  /** Keys are key0.. in every run: a new master per test, so no run sees another's values. */
  async function freshMaster(): Promise<MooncakeMaster> {
    await master.stop();
    master = await MooncakeMaster.start();
    return master;
  }

  const common = (m: MooncakeMaster, extra: string[] = []): string[] => [
    `--master-server=${m.address}`, `--metadata-server=${m.metadataUrl}`, '--local-hostname=127.0.0.1', '--local-buffer-size=4', ...extra,
  ];

  test('a Node prefill, kept alive by --wait-time, is read by a Python client: key{N} holds N % 256', async () => {
    const m = await freshMaster();
    const args = common(m, ['--max-requests=64', '--value-length=65536', '--batch-size=8', '--global-segment-size=64', '--json']);
    const prefill = storeBench(['--role=prefill', ...args, '--wait-time=60']);
    let py: PythonStore | null = null;
    try {
      const done = JSON.parse(await prefill.line(isEvent('prefill_done'))) as Json;
      assert.deepEqual([done['succeeded'], done['failed'], done['wait_time_s']], [64, 0, 60]);
      const ready = jsonLines(prefill.stdout)[0]!;
      assert.equal(ready['event'], 'ready');
      assert.equal((ready['segments'] as string[]).length, 1);

      py = await PythonStore.start({ master: m.address, metadata: m.metadataUrl, globalSegmentSize: 0 });
      const keys = Array.from({ length: 64 }, (_, n) => `key${n}`);
      const got = await py.batchGetInto(keys, keys.map(() => 64 * KiB));
      assert.deepEqual(got.rcs, keys.map(() => 64 * KiB));
      assert.deepEqual(got.values, keys.map((_, n) => valueDigest(n, 64 * KiB)));
      assert.deepEqual(await py.get('key255'), { length: 0, sha: createHash('sha256').update(Buffer.alloc(0)).digest('hex') }, 'only 64 keys');
      assert.deepEqual(await py.get('key63'), valueDigest(63, 64 * KiB));

      // SIGTERM ends the wait: a complete run, exit 0, the result last; the segment (and the values) go.
      prefill.child.kill('SIGTERM');
      const r = await prefill.done;
      assert.equal(r.code, 0, r.stderr);
      const lines = jsonLines(r.stdout);
      assert.deepEqual(lines.map((l) => l['event'] ?? 'result'), ['ready', 'prefill_done', 'result']);
      const res = lines.at(-1)!;
      for (const [k, v] of Object.entries({ role: 'prefill', total_operations: 64, succeeded_operations: 64, failed_operations: 0, batches: 8, total_bytes: 64 * 64 * KiB, interrupted: false, verify: 'off' })) {
        assert.deepEqual(res[k], v, k);
      }
      for (const k of ['wall_time_seconds', 'total_time_seconds', 'phase_wall_time_seconds', 'mean_latency_ms', 'p90_latency_ms', 'p99_latency_ms', 'p999_latency_ms', 'throughput_mbps', 'wall_throughput_mbps', 'phase_wall_throughput_mbps']) {
        assert.ok(typeof res[k] === 'number' && (res[k] as number) > 0, `${k}: ${String(res[k])}`);
      }
      assert.ok((res['wall_time_seconds'] as number) >= 1, 'the wall time includes setup and its 1 s settle, as Mooncake\'s');
      assert.deepEqual(res['error_codes'], {});
      // The text report goes to stderr with --json, as Mooncake's report block.
      assert.match(r.stderr, /=== PREFILL PERFORMANCE STATISTICS ===\nTotal operations: 64\n {2}Succeeded: 64 \(100\.00%\)\n {2}Failed: {4}0\nTotal data transferred: 4\.0 MB\n/);
      assert.match(r.stderr, /P999 latency: [\d.]+ ms\nThroughput metrics:\n {2}Operations\/sec \(operation time\): [\d.]+\n/);
      assert.match(r.stderr, /SIGTERM: ending the wait/);
      assert.deepEqual(await py.batchIsExist(keys.slice(0, 4)), [0, 0, 0, 0], 'the prefill unmounted its segment: its values are gone');
    } finally {
      await stopChild(prefill.child, 'SIGKILL');
      await py?.stop();
    }
  });

  test("a Python prefill (Mooncake's script) is read and verified by a Node decode; a missing key fails with -704", async () => {
    const m = await freshMaster();
    const flags = ['--max-requests=40', '--value-length=100000', '--batch-size=6', '--global-segment-size=64', '--local-buffer-size=4', '--local-hostname=127.0.0.1'];
    const python = new Proc(
      spawn(PYTHON, [STRESS_PY, '--role=prefill', '--protocol=tcp', `--master-server=${m.address}`, `--metadata-server=${m.metadataUrl}`, ...flags, '--wait-time=60', '--json'], {
        env: ENV,
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    try {
      await python.line((l) => l.includes('Prefill phase completed. Failed operations: 0'), 'stderr', 30_000);
      const r = await runToEnd(['--role=decode', ...common(m, ['--max-requests=40', '--value-length=100000', '--batch-size=6', '--global-segment-size=0', '--wait-time=0', '--verify', '--json'])]);
      assert.equal(r.code, 0, r.stderr);
      const lines = jsonLines(r.stdout);
      assert.deepEqual(lines.map((l) => l['event'] ?? 'result'), ['ready', 'decode_done', 'result']);
      const res = lines.at(-1)!;
      for (const [k, v] of Object.entries({ role: 'decode', total_operations: 40, succeeded_operations: 40, failed_operations: 0, batches: 7, total_bytes: 4_000_000, verify: 'passed', verified_values: 40, verify_mismatches: 0 })) {
        assert.deepEqual(res[k], v, k);
      }
      assert.match(r.stderr, /Verify: passed \(40 values checked, 0 wrong\)/);

      // One key more than the prefill put: key40 is missing (-704 OBJECT_NOT_FOUND), exit 1, verify incomplete.
      const more = await runToEnd(['--role=decode', ...common(m, ['--max-requests=41', '--value-length=100000', '--batch-size=6', '--global-segment-size=0', '--wait-time=0', '--verify'])]);
      assert.equal(more.code, 1, more.stderr);
      assert.match(more.stdout, /Total operations: 41\n {2}Succeeded: 40 \(97\.56%\)\n {2}Failed: {4}1\n/);
      assert.match(more.stdout, /key40: error_code=-704 \(OBJECT_NOT_FOUND\)/);
      assert.match(more.stdout, /Error codes encountered:\n {2}Code -704: 1 times\n/);
      assert.match(more.stdout, /Verify: incomplete \(40 values checked, 0 wrong; 1 gets failed/);
      assert.match(more.stdout, /Test FAILED: 40 of 41 gets succeeded/);

      // A value longer than the buffer (--value-length smaller than what was put): the store refuses it (-600).
      const short = await runToEnd(['--role=decode', ...common(m, ['--max-requests=2', '--value-length=99999', '--global-segment-size=0', '--wait-time=0', '--verify', '--json'])]);
      assert.equal(short.code, 1);
      assert.deepEqual(jsonLines(short.stdout).at(-1)!['error_codes'], { '-600': 2 });
    } finally {
      // SIGINT ends the script's wait (KeyboardInterrupt); SIGKILL if it does not.
      await stopChild(python.child, 'SIGINT', 5000);
    }
  });

  test('two workers each way, every worker on key0.. as Mooncake\'s script: Node prefill, Node decode --verify, Python reads them too', async () => {
    const m = await freshMaster();
    // 65 keys over 2 workers: worker 1 key0..key32, worker 2 key0..key31.
    const args = common(m, ['--max-requests=65', '--value-length=40000', '--batch-size=4', '--num-workers=2']);
    const prefill = storeBench(['--role=prefill', ...args, '--global-segment-size=32', '--wait-time=60', '--json', '--detailed-stats']);
    try {
      await prefill.line(isEvent('prefill_done'));
      const r = await runToEnd(['--role=decode', ...args, '--global-segment-size=0', '--wait-time=0', '--verify']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /Number of workers: 2 \(concurrent async loops in this process, each with its own store\)/);
      assert.equal(r.stdout.match(/=== DECODE PERFORMANCE STATISTICS ===/g)?.length, 2, 'a report per worker as its loop ends');
      assert.match(r.stdout, /=== COMBINED PERFORMANCE PERFORMANCE STATISTICS ===\nTotal operations: 65\n {2}Succeeded: 65 \(100\.00%\)\n/);
      assert.match(r.stdout, /Verify: passed \(65 values checked, 0 wrong\)/);
      assert.match(r.stdout, /Precise wall time measurement: [\d.]+ seconds/);
      assert.match(r.stdout, /Test completed successfully: 65 of 65 gets succeeded, verify passed/);

      const py = await PythonStore.start({ master: m.address, metadata: m.metadataUrl, globalSegmentSize: 0 });
      try {
        assert.deepEqual(await py.batchIsExist(['key31', 'key32', 'key33']), [1, 1, 0]);
        assert.deepEqual(await py.get('key32'), valueDigest(32, 40000));
      } finally {
        await py.stop();
      }

      prefill.child.kill('SIGINT');
      const p = await prefill.done;
      assert.equal(p.code, 0, p.stderr);
      const res = jsonLines(p.stdout).at(-1)!;
      assert.equal(res['total_operations'], 65);
      assert.equal(res['failed_operations'], 0);
      const workers = res['workers'] as Json[];
      assert.deepEqual(workers.map((w) => [w['requests'], w['total_operations']]), [[33, 33], [32, 32]]);
      assert.notEqual(workers[0]!['segment'], workers[1]!['segment'], 'a store per worker');
      assert.match(p.stderr, /=== Worker 1 prefill PERFORMANCE STATISTICS ===/, '--detailed-stats');
    } finally {
      await stopChild(prefill.child, 'SIGKILL');
    }
  });

  test('an unreachable master or metadata server: a clear message, exit 1 (the JSON result says why)', async () => {
    const port = await freePort();
    const r = await runToEnd(['--role=prefill', `--master-server=127.0.0.1:${port}`, '--local-hostname=127.0.0.1', '--global-segment-size=16', '--max-requests=1', '--json']);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`transfer-engine store-bench: worker 1: store setup failed with return code -\\d+ \\(RPC_\\w+\\): .*127\\.0\\.0\\.1:${port}`));
    const res = jsonLines(r.stdout).at(-1)!;
    assert.match(String(res['error']), /store setup failed/);
    assert.equal(res['total_operations'], 0);

    const meta = await runToEnd(['--role=prefill', `--master-server=${master.address}`, `--metadata-server=http://127.0.0.1:${port}/metadata`, '--local-hostname=127.0.0.1', '--global-segment-size=16', '--max-requests=1']);
    assert.equal(meta.code, 1, meta.stderr);
    assert.match(meta.stderr, /worker 1: store setup failed with return code -\d+/);
  });
});

// ------------------------------------------------------------ against our master: the README's whole store

describe('store-bench against our master (transfer-engine master), with --files', { skip: skip ?? false }, () => {
  let master: MooncakeMaster;
  let dir = '';

  before(async () => {
    master = await MooncakeMaster.start({ kind: 'ours' });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-store-bench-files-'));
  });

  after(async () => {
    await master?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('a prefill on two files (the setup_with_files form, two workers) is read back and verified by a decode and by Python', async () => {
    const files = ['f0.bin', 'f1.bin'].map((n) => {
      const f = path.join(dir, n);
      fs.writeFileSync(f, '');
      fs.truncateSync(f, 8 << 20);
      return f;
    });
    const common = [`--master-server=${master.address}`, `--metadata-server=${master.metadataUrl}`, '--local-hostname=127.0.0.1', '--local-buffer-size=4'];
    const work = ['--max-requests=48', '--value-length=100000', '--batch-size=4', '--num-workers=2'];
    const prefill = storeBench(['--role=prefill', ...common, ...work, `--files=${files.join(' ')}`, '--wait-time=60', '--json']);
    try {
      await prefill.line(isEvent('prefill_done'));
      const r = await runToEnd(['--role=decode', ...common, ...work, '--global-segment-size=0', '--wait-time=0', '--verify']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /Verify: passed \(48 values checked, 0 wrong\)/);
      // The values are in the files themselves.
      const contents = files.map((f) => fs.readFileSync(f));
      assert.ok(contents.every((c) => c.some((b) => b !== 0)), 'both files hold values');
      const py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 0 });
      try {
        assert.deepEqual(await py.get('key23'), valueDigest(23, 100000));
      } finally {
        await py.stop();
      }
      prefill.child.kill('SIGTERM');
      assert.equal((await prefill.done).code, 0);
    } finally {
      await stopChild(prefill.child, 'SIGKILL');
    }
  });

  test('--files is refused when there are more workers than files, or a file is named twice', async () => {
    const a = await runToEnd(['--role=prefill', '--files=/tmp/a.bin', '--num-workers=2', '--max-requests=4']);
    assert.equal(a.code, 2);
    assert.match(a.stderr, /--num-workers=2 is more than the 1 file\(s\) of --files/);
    const b = await runToEnd(['--role=prefill', '--files=/tmp/a.bin /tmp/a.bin']);
    assert.equal(b.code, 2);
    assert.match(b.stderr, /a file is named twice/);
  });
});
