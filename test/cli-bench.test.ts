/** The `transfer-engine` CLI: flag parsing, and `bench` run as a real process (dist/src/cli/main.js). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { parseFlags, parseSize, UsageError } from '../src/cli/args.js';
import { BENCH_FLAGS, resolveOptions } from '../src/cli/bench/options.js';
import { LatencyHistogram } from '../src/cli/bench/histogram.js';
import { describeStop, integrityVerdict } from '../src/cli/bench/initiator.js';
import type { ThreadResult } from '../src/cli/bench/thread.js';
import { nativeAvailable } from '../src/native/addon.js';
import { counterSum, runCli, scrapeWhile, type CliRun } from './helpers.js';
import { freePort } from './servers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

type RunResult = CliRun;

function cli(args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return runCli(args, { timeoutMs });
}

type Json = Record<string, unknown>;

function lastJsonLine(stdout: string): Json {
  const lines = stdout.trim().split('\n');
  return JSON.parse(lines[lines.length - 1]!) as Json;
}

const REQUIRED_KEYS = [
  'workload', 'protocol', 'size', 'batch', 'threads', 'duration_s', 'bytes', 'throughput_GBps', 'throughput',
  'unit', 'batches', 'requests', 'failures', 'integrity', 'latency_us',
];

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

// ------------------------------------------------------------- parsing

test('args: value forms, booleans, dashes, sizes', () => {
  const specs = {
    size: { type: 'size', description: '' },
    batch: { type: 'integer', description: '' },
    duration: { type: 'number', description: '' },
    json: { type: 'boolean', description: '' },
    integrity_check: { type: 'boolean', description: '' },
    workload: { type: 'string', choices: ['read', 'write'], description: '' },
  } as const;
  const r = parseFlags(['--size', '64K', '--batch=8', '--duration=0.5', '--json', '--integrity-check=false', '--workload', 'write'], specs);
  assert.deepEqual(r.flags, { size: 65536, batch: 8, duration: 0.5, json: true, integrity_check: false, workload: 'write' });
  assert.equal(parseFlags(['--batch=1', '--batch=2'], specs).flags.batch, 2); // last wins
  assert.equal(parseFlags(['-h'], specs).help, true);
  for (const [text, bytes] of [['4096', 4096], ['64K', 65536], ['1M', 1 << 20], ['8MiB', 8 << 20], ['4KB', 4000], ['1.5GiB', 1.5 * 2 ** 30]] as const) {
    assert.equal(parseSize(text), bytes, text);
  }
  for (const bad of ['', 'K', '-1', '1.5', '12Q', '0x10']) assert.equal(parseSize(bad), undefined, bad);
  assert.throws(() => parseFlags(['--nope'], specs), UsageError);
  assert.throws(() => parseFlags(['--batch=1.5'], specs), /not an integer/);
  assert.throws(() => parseFlags(['--batch'], specs), /needs a value/);
  assert.throws(() => parseFlags(['--json=maybe'], specs), /true or false/);
  assert.throws(() => parseFlags(['--workload=mix'], specs), /one of read, write/);
  assert.throws(() => parseFlags(['-x'], specs), /unknown flag -x/);
});

test('usage mistakes exit 2 with one clear stderr line', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['bench', '--loopback', '--frobnicate'], /unknown flag --frobnicate/],
    [['bench', '--loopback', '--size', '0'], /--size=0: must be at least 1/],
    [['bench', '--loopback', '--batch=0'], /--batch=0: must be at least 1/],
    [['bench', '--loopback', '--duration=0'], /--duration=0: must be more than 0/],
    [['bench', '--loopback', '--size=12Q'], /not a byte size/],
    [['bench', '--loopback', '--report_unit', 'XB'], /--report_unit=XB: expected one of GB, GiB/],
    [['bench', '--loopback', '--workload=copy'], /--workload=copy: expected one of read, write, mix/],
    [['bench', '--mode', 'initiator'], /--mode=initiator needs --remote_segment/],
    [['bench', '--loopback', '--workload=read', '--integrity_check'], /--integrity_check needs --workload=mix/],
    [['frobnicate'], /unknown command "frobnicate"/],
    // Classic names are aliases, and errors name the flag as written.
    [['bench', '--loopback', '--block_size=0'], /--block_size=0: must be at least 1/],
    [['bench', '--loopback', '--batch_size', '0'], /--batch_size=0: must be at least 1/],
    [['bench', '--loopback', '--operation=copy'], /--operation=copy: expected one of read, write, mix/],
    [['bench', '--loopback', '--sise=4K'], /unknown flag --sise \(did you mean --size\?\)/],
    [['bench', '--loopback', '--protocol=rdma'], /--protocol=rdma: not available on this host/],
    [['bench', '--loopback', '--protocol=carrier-pigeon'], /--protocol=carrier-pigeon: unknown transport/],
    [['bench', '--loopback', '--report_unit=GBps'], /--report_unit=GBps: expected one of GB, GiB/],
    [['bench', '--loopback', '--threads=0'], /--threads=0: must be at least 1/],
    [['bench', '--loopback', '--threads=100000'], /--threads=100000: must be at most/],
    [['bench', '--loopback', '--buffer_size=0'], /--buffer_size=0: must be at least 1/],
    [['bench', '--loopback', '--give_up_after=-1'], /--give_up_after=-1: must be 0 \(never\) or more seconds/],
    [['bench', '--mode=initiator', '--metadata_type=p2p'], /--mode=initiator needs --remote_segment/],
    [['bench', '--segment_id=127.0.0.1:1', '--metadata_server=P2PHANDSHAKE', '--metadata_type=etcd'], /either --metadata_server or --metadata_type/],
    [['bench', '--segment_id=127.0.0.1:1', '--metadata_server=ftp://x'], /--metadata_server=ftp:\/\/x: .*unknown scheme/],
    [['bench', '--segment_id=127.0.0.1:1', '--metadata_type=etcd'], /--metadata_type=etcd needs --metadata_servers/],
    [['bench', '--mode=target', '--segment_id=127.0.0.1:1'], /--segment_id is for the initiator/],
    [['bench', '--loopback', '--segment_id=127.0.0.1:1'], /do not combine it with --segment_id/],
    [['bench', '--loopback', '--csv', '--json'], /--csv and --json each replace the text report/],
    [['bench', '--mode=target', '--csv'], /--csv is for the initiator/],
  ];
  for (const [args, pattern] of cases) {
    const r = await cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.match(r.stderr, /^transfer-engine/);
  }
});

test('--help prints usage and exits 0', async () => {
  const top = await cli(['--help']);
  assert.equal(top.code, 0);
  assert.match(top.stdout, /bench/);
  const bench = await cli(['bench', '--help']);
  assert.equal(bench.code, 0);
  for (const flag of ['--loopback', '--duration', '--size', '--batch', '--threads', '--workload', '--integrity_check', '--report_unit', '--json',
    '--metadata_type', '--metadata_servers', '--local_segment', '--remote_segment', '--shmfs', '--report_precision', '--give_up_after',
    // Mooncake's classic names
    '--mode', '--operation', '--block_size', '--batch_size', '--segment_id', '--metadata_server', '--protocol', '--buffer_size']) {
    assert.ok(bench.stdout.includes(flag), flag);
  }
});

// ------------------------------------------------- options and latency

const resolve = (argv: string[]): ReturnType<typeof resolveOptions> => resolveOptions(parseFlags(argv, BENCH_FLAGS));

test("the v1 bench's defaults, and Mooncake's classic names as aliases", () => {
  const d = resolve(['--remote_segment=h:1']);
  assert.equal(d.mode, 'initiator');
  assert.equal(d.workload, 'read');
  assert.equal(d.batch, 16);
  assert.equal(d.size, 65536);
  assert.equal(d.durationS, 10);
  assert.equal(d.giveUpAfterS, 5);
  assert.equal(d.threads, 4);
  assert.equal(d.reportUnit, 'GB');
  assert.equal(d.precision, 2);
  assert.equal(d.integrityCheck, false);
  assert.equal(d.shmfs, false);
  assert.equal(d.metadataServer, 'P2PHANDSHAKE');
  assert.equal(resolve([]).mode, 'target');
  const l = resolve(['--loopback']);
  assert.equal(l.workload, 'mix');
  assert.equal(l.integrityCheck, true);
  assert.equal(l.durationS, 5);

  // A transfer_engine_bench command line works as is.
  const c = resolve([
    '--mode=initiator', '--segment_id=10.0.0.1:12345', '--operation=write', '--block_size=4096', '--batch_size=128', '--threads=2',
    '--metadata_server=P2PHANDSHAKE', '--protocol=tcp', '--local_server_name=10.0.0.2', '--duration=3', '--report_unit=MiB', '--report_precision=3',
  ]);
  assert.deepEqual(
    { mode: c.mode, seg: c.remoteSegment, w: c.workload, size: c.size, batch: c.batch, threads: c.threads, meta: c.metadataServer, local: c.localSegment, unit: c.reportUnit, p: c.precision },
    { mode: 'initiator', seg: '10.0.0.1:12345', w: 'write', size: 4096, batch: 128, threads: 2, meta: 'P2PHANDSHAKE', local: '10.0.0.2', unit: 'MiB', p: 3 },
  );
  // Central metadata, either spelling.
  assert.equal(resolve(['--segment_id=x', '--metadata_server=etcd://h:2379']).metadataServer, 'etcd://h:2379');
  assert.equal(resolve(['--segment_id=x', '--metadata_server=h:2379']).metadataServer, 'h:2379');
  assert.equal(resolve(['--segment_id=x', '--metadata_type=http', '--metadata_servers=h:8080/metadata']).metadataServer, 'http://h:8080/metadata');
  // --buffer_size: the target's buffers, never smaller than size x batch x threads.
  assert.equal(resolve(['--mode=target', '--size=4K', '--batch=8', '--threads=2']).bufferBytes, 4096 * 8 * 2);
  assert.equal(resolve(['--mode=target', '--size=4K', '--batch=8', '--threads=2', '--buffer_size=1M']).bufferBytes, 1 << 20);
  assert.equal(resolve(['--mode=target', '--size=4K', '--batch=8', '--threads=2', '--buffer_size=1K']).bufferBytes, 4096 * 8 * 2);
  // The last of a flag and its alias wins, as in gflags.
  assert.equal(resolve(['--remote_segment=h:1', '--size=8K', '--block_size=16K']).size, 16384);
});

test('latency histogram: percentiles within 1%, mergeable, fixed memory', () => {
  const a = new LatencyHistogram();
  const b = new LatencyHistogram();
  for (let i = 1; i <= 10_000; i++) (i % 2 ? a : b).recordUs(i); // 1 us .. 10 ms, uniform
  a.merge(b.data());
  const p = a.percentiles();
  assert.equal(p.count, 10_000);
  for (const [got, want] of [[p.p50, 5000], [p.p99, 9900], [p.p999, 9990], [p.mean, 5000.5], [p.max, 10_000]] as const) {
    assert.ok(Math.abs(got - want) / want < 0.01, `${got} vs ${want}`);
  }
  const small = new LatencyHistogram();
  small.recordUs(0.1);
  small.recordUs(3_600_000_000); // an hour
  assert.equal(small.percentiles().p50, 0.1);
  assert.ok(Math.abs(small.percentiles().max - 3_600_000_000) < 1);
  assert.equal(new LatencyHistogram().percentiles().p50, 0);
});

test('integrity is "passed" only for a whole run; a lost target or a failing one is named, unreachable or refusing', () => {
  const on = resolve(['--loopback']);
  assert.equal(integrityVerdict(on, 10, 0, 0, 'duration'), 'passed');
  assert.equal(integrityVerdict(on, 10, 0, 0, 'signal'), 'passed', 'every round trip before Ctrl-C completed and compared equal');
  assert.equal(integrityVerdict(on, 10, 1, 5, 'target_lost'), 'failed', 'wrong bytes outrank everything');
  assert.equal(integrityVerdict(on, 10, 0, 1, 'duration'), 'incomplete', 'a failed request left its round trip unchecked');
  assert.equal(integrityVerdict(on, 10, 0, 0, 'target_lost'), 'incomplete');
  assert.equal(integrityVerdict(on, 10, 0, 3, 'all_failed'), 'incomplete');
  assert.equal(integrityVerdict(on, 0, 0, 0, 'duration'), 'incomplete', 'no round trip proves nothing');
  assert.equal(integrityVerdict(resolve(['--loopback', '--workload=write']), 0, 0, 9, 'target_lost'), 'off');

  const failing = (code: string | undefined, message: string): ThreadResult[] => [
    { lastError: { code: 'TE_PEER_UNREACHABLE', message: 'an old one', atMs: 1 } } as ThreadResult,
    { lastError: { code, message, atMs: 2 } } as ThreadResult,
  ];
  const streak = { kind: 'failing', streak: { failed: 40, firstAt: 1000, lastAt: 6250 } } as const;
  assert.deepEqual(describeStop(null, []), { reason: 'duration', message: undefined });
  assert.deepEqual(describeStop({ kind: 'signal' }, []), { reason: 'signal', message: undefined });
  assert.deepEqual(describeStop({ kind: 'target_exited', message: 'the target process (pid 7) exited with signal SIGKILL' }, []), {
    reason: 'target_lost',
    message: 'the target died: the target process (pid 7) exited with signal SIGKILL',
  });
  assert.deepEqual(describeStop(streak, failing('TE_TIMEOUT', 'no progress for 30 s')), {
    reason: 'target_lost',
    message: 'the target is gone or unreachable: 40 requests failed in a row over 5.3 s, none completed (last error, TE_TIMEOUT: no progress for 30 s)',
  });
  assert.deepEqual(describeStop(streak, failing('TE_ADDRESS_REJECTED', 'outside its regions')), {
    reason: 'all_failed',
    message: 'the target fails every request: 40 requests failed in a row over 5.3 s, none completed (last error, TE_ADDRESS_REJECTED: outside its regions)',
  });
});

// ----------------------------------------------------------- loopback

test('bench --loopback --json: mix with integrity check passes; the target process is gone', async () => {
  const r = await cli(['bench', '--loopback', '--duration', '1', '--size', '4096', '--batch', '8', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = lastJsonLine(r.stdout);
  for (const k of REQUIRED_KEYS) assert.ok(k in j, `missing ${k}`);
  assert.equal(j['workload'], 'mix');
  assert.equal(j['protocol'], 'tcp');
  assert.equal(j['integrity'], 'passed');
  assert.equal(j['failures'], 0);
  assert.equal(j['stop_reason'], 'duration');
  assert.ok(!('stop_message' in j));
  assert.equal(j['size'], 4096);
  assert.equal(j['batch'], 8);
  assert.equal(j['unit'], 'GB');
  assert.ok((j['bytes'] as number) > 0);
  // Only whole completed requests count.
  assert.equal((j['bytes'] as number) % 4096, 0);
  assert.ok((j['throughput_GBps'] as number) > 0);
  assert.ok((j['duration_s'] as number) >= 1);
  const lat = j['latency_us'] as Record<'batch' | 'request', Json>;
  for (const kind of ['batch', 'request'] as const) {
    const l = lat[kind];
    assert.ok((l['count'] as number) > 0, `${kind} latencies recorded`);
    assert.ok((l['p50'] as number) > 0 && (l['p99'] as number) >= (l['p50'] as number) && (l['p999'] as number) >= (l['p99'] as number), JSON.stringify(l));
    assert.ok((l['max'] as number) >= (l['p999'] as number));
  }
  assert.ok((lat.request['count'] as number) >= 8, 'requests are timed in sampled batches, each of its requests');
  // nixlbench's columns: a batch's prepare (allocate), post (submit) and transfer (wait) times.
  const nixl = j['nixl'] as Json;
  assert.deepEqual(Object.keys(nixl), ['block_size', 'batch_size', 'bw_gbps', 'avg_lat_us', 'avg_prep_us', 'p99_prep_us', 'avg_post_us', 'p99_post_us', 'avg_tx_us', 'p99_tx_us']);
  assert.equal(nixl['block_size'], 4096);
  assert.equal(nixl['batch_size'], 8);
  assert.equal(nixl['bw_gbps'], j['throughput_GBps']);
  assert.equal(nixl['avg_lat_us'], lat.batch['mean']);
  for (const k of ['avg_prep_us', 'avg_post_us', 'avg_tx_us'] as const) assert.ok((nixl[k] as number) > 0, `${k} measured`);
  assert.ok((nixl['p99_tx_us'] as number) >= (nixl['avg_tx_us'] as number) / 2, 'a p99 is not far below the mean');
  assert.ok((nixl['avg_tx_us'] as number) > (nixl['avg_post_us'] as number), 'the transfer takes longer than posting it');
  assert.equal(j['threads'], 4, "the v1 bench's default");
  assert.equal((j['per_thread_GBps'] as number[]).length, 4);
  const target = j['target'] as Json;
  assert.equal(target['clean'], true);
  assert.equal(target['exit_code'], 0);
  assert.ok(processGone(target['pid'] as number), 'the target child must have exited');
});

for (const workload of ['write', 'read'] as const) {
  test(`bench --loopback --workload ${workload}`, async () => {
    const r = await cli(['bench', '--loopback', '--workload', workload, '--duration', '0.5', '--size', '16K', '--batch', '4', '--threads', '2', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = lastJsonLine(r.stdout);
    assert.equal(j['workload'], workload);
    assert.equal(j['integrity'], 'off');
    assert.equal(j['threads'], 2);
    assert.equal(j['failures'], 0);
    assert.ok((j['bytes'] as number) > 0);
    assert.ok(processGone((j['target'] as Json)['pid'] as number));
  });
}

test('bench --loopback --csv: a header and one row, our columns then nixlbench\'s; no progress, no text', async () => {
  const r = await cli(['bench', '--loopback', '--duration', '0.5', '--size', '8K', '--batch', '4', '--threads', '1', '--csv']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.length, 2, r.stdout);
  const head = lines[0]!.split(',');
  const row = lines[1]!.split(',');
  assert.deepEqual(head, [
    'mode', 'workload', 'threads', 'duration_s', 'bytes', 'batches', 'requests', 'failures', 'integrity', 'batch_p50_us', 'batch_p99_us',
    'block_size', 'batch_size', 'bw_gbps', 'avg_lat_us', 'avg_prep_us', 'p99_prep_us', 'avg_post_us', 'p99_post_us', 'avg_tx_us', 'p99_tx_us',
  ]);
  assert.equal(row.length, head.length);
  const v = Object.fromEntries(head.map((h, i) => [h, row[i]!]));
  assert.equal(v['mode'], 'loopback');
  assert.equal(v['integrity'], 'passed');
  assert.equal(v['failures'], '0');
  assert.equal(v['block_size'], '8192');
  assert.equal(v['batch_size'], '4');
  assert.ok(Number(v['bytes']) > 0 && Number(v['bw_gbps']) > 0 && Number(v['avg_tx_us']) > 0);
});

test('bench --loopback text report uses the chosen unit', async () => {
  const r = await cli(['bench', '--loopback', '--duration', '0.5', '--size', '8K', '--batch', '4', '--report_unit', 'MiB', '--report_precision', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Test completed: duration \d+\.\d\d, batch count \d+, throughput \d+\.\d MiB\/s/);
  assert.match(r.stdout, /integrity\s+passed/);
  assert.match(r.stdout, /p50 [\d.]+ us, p99 [\d.]+ us/);
  assert.match(r.stdout, /target\s+pid \d+ exited cleanly/);
  assert.match(r.stdout, /nixlbench +Block Size \(B\) +Batch Size +B\/W \(GB\/Sec\) +Avg Lat\. \(us\) +Avg Prep \(us\) +P99 Prep \(us\) +Avg Post \(us\) +P99 Post \(us\) +Avg Tx \(us\) +P99 Tx \(us\)\n +8192 +4 +[\d.]+/);
});

// --------------------------------------------------- target + initiator

test('bench --mode=target serves a separate initiator process, then stops cleanly on SIGTERM', async () => {
  const target = spawn(process.execPath, [MAIN, 'bench', '--mode=target', '--local_segment=127.0.0.1', '--size=4096', '--batch=4', '--threads=1', '--json'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<[number | null, string | null]>((resolve) => target.on('exit', (c, s) => resolve([c, s])));
  try {
    const first = await new Promise<string>((resolve, reject) => {
      createInterface({ input: target.stdout }).once('line', resolve);
      target.once('exit', () => reject(new Error('target exited early')));
    });
    const ready = JSON.parse(first) as Json;
    const segment = ready['segment'] as string;
    assert.match(segment, /^127\.0\.0\.1:\d+$/);
    assert.equal(ready['buffer_bytes'], 4096 * 4);
    assert.ok((ready['buffers'] as number) >= 1, 'one buffer per NUMA node');
    assert.match(ready['mooncake_initiator_command'] as string, new RegExp(`transfer_engine_bench --mode=initiator --protocol=tcp --metadata_server=P2PHANDSHAKE --segment_id=${segment} --block_size=4096 --batch_size=4 --threads=1$`));
    assert.match(ready['initiator_command'] as string, new RegExp(`bench --mode=initiator --remote_segment=${segment} --size=4096 --batch=4 --threads=1$`));

    const r = await cli(['bench', `--remote_segment=${segment}`, '--size=4096', '--batch=4', '--threads=1', '--duration=0.5', '--workload=mix', '--integrity_check', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = lastJsonLine(r.stdout);
    assert.equal(j['mode'], 'initiator');
    assert.equal(j['integrity'], 'passed');
    assert.ok((j['bytes'] as number) > 0);
    assert.ok(!('target' in j));

    // Mooncake's classic command line, unchanged, runs against it.
    const classic = await cli(['bench', '--mode=initiator', `--segment_id=${segment}`, '--operation=write', '--block_size=4096', '--batch_size=4',
      '--threads=1', '--duration=0.5', '--protocol=tcp', '--metadata_server=P2PHANDSHAKE', '--local_server_name=127.0.0.1', '--json']);
    assert.equal(classic.code, 0, classic.stderr);
    const cj = lastJsonLine(classic.stdout);
    assert.equal(cj['workload'], 'write');
    assert.equal(cj['size'], 4096);
    assert.ok((cj['bytes'] as number) > 0);

    // More memory than the target registered: a clear runtime error, exit 1.
    const big = await cli(['bench', `--remote_segment=${segment}`, '--size=4096', '--batch=4', '--threads=2', '--duration=0.5']);
    assert.equal(big.code, 1);
    assert.match(big.stderr, /publishes 16384 bytes but --size x --batch x --threads needs 32768/);
  } finally {
    target.kill('SIGTERM');
  }
  assert.deepEqual(await exited, [0, null]);
});

test('bench initiator against a segment nobody serves fails with exit 1', async () => {
  const r = await cli(['bench', '--remote_segment=127.0.0.1:1', '--duration=0.5']);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^transfer-engine bench: error: /);
});

// ------------------------------------------------------ worker threads

test('--threads=3 runs three worker threads, each with its own engine and memory; their slices never overlap', async () => {
  const r = await cli(['bench', '--loopback', '--threads=3', '--duration=1', '--size=8K', '--batch=8', '--workload=mix', '--integrity_check', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = lastJsonLine(r.stdout);
  assert.equal(j['threads'], 3);
  assert.equal(j['integrity'], 'passed', 'each thread wrote, read back and compared its own slice of the target');
  assert.equal(j['failures'], 0);
  const per = j['per_thread_GBps'] as number[];
  assert.equal(per.length, 3);
  for (const t of per) assert.ok(t > 0, `every thread moved data: ${per.join(', ')}`);
  assert.ok((j['integrity_checks'] as number) >= 3);
  const lat = (j['latency_us'] as Record<string, Json>)['batch']!;
  assert.equal(lat['count'], j['batches'], 'every batch of every thread is in the merged percentiles');
});

test('bench --loopback with TE_METRICS_PORT: the initiator serves /metrics during the run, the target child does not bind the port', async () => {
  // Before the fix the child inherited TE_METRICS_PORT and bound it first (and each worker thread's
  // engine tried too): the initiator failed with TE_PORT_IN_USE, exit 1.
  const port = await freePort();
  const run = runCli(['bench', '--loopback', '--duration=0.5', '--size=4K', '--batch=4', '--threads=2', '--json'], { env: { TE_METRICS_PORT: String(port) } });
  const scrapes = await scrapeWhile(port, run);
  const r = await run;
  assert.equal(r.code, 0, r.stderr);
  const j = lastJsonLine(r.stdout);
  assert.equal(j['integrity'], 'passed');
  assert.equal(j['failures'], 0);
  assert.equal(j['threads'], 2);
  const ready = r.stdout.split('\n').map((l) => (l.startsWith('{') ? (JSON.parse(l) as Json) : {})).find((e) => e['event'] === 'target_ready');
  assert.ok(ready, r.stdout);
  assert.ok(scrapes.length > 0, 'the metrics port answered during the run');
  for (const s of scrapes) assert.notEqual((JSON.parse(s.health) as Json)['segment'], ready['segment'], 'served by the initiator, not the target');
  const sent = Math.max(...scrapes.map((s) => counterSum(s.metrics, 'transfer_requests_total', { transport: 'tcp' })));
  assert.ok(sent > 0, `the initiator's requests are counted (${scrapes.length} scrapes)`);
});

// ------------------------------------------------------------ signals

function waitForLine(child: ReturnType<typeof spawn>, pattern: RegExp): Promise<string> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (l) => {
      if (pattern.test(l)) resolve(l);
    });
    child.once('exit', () => reject(new Error(`exited before printing ${pattern}`)));
  });
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} stops an initiator early and cleanly: it still reports, marked interrupted`, async () => {
    const child = spawn(process.execPath, [MAIN, 'bench', '--loopback', '--duration=60', '--size=4K', '--batch=4', '--threads=2', '--workload=write', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const exited = new Promise<[number | null, string | null]>((resolve) => child.on('close', (c, s) => resolve([c, s])));
    // Counted from the target's ready line, not from the spawn: on a loaded machine starting the target alone can take seconds.
    while (!stdout.includes('"target_ready"') && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 2000));
    child.kill(signal);
    const [code] = await exited;
    assert.equal(code, 0, stderr);
    const j = lastJsonLine(stdout);
    assert.equal(j['interrupted'], true);
    assert.equal(j['stop_reason'], 'signal');
    assert.ok((j['duration_s'] as number) < 30, `stopped early: ${j['duration_s']} s`);
    assert.ok((j['bytes'] as number) > 0);
    assert.equal((j['target'] as Json)['clean'], true);
    assert.ok(processGone((j['target'] as Json)['pid'] as number));
  });
}

test('SIGINT stops a target cleanly', async () => {
  const target = spawn(process.execPath, [MAIN, 'bench', '--mode=target', '--local_segment=127.0.0.1', '--size=4K', '--batch=4', '--threads=1'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<[number | null, string | null]>((resolve) => target.on('exit', (c, s) => resolve([c, s])));
  // The text form prints the exact command to start an initiator.
  const line = await waitForLine(target, /bench --mode=initiator --remote_segment=/);
  assert.match(line, /--size=4096 --batch=4 --threads=1$/);
  target.kill('SIGINT');
  assert.deepEqual(await exited, [0, null]);
});

// --------------------------------------------------------- target loss
// A target that dies mid-run must end the run early, say so, exit 1 and never
// report integrity "passed". The runs below ask for 60 s; "early" is asserted
// with a wide margin (within 30 s of the kill), so a loaded machine cannot fail them.

interface StartedCli {
  /** Resolves with the first stdout line matching `pattern`; rejects if the process ends first. */
  line(pattern: RegExp): Promise<string>;
  /** The run's end, with the seconds since `mark()` (or since the start). */
  done: Promise<RunResult & { secondsSinceMark: number }>;
  mark(): void;
}

function startCli(args: string[], timeoutMs = 60_000): StartedCli {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let markedAt = Date.now();
  let closed = false;
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  // Every line is kept: a line() asked for after its line arrived still finds it.
  const seen: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stdout }).on('line', (l) => {
    seen.push(l);
    for (const w of [...waiters]) w();
  });
  // A hang must fail the test, not stall the suite: killed after timeoutMs (the assertions then name it).
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const done = new Promise<RunResult & { secondsSinceMark: number }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      closed = true;
      for (const w of [...waiters]) w();
      resolve({ code, signal, stdout, stderr, secondsSinceMark: (Date.now() - markedAt) / 1000 });
    });
  });
  return {
    line: (pattern) =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const found = seen.find((l) => pattern.test(l));
          if (found === undefined && !closed) return;
          waiters.delete(check);
          if (found !== undefined) resolve(found);
          else reject(new Error(`exited before printing ${pattern}: ${stdout}${stderr}`));
        };
        waiters.add(check);
        check();
      }),
    done,
    mark: () => (markedAt = Date.now()),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('bench --loopback stops early when its target process dies: says so, exits 1, integrity not "passed"', async () => {
  const run = startCli(['bench', '--loopback', '--duration=60', '--size=4K', '--batch=8', '--threads=2', '--json']);
  // The loopback announces its target's pid (an event line before the result), then the run's start.
  const ready = JSON.parse(await run.line(/"event":"target_ready"/)) as Json;
  await run.line(/"event":"run_started"/);
  await sleep(1000); // round trips under way
  const pid = ready['pid'] as number;
  process.kill(pid, 'SIGKILL');
  run.mark();
  const r = await run.done;
  assert.ok(r.secondsSinceMark < 30, `stopped early: ${r.secondsSinceMark} s after the kill (code ${r.code}, signal ${r.signal})`);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, new RegExp(`stopped early: the target died: the target process \\(pid ${pid}\\) exited with signal SIGKILL`));
  const j = lastJsonLine(r.stdout);
  assert.equal(j['stop_reason'], 'target_lost');
  assert.match(j['stop_message'] as string, /the target died: .*SIGKILL/);
  assert.equal(j['integrity'], 'incomplete', 'no mismatch was seen, but the run was cut short');
  assert.ok((j['duration_s'] as number) < 40, `${j['duration_s']} s`);
  const target = j['target'] as Json;
  assert.equal(target['pid'], pid);
  assert.equal(target['signal'], 'SIGKILL');
  assert.equal(target['clean'], false);
});

test('bench --loopback text report of a dead target: "Test stopped early", the reason, integrity incomplete', async () => {
  const run = startCli(['bench', '--loopback', '--duration=60', '--size=4K', '--batch=8', '--threads=1']);
  const ready = await run.line(/^Target ready in a child process: segment \S+, pid \d+\.$/);
  await run.line(/^Running mix against/);
  await sleep(1000);
  process.kill(Number(/pid (\d+)/.exec(ready)![1]), 'SIGKILL');
  run.mark();
  const r = await run.done;
  assert.ok(r.secondsSinceMark < 30, `stopped early: ${r.secondsSinceMark} s after the kill`);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^Test stopped early: duration \d+\.\d\d, batch count \d+/m);
  assert.match(r.stdout, /stopped\s+the target died: the target process \(pid \d+\) exited with signal SIGKILL/);
  assert.match(r.stdout, /integrity\s+incomplete/);
  assert.doesNotMatch(r.stdout, /integrity\s+passed/);
});

/** A `bench --mode=target` process, ready; its segment name. */
async function startTarget(): Promise<{ segment: string; kill(): void; exited: Promise<unknown> }> {
  const target = spawn(process.execPath, [MAIN, 'bench', '--mode=target', '--local_segment=127.0.0.1', '--size=4096', '--batch=8', '--threads=2', '--json'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise((resolve) => target.on('exit', resolve));
  const segment = (JSON.parse(await waitForLine(target, /"event":"target_ready"/)) as Json)['segment'] as string;
  return { segment, kill: () => target.kill('SIGKILL'), exited };
}

test('bench initiator stops early when its remote target dies (requests fail in a row, none completes)', async () => {
  const target = await startTarget();
  try {
    const run = startCli(['bench', `--remote_segment=${target.segment}`, '--size=4096', '--batch=8', '--threads=2', '--duration=60', '--workload=mix', '--integrity_check', '--json']);
    await run.line(/"event":"run_started"/);
    await sleep(1000);
    target.kill();
    run.mark();
    const r = await run.done;
    assert.ok(r.secondsSinceMark < 30, `stopped early: ${r.secondsSinceMark} s after the kill (code ${r.code}, signal ${r.signal})`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /stopped early: the target is gone or unreachable: \d+ requests failed in a row over \d+\.\d s, none completed \(last error, TE_PEER_UNREACHABLE: /);
    const j = lastJsonLine(r.stdout);
    assert.equal(j['stop_reason'], 'target_lost');
    assert.match(j['stop_message'] as string, /the target is gone or unreachable/);
    assert.equal(j['integrity'], 'incomplete');
    assert.ok((j['failures'] as number) > 0);
  } finally {
    target.kill();
  }
  await target.exited;
});

test('--give_up_after=0 runs on to the end against a dead target: failed requests make integrity "incomplete", never "passed"', async () => {
  const target = await startTarget();
  try {
    const run = startCli(['bench', `--remote_segment=${target.segment}`, '--size=4096', '--batch=8', '--threads=1', '--duration=4', '--give_up_after=0',
      '--workload=mix', '--integrity_check', '--json']);
    await run.line(/"event":"run_started"/);
    await sleep(500);
    target.kill();
    const r = await run.done;
    assert.equal(r.code, 1, r.stderr);
    const j = lastJsonLine(r.stdout);
    assert.equal(j['stop_reason'], 'duration');
    assert.ok(!('stop_message' in j));
    assert.ok((j['duration_s'] as number) >= 4);
    assert.ok((j['failures'] as number) > 0);
    assert.ok((j['integrity_checks'] as number) > 0, 'round trips passed before the kill');
    assert.equal(j['integrity_failures'], 0);
    assert.equal(j['integrity'], 'incomplete');
  } finally {
    target.kill();
  }
  await target.exited;
});

// ------------------------------------------------------------ progress

test('no live progress when stdout is not a terminal', async () => {
  const r = await cli(['bench', '--loopback', '--duration=1.5', '--size=4K', '--batch=4', '--threads=1']);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(!r.stdout.includes('\r'), 'no carriage-return progress line in piped output');
});

const hasScript = spawnSync('sh', ['-c', 'command -v script'], { encoding: 'utf8' }).status === 0;

test('live progress on a terminal', { skip: hasScript ? false : 'script(1) is not installed to provide a terminal' }, async () => {
  // script(1) runs the bench on a pseudo-terminal.
  const cmd = `${process.execPath} ${MAIN} bench --loopback --duration=2.5 --size=4K --batch=4 --threads=1`;
  const r = await new Promise<RunResult>((resolve, reject) => {
    const child = spawn('script', ['-qfec', cmd, '/dev/null'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /\r\x1b\[2K {2}\d+\/2\.5 s {2}[\d.]+ GB\/s {2}\d+ batches {2}\d+ requests/);
  assert.match(r.stdout, /Test completed/);
});

// --------------------------------------------------------------- shmfs

test('--shmfs: every engine allocates its memory in /dev/shm; the initiator copies directly', { skip: nativeAvailable() ? false : 'the shared-memory addon is not built' }, async () => {
  const r = await cli(['bench', '--loopback', '--shmfs', '--threads=2', '--duration=1', '--size=64K', '--batch=8', '--workload=mix', '--integrity_check', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = lastJsonLine(r.stdout);
  assert.equal(j['shmfs'], true);
  assert.equal(j['integrity'], 'passed');
  assert.ok((j['bytes'] as number) > 0);
  assert.equal((j['target'] as Json)['clean'], true);
});

// ------------------------------------------------------ file segments

test('file-segment flags are handed to the file bench', async () => {
  const r = await cli(['bench', '--file_mode', '--help']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /--files/);
});
