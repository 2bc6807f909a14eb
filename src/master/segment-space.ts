/**
 * The master's segments and their space: the mounted ones, the dormant file
 * segments, the capacity and used bytes of the mounted ones, and space
 * quarantined until a time (a writer or reader may still touch it). The one
 * place capacity and used bytes change, so they always match the allocators
 * of the mounted segments. The rules of mounting (which segment goes where,
 * what happens to its objects) are mounts.ts's.
 */
import type { MountedSegment, Replica } from './model.js';

/** Space that becomes reusable at `at` (monotonic ms). */
interface PendingFree {
  readonly segment: MountedSegment;
  readonly offset: number;
  readonly at: number;
}

export class SegmentSpace {
  private readonly segments = new Map<string, MountedSegment>();
  /**
   * File segments whose provider left (unmounted, or silent past the client
   * TTL): their objects are in the file, so they are kept, unreadable, until
   * the same file is mounted again (same segment id and size).
   */
  private readonly dormant = new Map<string, MountedSegment>();
  private readonly pendingFrees: PendingFree[] = [];
  private capacityBytes = 0;
  private usedBytes = 0;

  constructor(private readonly now: () => number) {}

  /** Bytes of all mounted segments. */
  get capacity(): number {
    return this.capacityBytes;
  }

  /** Bytes allocated in mounted segments. */
  get used(): number {
    return this.usedBytes;
  }

  get mountedCount(): number {
    return this.segments.size;
  }

  get dormantCount(): number {
    return this.dormant.size;
  }

  get pendingFreeCount(): number {
    return this.pendingFrees.length;
  }

  mountedSegment(key: string): MountedSegment | undefined {
    return this.segments.get(key);
  }

  dormantSegment(key: string): MountedSegment | undefined {
    return this.dormant.get(key);
  }

  mounted(): IterableIterator<MountedSegment> {
    return this.segments.values();
  }

  dormantSegments(): IterableIterator<MountedSegment> {
    return this.dormant.values();
  }

  /** Into the mounted set and its owner's, into the capacity. */
  attach(seg: MountedSegment): void {
    this.segments.set(seg.key, seg);
    seg.client.segments.add(seg);
    this.capacityBytes += seg.allocator.capacity;
    this.usedBytes += seg.allocator.used;
  }

  /** Out of the mounted set and its owner's, out of the capacity. */
  unlink(seg: MountedSegment): void {
    this.segments.delete(seg.key);
    seg.client.segments.delete(seg);
    this.capacityBytes -= seg.allocator.capacity;
    this.usedBytes -= seg.allocator.used;
  }

  /** Keep an unlinked file segment, unreadable, until its file is mounted again. */
  sleep(seg: MountedSegment): void {
    this.dormant.set(seg.key, seg);
  }

  /** No longer dormant: mounted again, or forgotten. */
  wake(key: string): void {
    this.dormant.delete(key);
  }

  /** The segment is mounted, or dormant (a file segment), so its allocator still counts. */
  holds(seg: MountedSegment): boolean {
    return this.segments.get(seg.key) === seg || this.dormant.get(seg.key) === seg;
  }

  attached(seg: MountedSegment): boolean {
    return this.segments.get(seg.key) === seg;
  }

  /** `size` bytes of a mounted segment, counted as used; undefined when no free block is large enough. */
  allocate(seg: MountedSegment, size: number): number | undefined {
    const before = seg.allocator.used;
    const offset = seg.allocator.allocate(size);
    if (offset === undefined) return undefined;
    this.usedBytes += seg.allocator.used - before;
    return offset;
  }

  /** Some mounted segment has a free block of `need` bytes. */
  roomFor(need: number): boolean {
    return [...this.segments.values()].some((s) => s.allocator.largestFree >= need);
  }

  freeReplica(r: Replica, at = 0): void {
    if (!this.holds(r.segment)) return; // forgotten: its allocator is gone
    if (at > this.now()) {
      this.pendingFrees.push({ segment: r.segment, offset: r.offset, at });
      return;
    }
    this.release(r.segment, r.offset);
  }

  /** Return space to a segment's allocator; the master's used bytes count mounted segments only. */
  private release(seg: MountedSegment, offset: number): void {
    if (!this.holds(seg)) return;
    const before = seg.allocator.used;
    seg.allocator.free(offset);
    if (this.attached(seg)) this.usedBytes -= before - seg.allocator.used;
  }

  /** Quarantined space whose time has come becomes free. */
  releaseDue(now: number): void {
    for (let i = this.pendingFrees.length - 1; i >= 0; i--) {
      const p = this.pendingFrees[i]!;
      if (p.at > now) continue;
      this.pendingFrees.splice(i, 1);
      this.release(p.segment, p.offset);
    }
  }

  /** A forgotten segment's quarantined space is nobody's to free. */
  dropPendingFrees(seg: MountedSegment): void {
    for (let i = this.pendingFrees.length - 1; i >= 0; i--) if (this.pendingFrees[i]!.segment === seg) this.pendingFrees.splice(i, 1);
  }
}
