/**
 * Between the live state and its records (src/master/records.ts): what
 * changed since the last commit, a snapshot of everything, and a successor's
 * restore. Records carry wall-clock times, the live state monotonic ones.
 */
import { SegmentAllocator } from './allocator.js';
import type { ChangeTracker } from './changes.js';
import type { ClientRegistry } from './clients.js';
import { objectSlot, uuidKey, type MountedSegment, type Replica, type StoredObject } from './model.js';
import type { ObjectTable } from './objects.js';
import type { ChangeSet, ObjectRecord, ReplicaRecord, SegmentRecord, StateSnapshot } from './records.js';
import type { SegmentSpace } from './segment-space.js';

export class DurableState {
  constructor(
    private readonly now: () => number,
    /** Wall-clock ms, for the times records carry (a successor's monotonic clock is another). */
    private readonly wallNow: () => number,
    private readonly clients: ClientRegistry,
    private readonly space: SegmentSpace,
    private readonly objects: ObjectTable,
    private readonly changes: ChangeTracker,
  ) {}

  /**
   * What changed since the last call, as records (null: deleted), or null when
   * nothing did. The master commits it before it answers the requests that
   * made it.
   */
  takeChanges(): ChangeSet | null {
    return this.changes.take({
      object: (obj) => (this.objects.stores(obj) ? this.objectRecord(obj) : null),
      segment: (seg) => (this.space.holds(seg) ? this.segmentRecord(seg) : null),
    });
  }

  /** Every segment and object as records (a snapshot, e.g. to seed an empty journal). */
  exportState(): StateSnapshot {
    return {
      segments: [...this.space.mounted(), ...this.space.dormantSegments()].map((s) => this.segmentRecord(s)),
      objects: [...this.objects.values()].map((o) => this.objectRecord(o)),
    };
  }

  private toWall(t: number): number {
    return t === 0 ? 0 : Math.max(1, Math.round(this.wallNow() + (t - this.now())));
  }

  private fromWall(t: number): number {
    return t === 0 ? 0 : this.now() + (t - this.wallNow());
  }

  private segmentRecord(seg: MountedSegment): SegmentRecord {
    return { segment: seg.wire, client: seg.client.id, dormant: !this.space.attached(seg) };
  }

  private objectRecord(obj: StoredObject): ObjectRecord {
    const rec = (r: Replica): ReplicaRecord => ({ id: r.id, segment: r.segment.key, offset: r.offset, size: r.size, status: r.status });
    return {
      tenant: obj.tenant,
      key: obj.key,
      size: obj.size,
      replicas: obj.replicas.map(rec),
      writer: obj.writing ? obj.writer : null,
      writeStartedAtWall: this.toWall(obj.writeStartedAt),
      previous: obj.previous === null ? null : obj.previous.map(rec),
      hardPin: obj.hardPin,
      softPinUntilWall: this.toWall(obj.softPinUntil),
      checksum: obj.checksum,
    };
  }

  /**
   * Take over a predecessor's state. Every recorded client gets a full TTL
   * from now to ping (it does not know the master changed); replicas in
   * segments the records do not hold are dropped, and objects left with none.
   */
  restore(state: StateSnapshot): void {
    if (this.space.mountedCount > 0 || this.space.dormantCount > 0 || this.objects.size > 0) throw new Error('restore() is for an empty master');
    const allocations = new Map<string, { offset: number; size: number }[]>();
    for (const o of state.objects) {
      for (const r of [...o.replicas, ...(o.previous ?? [])]) {
        const list = allocations.get(r.segment) ?? [];
        if (!list.some((x) => x.offset === r.offset)) list.push({ offset: r.offset, size: r.size });
        allocations.set(r.segment, list);
      }
    }
    const byKey = new Map<string, MountedSegment>();
    for (const rec of state.segments) {
      const key = uuidKey(rec.segment.id);
      const client = rec.dormant ? { id: rec.client, lastSeen: this.now(), segments: new Set<MountedSegment>(), hostId: '' } : this.clients.touch(rec.client);
      const seg: MountedSegment = {
        key,
        wire: rec.segment,
        client,
        allocator: SegmentAllocator.restore(Number(rec.segment.size), allocations.get(key) ?? []),
        objects: new Set(),
      };
      byKey.set(key, seg);
      if (rec.dormant) this.space.sleep(seg);
      else this.space.attach(seg);
    }
    for (const o of state.objects) {
      const shared = new Map<string, Replica>(); // an in-place upsert lists its replicas twice: one object each
      const replica = (r: ReplicaRecord): Replica | null => {
        const seg = byKey.get(r.segment);
        if (!seg) return null;
        const k = `${r.segment}@${r.offset}`;
        let rep = shared.get(k);
        if (!rep) {
          rep = { id: r.id, segment: seg, offset: r.offset, size: r.size, status: r.status };
          shared.set(k, rep);
        }
        this.objects.noteReplicaId(rep.id);
        return rep;
      };
      const replicas = o.replicas.map(replica).filter((r): r is Replica => r !== null);
      const previous = o.previous === null ? null : o.previous.map(replica).filter((r): r is Replica => r !== null);
      if (replicas.length === 0 && (previous?.length ?? 0) === 0) continue;
      const slot = objectSlot(o.tenant, o.key);
      const obj: StoredObject = {
        tenant: o.tenant,
        key: o.key,
        slot,
        size: o.size,
        replicas: replicas.length > 0 ? replicas : previous!,
        writing: o.writer !== null && replicas.length > 0,
        writer: o.writer ?? '',
        writeStartedAt: this.fromWall(o.writeStartedAtWall),
        previous: replicas.length > 0 ? previous : null,
        leaseUntil: 0,
        hardPin: o.hardPin,
        softPinUntil: this.fromWall(o.softPinUntilWall),
        checksum: o.checksum,
      };
      for (const r of [...obj.replicas, ...(obj.previous ?? [])]) r.segment.objects.add(obj);
      this.objects.add(obj);
    }
  }
}
