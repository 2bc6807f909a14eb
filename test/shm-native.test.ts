/** The te_native addon and owner-side regions: mapping, cross-process visibility, workers, alignment, absence. */
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, rmSync, statSync, truncateSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { ErrorCode } from '../src/errors.js';
import { loadNative, nativeAvailable } from '../src/native/addon.js';
import { allocateShmRegion, allocateAligned, MAX_SHM_REGION, type ShmRegion } from '../src/shm/region.js';
import { parseShmName, SHM_DIR } from '../src/shm/names.js';
import { reapStaleShmFiles } from '../src/shm/reaper.js';
import { ShmTransport } from '../src/transport/shm.js';
import { hostMachineId } from '../src/shm/identity.js';
import { ShmOwner, ownerByte, runSnippet, teCode, SHM_MODULE } from './shm-helpers.js';

const regions: ShmRegion[] = [];
after(() => {
  regions.forEach((r) => r.free());
  reapStaleShmFiles(); // files of children killed on a failed assertion
});
function alloc(size: number): ShmRegion {
  const r = allocateShmRegion(size);
  regions.push(r);
  return r;
}

describe('te_native addon', () => {
  test('loads, with the SIGBUS guard installed', () => {
    assert.equal(nativeAvailable(), true, 'the addon must be built by npm install');
    const n = loadNative();
    assert.equal(n.sigbusGuardInstalled(), true);
    assert.equal(loadNative(), n, 'loaded once');
  });

  test('a region is a 0600 file in /dev/shm of exactly its size, zero-filled, named after our pid', () => {
    const r = alloc(100_000);
    assert.equal(r.path, `${SHM_DIR}/${r.name}`);
    assert.deepEqual(parseShmName(r.name)?.pid, process.pid);
    const st = statSync(r.path);
    assert.equal(st.size, 100_000);
    assert.equal(st.mode & 0o777, 0o600);
    assert.ok(st.blocks * 512 >= 100_000, 'pages reserved up front (posix_fallocate)');
    assert.ok(r.buffer instanceof ArrayBuffer);
    assert.equal(r.bytes.length, 100_000);
    assert.ok(r.bytes.every((b) => b === 0));
  });

  test('free() removes the file, detaches every view and is idempotent', () => {
    const r = allocateShmRegion(8192);
    const view = Buffer.from(r.buffer, 100, 50);
    r.bytes[0] = 1;
    r.free();
    assert.equal(existsSync(r.path), false);
    assert.equal(r.freed, true);
    assert.equal(view.length, 0, 'a Buffer over the freed mapping is empty, not dangling');
    assert.throws(() => r.bytes, teCode(ErrorCode.CLOSED));
    assert.throws(() => r.buffer, teCode(ErrorCode.CLOSED));
    r.free();
  });

  test('many allocate/free cycles (addresses get reused by mmap)', () => {
    for (let i = 0; i < 200; i++) {
      const r = allocateShmRegion(65536);
      r.bytes[65535] = i & 0xff;
      r.free();
    }
  });

  test('bad sizes are TE_INVALID_ARGUMENT', () => {
    for (const size of [0, -1, 1.5, NaN, Infinity, MAX_SHM_REGION + 1, '4096' as unknown as number]) {
      assert.throws(() => allocateShmRegion(size), teCode(ErrorCode.INVALID_ARGUMENT), String(size));
    }
    assert.throws(() => allocateShmRegion(4096, { populate: 'yes' as unknown as boolean }), teCode(ErrorCode.INVALID_ARGUMENT));
  });

  test('two processes see each other\'s writes', async () => {
    const owner = await ShmOwner.start();
    try {
      const size = 3 * 4096 + 17;
      const { name } = await owner.alloc(size, 5);
      const t = new ShmTransport();
      const region = { shmName: name, size, addr: 0x1000 };
      const got = new Uint8Array(size);
      t.copy(hostMachineId(), region, 0, got, false);
      for (let i = 0; i < size; i++) assert.equal(got[i], ownerByte(i, 5), `byte ${i}`);
      t.copy(hostMachineId(), region, 4000, Uint8Array.from([9, 8, 7, 6, 5]), true);
      assert.deepEqual(await owner.call('read', { name, offset: 3999, length: 7 }), [ownerByte(3999, 5), 9, 8, 7, 6, 5, ownerByte(4005, 5)]);
      t.close();
      await owner.exit(); // its exit hook removes the file
    } finally {
      await owner.stop();
    }
  });

  test('a worker thread loads the addon and maps the same file', async () => {
    const r = alloc(4096);
    r.bytes.fill(3);
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.transport).then(({ ShmTransport }) => import(workerData.identity).then(({ hostMachineId }) => {
        const t = new ShmTransport();
        const region = { shmName: workerData.name, size: 4096, addr: 1 };
        const out = new Uint8Array(4);
        t.copy(hostMachineId(), region, 10, out, false);
        t.copy(hostMachineId(), region, 0, new Uint8Array([42, 43]), true);
        t.close();
        parentPort.postMessage(Array.from(out));
      }));`;
    const w = new Worker(code, {
      eval: true,
      workerData: {
        name: r.name,
        transport: new URL('../src/transport/shm.js', import.meta.url).href,
        identity: new URL('../src/shm/identity.js', import.meta.url).href,
      },
    });
    const msg = await new Promise<number[]>((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    await w.terminate();
    assert.deepEqual(msg, [3, 3, 3, 3]);
    assert.deepEqual([r.bytes[0], r.bytes[1], r.bytes[2]], [42, 43, 3]);
  });

  test('the SIGBUS guard works in a worker thread too', async () => {
    const r = alloc(65536);
    const code = `
      const { parentPort, workerData } = require('node:worker_threads');
      import(workerData.transport).then(({ ShmTransport }) => {
        const t = new ShmTransport({ machineId: 'm', testSkipStatCheck: true });
        const region = { shmName: workerData.name, size: 65536, addr: 1 };
        t.copy('m', region, 0, new Uint8Array(1), false); // mapped
        parentPort.once('message', () => {
          try { t.copy('m', region, 60000, new Uint8Array(100), false); parentPort.postMessage('copied'); }
          catch (e) { parentPort.postMessage(e.code + ' ' + e.message); }
        });
        parentPort.postMessage('mapped');
      });`;
    const w = new Worker(code, { eval: true, workerData: { name: r.name, transport: new URL('../src/transport/shm.js', import.meta.url).href } });
    const next = (): Promise<string> => new Promise((resolve, reject) => {
      w.once('message', resolve);
      w.once('error', reject);
    });
    assert.equal(await next(), 'mapped');
    truncateSync(r.path, 4096); // this thread never touches r.bytes again
    w.postMessage('go');
    const res = await next();
    await w.terminate();
    assert.match(res, /^TE_PEER_UNREACHABLE .*SIGBUS/);
  });

  test('a fault outside a guarded copy still kills the process (the guard hides nothing)', async () => {
    const code = `
      import { truncateSync } from 'node:fs';
      const { allocateShmRegion } = await import(process.env.SHM_MODULE);
      const r = allocateShmRegion(65536);
      truncateSync(r.path, 0); // what only a buggy owner (or someone else) could do
      process.stdout.write(r.path + '\\n');
      r.bytes[60000] = 1;
      process.stdout.write('survived\\n');`;
    const res = await runSnippet(code);
    const path = res.stdout.trim();
    if (path.startsWith(`${SHM_DIR}/`)) rmSync(path, { force: true }); // a process killed by a signal leaves its file
    assert.equal(res.signal, 'SIGBUS', `expected death by SIGBUS, got ${JSON.stringify(res)}`);
    assert.match(path, /^\/dev\/shm\/transfer-engine-/, 'died on the touch, not before');
  });

  test('without the addon: TE_NOT_SUPPORTED, and the transport just reports itself unavailable', async () => {
    const code = `
      const m = await import(process.env.SHM_MODULE);
      const { ShmTransport } = await import(process.env.TRANSPORT);
      const out = {};
      try { m.allocateShmRegion(4096); } catch (e) { out.alloc = [e.code, e.message]; }
      try { m.allocateAligned(4096); } catch (e) { out.aligned = e.code; }
      const t = new ShmTransport();
      out.available = t.available;
      out.reach = t.canReach(t.machineId);
      try { t.copy(t.machineId, { shmName: 'transfer-engine-1-0123456789abcdef', size: 10, addr: 1 }, 0, new Uint8Array(1), false); }
      catch (e) { out.copy = e.code; }
      out.reaped = m.reapStaleShmFiles();
      out.native = m.nativeAvailable();
      console.log(JSON.stringify(out));`;
    const res = await runSnippet(code, {
      TE_SHM_ADDON: '/nonexistent/te_native.node',
      TRANSPORT: new URL('../src/transport/shm.js', import.meta.url).href,
    });
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout) as Record<string, unknown>;
    assert.equal((out['alloc'] as string[])[0], ErrorCode.NOT_SUPPORTED);
    assert.match((out['alloc'] as string[])[1]!, /cannot be loaded/);
    assert.equal(out['aligned'], ErrorCode.NOT_SUPPORTED);
    assert.equal(out['available'], false);
    assert.equal(out['reach'], false);
    assert.equal(out['copy'], ErrorCode.NOT_SUPPORTED);
    assert.deepEqual(out['reaped'], { removed: [], live: 0 });
    assert.equal(out['native'], false);
    assert.ok(SHM_MODULE.endsWith('/src/shm/index.js'));
  });
});

describe('aligned allocation', () => {
  test('start address aligned as asked, zero-filled', () => {
    const n = loadNative();
    for (const align of [8, 512, 4096, 65536, 1 << 21]) {
      for (const size of [1, 513, 4096, 100_000]) {
        const b = allocateAligned(size, align);
        assert.equal(b.length, size);
        assert.equal(n.addressModulo(b, align), 0, `size ${size} align ${align}`);
        assert.ok(b.every((x) => x === 0));
      }
    }
    assert.equal(n.addressModulo(allocateAligned(4096), 4096), 0, 'default 4096');
  });

  test('bad size or alignment is TE_INVALID_ARGUMENT', () => {
    for (const [size, align] of [[0, 4096], [-1, 4096], [1.5, 4096], [4096, 0], [4096, 3], [4096, 4], [4096, 4097], [4096, 2 ** 31], [4096, NaN]] as const) {
      assert.throws(() => allocateAligned(size, align), teCode(ErrorCode.INVALID_ARGUMENT), `${size}/${align}`);
    }
  });
});

describe('pollWait (busy polling of the event loop)', () => {
  test('returns true once the loop has an event, without waiting out its time', async () => {
    const n = loadNative();
    const { spawn } = await import('node:child_process');
    // The child's stdout pipe becomes readable ~50 ms after the spawn: an event for our loop.
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => process.stdout.write("x"), 50)']);
    const got = new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(String(d))));
    await new Promise((r) => setTimeout(r, 5));
    let ready = false;
    // Up to 10 s of 0.9 s waits: the first true comes when the byte arrives, however slow the machine.
    for (let i = 0; i < 11 && !ready; i++) ready = n.pollWait(900_000);
    assert.equal(ready, true, 'pollWait never saw the pipe become readable');
    assert.equal(await got, 'x', 'the event pollWait saw was then handled by the loop');
  });

  test('nothing pending: false, after at least the time asked', () => {
    const n = loadNative();
    const t0 = process.hrtime.bigint();
    const ready = n.pollWait(2000);
    const us = Number(process.hrtime.bigint() - t0) / 1000;
    if (!ready) assert.ok(us >= 2000, `returned false after ${us} us, before the 2000 asked`);
    assert.equal(typeof ready, 'boolean');
  });

  test('bad durations are refused with ERR_TE_SHM_ARGS', () => {
    const n = loadNative();
    for (const bad of [-1, Number.NaN, 2e6, 'x' as unknown as number]) {
      assert.throws(() => n.pollWait(bad), (e: NodeJS.ErrnoException) => e.code === 'ERR_TE_SHM_ARGS', String(bad));
    }
  });
});
