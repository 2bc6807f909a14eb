/**
 * The objects the master holds, in LRU order, and what any rule may do to
 * one: find it, move it to the recent end, remove it (freeing its replicas),
 * tell which of its replicas are readable, describe a replica for the wire.
 * When a write, a removal or eviction may do so is the business of writes.ts
 * and retention.ts.
 */
import { ReplicaStatus, type ReplicaDescriptor } from '../store/master-protocol.js';
import type { ChangeTracker } from './changes.js';
import { objectSlot, type Replica, type StoredObject } from './model.js';
import type { SegmentSpace } from './segment-space.js';

/** A replica as the wire describes it: where its bytes are, on which transport. */
export function describe(r: Replica): ReplicaDescriptor {
  const s = r.segment.wire;
  return {
    id: r.id,
    descriptor: {
      index: 0,
      value: { bufferDescriptor: { size: BigInt(r.size), bufferAddress: s.base + BigInt(r.offset), protocol: s.protocol, transportEndpoint: s.teEndpoint } },
    },
    status: r.status,
  };
}

export class ObjectTable {
  /** Every object, least recently used first (a read or write moves it to the end). */
  private readonly objects = new Map<string, StoredObject>();
  private nextReplicaId = 1n;

  constructor(
    private readonly space: SegmentSpace,
    private readonly changes: ChangeTracker,
  ) {}

  get size(): number {
    return this.objects.size;
  }

  /** Least recently used first. */
  values(): IterableIterator<StoredObject> {
    return this.objects.values();
  }

  find(tenant: string, key: string): StoredObject | undefined {
    return this.objects.get(objectSlot(tenant, key));
  }

  /** The object is still the one stored under its name (not removed, not superseded). */
  stores(obj: StoredObject): boolean {
    return this.objects.get(obj.slot) === obj;
  }

  add(obj: StoredObject): void {
    this.objects.set(obj.slot, obj);
  }

  /** Out of the table only: the caller has dealt with its replicas. */
  delete(obj: StoredObject): void {
    this.objects.delete(obj.slot);
  }

  newReplicaId(): bigint {
    return this.nextReplicaId++;
  }

  /** A restored replica's id is never handed out again. */
  noteReplicaId(id: bigint): void {
    if (id >= this.nextReplicaId) this.nextReplicaId = id + 1n;
  }

  touch(obj: StoredObject): void {
    this.objects.delete(obj.slot);
    this.objects.set(obj.slot, obj);
  }

  /** Complete replicas in mounted segments (not in a dormant file segment). */
  readable(obj: StoredObject): Replica[] {
    const ok = (r: Replica): boolean => r.status === ReplicaStatus.COMPLETE && this.space.attached(r.segment);
    if (obj.writing) return obj.previous?.filter((r) => ok(r) && !obj.replicas.includes(r)) ?? [];
    return obj.replicas.filter(ok);
  }

  /** Remove an object and free its replicas (now, or at `freeAt` for space a writer or reader may still touch). */
  remove(obj: StoredObject, freeAt = 0): void {
    this.objects.delete(obj.slot);
    for (const r of new Set([...obj.replicas, ...(obj.previous ?? [])])) {
      r.segment.objects.delete(obj);
      this.space.freeReplica(r, freeAt);
    }
    obj.replicas = [];
    obj.previous = null;
    this.changes.objectRemoved(obj);
  }
}
