/**
 * The store soak (benchmarks/store-soak.ts) for CI: 1 minute of mixed put/get/remove from Node and
 * Python clients against our master with --ha (2 masters, etcd) and 3 providers, a fault every
 * 4 s (provider SIGKILL, leader SIGKILL, client SIGKILL mid-put). Passes only with 0 wrong bytes,
 * 0 lost acknowledged objects, 0 removals undone, no eviction and every kind of fault injected.
 * A short --selftest run shows the checks can fail: a planted never-written "acknowledged" key
 * must count as lost, a key recorded with another seed than written as wrong bytes.
 * The 10-minute run is `npm run soak:store`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ensureInteropEnv } from './interop/mooncake.js';
import { requireServer } from './servers.js';

const SOAK = fileURLToPath(new URL('../benchmarks/store-soak.js', import.meta.url));
const skip = ensureInteropEnv() ?? requireServer('etcd').skip;
if (skip) console.warn(`\n*** SKIPPING the store soak: ${skip} ***\n`);

async function run(args: string[]): Promise<{ code: number | null; summary: Record<string, unknown> }> {
  const child = spawn(process.execPath, [SOAK, ...args, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  for (const l of err.trim().split('\n')) if (l) console.log(l);
  const last = out.trim().split('\n').at(-1) ?? '';
  if (!last.startsWith('{')) assert.fail(`the store soak exited with ${code} and no summary:\n${err.slice(-4000)}`);
  return { code, summary: JSON.parse(last) as Record<string, unknown> };
}

test('store soak, 1 min with a fault every 4 s: 0 wrong bytes, 0 lost acknowledged objects', { skip: skip || false, timeout: 300_000 }, async () => {
  const { code, summary } = await run(['--minutes', '1', '--fault-every', '4']);
  const faults = summary['faults'] as Record<string, number>;
  const ok = summary['ok'] as Record<string, number>;
  console.log(`${JSON.stringify({ ops: summary['ops'], ok, faults, lost: summary['lost'], wrongBytes: summary['wrongBytes'], exposedGone: summary['exposedGone'] })}`);
  assert.equal(summary['wrongBytes'], 0, `wrong reads: ${JSON.stringify(summary['details'])}`);
  assert.equal(summary['lost'], 0, `lost: ${JSON.stringify(summary['details'])}`);
  assert.equal(summary['removedButPresent'], 0);
  assert.equal(summary['evictedObjects'], 0);
  for (const kind of ['provider', 'leader', 'client']) assert.ok(faults[kind]! >= 1, `no ${kind} fault injected`);
  assert.ok(ok['put']! >= 200 && ok['get']! >= 200 && ok['remove']! >= 50, `too little work: ${JSON.stringify(ok)}`);
  assert.ok((summary['readsVerified'] as number) >= 200);
  assert.equal(summary['writesLeftInProgress'], 0, 'every unfinished put was given up by the master');
  assert.equal(code, 0);
});

test('store soak --selftest: a planted lost object and a planted wrong value are caught', { skip: skip || false, timeout: 180_000 }, async () => {
  const { code, summary } = await run(['--minutes', '0.2', '--fault-every', '600', '--selftest']);
  assert.ok((summary['lost'] as number) >= 1, 'the never-written key counts as lost');
  assert.ok((summary['wrongReads'] as number) >= 1 && (summary['wrongBytes'] as number) >= 1000, 'the key with another seed counts as wrong');
  assert.equal(summary['pass'], false);
  assert.equal(code, 1);
});
