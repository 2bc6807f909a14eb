/** The `transfer-engine` CLI: flag parsing, and `bench` run as a real process (dist/src/cli/main.js). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseFlags, parseSize, UsageError } from '../src/cli/args.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
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
  for (const flag of ['--loopback', '--duration', '--size', '--batch', '--threads', '--workload', '--integrity_check', '--report_unit', '--json']) {
    assert.ok(bench.stdout.includes(flag), flag);
  }
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
  assert.equal(j['size'], 4096);
  assert.equal(j['batch'], 8);
  assert.equal(j['unit'], 'GB');
  assert.ok((j['bytes'] as number) > 0);
  // Only whole completed requests count.
  assert.equal((j['bytes'] as number) % 4096, 0);
  assert.ok((j['throughput_GBps'] as number) > 0);
  assert.ok((j['duration_s'] as number) >= 1);
  const lat = j['latency_us'] as Json;
  assert.ok((lat['p50'] as number) > 0 && (lat['p99'] as number) >= (lat['p50'] as number) && (lat['p999'] as number) >= (lat['p99'] as number));
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

test('bench --loopback text report uses the chosen unit', async () => {
  const r = await cli(['bench', '--loopback', '--duration', '0.5', '--size', '8K', '--batch', '4', '--report_unit', 'MiB', '--report_precision', '1']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Test completed: duration \d+\.\d\d, batch count \d+, throughput \d+\.\d MiB\/s/);
  assert.match(r.stdout, /integrity\s+passed/);
  assert.match(r.stdout, /p50 [\d.]+ us, p99 [\d.]+ us/);
  assert.match(r.stdout, /target\s+pid \d+ exited cleanly/);
});

// --------------------------------------------------- target + initiator

test('bench --mode=target serves a separate initiator process, then stops cleanly on SIGTERM', async () => {
  const target = spawn(process.execPath, [MAIN, 'bench', '--mode=target', '--local_segment=127.0.0.1', '--size=4096', '--batch=4', '--json'], {
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
    assert.match(ready['initiator_command'] as string, new RegExp(`bench --mode=initiator --remote_segment=${segment} --size=4096 --batch=4 --threads=1$`));

    const r = await cli(['bench', `--remote_segment=${segment}`, '--size=4096', '--batch=4', '--duration=0.5', '--workload=mix', '--integrity_check', '--json']);
    assert.equal(r.code, 0, r.stderr);
    const j = lastJsonLine(r.stdout);
    assert.equal(j['mode'], 'initiator');
    assert.equal(j['integrity'], 'passed');
    assert.ok((j['bytes'] as number) > 0);
    assert.ok(!('target' in j));

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
