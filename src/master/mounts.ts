/**
 * The rules of mounting: who may mount, remount and unmount a segment, a file
 * segment taken over by its file's new provider or sleeping until it comes
 * back, and what a leaving segment does to the objects with replicas in it.
 * The tables and the space are segment-space.ts's.
 */
import { SegmentAllocator } from './allocator.js';
import type { ChangeTracker } from './changes.js';
import type { ClientRegistry } from './clients.js';
import { fail, OK_VOID, uuidKey, type MasterCounters, type MountedSegment, type Result } from './model.js';
import type { ObjectTable } from './objects.js';
import type { SegmentSpace } from './segment-space.js';
import { isFileSegmentId, StoreErrorCode as EC, type Segment, type UUID } from '../store/master-protocol.js';

export class SegmentMounts {
  constructor(
    private readonly clients: ClientRegistry,
    private readonly space: SegmentSpace,
    private readonly objects: ObjectTable,
    private readonly changes: ChangeTracker,
    private readonly counters: MasterCounters,
  ) {}

  mountSegment(segment: Segment, clientId: UUID): Result<null> {
    if (segment.size <= 0n || segment.size > BigInt(Number.MAX_SAFE_INTEGER) || segment.name.length === 0 || segment.teEndpoint.length === 0) {
      return fail(EC.INVALID_PARAMS);
    }
    const key = uuidKey(segment.id);
    const existing = this.space.mountedSegment(key);
    const client = this.clients.touch(clientId);
    if (segment.hostId) client.hostId = segment.hostId;
    // Mounting the same segment again is idempotent (Mooncake answers OK too).
    if (existing && existing.client === client) return OK_VOID;
    if (existing) {
      // Another client: only a file's new provider (the old one died before its TTL ran out; the file's lock
      // guarantees one live provider) takes a segment over.
      if (!isFileSegmentId(segment.id) || existing.wire.size !== segment.size) return fail(EC.SEGMENT_ALREADY_EXISTS);
      this.detach(existing);
    }
    const asleep = this.space.dormantSegment(key);
    if (asleep) {
      this.space.wake(key);
      if (asleep.wire.size === segment.size) {
        // The same file back: its objects are readable again, at the addresses of the new mapping.
        asleep.wire = segment;
        asleep.client = client;
        this.space.attach(asleep);
        this.changes.segmentChanged(asleep);
        return OK_VOID;
      }
      this.forget(asleep); // a file of another size: what it held is not there any more
    }
    const mounted: MountedSegment = { key, wire: segment, client, allocator: new SegmentAllocator(Number(segment.size)), objects: new Set() };
    this.space.attach(mounted); // a new allocator: capacity grows, nothing is used yet
    this.changes.segmentChanged(mounted);
    return OK_VOID;
  }

  reMountSegment(segments: Segment[], clientId: UUID): Result<null> {
    for (const s of segments) {
      const r = this.mountSegment(s, clientId);
      if (!r.ok) return r;
    }
    this.clients.touch(clientId);
    return OK_VOID;
  }

  unmountSegment(segmentId: UUID, clientId: UUID): Result<null> {
    const seg = this.space.mountedSegment(uuidKey(segmentId));
    if (!seg) return OK_VOID; // idempotent, as Mooncake
    if (seg.client.id.first !== clientId.first || seg.client.id.second !== clientId.second) return fail(EC.ILLEGAL_CLIENT);
    this.dropSegment(seg);
    return OK_VOID;
  }

  /** A segment leaves: a file segment sleeps (detach), any other is forgotten with its replicas. */
  dropSegment(seg: MountedSegment): void {
    if (isFileSegmentId(seg.wire.id)) this.detach(seg);
    else {
      this.space.unlink(seg);
      this.forget(seg);
    }
  }

  /**
   * A file segment's provider left: its complete replicas stay (in the file),
   * unreadable until it comes back; writes in progress there are dropped as
   * for any segment (their writer or their provider is gone).
   */
  private detach(seg: MountedSegment): void {
    this.space.unlink(seg);
    this.space.sleep(seg);
    this.changes.segmentChanged(seg);
    for (const obj of [...seg.objects]) {
      if (!obj.writing) continue;
      const previous = obj.previous;
      if (previous && !obj.replicas.every((r) => previous.includes(r))) {
        // An upsert to new space: the old value stands wherever it is.
        for (const rep of obj.replicas) if (!previous.includes(rep)) this.space.freeReplica(rep);
        obj.replicas = previous;
        obj.previous = null;
        obj.writing = false;
        for (const rep of obj.replicas) rep.segment.objects.add(obj);
        this.changes.objectChanged(obj);
        continue;
      }
      this.objects.remove(obj);
    }
  }

  /** Forget a segment's replicas; objects left with none go with them. */
  private forget(seg: MountedSegment): void {
    for (const obj of seg.objects) {
      const distinct = (): number => new Set([...obj.replicas, ...(obj.previous ?? [])]).size;
      const before = distinct();
      obj.replicas = obj.replicas.filter((r) => r.segment !== seg);
      if (obj.previous) obj.previous = obj.previous.filter((r) => r.segment !== seg);
      this.counters.droppedReplicas += before - distinct();
      // Gets never return partial data: an object is readable only from a complete replica.
      if (obj.replicas.length === 0 && (obj.previous?.length ?? 0) === 0) {
        this.objects.delete(obj);
        this.changes.objectRemoved(obj);
        continue;
      }
      if (obj.replicas.length === 0 && obj.previous) {
        // The upsert lost its new replicas: the old ones stand.
        obj.replicas = obj.previous;
        obj.previous = null;
        obj.writing = false;
      }
      this.changes.objectChanged(obj);
    }
    seg.objects.clear();
    this.changes.segmentRemoved(seg);
    this.space.dropPendingFrees(seg);
  }
}
