/**
 * `transfer-engine bench` file modes (src/cli/bench-file.ts), run as real
 * processes: loopback read and write (the target in a child process, the
 * initiator over 127.0.0.1), a target + initiator pair with the
 * nvmeof_generic listener, and usage errors (exit code 2, one stderr line).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { isFileBench } from '../src/cli/bench-file.js';
import { patternBuffer } from './pattern.js';
import { counterSum, runCli, scrapeWhile, type CliRun } from './helpers.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

function cli(args: string[], env: Record<string, string> = {}, timeoutMs = 60_000): Promise<CliRun> {
  return runCli(args, { env, timeoutMs });
}

const lastJson = (stdout: string): Record<string, unknown> => JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;

let dir = '';
let f0 = '';
let f1 = '';

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-file-bench-'));
  f0 = path.join(dir, 'f0.bin');
  f1 = path.join(dir, 'f1.bin');
  fs.writeFileSync(f0, patternBuffer(4 << 20, 1));
  fs.writeFileSync(f1, patternBuffer(4 << 20, 2));
});

after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test('the file modes are chosen by --files or --file_mode only (memory bench flags stay the memory bench)', () => {
  assert.equal(isFileBench(['--files=/a']), true);
  assert.equal(isFileBench(['--files', '/a']), true);
  assert.equal(isFileBench(['--file_mode']), true);
  assert.equal(isFileBench(['--file-mode']), true);
  assert.equal(isFileBench(['--segment_id=h:1', '--block_size=4096', '--batch_size=8', '--operation=read']), false);
});

test('loopback: read then write two files, Mooncake\'s summary line and the JSON report', async () => {
  const read = await cli(['bench', '--mode=loopback', `--files=${f0} ${f1}`, '--duration=1', '--batch_size=16', '--block_size=65536']);
  assert.equal(read.code, 0, read.stderr);
  assert.match(read.stdout, /Test completed: duration \d+\.\d\d, batch count [1-9]\d*, throughput \d+\.\d\d GB\/s/);
  assert.match(read.stdout, /path: same-host file access/, 'the target runs on this host');
  const before = fs.readFileSync(f0);
  const write = await cli(['bench', '--mode=loopback', `--files=${f0}`, '--duration=1', '--batch_size=8', '--block_size=4K', '--operation=write', '--json', '--report_unit=MiB'], { TE_FILE_SAME_HOST: '0' });
  assert.equal(write.code, 0, write.stderr);
  const j = lastJson(write.stdout);
  assert.equal(j['operation'], 'write');
  assert.equal(j['path'], 'tcp', 'TE_FILE_SAME_HOST=0');
  assert.equal(j['failures'], 0);
  assert.equal(j['unit'], 'MiB');
  assert.ok((j['bytes'] as number) > 0 && (j['batches'] as number) > 0);
  assert.equal(fs.statSync(f0).size, before.length, 'writes stay inside the file');
  assert.ok(!fs.readFileSync(f0).equals(before), 'the write run changed the file (zeroed blocks)');
});

test('loopback with TE_METRICS_PORT: the initiator serves /metrics, the target child does not bind the port', async () => {
  const port = await freePort();
  const run = cli(['bench', '--mode=loopback', `--files=${f0}`, '--duration=0.5', '--batch_size=4', '--block_size=4K', '--json'], { TE_METRICS_PORT: String(port) });
  const scrapes = await scrapeWhile(port, run);
  const r = await run;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(lastJson(r.stdout)['failures'], 0);
  const sent = Math.max(0, ...scrapes.map((s) => counterSum(s.metrics, 'transfer_requests_total', { opcode: 'read' })));
  assert.ok(sent > 0, `the initiator's requests are counted (${scrapes.length} scrapes)`);
});

test('target with its own listener (trid), initiator by --segment_id; the target stops on SIGTERM', async () => {
  const port = await freePort();
  const target: ChildProcess = spawn(
    process.execPath,
    [MAIN, 'bench', '--mode=target', `--files=${f1}`, '--local_server_name=127.0.0.1', '--trtype=tcp', '--adrfam=ipv4', '--traddr=127.0.0.1', `--trsvcid=${port}`, '--json'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    const ready = await new Promise<Record<string, unknown>>((resolve, reject) => {
      const lines = createInterface({ input: target.stdout! });
      lines.once('line', (l) => resolve(JSON.parse(l) as Record<string, unknown>));
      target.once('exit', (c) => reject(new Error(`target exited ${c}`)));
    });
    assert.equal(ready['event'], 'target_ready');
    assert.deepEqual((ready['files'] as Array<{ path: string; size: number }>).map((f) => [f.path, f.size]), [[f1, 4 << 20]]);
    assert.match(String(ready['initiator_command']), /--file_mode --segment_id=127\.0\.0\.1:\d+/);
    const init = await cli(['bench', '--file_mode', `--segment_id=${String(ready['segment'])}`, '--duration=1', '--batch_size=8', '--threads=2', '--json'], { TE_FILE_SAME_HOST: '0' }); // through the trid listener
    assert.equal(init.code, 0, init.stderr);
    assert.equal(lastJson(init.stdout)['failures'], 0);
    assert.equal(lastJson(init.stdout)['path'], 'tcp');
  } finally {
    const exited = new Promise<number | null>((r) => target.once('exit', (c) => r(c)));
    target.kill('SIGTERM');
    assert.equal(await exited, 0);
  }
});

test('usage errors: one line on stderr, exit code 2', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--file_mode'], /needs --segment_id/],
    [['--file_mode', '--mode=target'], /needs --files/],
    [[`--files=${f0}`, '--segment_id=h:1'], /--segment_id is for the initiator/],
    [[`--files=${f0}`, '--mode=initiator', '--segment_id=h:1'], /--files is for the target/],
    [[`--files=${f0}`, '--traddr=127.0.0.1'], /--traddr and --trsvcid go together/],
    [[`--files=${f0}`, '--trtype=rdma'], /only tcp/],
    [['--file_mode', '--segment_id=h:1', '--operation=erase'], /expected one of read, write/],
    [['--file_mode', '--segment_id=h:1', '--block_size=0'], /--block_size=0/],
    [['--file_mode', '--segment_id=h:1', '--duration=0'], /--duration=0/],
    [['--file_mode', '--segment_id=h:1', '--bogus'], /unknown flag --bogus/],
  ];
  for (const [args, re] of cases) {
    const r = await cli(['bench', ...args]);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, args.join(' '));
  }
});

test('runtime errors: a missing file, a block size the direct-I/O target cannot serve', async () => {
  const missing = await cli(['bench', `--files=${path.join(dir, 'nope')}`]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /no such file/);
  const r = await cli(['bench', '--mode=loopback', `--files=${f0}`, '--direct_io', '--block_size=1000', '--duration=1']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--block_size=1000: file id \d+ uses direct I\/O, so it must be a multiple of 4096/);
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}
