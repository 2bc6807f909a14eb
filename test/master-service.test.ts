/**
 * The Store master's state and rules (src/master/service.ts), driven directly
 * (no sockets) with a fake clock: mounts and liveness, the put and upsert
 * lifecycles, placement, leases, removal, eviction. Time-driven behaviour is
 * exercised by moving the clock and calling sweep(), as the master's timer does.
 *
 * Space accounting is cross-checked after most scenarios: the service's
 * usedBytes must equal the sum of its segments' allocators.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MasterService, type Result } from '../src/master/service.js';
import { DEFAULT_MASTER_CONFIG, type MasterConfig } from '../src/master/config.js';
import {
  ClientStatus,
  ReplicaStatus,
  SoftPinAction,
  StoreErrorCode as EC,
  type ReplicaDescriptor,
  type ReplicateConfigWire,
  type Segment,
  type UUID,
} from '../src/store/master-protocol.js';
import { mulberry32 } from './fuzz-lib.js';
import { ReplicateConfig } from '../src/store/replicate-config.js';

// ---- helpers ----

const TENANT = 'default';
/** Mooncake's DFS_SERVICE_UNAVAILABLE. */
const DFS_SERVICE_UNAVAILABLE = -1601;

const uuid = (n: number): UUID => ({ first: BigInt(n), second: 0xabcd_0000n + BigInt(n) });

/** Segment n: name `seg<n>`, Transfer Engine endpoint `te<n>:<port>`, its own base address. */
function segment(n: number, size: number, opts: Partial<Segment> = {}): Segment {
  return {
    id: uuid(1000 + n),
    name: `seg${n}`,
    base: 0x7f00_0000_0000n + BigInt(n) * 0x1_0000_0000n,
    size: BigInt(size),
    teEndpoint: `te${n}:${12300 + n}`,
    protocol: 'tcp',
    hostId: '',
    ...opts,
  };
}

/** A full ReplicateConfig with Python's defaults, then the overrides. */
function config(overrides: Partial<ReplicateConfigWire> = {}): ReplicateConfigWire {
  return { ...new ReplicateConfig().toWire(), ...overrides };
}

/** A service on a fake clock: set `clock.t`, then call `svc.sweep()`. */
function harness(overrides: Partial<MasterConfig> = {}): { svc: MasterService; clock: { t: number } } {
  const clock = { t: 0 };
  const svc = new MasterService({ ...DEFAULT_MASTER_CONFIG, ...overrides }, () => clock.t);
  return { svc, clock };
}

/** For scenarios that sweep but are not about liveness: clients never expire. */
const IMMORTAL: Partial<MasterConfig> = { clientTtlMs: 1e12 };

function expectOk<T>(r: Result<T>, what = 'call'): T {
  if (!r.ok) assert.fail(`${what}: expected ok, got error ${r.error}`);
  return r.value;
}

function expectErr<T>(r: Result<T>, code: number, what = 'call'): void {
  if (r.ok) assert.fail(`${what}: expected error ${code}, got ok (${String(r.value)})`);
  assert.equal(r.error, code, `${what}: error code`);
}

/** The memory buffer a replica descriptor points at. */
function buf(d: ReplicaDescriptor): { size: bigint; bufferAddress: bigint; protocol: string; transportEndpoint: string } {
  if (d.descriptor.index !== 0) assert.fail(`expected a memory descriptor, got variant ${d.descriptor.index}`);
  return d.descriptor.value.bufferDescriptor;
}

const addrs = (ds: ReplicaDescriptor[]): bigint[] => ds.map((d) => buf(d).bufferAddress);
const endpoints = (ds: ReplicaDescriptor[]): string[] => ds.map((d) => buf(d).transportEndpoint);

function mount(svc: MasterService, client: UUID, ...segs: Segment[]): void {
  for (const s of segs) expectOk(svc.mountSegment(s, client), `mount ${s.name}`);
}

/** PutStart + PutEnd; the descriptors PutStart returned. */
function put(svc: MasterService, client: UUID, key: string, size: number, cfg: Partial<ReplicateConfigWire> = {}, tenant = TENANT): ReplicaDescriptor[] {
  const ds = expectOk(svc.putStart(client, key, BigInt(size), config(cfg), tenant), `PutStart ${key}`);
  expectOk(svc.putEnd(client, { key, objectChecksum: null }, tenant), `PutEnd ${key}`);
  return ds;
}

/** Whether the key is stored (readable or being written). Probes with GetReplicaList, so it grants a lease when readable. */
const has = (svc: MasterService, key: string, tenant = TENANT): boolean => {
  const r = svc.getReplicaList(key, tenant);
  if (r.ok) return true;
  if (r.error === EC.REPLICA_IS_NOT_READY) return true;
  assert.equal(r.error, EC.OBJECT_NOT_FOUND, `GetReplicaList ${key}`);
  return false;
};

/** The keys still stored, in the order given (leases granted as by `has`). */
const present = (svc: MasterService, keys: string[], tenant = TENANT): string[] => keys.filter((k) => has(svc, k, tenant));

/** usedBytes agrees with the segments' allocators; capacity with their sizes. */
function checkAccounting(svc: MasterService): void {
  const usage = svc.segmentUsage();
  const st = svc.stats;
  assert.equal(st.usedBytes, usage.reduce((n, s) => n + s.used, 0), 'usedBytes equals the sum of the segments');
  assert.equal(st.capacityBytes, usage.reduce((n, s) => n + s.capacity, 0), 'capacityBytes equals the sum of the segments');
  assert.equal(st.segments, usage.length);
}

const A = uuid(1);
const B = uuid(2);
const C = uuid(3);

// ---- mount, remount, unmount, ping ----

describe('MasterService: mount, remount, unmount, ping', () => {
  test('mounting the same segment twice is OK and counted once; another client cannot take it', () => {
    const { svc } = harness();
    const s1 = segment(1, 4096);
    expectOk(svc.mountSegment(s1, A));
    expectOk(svc.mountSegment(s1, A), 'second mount');
    assert.equal(svc.stats.segments, 1);
    assert.equal(svc.stats.capacityBytes, 4096);
    assert.equal(svc.stats.clients, 1);
    expectErr(svc.mountSegment(s1, B), EC.SEGMENT_ALREADY_EXISTS, 'mount by another client');
    assert.equal(svc.stats.capacityBytes, 4096);
    expectErr(svc.mountSegment(segment(2, 0), A), EC.INVALID_PARAMS, 'size 0');
    expectErr(svc.mountSegment(segment(3, 64, { name: '' }), A), EC.INVALID_PARAMS, 'no name');
    expectErr(svc.mountSegment(segment(4, 64, { teEndpoint: '' }), A), EC.INVALID_PARAMS, 'no endpoint');
    assert.equal(svc.stats.segments, 1);
    checkAccounting(svc);
  });

  test('unmount by another client is ILLEGAL_CLIENT; by the owner drops the segment and its objects; unknown is OK', () => {
    const { svc } = harness();
    const s1 = segment(1, 4096);
    mount(svc, A, s1);
    put(svc, A, 'k', 100);
    expectErr(svc.unmountSegment(s1.id, B), EC.ILLEGAL_CLIENT, 'unmount by B');
    assert.equal(svc.stats.segments, 1);
    expectOk(svc.getReplicaList('k', TENANT), 'object survives a refused unmount');

    expectOk(svc.unmountSegment(s1.id, A), 'unmount by owner');
    assert.equal(svc.stats.segments, 0);
    assert.equal(svc.stats.capacityBytes, 0);
    assert.equal(svc.stats.usedBytes, 0);
    assert.equal(svc.stats.objects, 0);
    expectErr(svc.getReplicaList('k', TENANT), EC.OBJECT_NOT_FOUND);
    expectOk(svc.unmountSegment(s1.id, A), 'unmount again');
    expectOk(svc.unmountSegment(uuid(999), B), 'unmount of a segment never mounted');
  });

  test('unmount drops the segment\'s quarantined space too', () => {
    const { svc, clock } = harness(IMMORTAL);
    const s1 = segment(1, 4096);
    mount(svc, A, s1);
    put(svc, A, 'k', 128);
    expectOk(svc.getReplicaList('k', TENANT)); // lease until 10000
    expectOk(svc.remove('k', true, TENANT), 'force remove of a leased object');
    assert.equal(svc.stats.pendingFreeRegions, 1);
    expectOk(svc.unmountSegment(s1.id, A));
    assert.equal(svc.stats.pendingFreeRegions, 0);
    assert.equal(svc.stats.usedBytes, 0);
    clock.t = 20_000;
    svc.sweep(); // must not free into a dropped allocator
    assert.equal(svc.stats.usedBytes, 0);
  });

  test('ping: an unknown client gets NEED_REMOUNT until it mounts or remounts; PutStart does not make it known', () => {
    const { svc } = harness();
    mount(svc, B, segment(1, 4096));
    let p = expectOk(svc.ping(A));
    assert.equal(p.clientStatus, ClientStatus.NEED_REMOUNT);
    assert.equal(p.viewVersionId, 0n);
    assert.equal(expectOk(svc.ping(A)).clientStatus, ClientStatus.NEED_REMOUNT, 'a ping does not make a client known');
    assert.equal(svc.stats.clients, 1);

    expectOk(svc.putStart(A, 'k', 100n, config(), TENANT));
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT));
    assert.equal(expectOk(svc.ping(A)).clientStatus, ClientStatus.NEED_REMOUNT, 'PutStart/PutEnd do not make a client known');
    assert.equal(svc.stats.clients, 1);

    expectOk(svc.reMountSegment([], A), 'ReMount of no segment');
    p = expectOk(svc.ping(A));
    assert.equal(p.clientStatus, ClientStatus.OK);
    assert.equal(svc.stats.clients, 2);

    // MountSegment makes a client known too.
    assert.equal(expectOk(svc.ping(C)).clientStatus, ClientStatus.NEED_REMOUNT);
    mount(svc, C, segment(3, 64));
    assert.equal(expectOk(svc.ping(C)).clientStatus, ClientStatus.OK);
  });

  test('an expired client gets NEED_REMOUNT; ReMount restores its segments (empty) and makes it known', () => {
    const { svc, clock } = harness();
    const s1 = segment(1, 4096);
    mount(svc, A, s1);
    put(svc, A, 'k', 100);
    clock.t = DEFAULT_MASTER_CONFIG.clientTtlMs + 1;
    svc.sweep();
    assert.equal(svc.stats.clients, 0);
    assert.equal(svc.stats.segments, 0);
    assert.equal(expectOk(svc.ping(A)).clientStatus, ClientStatus.NEED_REMOUNT);
    expectOk(svc.reMountSegment([s1, segment(2, 1024)], A));
    assert.equal(expectOk(svc.ping(A)).clientStatus, ClientStatus.OK);
    assert.equal(svc.stats.segments, 2);
    assert.equal(svc.stats.usedBytes, 0);
    expectErr(svc.getReplicaList('k', TENANT), EC.OBJECT_NOT_FOUND, 'objects of an expired client are gone');
    expectOk(svc.reMountSegment([s1], A), 'ReMount of a segment already mounted is idempotent');
    assert.equal(svc.stats.segments, 2);
    checkAccounting(svc);
  });
});

// ---- put lifecycle ----

describe('MasterService: put lifecycle', () => {
  test('PutStart returns PROCESSING descriptors at segment base + offset, with the segment\'s endpoint and protocol', () => {
    const { svc } = harness();
    const s1 = segment(1, 4096, { protocol: 'rdma' });
    mount(svc, A, s1);
    const d1 = expectOk(svc.putStart(A, 'k1', 100n, config(), TENANT));
    assert.equal(d1.length, 1);
    const b1 = buf(d1[0]!);
    assert.equal(d1[0]!.status, ReplicaStatus.PROCESSING);
    assert.equal(b1.size, 100n);
    assert.equal(b1.bufferAddress, s1.base, 'the first object of an empty segment is at its base');
    assert.equal(b1.transportEndpoint, s1.teEndpoint);
    assert.equal(b1.protocol, 'rdma');

    const d2 = expectOk(svc.putStart(A, 'k2', 200n, config(), TENANT));
    const b2 = buf(d2[0]!);
    assert.ok(b2.bufferAddress >= s1.base + 100n, 'second object after the first');
    assert.ok(b2.bufferAddress + 200n <= s1.base + s1.size, 'inside the segment');
    assert.notEqual(d1[0]!.id, d2[0]!.id, 'replica ids differ');
    assert.equal(svc.stats.writingObjects, 2);
    checkAccounting(svc);
  });

  test('GetReplicaList is REPLICA_IS_NOT_READY before PutEnd and COMPLETE after; the checksum is returned', () => {
    const { svc } = harness({ leaseTtlMs: 5000 });
    const s1 = segment(1, 4096);
    mount(svc, A, s1);
    const ds = expectOk(svc.putStart(A, 'k', 100n, config(), TENANT));
    expectErr(svc.getReplicaList('k', TENANT), EC.REPLICA_IS_NOT_READY, 'before PutEnd');
    assert.equal(expectOk(svc.existKey('k', TENANT)), false, 'ExistKey before PutEnd');
    expectErr(svc.getReplicaList('missing', TENANT), EC.OBJECT_NOT_FOUND);
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: 1234n }, TENANT));
    const r = expectOk(svc.getReplicaList('k', TENANT));
    assert.equal(r.replicas.length, 1);
    assert.equal(r.replicas[0]!.status, ReplicaStatus.COMPLETE);
    assert.deepEqual(addrs(r.replicas), addrs(ds));
    assert.equal(buf(r.replicas[0]!).size, 100n);
    assert.equal(r.leaseTtlMs, 5000n);
    assert.equal(r.objectChecksum, 1234n);
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: 1234n }, TENANT), 'a retried PutEnd');
    expectErr(svc.getReplicaList('k', 'other-tenant'), EC.OBJECT_NOT_FOUND, 'tenants are separate');
  });

  test('a second PutStart of a key is OBJECT_ALREADY_EXISTS, in progress or complete; other tenants are separate', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 4096));
    expectOk(svc.putStart(A, 'k', 100n, config(), TENANT));
    const used = svc.stats.usedBytes;
    expectErr(svc.putStart(A, 'k', 100n, config(), TENANT), EC.OBJECT_ALREADY_EXISTS, 'same client, in progress');
    expectErr(svc.putStart(B, 'k', 50n, config(), TENANT), EC.OBJECT_ALREADY_EXISTS, 'other client, in progress');
    assert.equal(svc.stats.usedBytes, used, 'a refused PutStart takes no space');
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT));
    expectErr(svc.putStart(B, 'k', 100n, config(), TENANT), EC.OBJECT_ALREADY_EXISTS, 'complete');
    expectOk(svc.putStart(B, 'k', 100n, config(), 'tenant-b'), 'same key in another tenant');
    assert.equal(svc.stats.objects, 2);
  });

  test('PutEnd and PutRevoke by another client are ILLEGAL_CLIENT; unknown keys are OBJECT_NOT_FOUND', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 4096));
    expectOk(svc.putStart(A, 'k', 100n, config(), TENANT));
    expectErr(svc.putEnd(B, { key: 'k', objectChecksum: null }, TENANT), EC.ILLEGAL_CLIENT, 'PutEnd by B');
    expectErr(svc.putRevoke(B, 'k', TENANT), EC.ILLEGAL_CLIENT, 'PutRevoke by B');
    expectErr(svc.getReplicaList('k', TENANT), EC.REPLICA_IS_NOT_READY, 'still not ready after the refused End');
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT));
    expectErr(svc.putEnd(A, { key: 'nope', objectChecksum: null }, TENANT), EC.OBJECT_NOT_FOUND);
    expectErr(svc.putRevoke(A, 'nope', TENANT), EC.OBJECT_NOT_FOUND);
  });

  test('PutRevoke frees the space at once and forgets the key', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 4096));
    put(svc, A, 'other', 64);
    const base = svc.stats.usedBytes;
    expectOk(svc.putStart(A, 'k', 1000n, config(), TENANT));
    assert.ok(svc.stats.usedBytes >= base + 1000);
    expectOk(svc.putRevoke(A, 'k', TENANT));
    assert.equal(svc.stats.usedBytes, base);
    assert.equal(svc.stats.pendingFreeRegions, 0);
    expectErr(svc.getReplicaList('k', TENANT), EC.OBJECT_NOT_FOUND);
    expectErr(svc.putRevoke(A, 'other', TENANT), EC.INVALID_WRITE, 'PutRevoke of a complete object');
    put(svc, A, 'k', 1000);
    checkAccounting(svc);
  });

  test('a put never ended blocks its key until putStartDiscardMs; its space is reused only after putStartReleaseMs', () => {
    const { putStartDiscardMs, putStartReleaseMs } = DEFAULT_MASTER_CONFIG;
    const { svc, clock } = harness(IMMORTAL);
    const s1 = segment(1, 256);
    mount(svc, A, s1);
    const old = expectOk(svc.putStart(A, 'k', 128n, config(), TENANT));
    assert.equal(buf(old[0]!).bufferAddress, s1.base);

    clock.t = putStartDiscardMs;
    svc.sweep();
    expectErr(svc.putStart(B, 'k', 128n, config({ withHardPin: true }), TENANT), EC.OBJECT_ALREADY_EXISTS, 'at the discard timeout');

    clock.t = putStartDiscardMs + 1;
    const fresh = expectOk(svc.putStart(B, 'k', 128n, config({ withHardPin: true }), TENANT), 'after the discard timeout');
    assert.notEqual(buf(fresh[0]!).bufferAddress, s1.base, 'the discarded space is not handed out again yet');
    assert.equal(svc.stats.usedBytes, 256, 'the discarded space is still held');
    assert.equal(svc.stats.pendingFreeRegions, 1);
    assert.equal(svc.stats.objects, 1);
    expectErr(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT), EC.ILLEGAL_CLIENT, 'the old writer no longer owns the key');
    expectOk(svc.putEnd(B, { key: 'k', objectChecksum: null }, TENANT));
    expectErr(svc.putStart(C, 'k2', 128n, config(), TENANT), EC.NO_AVAILABLE_HANDLE, 'quarantined space is not reused');

    clock.t = putStartReleaseMs - 1;
    svc.sweep();
    assert.equal(svc.stats.pendingFreeRegions, 1);
    assert.equal(svc.stats.usedBytes, 256);

    clock.t = putStartReleaseMs; // the release timeout counts from the discarded put's start (t = 0)
    svc.sweep();
    assert.equal(svc.stats.pendingFreeRegions, 0);
    assert.equal(svc.stats.usedBytes, 128);
    const k2 = expectOk(svc.putStart(C, 'k2', 128n, config(), TENANT), 'the released space is reused');
    assert.equal(buf(k2[0]!).bufferAddress, s1.base);
    checkAccounting(svc);
  });

  test('invalid parameters give Mooncake\'s codes and take nothing (PutStart, and UpsertStart of new and existing keys)', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 1 << 20));
    put(svc, A, 'existing', 64);
    const max = BigInt(DEFAULT_MASTER_CONFIG.maxSoftPinTtlMs);
    const cases: { what: string; key?: string; len?: bigint; cfg: Partial<ReplicateConfigWire>; code: number }[] = [
      { what: 'empty key', key: '', cfg: {}, code: EC.INVALID_PARAMS },
      { what: 'zero length', len: 0n, cfg: {}, code: EC.INVALID_PARAMS },
      { what: 'replicaNum 0', cfg: { replicaNum: 0n }, code: EC.INVALID_PARAMS },
      { what: 'NoF replicas', cfg: { nofReplicaNum: 1n }, code: EC.INVALID_PARAMS },
      { what: 'DFS replicas', cfg: { dfsReplicaNum: 1n }, code: DFS_SERVICE_UNAVAILABLE },
      { what: 'soft pin TTL with PRESERVE', cfg: { softPinTtlMs: 1000n }, code: EC.INVALID_PARAMS },
      { what: 'soft pin TTL with DISABLE', cfg: { softPinAction: SoftPinAction.DISABLE, softPinTtlMs: 1000n }, code: EC.INVALID_PARAMS },
      { what: 'unknown soft pin action', cfg: { softPinAction: 3 }, code: EC.INVALID_PARAMS },
      { what: 'soft pin TTL above the max', cfg: { softPinAction: SoftPinAction.ENABLE, softPinTtlMs: max + 1n }, code: EC.INVALID_PARAMS },
    ];
    const before = svc.stats;
    for (const c of cases) {
      expectErr(svc.putStart(A, c.key ?? 'new', c.len ?? 100n, config(c.cfg), TENANT), c.code, `PutStart: ${c.what}`);
      expectErr(svc.upsertStart(A, c.key ?? 'new2', c.len ?? 100n, config(c.cfg), TENANT), c.code, `UpsertStart of a new key: ${c.what}`);
      if (c.key === undefined) expectErr(svc.upsertStart(A, 'existing', c.len ?? 64n, config(c.cfg), TENANT), c.code, `UpsertStart of an existing key: ${c.what}`);
    }
    assert.deepEqual(svc.stats, before, 'failed starts change nothing');
    expectOk(svc.getReplicaList('existing', TENANT), 'the existing object is still readable (not left writing)');
    expectOk(svc.putStart(A, 'pin-max', 100n, config({ softPinAction: SoftPinAction.ENABLE, softPinTtlMs: max }), TENANT), 'TTL = max is allowed');
    expectOk(svc.putStart(A, 'pin-default', 100n, config({ softPinAction: SoftPinAction.ENABLE }), TENANT), 'ENABLE without TTL');
    expectOk(svc.putStart(A, 'no-pin', 100n, config({ softPinAction: SoftPinAction.DISABLE }), TENANT), 'DISABLE without TTL');
  });
});

// ---- placement ----

describe('MasterService: placement', () => {
  test('replicaNum 2 on 3 segments: 2 replicas on distinct segments, each inside its segment', () => {
    const { svc } = harness();
    const segs = [segment(1, 1 << 16), segment(2, 1 << 16), segment(3, 1 << 16)];
    mount(svc, A, ...segs);
    const byTe = new Map(segs.map((s) => [s.teEndpoint, s]));
    const seen = new Set<string>();
    for (let i = 0; i < 6; i++) {
      const ds = expectOk(svc.putStart(A, `k${i}`, 1000n, config({ replicaNum: 2n }), TENANT));
      assert.equal(ds.length, 2);
      const tes = endpoints(ds);
      assert.notEqual(tes[0], tes[1], 'distinct segments');
      for (const d of ds) {
        const b = buf(d);
        const s = byTe.get(b.transportEndpoint);
        assert.ok(s, 'a known endpoint');
        assert.ok(b.bufferAddress >= s.base && b.bufferAddress + b.size <= s.base + s.size, 'inside its segment');
        seen.add(b.transportEndpoint);
      }
    }
    assert.equal(seen.size, 3, 'load spreads over all segments');
  });

  test('replicaNum 3 on 2 segments: 2 replicas, one per segment', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 4096), segment(2, 4096));
    const ds = expectOk(svc.putStart(A, 'k', 100n, config({ replicaNum: 3n }), TENANT));
    assert.equal(ds.length, 2);
    assert.deepEqual(new Set(endpoints(ds)), new Set([segment(1, 1).teEndpoint, segment(2, 1).teEndpoint]));
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT));
    assert.equal(expectOk(svc.getReplicaList('k', TENANT)).replicas.length, 2);
  });

  test('preferredSegments are honoured in order; an unknown name falls back', () => {
    const { svc } = harness();
    const [s1, s2, s3] = [segment(1, 4096), segment(2, 4096), segment(3, 4096)];
    mount(svc, A, s1, s2, s3);
    for (let i = 0; i < 3; i++) {
      const ds = expectOk(svc.putStart(A, `one${i}`, 64n, config({ preferredSegments: ['seg3', 'seg1'] }), TENANT));
      assert.deepEqual(endpoints(ds), [s3.teEndpoint], 'the first preferred segment gets the replica');
    }
    const two = expectOk(svc.putStart(A, 'two', 64n, config({ replicaNum: 2n, preferredSegments: ['seg3', 'seg1'] }), TENANT));
    assert.deepEqual(endpoints(two), [s3.teEndpoint, s1.teEndpoint]);
    const unknown = expectOk(svc.putStart(A, 'unknown', 64n, config({ preferredSegments: ['nosuchseg:1'] }), TENANT));
    assert.equal(unknown.length, 1);
  });

  test('the deprecated preferredSegment wins over preferredSegments', () => {
    const { svc } = harness();
    const [s1, s2, s3] = [segment(1, 4096), segment(2, 4096), segment(3, 4096)];
    mount(svc, A, s1, s2, s3);
    for (let i = 0; i < 3; i++) {
      const ds = expectOk(svc.putStart(A, `k${i}`, 64n, config({ preferredSegment: 'seg2', preferredSegments: ['seg3'] }), TENANT));
      assert.deepEqual(endpoints(ds), [s2.teEndpoint]);
    }
  });

  test('same-host preference: config.hostId, and preferAllocInSameNode with the writer\'s host', () => {
    const { svc } = harness();
    const s1 = segment(1, 4096, { hostId: 'hA' });
    const s2 = segment(2, 4096, { hostId: 'hB' });
    const s3 = segment(3, 4096, { hostId: 'hB' });
    const s4 = segment(4, 4096, { hostId: 'hC' });
    mount(svc, B, s1, s2, s3);
    mount(svc, A, s4); // the writer A lives on host hC
    for (let i = 0; i < 4; i++) {
      const ds = expectOk(svc.putStart(A, `h${i}`, 64n, config({ hostId: 'hB' }), TENANT));
      assert.ok([s2.teEndpoint, s3.teEndpoint].includes(buf(ds[0]!).transportEndpoint), `hostId hB: got ${buf(ds[0]!).transportEndpoint}`);
    }
    for (let i = 0; i < 4; i++) {
      const ds = expectOk(svc.putStart(A, `n${i}`, 64n, config({ preferAllocInSameNode: true }), TENANT));
      assert.deepEqual(endpoints(ds), [s4.teEndpoint], 'the writer\'s own host');
    }
    const both = expectOk(svc.putStart(A, 'both', 64n, config({ replicaNum: 2n, hostId: 'hA' }), TENANT));
    assert.equal(buf(both[0]!).transportEndpoint, s1.teEndpoint, 'the host\'s segment first');
    assert.notEqual(buf(both[1]!).transportEndpoint, s1.teEndpoint);
  });

  test('a full preferred segment is skipped without evicting', () => {
    const { svc } = harness();
    const s1 = segment(1, 256);
    const s2 = segment(2, 4096);
    mount(svc, A, s1, s2);
    put(svc, A, 'fill', 256, { preferredSegments: ['seg1'] });
    const ds = expectOk(svc.putStart(A, 'k', 64n, config({ preferredSegments: ['seg1'] }), TENANT));
    assert.deepEqual(endpoints(ds), [s2.teEndpoint]);
    assert.equal(svc.counters.evictedObjects, 0);
    expectOk(svc.getReplicaList('fill', TENANT));
    checkAccounting(svc);
  });

  test('no room anywhere (everything pinned or being written): NO_AVAILABLE_HANDLE, nothing changes', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 256), segment(2, 256));
    put(svc, A, 'pinned', 256, { withHardPin: true, preferredSegments: ['seg1'] });
    expectOk(svc.putStart(A, 'writing', 256n, config({ preferredSegments: ['seg2'] }), TENANT));
    const before = svc.stats;
    expectErr(svc.putStart(A, 'k', 8n, config(), TENANT), EC.NO_AVAILABLE_HANDLE);
    assert.deepEqual(svc.stats, before);
    expectErr(svc.putStart(A, 'k', 8n, config(), TENANT), EC.NO_AVAILABLE_HANDLE, 'no object was left behind');
  });

  test('a put larger than every segment is NO_AVAILABLE_HANDLE and evicts nothing', () => {
    // Mooncake answers -200 for 1 GiB into a 64 MiB segment; evicting cannot make room for it.
    const { svc } = harness();
    mount(svc, A, segment(1, 4096), segment(2, 4096));
    for (let i = 0; i < 8; i++) put(svc, A, `k${i}`, 512);
    expectErr(svc.putStart(A, 'huge', 8192n, config(), TENANT), EC.NO_AVAILABLE_HANDLE);
    assert.equal(svc.stats.objects, 8, 'no object was evicted for a put that cannot fit');
    assert.equal(svc.counters.evictedObjects, 0);
  });

  test('many objects get distinct, non-overlapping ranges inside their segments', () => {
    const { svc } = harness({ evictionHighWatermark: 1 });
    const segs = [segment(1, 128 * 1024), segment(2, 128 * 1024), segment(3, 128 * 1024)];
    mount(svc, A, ...segs);
    const byTe = new Map(segs.map((s) => [s.teEndpoint, s]));
    const ranges = new Map<string, { start: bigint; end: bigint; key: string }[]>(segs.map((s) => [s.teEndpoint, []]));
    const rand = mulberry32(42);
    for (let i = 0; i < 200; i++) {
      const size = 1 + Math.floor(rand() * 600);
      const ds = put(svc, A, `obj${i}`, size, { replicaNum: 2n });
      assert.equal(ds.length, 2);
      assert.notEqual(endpoints(ds)[0], endpoints(ds)[1]);
      for (const d of ds) {
        const b = buf(d);
        assert.equal(b.size, BigInt(size));
        const s = byTe.get(b.transportEndpoint)!;
        assert.ok(b.bufferAddress >= s.base && b.bufferAddress + b.size <= s.base + s.size, 'inside its segment');
        ranges.get(b.transportEndpoint)!.push({ start: b.bufferAddress, end: b.bufferAddress + b.size, key: `obj${i}` });
      }
    }
    for (const [te, rs] of ranges) {
      rs.sort((x, y) => (x.start < y.start ? -1 : x.start > y.start ? 1 : 0));
      for (let i = 1; i < rs.length; i++) assert.ok(rs[i - 1]!.end <= rs[i]!.start, `${te}: ${rs[i - 1]!.key} overlaps ${rs[i]!.key}`);
    }
    assert.equal(svc.stats.objects, 200);
    checkAccounting(svc);
  });
});

// ---- leases and removal ----

describe('MasterService: leases and removal', () => {
  test('GetReplicaList grants a lease of leaseTtlMs: Remove is OBJECT_HAS_LEASE until it ends', () => {
    const { svc, clock } = harness({ ...IMMORTAL, leaseTtlMs: 5000 });
    mount(svc, A, segment(1, 4096));
    put(svc, A, 'k', 128);
    assert.equal(svc.stats.leasedObjects, 0, 'a put grants no lease');
    clock.t = 1000;
    assert.equal(expectOk(svc.getReplicaList('k', TENANT)).leaseTtlMs, 5000n);
    assert.equal(svc.stats.leasedObjects, 1);
    expectErr(svc.remove('k', false, TENANT), EC.OBJECT_HAS_LEASE);
    clock.t = 5999;
    expectErr(svc.remove('k', false, TENANT), EC.OBJECT_HAS_LEASE, 'one ms before the lease ends');
    clock.t = 6000;
    assert.equal(svc.stats.leasedObjects, 0);
    expectOk(svc.remove('k', false, TENANT), 'when the lease ends');
    assert.equal(svc.stats.usedBytes, 0, 'an unleased remove frees at once');
    expectErr(svc.remove('k', false, TENANT), EC.OBJECT_NOT_FOUND);
  });

  test('a later read extends the lease; ExistKey(true) grants one, ExistKey(false) does not', () => {
    const { svc, clock } = harness(IMMORTAL);
    mount(svc, A, segment(1, 4096));
    put(svc, A, 'k', 128);
    assert.equal(expectOk(svc.existKey('k', TENANT)), true);
    expectErr(svc.remove('k', false, TENANT), EC.OBJECT_HAS_LEASE, 'ExistKey(true) leased it');
    clock.t = 8000;
    expectOk(svc.getReplicaList('k', TENANT)); // until 18000
    clock.t = 12_000;
    expectErr(svc.remove('k', false, TENANT), EC.OBJECT_HAS_LEASE, 'the later read extended the lease');
    clock.t = 18_000;
    expectOk(svc.remove('k', false, TENANT));

    assert.equal(expectOk(svc.existKey('missing', TENANT)), false);
    expectOk(svc.putStart(A, 'w', 64n, config(), TENANT));
    assert.equal(expectOk(svc.existKey('w', TENANT)), false, 'a put in progress does not exist yet');
    assert.equal(svc.stats.leasedObjects, 0, 'ExistKey(false) grants no lease');
  });

  test('Remove with force removes a leased object; its space is freed when the lease ends', () => {
    const { svc, clock } = harness(IMMORTAL);
    const s1 = segment(1, 4096);
    mount(svc, A, s1);
    put(svc, A, 'k', 128);
    expectOk(svc.getReplicaList('k', TENANT)); // lease until 10000
    expectOk(svc.remove('k', true, TENANT));
    expectErr(svc.getReplicaList('k', TENANT), EC.OBJECT_NOT_FOUND);
    assert.equal(svc.stats.usedBytes, 128, 'a reader may still be reading: the space is held');
    assert.equal(svc.stats.pendingFreeRegions, 1);
    const again = put(svc, A, 'k', 128);
    assert.notEqual(buf(again[0]!).bufferAddress, s1.base, 'the new value does not land in the leased space');
    clock.t = 9999;
    svc.sweep();
    assert.equal(svc.stats.pendingFreeRegions, 1);
    clock.t = 10_000;
    svc.sweep();
    assert.equal(svc.stats.pendingFreeRegions, 0);
    assert.equal(svc.stats.usedBytes, 128);
    checkAccounting(svc);
  });

  test('Remove of an object being written is REPLICA_IS_NOT_READY, even with force', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 4096));
    expectOk(svc.putStart(A, 'k', 128n, config(), TENANT));
    expectErr(svc.remove('k', false, TENANT), EC.REPLICA_IS_NOT_READY);
    expectErr(svc.remove('k', true, TENANT), EC.REPLICA_IS_NOT_READY, 'with force');
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT), 'the write can still end');
    expectOk(svc.remove('k', false, TENANT));
    expectErr(svc.remove('nope', true, TENANT), EC.OBJECT_NOT_FOUND);
  });

  test('RemoveByRegex / RemoveAll (removeWhere) skip leased objects unless forced, never writing ones, count, respect tenants', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 1 << 16));
    for (const k of ['x1', 'x2', 'xleased', 'y1', 'y2', 'yleased']) put(svc, A, k, 64, {}, 'a');
    expectOk(svc.putStart(A, 'xwriting', 64n, config(), 'a'));
    put(svc, A, 'x1', 64, {}, 'b');
    put(svc, A, 'x2', 64, {}, 'b');
    expectOk(svc.getReplicaList('xleased', 'a'));
    expectOk(svc.getReplicaList('yleased', 'a'));

    assert.equal(expectOk(svc.removeByRegex('^x', false, 'a')), 2n, 'x1, x2: not the leased nor the writing one');
    assert.deepEqual(present(svc, ['x1', 'x2'], 'b'), ['x1', 'x2'], 'other tenants untouched');
    assert.equal(has(svc, 'x1', 'a'), false);
    assert.equal(expectOk(svc.removeByRegex('^x', false, 'a')), 0n, 'nothing left to remove without force');
    assert.equal(expectOk(svc.removeByRegex('1$', false, 'a')), 1n, 'a search, not a full match: y1');
    assert.equal(svc.removeWhere(() => true, false, 'a'), 1, 'RemoveAll without force: y2 only');
    assert.equal(svc.removeWhere(() => true, true, 'a'), 2, 'RemoveAll with force: the leased ones');
    expectErr(svc.getReplicaList('xwriting', 'a'), EC.REPLICA_IS_NOT_READY, 'the object being written stays');
    assert.equal(svc.removeWhere(() => true, true, 'a'), 0);
    assert.equal(svc.stats.objects, 3, 'xwriting in a, x1 and x2 in b');

    expectErr(svc.removeByRegex('(', false, 'b'), EC.INVALID_PARAMS, 'unbalanced parenthesis');
    expectErr(svc.removeByRegex('[', true, 'b'), EC.INVALID_PARAMS, 'unterminated class');
    assert.equal(svc.stats.objects, 3, 'an invalid regex removes nothing');
    assert.equal(expectOk(svc.removeByRegex('.*', true, 'b')), 2n);
    assert.equal(svc.removeWhere(() => true, true, 'nobody'), 0);
  });
});

// ---- eviction ----

describe('MasterService: eviction', () => {
  const SIZE = 64;

  test('a sweep above the watermark evicts least recently used first, never leased, hard-pinned or writing objects', () => {
    const { svc, clock } = harness({ ...IMMORTAL, evictionHighWatermark: 0.5 });
    mount(svc, A, segment(1, 20 * SIZE));
    const keys = Array.from({ length: 20 }, (_, i) => `k${i}`);
    // Start every put first (objects being written are not evictable), so the fill goes past the watermark.
    for (const k of keys) expectOk(svc.putStart(A, k, BigInt(SIZE), config({ withHardPin: k === 'k2' || k === 'k3' }), TENANT));
    assert.equal(svc.stats.usedBytes, 20 * SIZE);
    assert.equal(svc.counters.evictedObjects, 0);
    for (const k of keys) if (k !== 'k4') expectOk(svc.putEnd(A, { key: k, objectChecksum: null }, TENANT));
    expectOk(svc.getReplicaList('k5', TENANT)); // recently used, lease over by the sweep
    clock.t = DEFAULT_MASTER_CONFIG.leaseTtlMs + 1;
    expectOk(svc.getReplicaList('k0', TENANT)); // leased at the sweep
    expectOk(svc.getReplicaList('k1', TENANT));

    svc.sweep();
    assert.ok(svc.stats.usedBytes <= 0.5 * 20 * SIZE, `used ${svc.stats.usedBytes} above the watermark`);
    assert.equal(svc.counters.evictedObjects, 10);
    assert.equal(svc.counters.evictedBytes, 10 * SIZE);
    // LRU order at the sweep: k4 (writing), k2, k3 (pinned), k6..k19, k5, k0, k1 (leased).
    const evicted = keys.filter((k) => !present(svc, [k]).length);
    assert.deepEqual(evicted, ['k6', 'k7', 'k8', 'k9', 'k10', 'k11', 'k12', 'k13', 'k14', 'k15']);
    expectErr(svc.getReplicaList('k4', TENANT), EC.REPLICA_IS_NOT_READY, 'the object being written survives');
    checkAccounting(svc);
  });

  test('when nothing is evictable eviction stops short, and resumes when leases end', () => {
    const { svc, clock } = harness({ ...IMMORTAL, evictionHighWatermark: 0.5 });
    mount(svc, A, segment(1, 10 * SIZE));
    for (let i = 0; i < 10; i++) expectOk(svc.putStart(A, `k${i}`, BigInt(SIZE), config(), TENANT));
    for (let i = 0; i < 10; i++) expectOk(svc.putEnd(A, { key: `k${i}`, objectChecksum: null }, TENANT));
    for (let i = 0; i < 10; i++) expectOk(svc.getReplicaList(`k${i}`, TENANT));
    svc.sweep();
    assert.equal(svc.stats.objects, 10, 'every object is leased');
    assert.equal(svc.stats.usedBytes, 10 * SIZE);
    clock.t = DEFAULT_MASTER_CONFIG.leaseTtlMs;
    svc.sweep();
    assert.equal(svc.stats.objects, 5);
    assert.equal(svc.stats.usedBytes, 5 * SIZE);
    assert.deepEqual(present(svc, ['k0', 'k1', 'k2', 'k3', 'k4']), [], 'the least recently read went first');
  });

  const SOFT_ORDER = ['s0', 'n0', 's1', 'n1', 's2', 'n2', 's3', 's4', 's5', 's6'];

  /** 10 objects filling the segment, s* soft-pinned (default TTL), n* not; watermark 0.5; then one sweep. */
  const softPinScenario = (allowEvictSoftPinned: boolean): { svc: MasterService; clock: { t: number } } => {
    const h = harness({ ...IMMORTAL, evictionHighWatermark: 0.5, allowEvictSoftPinned });
    mount(h.svc, A, segment(1, 10 * SIZE));
    for (const k of SOFT_ORDER) {
      const cfg = k.startsWith('s') ? config({ softPinAction: SoftPinAction.ENABLE }) : config();
      expectOk(h.svc.putStart(A, k, BigInt(SIZE), cfg, TENANT));
    }
    for (const k of SOFT_ORDER) expectOk(h.svc.putEnd(A, { key: k, objectChecksum: null }, TENANT));
    h.svc.sweep();
    return h;
  };

  test('soft-pinned objects go only after all others, when allowEvictSoftPinned', () => {
    const { svc } = softPinScenario(true);
    assert.equal(svc.stats.usedBytes, 5 * SIZE);
    assert.deepEqual(present(svc, SOFT_ORDER), ['s2', 's3', 's4', 's5', 's6']);
    assert.equal(svc.counters.evictedObjects, 5);
  });

  test('soft-pinned objects are never evicted without allowEvictSoftPinned, until their pin lapses', () => {
    const { svc, clock } = softPinScenario(false);
    assert.equal(svc.counters.evictedObjects, 3);
    assert.equal(svc.stats.usedBytes, 7 * SIZE, 'above the watermark: only soft-pinned objects are left');
    clock.t = DEFAULT_MASTER_CONFIG.softPinTtlMs - 1;
    svc.sweep();
    assert.equal(svc.counters.evictedObjects, 3);
    clock.t = DEFAULT_MASTER_CONFIG.softPinTtlMs + 1; // the default soft pin TTL has run out
    svc.sweep();
    assert.equal(svc.stats.usedBytes, 5 * SIZE);
    assert.deepEqual(present(svc, ['s0', 's1', 's2', 's3', 's4', 's5', 's6']), ['s2', 's3', 's4', 's5', 's6']);
  });

  test('an explicit soft pin TTL is honoured', () => {
    const { svc, clock } = harness({ ...IMMORTAL, evictionHighWatermark: 0.5, allowEvictSoftPinned: false });
    mount(svc, A, segment(1, 10 * SIZE));
    expectOk(svc.putStart(A, 'short', BigInt(SIZE), config({ softPinAction: SoftPinAction.ENABLE, softPinTtlMs: 5000n }), TENANT));
    expectOk(svc.putStart(A, 'long', BigInt(SIZE), config({ softPinAction: SoftPinAction.ENABLE }), TENANT));
    for (let i = 0; i < 8; i++) expectOk(svc.putStart(A, `p${i}`, BigInt(SIZE), config({ withHardPin: true }), TENANT));
    for (const k of ['short', 'long', ...Array.from({ length: 8 }, (_, i) => `p${i}`)]) expectOk(svc.putEnd(A, { key: k, objectChecksum: null }, TENANT));
    svc.sweep();
    assert.equal(svc.stats.objects, 10);
    clock.t = 5001;
    svc.sweep();
    assert.equal(svc.counters.evictedObjects, 1);
    assert.deepEqual(present(svc, ['short', 'long']), ['long']);
  });

  test('a put that finds no room evicts (skipping leased objects) and succeeds at once', () => {
    const { svc } = harness({ evictionHighWatermark: 1 });
    mount(svc, A, segment(1, 10 * SIZE));
    for (let i = 0; i < 10; i++) put(svc, A, `k${i}`, SIZE);
    expectOk(svc.getReplicaList('k0', TENANT)); // leased (and most recently used)
    assert.equal(svc.stats.usedBytes, 10 * SIZE);
    const ds = expectOk(svc.putStart(A, 'new', BigInt(SIZE), config(), TENANT), 'no sweep needed');
    assert.equal(ds.length, 1);
    assert.equal(svc.counters.evictedObjects, 1);
    assert.deepEqual(present(svc, Array.from({ length: 10 }, (_, i) => `k${i}`)), ['k0', 'k2', 'k3', 'k4', 'k5', 'k6', 'k7', 'k8', 'k9']);
    expectOk(svc.putEnd(A, { key: 'new', objectChecksum: null }, TENANT));
    checkAccounting(svc);
  });

  test('a put past the watermark triggers eviction without a sweep; counters advance', () => {
    const { svc } = harness(); // watermark 0.9, ratio 0.05
    mount(svc, A, segment(1, 10 * SIZE));
    for (let i = 0; i < 9; i++) put(svc, A, `k${i}`, SIZE);
    assert.equal(svc.counters.evictedObjects, 0);
    put(svc, A, 'k9', SIZE); // 640 > 576
    assert.equal(svc.counters.evictedObjects, 1);
    assert.ok(svc.counters.evictionRounds >= 1);
    assert.ok(svc.stats.usedBytes <= 0.9 * 10 * SIZE);
    assert.equal(has(svc, 'k0'), false, 'the least recently used went');
    assert.equal(has(svc, 'k9'), true, 'the new object stays');
  });
});

// ---- liveness ----

describe('MasterService: liveness', () => {
  test('a client silent for clientTtlMs loses its segments at sweep, and the objects only it held', () => {
    const ttl = DEFAULT_MASTER_CONFIG.clientTtlMs;
    const { svc, clock } = harness();
    const s1 = segment(1, 4096);
    const s2 = segment(2, 4096);
    mount(svc, A, s1);
    mount(svc, B, s2);
    put(svc, B, 'only1', 128, { preferredSegments: ['seg1'] });
    put(svc, B, 'only2', 128, { preferredSegments: ['seg2'] });
    put(svc, B, 'both', 128, { replicaNum: 2n });
    expectOk(svc.putStart(B, 'writing1', 128n, config({ preferredSegments: ['seg1'] }), TENANT));
    expectOk(svc.putStart(B, 'writing2', 128n, config({ replicaNum: 2n }), TENANT));

    clock.t = ttl;
    expectOk(svc.ping(B));
    svc.sweep();
    assert.equal(svc.stats.segments, 2, 'at exactly the TTL the client is still alive');

    clock.t = ttl + 1;
    expectOk(svc.ping(B));
    svc.sweep();
    assert.equal(svc.stats.clients, 1);
    assert.equal(svc.stats.segments, 1);
    assert.equal(svc.stats.capacityBytes, 4096);
    assert.equal(svc.counters.expiredClients, 1);
    assert.equal(svc.counters.droppedReplicas, 4, 'only1, both, writing1, writing2 lost one replica each');
    assert.equal(expectOk(svc.ping(A)).clientStatus, ClientStatus.NEED_REMOUNT);

    expectErr(svc.getReplicaList('only1', TENANT), EC.OBJECT_NOT_FOUND);
    const both = expectOk(svc.getReplicaList('both', TENANT));
    assert.deepEqual(endpoints(both.replicas), [s2.teEndpoint], 'only the surviving replica');
    expectOk(svc.getReplicaList('only2', TENANT));
    expectErr(svc.getReplicaList('writing1', TENANT), EC.OBJECT_NOT_FOUND, 'a put whose replicas all went is gone');
    expectErr(svc.putEnd(B, { key: 'writing1', objectChecksum: null }, TENANT), EC.OBJECT_NOT_FOUND);
    expectOk(svc.putEnd(B, { key: 'writing2', objectChecksum: null }, TENANT), 'a put with a surviving replica can end');
    assert.deepEqual(endpoints(expectOk(svc.getReplicaList('writing2', TENANT)).replicas), [s2.teEndpoint]);
    put(svc, B, 'only1', 128, { preferredSegments: ['seg1'] }); // the key is free again
    checkAccounting(svc);
  });

  test('a client that pings keeps its segments; mounting counts as a sign of life', () => {
    const ttl = DEFAULT_MASTER_CONFIG.clientTtlMs;
    const { svc, clock } = harness();
    mount(svc, A, segment(1, 4096));
    put(svc, A, 'k', 128);
    for (clock.t = 0; clock.t <= 5 * ttl; clock.t += ttl / 2) {
      expectOk(svc.ping(A));
      svc.sweep();
    }
    assert.equal(svc.stats.segments, 1);
    clock.t += ttl;
    mount(svc, A, segment(1, 4096)); // remount of the same segment refreshes the client
    clock.t += ttl / 2;
    svc.sweep();
    assert.equal(svc.stats.segments, 1);
    assert.equal(has(svc, 'k'), true);
  });
});

// ---- upsert ----

describe('MasterService: upsert', () => {
  test('UpsertStart of a new key behaves as a put', () => {
    const { svc } = harness();
    const s1 = segment(1, 4096);
    mount(svc, A, s1);
    const ds = expectOk(svc.upsertStart(A, 'k', 100n, config(), TENANT));
    assert.equal(ds.length, 1);
    assert.equal(ds[0]!.status, ReplicaStatus.PROCESSING);
    assert.equal(buf(ds[0]!).bufferAddress, s1.base);
    expectErr(svc.getReplicaList('k', TENANT), EC.REPLICA_IS_NOT_READY);
    expectErr(svc.putStart(B, 'k', 100n, config(), TENANT), EC.OBJECT_ALREADY_EXISTS);
    expectErr(svc.putEnd(B, { key: 'k', objectChecksum: null }, TENANT), EC.ILLEGAL_CLIENT);
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: 7n }, TENANT));
    const r = expectOk(svc.getReplicaList('k', TENANT));
    assert.equal(r.replicas[0]!.status, ReplicaStatus.COMPLETE);
    assert.equal(r.objectChecksum, 7n);
  });

  test('same size and no lease: rewritten in place; readers get REPLICA_IS_NOT_READY until UpsertEnd', () => {
    const { svc, clock } = harness(IMMORTAL);
    mount(svc, A, segment(1, 4096));
    const first = put(svc, A, 'k', 128);
    expectOk(svc.getReplicaList('k', TENANT));
    clock.t = DEFAULT_MASTER_CONFIG.leaseTtlMs; // the lease has ended
    const used = svc.stats.usedBytes;
    const ds = expectOk(svc.upsertStart(B, 'k', 128n, config(), TENANT));
    assert.deepEqual(addrs(ds), addrs(first), 'same addresses');
    assert.equal(ds[0]!.status, ReplicaStatus.PROCESSING);
    assert.equal(svc.stats.usedBytes, used, 'no new space');
    expectErr(svc.getReplicaList('k', TENANT), EC.REPLICA_IS_NOT_READY, 'the old bytes are being overwritten');
    expectErr(svc.upsertStart(C, 'k', 128n, config(), TENANT), EC.OBJECT_REPLICA_BUSY, 'a second upsert meanwhile');
    expectErr(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT), EC.ILLEGAL_CLIENT, 'UpsertEnd by another client');
    expectOk(svc.putEnd(B, { key: 'k', objectChecksum: 2n }, TENANT), 'UpsertEnd');
    const r = expectOk(svc.getReplicaList('k', TENANT));
    assert.deepEqual(addrs(r.replicas), addrs(first));
    assert.equal(r.replicas[0]!.status, ReplicaStatus.COMPLETE);
    assert.equal(r.objectChecksum, 2n);
    assert.equal(svc.stats.pendingFreeRegions, 0);
    checkAccounting(svc);
  });

  test('a different size: new space; the old value stays readable until UpsertEnd and its space is freed after the lease', () => {
    const { svc, clock } = harness(IMMORTAL);
    mount(svc, A, segment(1, 4096));
    const old = put(svc, A, 'k', 128);
    expectOk(svc.getReplicaList('k', TENANT)); // lease until 10000
    clock.t = 1000;
    const ds = expectOk(svc.upsertStart(A, 'k', 256n, config(), TENANT));
    assert.notDeepEqual(addrs(ds), addrs(old), 'new space');
    assert.equal(svc.stats.usedBytes, 384);
    const during = expectOk(svc.getReplicaList('k', TENANT)); // lease until 11000
    assert.deepEqual(addrs(during.replicas), addrs(old), 'readers still see the old value');
    assert.equal(buf(during.replicas[0]!).size, 128n);
    assert.equal(during.replicas[0]!.status, ReplicaStatus.COMPLETE);

    clock.t = 2000;
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT));
    const after = expectOk(svc.getReplicaList('k', TENANT));
    assert.deepEqual(addrs(after.replicas), addrs(ds), 'the new value');
    assert.equal(buf(after.replicas[0]!).size, 256n);
    assert.equal(svc.stats.usedBytes, 384, 'the old space is held while a reader may use it');
    assert.equal(svc.stats.pendingFreeRegions, 1);
    clock.t = 10_999;
    svc.sweep();
    assert.equal(svc.stats.usedBytes, 384);
    clock.t = 11_000;
    svc.sweep();
    assert.equal(svc.stats.usedBytes, 256);
    assert.equal(svc.stats.pendingFreeRegions, 0);
    checkAccounting(svc);
  });

  test('same size but leased: new space, the old value readable until UpsertEnd', () => {
    const { svc, clock } = harness(IMMORTAL);
    mount(svc, A, segment(1, 4096));
    const old = put(svc, A, 'k', 128);
    expectOk(svc.getReplicaList('k', TENANT)); // lease until 10000
    clock.t = 1;
    const ds = expectOk(svc.upsertStart(A, 'k', 128n, config(), TENANT));
    assert.notDeepEqual(addrs(ds), addrs(old), 'a reader holds the old bytes: not in place');
    assert.deepEqual(addrs(expectOk(svc.getReplicaList('k', TENANT)).replicas), addrs(old));
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: null }, TENANT));
    assert.deepEqual(addrs(expectOk(svc.getReplicaList('k', TENANT)).replicas), addrs(ds));
    assert.equal(svc.stats.pendingFreeRegions, 1);
  });

  test('UpsertRevoke of an in-place upsert removes the object and frees its space', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 4096));
    put(svc, A, 'k', 128);
    put(svc, A, 'other', 64);
    expectOk(svc.upsertStart(A, 'k', 128n, config(), TENANT));
    let r: Result<null> | undefined;
    assert.doesNotThrow(() => {
      r = svc.putRevoke(A, 'k', TENANT);
    }, 'UpsertRevoke of an in-place upsert');
    expectOk(r!);
    expectErr(svc.getReplicaList('k', TENANT), EC.OBJECT_NOT_FOUND, 'its old bytes were partly overwritten: gone');
    assert.equal(svc.stats.usedBytes, 64);
    checkAccounting(svc);
    put(svc, A, 'k', 128);
  });

  test('UpsertRevoke of an upsert to new space keeps the old value and frees the new space', () => {
    const { svc } = harness();
    mount(svc, A, segment(1, 4096));
    const old = expectOk(svc.putStart(A, 'k', 128n, config(), TENANT));
    expectOk(svc.putEnd(A, { key: 'k', objectChecksum: 1n }, TENANT));
    expectOk(svc.upsertStart(A, 'k', 256n, config(), TENANT));
    expectOk(svc.putRevoke(A, 'k', TENANT));
    const r = expectOk(svc.getReplicaList('k', TENANT));
    assert.deepEqual(addrs(r.replicas), addrs(old));
    assert.equal(buf(r.replicas[0]!).size, 128n);
    assert.equal(r.replicas[0]!.status, ReplicaStatus.COMPLETE);
    assert.equal(r.objectChecksum, 1n);
    assert.equal(svc.stats.usedBytes, 128);
    assert.equal(svc.stats.writingObjects, 0);
    expectErr(svc.putStart(A, 'k', 128n, config(), TENANT), EC.OBJECT_ALREADY_EXISTS);
    expectErr(svc.putRevoke(A, 'k', TENANT), EC.INVALID_WRITE, 'nothing left to revoke');
    checkAccounting(svc);
  });

  test('an upsert that must evict for room never evicts the object it is rewriting', () => {
    const { svc } = harness({ evictionHighWatermark: 1 });
    mount(svc, A, segment(1, 1024));
    put(svc, A, 'a', 384); // least recently used
    put(svc, A, 'b', 384);
    const ds = expectOk(svc.upsertStart(A, 'a', 512n, config(), TENANT), 'room is made by evicting b');
    assert.equal(ds.length, 1);
    const during = expectOk(svc.getReplicaList('a', TENANT), 'the old value is readable during the upsert');
    assert.equal(buf(during.replicas[0]!).size, 384n);
    expectOk(svc.putEnd(A, { key: 'a', objectChecksum: null }, TENANT), 'UpsertEnd');
    const r = expectOk(svc.getReplicaList('a', TENANT));
    assert.equal(buf(r.replicas[0]!).size, 512n);
    assert.equal(has(svc, 'b'), false);
    checkAccounting(svc);
  });

  test('an upsert never ended stops blocking its key after putStartDiscardMs, as a put does', () => {
    const { svc, clock } = harness(IMMORTAL);
    mount(svc, A, segment(1, 4096));
    put(svc, A, 'k', 128);
    expectOk(svc.upsertStart(A, 'k', 128n, config(), TENANT)); // in place; A then dies
    clock.t = DEFAULT_MASTER_CONFIG.putStartDiscardMs;
    expectErr(svc.upsertStart(B, 'k', 128n, config(), TENANT), EC.OBJECT_REPLICA_BUSY, 'within the discard timeout');
    clock.t = DEFAULT_MASTER_CONFIG.putStartDiscardMs + 1;
    expectOk(svc.upsertStart(B, 'k', 128n, config(), TENANT), 'after the discard timeout');
    expectOk(svc.putEnd(B, { key: 'k', objectChecksum: null }, TENANT));
    assert.equal(expectOk(svc.getReplicaList('k', TENANT)).replicas[0]!.status, ReplicaStatus.COMPLETE);
  });
});
