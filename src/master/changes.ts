/**
 * What changed since the last commit: the objects and segments the rules
 * touched, kept only once a journal is attached (no cost without HA). Turning
 * them into records is durable-state.ts's, which knows what is still live.
 */
import type { MountedSegment, StoredObject } from './model.js';
import type { ChangeSet, ObjectRecord, SegmentRecord } from './records.js';

/** A changed object's or segment's record, or null when it is gone. */
export interface LiveRecords {
  object(obj: StoredObject): ObjectRecord | null;
  segment(seg: MountedSegment): SegmentRecord | null;
}

export class ChangeTracker {
  /** Objects and segments changed since take(); kept only with a journal attached. */
  private tracking = false;
  private readonly dirtyObjects = new Set<StoredObject>();
  private readonly goneObjects = new Map<string, StoredObject>();
  private readonly dirtySegments = new Set<MountedSegment>();

  /** Start recording changes for a journal (nothing is recorded otherwise: no cost without HA). */
  start(): void {
    this.tracking = true;
  }

  objectChanged(obj: StoredObject): void {
    if (this.tracking) this.dirtyObjects.add(obj);
  }

  objectRemoved(obj: StoredObject): void {
    if (!this.tracking) return;
    this.dirtyObjects.delete(obj);
    this.goneObjects.set(obj.slot, obj);
  }

  segmentChanged(seg: MountedSegment): void {
    if (this.tracking) this.dirtySegments.add(seg);
  }

  segmentRemoved(seg: MountedSegment): void {
    if (this.tracking) this.dirtySegments.add(seg); // written as a deletion: it is neither mounted nor dormant
  }

  /** What changed since the last call, as records (null: deleted), or null when nothing did. */
  take(live: LiveRecords): ChangeSet | null {
    if (this.dirtyObjects.size === 0 && this.goneObjects.size === 0 && this.dirtySegments.size === 0) return null;
    const objects = new Map<string, ObjectRecord | null>();
    for (const slot of this.goneObjects.keys()) objects.set(slot, null);
    for (const obj of this.dirtyObjects) objects.set(obj.slot, live.object(obj));
    const segments = new Map<string, SegmentRecord | null>();
    for (const seg of this.dirtySegments) segments.set(seg.key, live.segment(seg));
    this.dirtyObjects.clear();
    this.goneObjects.clear();
    this.dirtySegments.clear();
    return { objects, segments };
  }
}
