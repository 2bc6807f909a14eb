/**
 * Our Store master (`transfer-engine master`, src/master/, docs/master.md) with the wheel's real
 * Python MooncakeDistributedStore clients only (test/store-harness): what the master must do
 * with real clients under pressure, with pins and leases, with replicas and with clients that
 * come and go. Every value read is compared byte for byte (SHA-256 of pattern(seed, length)).
 * Space and counters are read from the master's /health JSON and /metrics.
 *
 * No timing assertion: waits are polls with generous deadlines, and the only fixed sleeps wait
 * for a 1 s read lease to have run out (the master granted it before the read returned).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ensureInteropEnv } from './interop/mooncake.js';
import { MooncakeMaster, sleep, waitFor } from './store-harness/master.js';
import { PythonStore, patternDigest, type ReplicateConfigInit, type StoreInit } from './store-harness/python-store.js';
import type { MasterStats } from '../src/master/service.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING master-python: ${skip} ***\n`);

const KiB = 1024;
const MiB = 1024 * KiB;
/** docs/store-wire.md ErrorCode values the Python binding returns. */
const NO_AVAILABLE_HANDLE = -200;
const INVALID_PARAMS = -600;
const OBJECT_NOT_FOUND = -704;
const OBJECT_HAS_LEASE = -706;
const EMPTY = patternDigest(0, 0); // what get() returns for a missing key

/** /health's JSON: the service's stats, the status and the role. */
type Health = MasterStats & { status: string; role: string };

async function health(m: MooncakeMaster): Promise<Health> {
  const r = await fetch(`http://127.0.0.1:${m.metricsPort}/health`, { signal: AbortSignal.timeout(5000) });
  assert.equal(r.status, 200);
  return (await r.json()) as Health;
}

/** One unlabelled sample of /metrics. */
async function metric(m: MooncakeMaster, name: string): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${m.metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await r.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} not in /metrics:\n${text}`);
  return Number(line.slice(name.length + 1));
}

/** The endpoint get_replica_desc reports for a replica in a store's segment: the segment name, `host:port`. */
const endpointOf = (hostname: string): string => hostname;

/** Stores a describe block starts, stopped in its after(); logs of all for failure messages. */
class Fleet {
  readonly stores: PythonStore[] = [];
  master!: MooncakeMaster;

  async startMaster(opts: Parameters<typeof MooncakeMaster.start>[0]): Promise<void> {
    this.master = await MooncakeMaster.start({ kind: 'ours', ...opts });
  }

  init(segment = 16 * MiB): StoreInit {
    return { master: this.master.address, metadata: this.master.metadataUrl, globalSegmentSize: segment, localBufferSize: 16 * MiB };
  }

  async store(segment = 16 * MiB): Promise<PythonStore> {
    const s = await PythonStore.start(this.init(segment));
    this.stores.push(s);
    return s;
  }

  readonly logs = (): string =>
    `--- master:\n${this.master?.log.slice(-4000)}\n${this.stores.map((s, i) => `--- store ${i} (${s.hostname}):\n${s.stderr.slice(-1500)}`).join('\n')}`;

  async stop(): Promise<void> {
    await Promise.all(this.stores.map((s) => s.stop()));
    await this.master?.stop();
  }
}

const range = (n: number): number[] => [...Array(n).keys()];

describe('our master + Python store clients', { skip: skip ?? false }, () => {
  // ------------------------------------------------------------------------------------------
  describe('eviction under pressure (watermark 0.7, ratio 0.1, 30 s leases, 2 x 16 MiB)', () => {
    const f = new Fleet();
    let a: PythonStore;
    let b: PythonStore;

    before(async () => {
      await f.startMaster({ leaseTtlMs: 30_000, extraArgs: ['--eviction_high_watermark_ratio=0.7', '--eviction_ratio=0.1'] });
      [a, b] = await Promise.all([f.store(), f.store()]);
    });
    after(() => f.stop());

    test('leased and hard-pinned objects survive, LRU unleased ones go, usage returns under the watermark, puts never fail while something is evictable', async (t) => {
      const h0 = await health(f.master);
      assert.equal(h0.capacityBytes, 32 * MiB);
      // LRU order built here: hp-* (oldest), old-*, then ls-* (written and read: leased for 30 s).
      for (const i of range(4)) assert.equal(await a.put(`hp-${i}`, 1000 + i, MiB, { with_hard_pin: true }), 0, `hp-${i}`);
      for (const i of range(8)) assert.equal(await b.put(`old-${i}`, 2000 + i, MiB), 0, `old-${i}`);
      for (const i of range(4)) {
        assert.equal(await b.put(`ls-${i}`, 3000 + i, MiB), 0, `ls-${i}`);
        assert.deepEqual(await a.get(`ls-${i}`), patternDigest(3000 + i, MiB), `ls-${i}`);
      }
      assert.equal((await health(f.master)).usedBytes, 16 * MiB);
      assert.equal(await metric(f.master, 'mooncake_master_evicted_objects_total'), 0, 'nothing evicted under the watermark');

      // 24 MiB more: 40 MiB written into 32 MiB with a 22.4 MiB watermark, 8 MiB of it not evictable.
      // Eviction has to go past the leased objects in LRU order (the fill is newer than them).
      for (const i of range(24)) {
        const rc = await (i % 2 ? a : b).put(`fill-${i}`, 4000 + i, MiB);
        assert.equal(rc, 0, `fill-${i}: every put succeeds while evictable objects exist\n${f.logs()}`);
        const h = await health(f.master);
        assert.ok(h.usedBytes <= h.capacityBytes);
      }

      for (const i of range(4)) assert.deepEqual(await b.get(`hp-${i}`), patternDigest(1000 + i, MiB), `hard-pinned hp-${i}`);
      for (const i of range(4)) assert.deepEqual(await b.get(`ls-${i}`), patternDigest(3000 + i, MiB), `leased ls-${i}`);
      assert.deepEqual(await a.get('fill-23'), patternDigest(4023, MiB), 'the newest object');

      const evictable = [...range(8).map((i) => `old-${i}`), ...range(24).map((i) => `fill-${i}`)];
      const exist = await a.batchIsExist(evictable);
      const gone = evictable.filter((_, i) => exist[i] === 0);
      t.diagnostic(`evicted: ${gone.join(' ')}`);
      assert.deepEqual(exist.slice(0, 8), range(8).map(() => 0), 'least recently used first: every old-* went before any newer object');
      assert.ok(exist.every((x) => x === 0 || x === 1), JSON.stringify(exist));
      for (const [i, k] of evictable.entries()) {
        if (exist[i] === 1) assert.deepEqual(await a.get(k), patternDigest(k.startsWith('old') ? 2000 + Number(k.slice(4)) : 4000 + Number(k.slice(5)), MiB), k);
      }
      // Nothing else removed anything: the counters are exactly what is missing.
      assert.equal(await metric(f.master, 'mooncake_master_evicted_objects_total'), gone.length);
      assert.equal(await metric(f.master, 'mooncake_master_evicted_bytes_total'), gone.length * MiB);
      assert.ok(gone.length >= 18, `40 MiB written, at most 22.4 MiB kept: ${gone.length} evicted`);

      const h = await waitFor('usage back under the 0.7 watermark', 5000, () => health(f.master), (v) => v.usedBytes <= 0.7 * v.capacityBytes, f.logs);
      assert.equal(h.objects, 8 + evictable.length - gone.length);
      assert.equal(h.usedBytes, h.objects * MiB);
    });

    test('when only leased and hard-pinned objects are left, puts fill the segments to the last byte and then fail with -200', async () => {
      // Every object left by the test above was read there (get or is_exist): all leased for 30 s (hp-* also hard-pinned).
      const h0 = await health(f.master);
      assert.equal(h0.leasedObjects, h0.objects, JSON.stringify(h0));
      let n = 0;
      let rc = 0;
      for (; n < 40; n++) {
        rc = await (n % 2 ? a : b).put(`pin-${n}`, 5000 + n, MiB, { with_hard_pin: true });
        if (rc !== 0) break;
      }
      assert.equal(rc, NO_AVAILABLE_HANDLE, `put #${n} of a hard-pinned 1 MiB object\n${f.logs()}`);
      const h = await health(f.master);
      // All objects are 1 MiB, so no hole is too small: -200 means full, with nothing left to evict.
      assert.equal(h.usedBytes, h.capacityBytes, 'NO_AVAILABLE_HANDLE only with the segments full');
      assert.equal(h.objects, h0.objects + n, 'nothing was evicted: every object was leased or pinned');
      assert.equal(await a.isExist(`pin-${n}`), 0, 'the failed put left nothing');
      for (const i of range(4)) assert.deepEqual(await a.get(`hp-${i}`), patternDigest(1000 + i, MiB), `hp-${i}`);
      for (const i of range(4)) assert.deepEqual(await a.get(`ls-${i}`), patternDigest(3000 + i, MiB), `ls-${i}`);
      for (const i of range(n)) assert.deepEqual(await b.get(`pin-${i}`), patternDigest(5000 + i, MiB), `pin-${i}`);
      // pin-0 was just read (leased for 30 s): a forced removal takes the key away at once, but its
      // space waits for the lease (a reader may still be copying from it), so the store stays full.
      assert.equal(await a.remove('pin-0', true), 0);
      assert.equal(await a.isExist('pin-0'), 0);
      assert.equal(await a.put('after-remove', 6000, MiB), NO_AVAILABLE_HANDLE);
      const h2 = await health(f.master);
      assert.equal(h2.usedBytes, h2.capacityBytes);
      assert.equal(h2.pendingFreeRegions, 1);
    });
  });

  // ------------------------------------------------------------------------------------------
  describe('soft pins (watermark 0.7, ratio 0.1, 1 s leases, 2 x 16 MiB)', () => {
    const f = new Fleet();
    let a: PythonStore;
    let b: PythonStore;

    before(async () => {
      await f.startMaster({ leaseTtlMs: 1000, extraArgs: ['--eviction_high_watermark_ratio=0.7', '--eviction_ratio=0.1'] });
      [a, b] = await Promise.all([f.store(), f.store()]);
    });
    after(() => f.stop());

    test('a soft pin TTL above --max_kv_soft_pin_ttl is refused (-600)', async () => {
      assert.equal(await a.put('sp-too-long', 1, 100, { soft_pin_action: 'ENABLE', soft_pin_ttl_ms: 86_400_001 }), INVALID_PARAMS);
      assert.equal(await a.isExist('sp-too-long'), 0);
    });

    test('soft-pinned objects are evicted only after unpinned ones, even when older', async (t) => {
      // The soft-pinned ones are the oldest: plain LRU would take them first.
      for (const i of range(6)) assert.equal(await a.put(`sp-${i}`, 100 + i, MiB, { soft_pin_action: 'ENABLE', soft_pin_ttl_ms: 600_000 }), 0, `sp-${i}`);
      // 6 + 20 MiB into 32 MiB with a 22.4 MiB watermark: at least 4 MiB must go.
      for (const i of range(20)) assert.equal(await (i % 2 ? a : b).put(`plain-${i}`, 200 + i, MiB), 0, `plain-${i}\n${f.logs()}`);
      const evicted = await metric(f.master, 'mooncake_master_evicted_objects_total');
      assert.ok(evicted >= 4, `evicted ${evicted}`);
      assert.deepEqual(await b.batchIsExist(range(6).map((i) => `sp-${i}`)), range(6).map(() => 1), `every soft-pinned object is still there\n${f.logs()}`);
      const plain = await b.batchIsExist(range(20).map((i) => `plain-${i}`));
      t.diagnostic(`plain objects present: ${plain.join('')}`);
      assert.equal(plain.filter((x) => x === 0).length, evicted, 'the evicted objects are all unpinned ones');
      assert.equal(plain[0], 0, 'the oldest unpinned object went');
      for (const i of range(6)) assert.deepEqual(await a.get(`sp-${i}`), patternDigest(100 + i, MiB), `sp-${i}`);
      await waitFor('usage under the watermark', 5000, () => health(f.master), (v) => v.usedBytes <= 0.7 * v.capacityBytes, f.logs);
    });

    test('soft-pinned objects do go when nothing else can (allow_evict_soft_pinned_objects defaults to true)', async () => {
      assert.ok((await a.removeByRegex('^plain-', true)) > 0);
      await sleep(1200); // the 1 s leases of the reads above run out; forced removals free their space then
      await waitFor('the removed objects\' space freed', 5000, () => health(f.master), (v) => v.pendingFreeRegions === 0 && v.usedBytes === 6 * MiB, f.logs);
      const before = await metric(f.master, 'mooncake_master_evicted_objects_total');
      // Hard-pinned puts: the soft-pinned objects are the only evictable ones. 6 + 20 MiB > 22.4 MiB.
      for (const i of range(20)) assert.equal(await b.put(`hard-${i}`, 300 + i, MiB, { with_hard_pin: true }), 0, `hard-${i}\n${f.logs()}`);
      const evicted = (await metric(f.master, 'mooncake_master_evicted_objects_total')) - before;
      const sp = await a.batchIsExist(range(6).map((i) => `sp-${i}`));
      assert.ok(evicted > 0, 'soft-pinned objects were evicted');
      assert.equal(sp.filter((x) => x === 0).length, evicted, `only soft-pinned ones went: ${sp.join('')}`);
      for (const i of range(20)) assert.deepEqual(await a.get(`hard-${i}`), patternDigest(300 + i, MiB), `hard-${i}`);
      await waitFor('usage under the watermark', 5000, () => health(f.master), (v) => v.usedBytes <= 0.7 * v.capacityBytes, f.logs);
    });
  });

  describe('soft pins with --allow_evict_soft_pinned_objects=false (1 x 16 MiB)', () => {
    const f = new Fleet();
    let a: PythonStore;

    before(async () => {
      await f.startMaster({ leaseTtlMs: 1000, extraArgs: ['--eviction_high_watermark_ratio=0.7', '--eviction_ratio=0.1', '--allow_evict_soft_pinned_objects=false'] });
      a = await f.store();
    });
    after(() => f.stop());

    test('soft-pinned objects are never evicted: unpinned ones go, then puts fail with -200 when only pinned ones are left', async () => {
      for (const i of range(8)) assert.equal(await a.put(`sp-${i}`, 700 + i, MiB, { soft_pin_action: 'ENABLE' }), 0, `sp-${i}`);
      for (const i of range(8)) assert.equal(await a.put(`plain-${i}`, 800 + i, MiB), 0, `plain-${i}\n${f.logs()}`);
      assert.ok((await metric(f.master, 'mooncake_master_evicted_objects_total')) > 0);
      let n = 0;
      let rc = 0;
      for (; n < 20; n++) if ((rc = await a.put(`hard-${n}`, 900 + n, MiB, { with_hard_pin: true })) !== 0) break;
      assert.equal(rc, NO_AVAILABLE_HANDLE, `hard-${n}\n${f.logs()}`);
      assert.equal(n, 8, '16 MiB: 8 soft-pinned + 8 hard-pinned, every unpinned one evicted');
      assert.deepEqual(await a.batchIsExist(range(8).map((i) => `plain-${i}`)), range(8).map(() => 0));
      for (const i of range(8)) assert.deepEqual(await a.get(`sp-${i}`), patternDigest(700 + i, MiB), `sp-${i}`);
      assert.equal((await health(f.master)).usedBytes, 16 * MiB);
    });

    test('an expired soft pin protects nothing: such objects are evicted like unpinned ones, even with the flag false', async () => {
      assert.equal(await a.removeAll(true), 16);
      await waitFor('an empty segment', 5000, () => health(f.master), (v) => v.usedBytes === 0 && v.objects === 0, f.logs);
      for (const i of range(8)) assert.equal(await a.put(`short-${i}`, 1100 + i, MiB, { soft_pin_action: 'ENABLE', soft_pin_ttl_ms: 500 }), 0, `short-${i}`);
      await sleep(700); // the soft pins lapse (no read: no lease either)
      // Hard-pinned puts: the only evictable objects are the ones whose soft pin expired.
      for (const i of range(12)) assert.equal(await a.put(`hard2-${i}`, 1200 + i, MiB, { with_hard_pin: true }), 0, `hard2-${i}\n${f.logs()}`);
      const short = await a.batchIsExist(range(8).map((i) => `short-${i}`));
      assert.ok(short.filter((x) => x === 0).length >= 4, `12 + 8 MiB in 16 MiB: at least 4 expired soft-pinned objects evicted (${short.join('')})`);
      for (const i of range(12)) assert.deepEqual(await a.get(`hard2-${i}`), patternDigest(1200 + i, MiB), `hard2-${i}`);
    });
  });

  // ------------------------------------------------------------------------------------------
  describe('leases and upserts (1 s leases, 2 x 16 MiB)', () => {
    const f = new Fleet();
    let a: PythonStore;
    let b: PythonStore;

    before(async () => {
      await f.startMaster({ leaseTtlMs: 1000 });
      [a, b] = await Promise.all([f.store(), f.store()]);
    });
    after(() => f.stop());

    test('a read (get, is_exist, get_size) refuses remove with -706 until its 1 s lease ends', async () => {
      const reads: Array<[string, (k: string) => Promise<unknown>]> = [
        ['get', (k) => b.get(k)],
        ['is_exist', (k) => b.isExist(k)],
        ['get_size', (k) => b.getSize(k)],
      ];
      for (const [i, [name, read]] of reads.entries()) {
        const key = `lease-${name}`;
        assert.equal(await a.put(key, 10 + i, 4 * KiB), 0);
        assert.equal(await a.remove(key), 0, 'never read: a put takes no lease');
        assert.equal(await a.put(key, 10 + i, 4 * KiB), 0);
        await read(key);
        assert.equal(await a.remove(key), OBJECT_HAS_LEASE, `${name} took a lease`);
        assert.equal(await b.remove(key), OBJECT_HAS_LEASE, `${name}: the lease holds for every client`);
        await sleep(1200);
        assert.equal(await a.remove(key), 0, `${name}: the lease ran out`);
        assert.equal(await b.isExist(key), 0);
      }
    });

    test('remove(force) works while leased; the space is freed when the lease ends; the key can be written again at once', async (t) => {
      assert.equal(await a.put('forced', 20, MiB, { preferred_segments: [a.hostname] }), 0);
      const used = (await health(f.master)).usedBytes;
      const t0 = Date.now();
      assert.deepEqual(await b.get('forced'), patternDigest(20, MiB));
      assert.equal(await a.remove('forced'), OBJECT_HAS_LEASE);
      assert.equal(await a.remove('forced', true), 0);
      const h = await health(f.master);
      if (Date.now() - t0 < 800) {
        // Still inside the lease: a reader in flight may still be copying from that space.
        assert.equal(h.usedBytes, used, 'the space of a forced removal is held while the lease lasts');
        assert.ok(h.pendingFreeRegions >= 1);
      } else t.diagnostic('slow machine: the lease may have ended before /health was read; not checked');
      assert.equal(await b.isExist('forced'), 0);
      assert.equal(await b.getSize('forced'), OBJECT_NOT_FOUND);
      assert.deepEqual(await b.get('forced'), EMPTY);
      // The key is free at once; the new value gets other space (the old one is still held).
      assert.equal(await a.put('forced', 21, MiB, { preferred_segments: [a.hostname] }), 0);
      assert.deepEqual(await b.get('forced'), patternDigest(21, MiB));
      await waitFor('the forced removal\'s space freed after the lease', 5000, () => health(f.master), (v) => v.usedBytes === used && v.pendingFreeRegions === 0, f.logs);
      await sleep(1200);
      assert.equal(await a.remove('forced'), 0);
    });

    test('upsert: new key, same size in place (no lease), same size while leased (new space), other sizes; byte-exact each time', async () => {
      const base = (await health(f.master)).usedBytes;
      assert.equal(await a.upsert('up', 30, 100 * KiB, { preferred_segments: [b.hostname] }), 0, 'an upsert of a new key is a put');
      const [r1] = await a.getReplicaDesc('up'); // takes a 1 s lease
      assert.ok(r1?.memory && r1.status === 'COMPLETE' && r1.size === 100 * KiB, JSON.stringify(r1));
      assert.deepEqual(await b.get('up'), patternDigest(30, 100 * KiB));
      await sleep(1200);

      assert.equal(await a.upsert('up', 31, 100 * KiB), 0);
      const [r2] = await a.getReplicaDesc('up');
      assert.equal(r2?.address, r1.address, 'same size, no lease: rewritten in place');
      assert.equal(r2?.endpoint, r1.endpoint);
      assert.deepEqual(await b.get('up'), patternDigest(31, 100 * KiB));

      // Leased now (the get above): same size goes to new space, the old stays readable till the end.
      assert.equal(await b.upsert('up', 32, 100 * KiB), 0);
      const [r3] = await a.getReplicaDesc('up');
      assert.ok(r3 && !(r3.address === r1.address && r3.endpoint === r1.endpoint), `leased: not in place (${JSON.stringify([r1, r3])})`);
      assert.deepEqual(await a.get('up'), patternDigest(32, 100 * KiB));
      assert.deepEqual(await b.get('up'), patternDigest(32, 100 * KiB));

      assert.equal(await a.upsert('up', 33, 300 * KiB), 0, 'larger');
      assert.equal(await b.getSize('up'), 300 * KiB);
      assert.deepEqual(await b.get('up'), patternDigest(33, 300 * KiB));
      assert.equal(await b.upsert('up', 34, 10), 0, 'smaller');
      assert.equal(await a.getSize('up'), 10);
      assert.deepEqual(await a.get('up'), patternDigest(34, 10));
      assert.equal((await a.getReplicaDesc('up')).length, 1, 'one replica, the old ones gone');
      // Every replaced replica's space comes back once the leases on it end.
      await waitFor('the replaced replicas\' space freed', 5000, () => health(f.master), (v) => v.pendingFreeRegions === 0 && v.usedBytes - base < KiB, f.logs);
    });

    test('upsert_batch: existing keys of the same and other sizes and a new key in one batch; byte-exact each time', async () => {
      const keys = ['ub-1', 'ub-2', 'ub-3'];
      assert.equal(await a.putBatch(keys, [40, 41, 42], [64 * KiB, 64 * KiB, 64 * KiB]), 0);
      assert.deepEqual(await b.getBatch(keys), [40, 41, 42].map((s) => patternDigest(s, 64 * KiB)));
      await sleep(1200); // the reads' leases end: ub-1 is rewritten in place
      const [before1] = await a.getReplicaDesc('ub-1');
      await sleep(1200);
      const all = [...keys, 'ub-new'];
      const lens = [64 * KiB, 200 * KiB, 10, 3 * KiB];
      assert.equal(await b.upsertBatch(all, [50, 51, 52, 53], lens), 0);
      assert.deepEqual(await a.getBatch(all), all.map((_, i) => patternDigest(50 + i, lens[i]!)));
      const [after1] = await a.getReplicaDesc('ub-1');
      assert.equal(after1?.address, before1?.address, 'same size, no lease: in place');
      for (const [i, k] of all.entries()) assert.equal(await b.getSize(k), lens[i], k);
      await sleep(1200);
      assert.equal(await a.upsertBatch(all, [60, 61, 62, 63], [10, 10, 10, 10]), 0);
      assert.deepEqual(await b.getBatch(all), [60, 61, 62, 63].map((s) => patternDigest(s, 10)));
    });
  });

  // ------------------------------------------------------------------------------------------
  describe('replica counts (3 x 16 MiB)', () => {
    const f = new Fleet();
    let a: PythonStore;
    let b: PythonStore;
    let c: PythonStore;

    before(async () => {
      await f.startMaster({ leaseTtlMs: 1000 });
      [a, b, c] = await Promise.all([f.store(), f.store(), f.store()]);
    });
    after(() => f.stop());

    test('replica_num 2 on two segments; readable after one holder closes; replica_num 3 with 2 segments places 2', async () => {
      const cfg2: ReplicateConfigInit = { replica_num: 2, preferred_segments: [b.hostname, c.hostname] };
      assert.equal(await a.put('r2', 40, 2 * MiB, cfg2), 0);
      const desc = await a.getReplicaDesc('r2');
      assert.equal(desc.length, 2, JSON.stringify(desc));
      assert.ok(desc.every((r) => r.memory && r.status === 'COMPLETE' && r.size === 2 * MiB), JSON.stringify(desc));
      assert.deepEqual(desc.map((r) => r.endpoint).sort(), [endpointOf(b.hostname), endpointOf(c.hostname)].sort(), 'on the preferred segments');
      // Without a preference: still two distinct segments.
      assert.equal(await a.put('r2-any', 41, MiB, { replica_num: 2 }), 0);
      const any = await a.getReplicaDesc('r2-any');
      assert.equal(new Set(any.map((r) => r.endpoint)).size, 2, JSON.stringify(any));
      for (const s of [a, b, c]) assert.deepEqual(await s.get('r2'), patternDigest(40, 2 * MiB));

      assert.equal(await b.close(), 0);
      await waitFor('B\'s segment gone', 5000, () => health(f.master), (v) => v.segments === 2, f.logs);
      const left = await a.getReplicaDesc('r2');
      assert.deepEqual(left.map((r) => r.endpoint), [endpointOf(c.hostname)], 'the replica in B\'s segment was dropped');
      assert.deepEqual(await a.get('r2'), patternDigest(40, 2 * MiB), 'readable from the other replica');
      assert.deepEqual(await c.get('r2'), patternDigest(40, 2 * MiB));
      assert.deepEqual(await a.get('r2-any'), patternDigest(41, MiB), 'r2-any had a replica outside B too');

      assert.equal(await a.put('r3', 42, MiB, { replica_num: 3 }), 0, 'fewer segments than replicas: success with as many as segments');
      const r3 = await c.getReplicaDesc('r3');
      assert.deepEqual(r3.map((r) => r.endpoint).sort(), [endpointOf(a.hostname), endpointOf(c.hostname)].sort(), JSON.stringify(r3));
      assert.deepEqual(await a.get('r3'), patternDigest(42, MiB));
      assert.deepEqual(await c.get('r3'), patternDigest(42, MiB));

      const dropped = await metric(f.master, 'mooncake_master_dropped_replicas_total');
      const anyInC = (await a.getReplicaDesc('r2-any')).filter((r) => r.endpoint === endpointOf(c.hostname)).length;
      await c.stop();
      await waitFor('C\'s segment gone', 5000, () => health(f.master), (v) => v.segments === 1, f.logs);
      assert.equal(await a.getSize('r2'), OBJECT_NOT_FOUND, 'both replicas of r2 gone: the object went');
      assert.deepEqual(await a.get('r3'), patternDigest(42, MiB), 'r3 kept its replica in A');
      assert.equal((await a.getReplicaDesc('r3')).length, 1);
      assert.equal((await metric(f.master, 'mooncake_master_dropped_replicas_total')) - dropped, 1 /* r2 */ + 1 /* r3 */ + anyInC);
    });
  });

  // ------------------------------------------------------------------------------------------
  describe('clients torn down and set up again (client_ttl 2 s)', () => {
    const f = new Fleet();
    let keeper: PythonStore;

    before(async () => {
      await f.startMaster({ leaseTtlMs: 1000, clientTtlS: 2 });
      keeper = await f.store();
    });
    after(() => f.stop());

    test('three rounds: a client leaves, its segment\'s objects go (-704), the others stay, a new client works; /health counts come back', async () => {
      const kept: Array<[string, number, number]> = []; // key, seed, length: must survive every round
      for (const round of range(3)) {
        const x = await f.store();
        const h = await waitFor('two clients, two segments', 5000, () => health(f.master), (v) => v.clients === 2 && v.segments === 2, f.logs);
        assert.equal(h.capacityBytes, 32 * MiB);
        const own = `x-own-${round}`;
        const kInX = `k-in-x-${round}`;
        assert.equal(await x.put(own, 50 + round, 256 * KiB, { preferred_segments: [x.hostname] }), 0, own);
        assert.equal(await keeper.put(kInX, 60 + round, 256 * KiB, { preferred_segments: [x.hostname] }), 0, kInX);
        for (const [k, seed, n] of [[`x-in-k-${round}`, 70 + round, 512 * KiB], [`k-${round}`, 80 + round, 100 * KiB]] as const) {
          const w = k.startsWith('x') ? x : keeper;
          assert.equal(await w.put(k, seed, n, { preferred_segments: [keeper.hostname] }), 0, k);
          kept.push([k, seed, n]);
        }
        assert.deepEqual(await keeper.get(own), patternDigest(50 + round, 256 * KiB));
        assert.deepEqual(await x.get(`k-${round}`), patternDigest(80 + round, 100 * KiB));

        await x.stop(); // close(): UnmountSegment, then the driver ends
        await waitFor('one segment', 5000, () => health(f.master), (v) => v.segments === 1 && v.capacityBytes === 16 * MiB, f.logs);
        assert.equal(await keeper.getSize(own), OBJECT_NOT_FOUND, `${own}: in the leaver's segment`);
        assert.equal(await keeper.getSize(kInX), OBJECT_NOT_FOUND, `${kInX}: written by the keeper into the leaver's segment`);
        assert.deepEqual(await keeper.get(own), EMPTY);
        for (const [k, seed, n] of kept) assert.deepEqual(await keeper.get(k), patternDigest(seed, n), `${k} survives round ${round}`);
        // New puts land in the remaining segment only.
        const fresh = `fresh-${round}`;
        assert.equal(await keeper.put(fresh, 90 + round, 64 * KiB), 0, fresh);
        assert.deepEqual(await keeper.get(fresh), patternDigest(90 + round, 64 * KiB));
        kept.push([fresh, 90 + round, 64 * KiB]);
        // The leaver stops pinging: it is forgotten after client_ttl.
        const hc = await waitFor('the leaver forgotten', 10_000, () => health(f.master), (v) => v.clients === 1, f.logs);
        assert.equal(hc.segments, 1);
        assert.equal(hc.objects, kept.length);
        assert.equal(hc.usedBytes, kept.reduce((s, [, , n]) => s + n, 0));
      }
      const last = await f.store();
      assert.equal(await last.put('last', 99, MiB, { preferred_segments: [last.hostname] }), 0);
      assert.deepEqual(await keeper.get('last'), patternDigest(99, MiB));
      for (const [k, seed, n] of kept) assert.deepEqual(await last.get(k), patternDigest(seed, n), k);
      const h = await health(f.master);
      assert.equal(h.clients, 2);
      assert.equal(h.segments, 2);
    });
  });
});
