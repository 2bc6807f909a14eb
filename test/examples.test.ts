/**
 * The examples run as a user runs them: `node examples/<name>.mjs`, each in its
 * own process, talking through the buffer-info file like the zmq socket of Mooncake's quick start.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url)); // dist/test -> repo root
const EX = (name: string): string => join(ROOT, 'examples', name);
const dir = mkdtempSync(join(os.tmpdir(), 'te-examples-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('quick start: receiver and sender in two processes, plus the async example against the same receiver', async () => {
  const info = join(dir, 'quickstart.json');
  const receiver = spawn(process.execPath, [EX('quickstart-receiver.mjs'), info], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const out: string[] = [];
  let stderr = '';
  receiver.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => receiver.once('exit', (code) => r(code)));
  try {
    // The receiver publishes {session_id, ptr, len} once its buffer is registered.
    const published = await new Promise<{ session_id: string; ptr: number; len: number }>((resolve, reject) => {
      const rl = createInterface({ input: receiver.stdout });
      rl.on('line', (line) => {
        out.push(line);
        if (line.startsWith('{')) resolve(JSON.parse(line));
      });
      receiver.once('exit', (code) => reject(new Error(`receiver exited (${code}): ${stderr}`)));
    });
    assert.match(published.session_id, /^localhost:\d+$/);
    assert.equal(published.len, 1024 * 1024);
    assert.ok(published.ptr > 0);
    assert.ok(existsSync(info));

    const asyncRun = await run(process.execPath, [EX('async-transfer.mjs'), info], { cwd: ROOT });
    assert.match(asyncRun.stdout, /Transfer completed successfully/);
    assert.match(asyncRun.stdout, /Read back \(0\): Hello, Transfer Engine!/);

    const sender = await run(process.execPath, [EX('quickstart-sender.mjs'), info], { cwd: ROOT });
    assert.equal(sender.stdout.match(/Transfer successful!/g)?.length, 10, sender.stdout);
    assert.doesNotMatch(sender.stdout, /failed/i);
    assert.match(sender.stdout, new RegExp(`Received server info - Session ID: ${published.session_id}`));
  } finally {
    receiver.kill('SIGINT');
  }
  assert.equal(await exited, 0, stderr);
  // The sender's ones overwrote the async example's text: the whole buffer is ones.
  assert.ok(out.includes('Buffer holds 1048576 of 1048576 bytes set to 1'), out.join('\n'));
  assert.ok(!existsSync(info), 'the receiver removed its buffer-info file');
});

test('managed buffer example', async () => {
  const r = await run(process.execPath, [EX('managed-buffer.mjs')], { cwd: ROOT });
  assert.match(r.stdout, /Read data: Test data for managed buffer/);
  assert.match(r.stdout, /Freed: 0/);
  assert.match(r.stdout, /Read after free: refused/);
});

test('a sender without a receiver fails clearly instead of hanging', async () => {
  await assert.rejects(
    run(process.execPath, ['-e', `import('${EX('buffer-info.mjs')}').then((m) => m.recvBufferInfo('${join(dir, 'none.json')}', 300))`], { cwd: ROOT }),
    (e: { stderr?: string }) => /no buffer info in .* is the receiver running\?/.test(e.stderr ?? ''),
  );
});
