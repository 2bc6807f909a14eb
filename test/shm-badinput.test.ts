/**
 * The shm transport against bad peers and bad descriptors: missing files,
 * truncation after mapping, sizes that disagree, names escaping /dev/shm,
 * peers that exit mid-transfer. Every case is a typed error, never a crash.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { ErrorCode } from '../src/errors.js';
import { loadNative } from '../src/native/addon.js';
import { allocateShmRegion, type ShmRegion } from '../src/shm/region.js';
import { reapStaleShmFiles } from '../src/shm/reaper.js';
import { hostMachineId } from '../src/shm/identity.js';
import { makeShmName, SHM_DIR } from '../src/shm/names.js';
import { ShmTransport, locateShmRegion, type ShmPeerRegion } from '../src/transport/shm.js';
import { ShmOwner, ownerByte, teCode } from './shm-helpers.js';

const HOST = hostMachineId();
const made: string[] = [];
const mine: ShmRegion[] = [];
after(() => {
  made.forEach((p) => rmSync(p, { force: true, recursive: true }));
  mine.forEach((r) => r.free());
});

function localRegion(size: number, fill = 0): { r: ShmRegion; desc: ShmPeerRegion } {
  const r = allocateShmRegion(size);
  r.bytes.fill(fill);
  mine.push(r);
  return { r, desc: { shmName: r.name, size, addr: 0x1000_0000_0000 } };
}

describe('shm transport: reaching a peer', () => {
  test('same machine picks shm; another machine id, or none, does not (NO_TRANSPORT)', () => {
    const { desc } = localRegion(4096, 1);
    const t = new ShmTransport();
    assert.equal(t.machineId, HOST);
    assert.equal(t.canReach(HOST, desc), true);
    assert.equal(t.canReach(HOST), true);
    const other = new ShmTransport({ machineId: 'another-host:0' });
    assert.equal(other.canReach(HOST, desc), false);
    assert.equal(t.canReach('another-host:0', desc), false);
    assert.equal(t.canReach(undefined, desc), false);
    assert.equal(t.canReach(HOST, { ...desc, shmName: '../x' }), false);
    assert.equal(t.canReach(HOST, { ...desc, size: 0 }), false);
    assert.throws(() => other.copy(HOST, desc, 0, new Uint8Array(1), false), teCode(ErrorCode.NO_TRANSPORT, /same host/));
    assert.throws(() => t.copy(undefined, desc, 0, new Uint8Array(1), false), teCode(ErrorCode.NO_TRANSPORT));
    assert.equal(other.mappingCount, 0, 'nothing was mapped');
    const out = new Uint8Array(2);
    t.copy(HOST, desc, 100, out, false);
    assert.deepEqual(Array.from(out), [1, 1]);
    t.close();
    other.close();
  });

  test('mappings are cached per region, refreshed on a new layout, dropped on demand, bounded', () => {
    const a = localRegion(4096, 1).desc;
    const b = localRegion(4096, 2).desc;
    const c = localRegion(4096, 3).desc;
    const t = new ShmTransport({ maxMappings: 2 });
    const one = new Uint8Array(1);
    t.copy(HOST, a, 0, one, false);
    t.copy(HOST, a, 1, one, false);
    assert.equal(t.mappingCount, 1);
    t.copy(HOST, b, 0, one, false);
    t.copy(HOST, a, 0, one, false); // a is now the most recent
    t.copy(HOST, c, 0, one, false); // evicts b
    assert.equal(t.mappingCount, 2);
    assert.equal(t.drop(b.shmName), false, 'b was evicted');
    assert.equal(t.retain([c.shmName]), 1);
    assert.equal(t.mappingCount, 1);
    // Same name, another address: the descriptor changed, the region is remapped (and size-checked again).
    t.copy(HOST, { ...c, addr: 0x2000 }, 0, one, false);
    assert.equal(one[0], 3);
    assert.throws(() => t.copy(HOST, { ...c, size: 8192 }, 0, one, false), teCode(ErrorCode.MALFORMED, /8192/));
    t.dropAll();
    assert.equal(t.mappingCount, 0);
    t.close();
    assert.throws(() => t.copy(HOST, a, 0, one, false), teCode(ErrorCode.CLOSED));
    assert.equal(t.available, false);
    assert.throws(() => new ShmTransport({ maxMappings: 0 }), teCode(ErrorCode.INVALID_ARGUMENT));
  });

  test('locateShmRegion turns a target address into region + offset', () => {
    const rs: ShmPeerRegion[] = [
      { shmName: makeShmName(), size: 4096, addr: 0x10000n },
      { shmName: makeShmName(), size: 100, addr: 0x20000 },
    ];
    assert.deepEqual(locateShmRegion(rs, 0x10000, 4096), { region: rs[0], offset: 0 });
    assert.deepEqual(locateShmRegion(rs, 0x10010n, 16), { region: rs[0], offset: 16 });
    assert.deepEqual(locateShmRegion(rs, 0x20000 + 99, 1), { region: rs[1], offset: 99 });
    assert.equal(locateShmRegion(rs, 0x10000 + 4090, 16), null, 'crosses the end');
    assert.equal(locateShmRegion(rs, 0x20000 + 99, 2), null);
    assert.equal(locateShmRegion(rs, 0xffff, 2), null);
    assert.equal(locateShmRegion(rs, 0x10000, 0), null);
    assert.equal(locateShmRegion(rs, -1, 1), null);
    assert.equal(locateShmRegion([{ shmName: 'x', size: -1, addr: 0 }], 0, 1), null);
  });
});

describe('shm transport: bad descriptors and arguments', () => {
  test('names escaping /dev/shm or not ours: TE_MALFORMED before anything is opened', () => {
    const t = new ShmTransport();
    for (const shmName of ['../../etc/passwd', '/etc/passwd', 'transfer-engine-1-0123456789abcdef/../../../etc/passwd',
      '..', '', 'mooncake_1_abcdefgh', 'transfer-engine-1-0123456789abcdef\0x']) {
      assert.throws(() => t.copy(HOST, { shmName, size: 4096, addr: 1 }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED), shmName);
    }
    assert.equal(t.mappingCount, 0);
    t.close();
  });

  test('a symlink, a directory or another user\'s file under one of our names: TE_MALFORMED', () => {
    const t = new ShmTransport();
    const target = `${SHM_DIR}/${makeShmName()}`;
    writeFileSync(target, Buffer.alloc(4096));
    const link = `${SHM_DIR}/${makeShmName()}`;
    symlinkSync(target, link);
    const dir = `${SHM_DIR}/${makeShmName()}`;
    mkdirSync(dir);
    made.push(target, link, dir);
    const name = (p: string): string => p.slice(SHM_DIR.length + 1);
    assert.throws(() => t.copy(HOST, { shmName: name(link), size: 4096, addr: 1 }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED));
    assert.throws(() => t.copy(HOST, { shmName: name(dir), size: 4096, addr: 1 }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED));
    if (process.getuid?.() === 0) {
      chownSync(target, 65534, 65534);
      assert.throws(() => t.copy(HOST, { shmName: name(target), size: 4096, addr: 1 }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED, /owned by this user/));
    }
    t.close();
  });

  test('a size that disagrees with the file (larger or smaller): TE_MALFORMED, nothing mapped', () => {
    const { desc } = localRegion(8192, 7);
    const t = new ShmTransport();
    for (const size of [8193, 8191, 4096, 1 << 30, 2n ** 40n]) {
      assert.throws(() => t.copy(HOST, { ...desc, size }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED, /holds 8192 bytes/), String(size));
    }
    for (const size of [0, -1, 1.5, NaN, 2n ** 60n, '8192' as unknown as number]) {
      assert.throws(() => t.copy(HOST, { ...desc, size }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED), String(size));
    }
    for (const addr of [-1, 1.5, -1n, 'x' as unknown as number]) {
      assert.throws(() => t.copy(HOST, { ...desc, addr }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED), String(addr));
    }
    assert.equal(t.mappingCount, 0);
    t.close();
  });

  test('out-of-range offsets are TE_ADDRESS_REJECTED, malformed arguments TE_INVALID_ARGUMENT', () => {
    const { desc } = localRegion(4096);
    const t = new ShmTransport();
    assert.throws(() => t.copy(HOST, desc, 4096, new Uint8Array(1), false), teCode(ErrorCode.ADDRESS_REJECTED));
    assert.throws(() => t.copy(HOST, desc, 1, new Uint8Array(4096), true), teCode(ErrorCode.ADDRESS_REJECTED));
    assert.throws(() => t.copy(HOST, desc, Number.MAX_SAFE_INTEGER, new Uint8Array(1), true), teCode(ErrorCode.ADDRESS_REJECTED));
    for (const off of [-1, 1.5, NaN, 2 ** 53, '0' as unknown as number]) {
      assert.throws(() => t.copy(HOST, desc, off, new Uint8Array(1), false), teCode(ErrorCode.INVALID_ARGUMENT), String(off));
    }
    assert.throws(() => t.copy(HOST, desc, 0, new Uint8Array(0), false), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => t.copy(HOST, desc, 0, new Uint16Array(2) as unknown as Uint8Array, false), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => t.copy(HOST, desc, 0, [1, 2] as unknown as Uint8Array, false), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => t.copy(HOST, desc, 0, new Uint8Array(1), 1 as unknown as boolean), teCode(ErrorCode.INVALID_ARGUMENT));
    assert.throws(() => t.copy(HOST, null as unknown as ShmPeerRegion, 0, new Uint8Array(1), false), teCode(ErrorCode.INVALID_ARGUMENT));
    // A view into the middle of a bigger buffer copies exactly its bytes.
    const big = new Uint8Array(10).fill(0xee);
    t.copy(HOST, desc, 0, big.subarray(3, 5), false);
    assert.deepEqual(Array.from(big), [0xee, 0xee, 0xee, 0, 0, 0xee, 0xee, 0xee, 0xee, 0xee]);
    t.close();
  });
});

describe('shm transport: misbehaving peers', () => {
  let owner: ShmOwner;
  before(async () => {
    owner = await ShmOwner.start();
  });
  after(async () => {
    await owner.stop();
    reapStaleShmFiles();
  });

  test('a missing file: TE_PEER_UNREACHABLE', () => {
    const t = new ShmTransport();
    assert.throws(
      () => t.copy(HOST, { shmName: makeShmName(), size: 4096, addr: 1 }, 0, new Uint8Array(1), false),
      teCode(ErrorCode.PEER_UNREACHABLE, /No such file/),
    );
    assert.equal(t.mappingCount, 0);
    t.close();
  });

  test('a region the peer frees after we mapped it: TE_PEER_UNREACHABLE, mapping dropped', async () => {
    const { name, size } = await owner.alloc(65536, 3);
    const t = new ShmTransport();
    const desc = { shmName: name, size, addr: 1 };
    const out = new Uint8Array(4);
    t.copy(HOST, desc, 8, out, false);
    assert.deepEqual(Array.from(out), [8, 9, 10, 11].map((i) => ownerByte(i, 3)));
    await owner.call('free', { name });
    assert.throws(() => t.copy(HOST, desc, 8, out, false), teCode(ErrorCode.PEER_UNREACHABLE, /removed/));
    assert.equal(t.mappingCount, 0);
    assert.throws(() => t.copy(HOST, desc, 8, out, false), teCode(ErrorCode.PEER_UNREACHABLE, /No such file/));
    t.close();
  });

  for (const guardOnly of [false, true]) {
    test(`a file truncated after mapping: TE_PEER_UNREACHABLE, no SIGBUS${guardOnly ? ' (caught by the SIGBUS guard itself)' : ''}`, async () => {
      const size = 1 << 20;
      const { name } = await owner.alloc(size, 4);
      const t = new ShmTransport({ testSkipStatCheck: guardOnly });
      const desc = { shmName: name, size, addr: 1 };
      const buf = new Uint8Array(64 * 1024);
      t.copy(HOST, desc, size - buf.length, buf, false);
      assert.equal(buf[0], ownerByte(size - buf.length, 4));
      await owner.call('truncate', { name, length: 4096 });
      const write = guardOnly; // reads and writes fault alike; cover both across the two runs
      assert.throws(() => t.copy(HOST, desc, size - buf.length, buf, write), teCode(ErrorCode.PEER_UNREACHABLE, guardOnly ? /SIGBUS/ : /shrank/));
      assert.equal(t.mappingCount, 0, 'a truncated mapping is dropped');
      // The next mapping attempt sees the size disagree with the descriptor.
      assert.throws(() => t.copy(HOST, desc, 0, buf, false), teCode(ErrorCode.MALFORMED, /holds 4096 bytes/));
      // Still alive, and the guard still works for the next fault.
      assert.equal(loadNative().sigbusGuardInstalled(), true);
      t.close();
    });
  }

  test('the SIGBUS guard also protects copies into a partially truncated range, repeatedly', async () => {
    const native = loadNative();
    const size = 256 * 1024;
    const { name } = await owner.alloc(size, 6);
    const h = native.openPeer(`${SHM_DIR}/${name}`, size, true);
    await owner.call('truncate', { name, length: 100_000 });
    const buf = new Uint8Array(200_000);
    for (let i = 0; i < 100; i++) {
      assert.throws(() => native.peerCopy(h, 0, buf, i % 2 === 0, 1), (e: Error & { code?: string }) => e.code === 'ERR_TE_SHM_TRUNCATED');
    }
    // The part that still exists copies fine.
    native.peerCopy(h, 0, buf.subarray(0, 90_000), false, 1);
    native.closePeer(h);
    assert.throws(() => native.peerCopy(h, 0, buf, false, 0), (e: Error & { code?: string }) => e.code === 'ERR_TE_SHM_CLOSED');
  });

  test('a peer killed while we copy: copies in flight finish, later ones fail typed once its file is reaped', async () => {
    const victim = await ShmOwner.start();
    const size = 8 << 20;
    const { name } = await victim.alloc(size, 9);
    const t = new ShmTransport();
    const desc = { shmName: name, size, addr: 1 };
    const buf = new Uint8Array(1 << 20);
    let copies = 0;
    const killed = victim.kill();
    // Keep copying while the kill lands: the mapping stays valid after the owner dies.
    while (copies < 2000) {
      t.copy(HOST, desc, (copies % 8) * buf.length, buf, copies % 2 === 0);
      copies++;
      if (copies % 50 === 0) await new Promise((r) => setImmediate(r));
      if (victim.child.signalCode !== null && copies > 200) break;
    }
    await killed;
    t.copy(HOST, desc, 0, buf, false); // owner dead, file still there: still a valid copy
    assert.ok(reapStaleShmFiles().removed.includes(name));
    assert.throws(() => t.copy(HOST, desc, 0, buf, false), teCode(ErrorCode.PEER_UNREACHABLE));
    assert.equal(t.mappingCount, 0);
    t.close();
  });

  test('a peer that exits normally removes its files: TE_PEER_UNREACHABLE on the next copy', async () => {
    const leaving = await ShmOwner.start();
    const { name, size } = await leaving.alloc(4096, 2);
    const t = new ShmTransport();
    const desc = { shmName: name, size, addr: 1 };
    t.copy(HOST, desc, 0, new Uint8Array(16), false);
    await leaving.exit();
    assert.throws(() => t.copy(HOST, desc, 0, new Uint8Array(16), true), teCode(ErrorCode.PEER_UNREACHABLE));
    t.close();
  });

  test('a file the peer shrank before we ever mapped it: TE_MALFORMED (size check before mapping)', async () => {
    const { name } = await owner.alloc(65536, 1);
    await owner.call('truncate', { name, length: 1000 });
    const t = new ShmTransport();
    assert.throws(() => t.copy(HOST, { shmName: name, size: 65536, addr: 1 }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED, /holds 1000 bytes/));
    truncateSync(`${SHM_DIR}/${name}`, 0);
    assert.throws(() => t.copy(HOST, { shmName: name, size: 65536, addr: 1 }, 0, new Uint8Array(1), false), teCode(ErrorCode.MALFORMED, /holds 0 bytes/));
    t.close();
    await owner.call('free', { name });
  });
});
