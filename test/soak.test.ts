/**
 * The soak (benchmarks/soak.ts) for CI: 75 s of mixed reads and writes to two
 * loopback targets behind fault proxies and, as root, across a network
 * namespace pair, with a fault every 6 s (SIGKILL+restart, proxy reset and
 * cut, link down, 5% loss, ...). Passes only with 0 wrong bytes, every fault
 * survived and nothing left open; the longer run is `npm run soak`.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SOAK = fileURLToPath(new URL('../benchmarks/soak.js', import.meta.url));

it('soak, 75 s with a fault every 6 s: 0 wrong bytes, every fault survived', { timeout: 240_000 }, async () => {
  // Under CI the namespace lane is required (CI runs as root); elsewhere it is used when possible.
  const netns = process.env['CI'] === 'true' ? 'on' : 'auto';
  const child = spawn(process.execPath, [SOAK, '--minutes', '1.25', '--fault-every', '6', '--netns', netns, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => (out += d));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const lines = out.trim().split('\n');
  for (const l of lines.slice(0, -1)) console.log(`# ${l}`);
  const last = lines.at(-1) ?? '';
  if (!last.startsWith('{')) assert.fail(`the soak exited with ${code} and no summary`);
  const summary = JSON.parse(last) as Record<string, unknown>;
  assert.equal(summary['wrongBytes'], 0);
  assert.ok((summary['faultsInjected'] as number) >= 6, `only ${String(summary['faultsInjected'])} faults injected`);
  assert.equal(summary['faultsSurvived'], summary['faultsInjected']);
  assert.ok((summary['transfersCompleted'] as number) > 0);
  assert.ok((summary['bytesVerified'] as number) > 0);
  assert.deepEqual(summary['handlesLeftAfterClose'], []);
  assert.equal(code, 0, 'the soak exits 0');
});
