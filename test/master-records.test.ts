/**
 * The master's durable state (src/master/records.ts and MasterService's
 * change tracking and restore): what a journal receives, change set by change
 * set, rebuilds a master that answers as the first did; records round-trip
 * through their JSON; a corrupt record is refused.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MasterService } from '../src/master/service.js';
import { DEFAULT_MASTER_CONFIG } from '../src/master/config.js';
import {
  decodeObjectRecord,
  decodeSegmentRecord,
  encodeObjectRecord,
  encodeSegmentRecord,
  type ObjectRecord,
  type SegmentRecord,
  type StateSnapshot,
} from '../src/master/records.js';
import { FILE_SEGMENT_TAG, ReplicaStatus, type Segment, type UUID } from '../src/store/master-protocol.js';
import { ReplicateConfig } from '../src/store/replicate-config.js';
import { mulberry32 } from './fuzz-lib.js';

const uuid = (n: number, second = 7n): UUID => ({ first: BigInt(n), second });
const seg = (n: number, size: number, second = 7n): Segment => ({
  id: uuid(100 + n, second),
  name: `host${n}:1234`,
  base: 0x7000_0000_0000n + BigInt(n) * 0x1_0000_0000n,
  size: BigInt(size),
  teEndpoint: `host${n}:1234`,
  protocol: 'tcp',
  hostId: '',
});
const cfg = (replicaNum = 1): ReturnType<ReplicateConfig['toWire']> => ({ ...new ReplicateConfig().toWire(), replicaNum: BigInt(replicaNum) });

/** A journal in memory: the change sets applied in order, as etcd holds them. */
class MemoryJournal {
  readonly segments = new Map<string, string>();
  readonly objects = new Map<string, string>();

  apply(svc: MasterService): void {
    const c = svc.takeChanges();
    if (!c) return;
    for (const [k, v] of c.segments) v === null ? this.segments.delete(k) : this.segments.set(k, encodeSegmentRecord(v));
    for (const [k, v] of c.objects) v === null ? this.objects.delete(k) : this.objects.set(k, encodeObjectRecord(v));
  }

  snapshot(): StateSnapshot {
    return { segments: [...this.segments.values()].map(decodeSegmentRecord), objects: [...this.objects.values()].map(decodeObjectRecord) };
  }
}

/** Every key's answer: its replica list (addresses, status), or the error code. */
function view(svc: MasterService, keys: string[]): string[] {
  return keys.map((k) => {
    const r = svc.getReplicaList(k, 'default');
    if (!r.ok) return `${k}: ${r.error}`;
    return `${k}: ${r.value.replicas.map((d) => (d.descriptor.index === 0 ? `${d.descriptor.value.bufferDescriptor.bufferAddress}/${d.descriptor.value.bufferDescriptor.size}/${d.status}` : 'not memory')).join(',')}`;
  });
}

describe('master records', () => {
  test('a journal fed change set by change set restores a master that answers as the first', () => {
    let t = 1_000;
    const wall = (): number => 1_800_000_000_000 + t;
    const config = { ...DEFAULT_MASTER_CONFIG, clientTtlMs: 1e12 };
    const a = new MasterService(config, () => t, wall);
    a.trackChanges();
    const journal = new MemoryJournal();
    const A = uuid(1);
    const B = uuid(2);
    a.mountSegment(seg(1, 1 << 22), A);
    a.mountSegment(seg(2, 1 << 22), B);
    a.mountSegment(seg(3, 1 << 20, FILE_SEGMENT_TAG), B);
    journal.apply(a);
    const rand = mulberry32(5);
    const keys: string[] = [];
    for (let i = 0; i < 300; i++) {
      const key = `k${Math.floor(rand() * 80)}`;
      if (!keys.includes(key)) keys.push(key);
      const r = rand();
      if (r < 0.45) {
        const p = a.putStart(A, key, BigInt(1 + Math.floor(rand() * 40_000)), cfg(1 + Math.floor(rand() * 2)), 'default');
        if (p.ok && rand() < 0.8) a.putEnd(A, { key, objectChecksum: rand() < 0.5 ? 42n : null }, 'default');
      } else if (r < 0.6) {
        const u = a.upsertStart(B, key, BigInt(1 + Math.floor(rand() * 40_000)), cfg(), 'default');
        if (u.ok && rand() < 0.5) a.putEnd(B, { key, objectChecksum: null }, 'default');
      } else if (r < 0.75) a.remove(key, true, 'default');
      else if (r < 0.85) a.putRevoke(A, key, 'default');
      else a.getReplicaList(key, 'default');
      t += 10;
      if (rand() < 0.3) journal.apply(a);
    }
    a.unmountSegment(seg(3, 1 << 20, FILE_SEGMENT_TAG).id, B); // a file segment sleeps: recorded as dormant
    journal.apply(a);

    const b = new MasterService(config, () => t, wall);
    b.restore(journal.snapshot());
    assert.deepEqual(view(b, keys), view(a, keys));
    assert.deepEqual(
      { ...b.stats, leasedObjects: 0 },
      { ...a.stats, leasedObjects: 0, clients: b.stats.clients },
      'same objects, segments and space',
    );
    assert.deepEqual(b.segmentUsage(), a.segmentUsage());
    // The successor goes on: new puts land in free space, the file segment wakes with its objects.
    assert.ok(b.putStart(A, 'after', 1000n, cfg(), 'default').ok);
    assert.ok(b.mountSegment(seg(3, 1 << 20, FILE_SEGMENT_TAG), B).ok);
    assert.equal(b.stats.dormantSegments, 0);
  });

  test('the successor gives recorded clients a full TTL, then expires them as the first would', () => {
    let t = 0;
    const config = { ...DEFAULT_MASTER_CONFIG, clientTtlMs: 10_000 };
    const a = new MasterService(config, () => t);
    a.trackChanges();
    const journal = new MemoryJournal();
    a.mountSegment(seg(1, 1 << 20), uuid(1));
    assert.ok(a.putStart(uuid(1), 'x', 10n, cfg(), 'default').ok);
    a.putEnd(uuid(1), { key: 'x', objectChecksum: null }, 'default');
    journal.apply(a);
    t = 9_000; // almost expired at the first master
    const b = new MasterService(config, () => t);
    b.restore(journal.snapshot());
    t = 15_000;
    b.sweep();
    assert.ok(b.getReplicaList('x', 'default').ok, 'alive: its TTL counts from the takeover');
    const ping = b.ping(uuid(1));
    assert.ok(ping.ok);
    assert.equal(ping.value.clientStatus, 1, 'known: no remount needed');
    t = 40_000;
    b.sweep();
    assert.equal(b.getReplicaList('x', 'default').ok, false, 'silent past its TTL: gone');
  });

  test('records round-trip through JSON, and corrupt ones are refused', () => {
    const s: SegmentRecord = { segment: seg(1, 4096), client: uuid(9, (1n << 64n) - 1n), dormant: true };
    assert.deepEqual(decodeSegmentRecord(encodeSegmentRecord(s)), s);
    const o: ObjectRecord = {
      tenant: 'ten\u0000ant',
      key: 'key with "quotes" and ✓',
      size: 5,
      replicas: [{ id: (1n << 63n) + 5n, segment: 'a-b', offset: 64, size: 5, status: ReplicaStatus.COMPLETE }],
      writer: null,
      writeStartedAtWall: 1_800_000_000_000,
      previous: null,
      hardPin: true,
      softPinUntilWall: 0,
      checksum: (1n << 64n) - 1n,
    };
    assert.deepEqual(decodeObjectRecord(encodeObjectRecord(o)), o);
    for (const bad of ['', 'nope', '[]', '{"tenant":1}', encodeObjectRecord(o).replace('"size":5', '"size":-5'), encodeObjectRecord(o).replace(',64,5,', ',64,0,')]) {
      assert.throws(() => decodeObjectRecord(bad), { code: 'TE_MALFORMED' }, bad);
    }
    assert.throws(() => decodeSegmentRecord(encodeSegmentRecord(s).replace('"base":"', '"base":"x')), { code: 'TE_MALFORMED' });
  });
});
