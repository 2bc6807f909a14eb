/**
 * Where a write's replicas go: which segments, in what order, and one
 * eviction round when none has room.
 */
import type { Client, MountedSegment, Replica } from './model.js';
import type { ObjectTable } from './objects.js';
import type { Retention } from './retention.js';
import type { SegmentSpace } from './segment-space.js';
import { ReplicaStatus, type ReplicateConfigWire } from '../store/master-protocol.js';

export class Placement {
  /** Where the next placement starts among the mounted segments, so load spreads. */
  private rotation = 0;

  constructor(
    private readonly space: SegmentSpace,
    private readonly objects: ObjectTable,
    private readonly retention: Retention,
  ) {}

  /**
   * Up to replicaNum replicas on distinct segments: the preferred segments
   * first (the deprecated single name wins over the list, as in Mooncake),
   * then segments on the writer's host when asked, then the others from a
   * rotating start so load spreads. Fewer than asked is success (Mooncake
   * places 2 of 3 on 2 segments too); none is NO_AVAILABLE_HANDLE, after one
   * eviction attempt.
   */
  place(size: number, config: ReplicateConfigWire, writer: Client | undefined): Replica[] {
    const want = Math.min(Number(config.replicaNum), this.space.mountedCount);
    let replicas = this.tryPlace(size, want, config, writer);
    if (replicas.length === 0 && want > 0 && [...this.space.mounted()].some((s) => s.allocator.capacity >= size)) {
      this.retention.evict(size);
      replicas = this.tryPlace(size, want, config, writer);
    }
    this.retention.maybeEvict();
    return replicas;
  }

  private candidates(config: ReplicateConfigWire, writer: Client | undefined): MountedSegment[] {
    const all = [...this.space.mounted()];
    const out: MountedSegment[] = [];
    const seen = new Set<MountedSegment>();
    const add = (s: MountedSegment): void => {
      if (!seen.has(s)) {
        seen.add(s);
        out.push(s);
      }
    };
    const names = config.preferredSegment ? [config.preferredSegment] : config.preferredSegments;
    for (const name of names) for (const s of all) if (s.wire.name === name) add(s);
    const host = config.hostId || (config.preferAllocInSameNode ? (writer?.hostId ?? '') : '');
    if (host) for (const s of all) if (s.wire.hostId === host) add(s);
    const start = all.length > 0 ? this.rotation++ % all.length : 0;
    for (let i = 0; i < all.length; i++) add(all[(start + i) % all.length]!);
    return out;
  }

  private tryPlace(size: number, want: number, config: ReplicateConfigWire, writer: Client | undefined): Replica[] {
    const out: Replica[] = [];
    for (const seg of this.candidates(config, writer)) {
      if (out.length >= want) break;
      if (seg.allocator.freeBytes < size) continue;
      const offset = this.space.allocate(seg, size);
      if (offset === undefined) continue;
      out.push({ id: this.objects.newReplicaId(), segment: seg, offset, size, status: ReplicaStatus.PROCESSING });
    }
    return out;
  }
}
