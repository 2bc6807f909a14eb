/** Lifecycle of shm files (free, exit, GC, reaping a dead owner's files), names and machine identity. */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync, symlinkSync, utimesSync, writeFileSync, lstatSync } from 'node:fs';
import { ErrorCode } from '../src/errors.js';
import { allocateShmRegion } from '../src/shm/region.js';
import { reapStaleShmFiles } from '../src/shm/reaper.js';
import { makeShmName, parseShmName, validateShmName, shmPath, SHM_DIR } from '../src/shm/names.js';
import { hostMachineId, localMachineId, MACHINE_ID_ENV } from '../src/shm/identity.js';
import { ShmOwner, runSnippet, teCode } from './shm-helpers.js';

/** Files this suite creates by hand; removed at the end whatever happens. */
const made: string[] = [];
after(() => made.forEach((p) => rmSync(p, { force: true, recursive: true })));
function handMade(pid: number): string {
  const p = `${SHM_DIR}/${makeShmName(pid)}`;
  made.push(p);
  return p;
}

/** A pid that is certainly not running: a child that has exited. */
async function deadPid(): Promise<number> {
  const r = await runSnippet('process.stdout.write(String(process.pid))');
  return Number(r.stdout);
}

describe('shm file lifecycle', () => {
  test('a normal exit without free() removes the files', async () => {
    const r = await runSnippet(`
      const { allocateShmRegion } = await import(process.env.SHM_MODULE);
      const a = allocateShmRegion(4096), b = allocateShmRegion(8192);
      b.free();
      console.log(JSON.stringify([a.path, b.path]));`);
    assert.equal(r.code, 0, r.stderr);
    for (const p of JSON.parse(r.stdout) as string[]) assert.equal(existsSync(p), false, p);
  });

  test('a region whose memory is garbage-collected without free() removes its file', async () => {
    const r = await runSnippet(
      `
      import { existsSync } from 'node:fs';
      const { allocateShmRegion } = await import(process.env.SHM_MODULE);
      let path;
      (() => { path = allocateShmRegion(1 << 20).path; })();
      for (let i = 0; i < 200 && existsSync(path); i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); }
      console.log(existsSync(path) ? 'leaked' : 'removed');
      process.reallyExit(0); // skip the exit hook: the GC path alone must have removed it`,
      {},
      ['--expose-gc'],
    );
    assert.equal(r.stdout.trim(), 'removed', r.stderr);
  });

  test('a SIGKILLed owner leaves its file; the next reaper removes it, not a live owner\'s', async () => {
    const dead = await ShmOwner.start();
    const alive = await ShmOwner.start();
    const mine = allocateShmRegion(4096);
    try {
      const { name: deadName } = await dead.alloc(65536);
      const { name: liveName } = await alive.alloc(4096);
      assert.equal(parseShmName(deadName)?.pid, dead.pid);
      await dead.kill();
      assert.ok(existsSync(`${SHM_DIR}/${deadName}`), 'SIGKILL leaves the file behind');
      const res = reapStaleShmFiles();
      assert.ok(res.removed.includes(deadName), JSON.stringify(res));
      assert.ok(!res.removed.includes(liveName) && !res.removed.includes(mine.name));
      assert.ok(res.live >= 2);
      assert.equal(existsSync(`${SHM_DIR}/${deadName}`), false);
      assert.ok(existsSync(`${SHM_DIR}/${liveName}`) && existsSync(mine.path));
    } finally {
      mine.free();
      await dead.stop();
      await alive.stop();
    }
  });

  test('an owner in this same process is alive even though its pid is ours (no pid test)', () => {
    const r = allocateShmRegion(4096);
    try {
      assert.ok(!reapStaleShmFiles().removed.includes(r.name));
      assert.ok(existsSync(r.path));
    } finally {
      r.free();
    }
  });

  test('unlocked leftovers are removed whatever the pid; young empty files and others\' names are not', async () => {
    const pid = await deadPid();
    const leftover = handMade(pid);
    writeFileSync(leftover, Buffer.alloc(100), { mode: 0o600 });
    // Pid reuse: a leftover named after a live process (ours) is still dead: nobody holds its lock.
    const reused = handMade(process.pid);
    writeFileSync(reused, Buffer.alloc(100), { mode: 0o600 });
    const young = handMade(pid);
    writeFileSync(young, '');
    const oldEmpty = handMade(pid);
    writeFileSync(oldEmpty, '');
    utimesSync(oldEmpty, new Date(Date.now() - 60_000), new Date(Date.now() - 60_000));
    const foreign = `${SHM_DIR}/transfer-engine-${pid}-nothex`;
    const other = `${SHM_DIR}/someone-else-${pid}`;
    const dir = handMade(pid);
    const link = handMade(pid);
    made.push(foreign, other);
    writeFileSync(foreign, 'x');
    writeFileSync(other, 'x');
    mkdirSync(dir);
    symlinkSync(other, link);

    const res = reapStaleShmFiles();
    const gone = (p: string): boolean => !existsSync(p) && !lstatExists(p);
    assert.ok(gone(leftover) && gone(reused) && gone(oldEmpty), JSON.stringify(res));
    assert.ok(existsSync(young), 'an empty file younger than the grace period may be mid-creation');
    assert.ok(existsSync(foreign) && existsSync(other), 'names not ours are never touched');
    assert.ok(existsSync(dir), 'directories are never touched');
    assert.ok(lstatExists(link), 'symlinks are never followed or removed');
    assert.ok(reapStaleShmFiles({ graceMs: 0 }).removed.includes(young.slice(SHM_DIR.length + 1)));
  });
});

function lstatExists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

describe('shm names', () => {
  test('made names parse back to our pid and are unique', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const n = makeShmName();
      assert.match(n, /^transfer-engine-\d+-[0-9a-f]{16}$/);
      assert.deepEqual(parseShmName(n)?.pid, process.pid);
      assert.equal(validateShmName(n), n);
      assert.equal(shmPath(n), `/dev/shm/${n}`);
      seen.add(n);
    }
    assert.equal(seen.size, 100);
    assert.throws(() => makeShmName(0), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => makeShmName(-1), teCode(ErrorCode.INVALID_ARGUMENT));
  });

  test('names that escape /dev/shm or are not ours are TE_MALFORMED', () => {
    const bad: unknown[] = [
      '', '..', '.', '../etc/passwd', '/etc/passwd', '/dev/shm/transfer-engine-1-0123456789abcdef',
      'transfer-engine-1-0123456789abcdef/../../etc/passwd', 'transfer-engine-1-0123456789abcde/',
      'transfer-engine-1-0123456789ABCDEF', 'transfer-engine-0-0123456789abcdef', 'transfer-engine-01-0123456789abcdef',
      'transfer-engine--1-0123456789abcdef', 'transfer-engine-1-0123456789abcdef0', 'transfer-engine-1-0123456789abcdef\0',
      'transfer-engine-1-0123456789abcdef\n', 'transfer-engine-99999999999-0123456789abcdef', 'mooncake_1_abcdefgh',
      `transfer-engine-1-${'a'.repeat(1000)}`, 42, null, undefined, {}, ['transfer-engine-1-0123456789abcdef'],
    ];
    for (const n of bad) {
      assert.throws(() => validateShmName(n), teCode(ErrorCode.MALFORMED), JSON.stringify(n));
      if (typeof n === 'string') assert.throws(() => shmPath(n), teCode(ErrorCode.MALFORMED));
    }
  });
});

describe('machine identity', () => {
  test('boot id + machine id, as Mooncake TENT publishes it', () => {
    const id = hostMachineId();
    assert.match(id ?? '', /^[0-9a-f-]{36}:[0-9a-f]*$/);
    assert.equal(localMachineId(undefined, {}), id);
  });

  test('an override or TE_MACHINE_ID makes an engine look like another host', () => {
    assert.equal(localMachineId('other-host:1', {}), 'other-host:1');
    assert.equal(localMachineId(undefined, { [MACHINE_ID_ENV]: 'env-host' }), 'env-host');
    assert.equal(localMachineId('opt', { [MACHINE_ID_ENV]: 'env-host' }), 'opt');
    for (const bad of ['', 'has space', 'x'.repeat(257), 'tab\t', 'é']) {
      assert.throws(() => localMachineId(bad, {}), teCode(ErrorCode.INVALID_ARGUMENT), bad);
      if (bad !== '') assert.throws(() => localMachineId(undefined, { [MACHINE_ID_ENV]: bad }), teCode(ErrorCode.BAD_ENV), bad);
    }
    assert.throws(() => localMachineId(5 as unknown as string, {}), teCode(ErrorCode.INVALID_ARGUMENT));
  });
});
