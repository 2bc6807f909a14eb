/**
 * The Store master's state and rules: mounted segments and their space,
 * objects and their replicas, leases, pins, liveness and eviction. No I/O:
 * the RPC layer (rpc-server.ts, handlers.ts) calls these methods with decoded
 * arguments, and a clock is injected, so every rule is testable without time
 * passing.
 *
 * Semantics follow Mooncake's MasterService (mooncake-store/src/master_service.cpp
 * at 3b5a594) where the wheel's clients can tell the difference: the same
 * error codes for the same situations, leases granted by GetReplicaList and
 * ExistKey, a put in progress blocking its key until the discard timeout.
 * Where we differ, it is to lose less:
 *  - a put that finds no room evicts at once and retries, instead of failing
 *    and evicting in the background;
 *  - space of an overwritten (upserted) or discarded replica is reused only
 *    after readers' leases or the writer's release timeout have run out.
 *
 * This class is the facade: it builds the parts and answers for them. Each
 * piece of state has one owner: clients.ts (client liveness),
 * segment-space.ts (segments, capacity, quarantined space), objects.ts (the
 * objects, LRU order, replica ids), changes.ts (what a journal has yet to
 * commit). The rules that span them: mounts.ts (mount, unmount, a leaving
 * segment's objects), writes.ts (put and upsert), placement.ts (where
 * replicas go), retention.ts (leases, pins, removal, eviction) and
 * durable-state.ts (records in and out).
 */
import { ChangeTracker } from './changes.js';
import { ClientRegistry } from './clients.js';
import type { MasterConfig } from './config.js';
import { DurableState } from './durable-state.js';
import { objectSlot, type MasterCounters, type Result } from './model.js';
import { SegmentMounts } from './mounts.js';
import { ObjectTable } from './objects.js';
import { Placement } from './placement.js';
import type { ChangeSet, StateSnapshot } from './records.js';
import { Retention } from './retention.js';
import { SegmentSpace } from './segment-space.js';
import { Writes } from './writes.js';
import type { GetReplicaListResponse, ReplicaDescriptor, ReplicateConfigWire, Segment, UUID } from '../store/master-protocol.js';

// What other modules have always imported from here.
export { fail, ok, uuidKey, type MasterCounters, type MountedSegment, type Result } from './model.js';

/** A snapshot of the master's state (what /health shows). */
export interface MasterStats {
  clients: number;
  segments: number;
  objects: number;
  capacityBytes: number;
  usedBytes: number;
  leasedObjects: number;
  writingObjects: number;
  pendingFreeRegions: number;
  dormantSegments: number;
}

export class MasterService {
  readonly counters: MasterCounters = { evictedObjects: 0, evictedBytes: 0, evictionRounds: 0, expiredClients: 0, droppedReplicas: 0, discardedWrites: 0 };
  /** When sweep() next looks for writes past the release timeout. */
  private nextWriteScan = 0;
  private readonly clients: ClientRegistry;
  private readonly space: SegmentSpace;
  private readonly changes = new ChangeTracker();
  private readonly objects: ObjectTable;
  private readonly retention: Retention;
  private readonly mounts: SegmentMounts;
  private readonly writes: Writes;
  private readonly durable: DurableState;

  constructor(
    readonly config: Readonly<MasterConfig>,
    private readonly now: () => number,
    /** Wall-clock ms, for the times records carry (a successor's monotonic clock is another). */
    wallNow: () => number = Date.now,
  ) {
    this.clients = new ClientRegistry(now);
    this.space = new SegmentSpace(now);
    this.objects = new ObjectTable(this.space, this.changes);
    this.retention = new Retention(config, now, this.space, this.objects, this.counters);
    this.mounts = new SegmentMounts(this.clients, this.space, this.objects, this.changes, this.counters);
    const placement = new Placement(this.space, this.objects, this.retention);
    this.writes = new Writes(config, now, this.clients, this.space, this.objects, this.changes, placement, this.retention);
    this.durable = new DurableState(now, wallNow, this.clients, this.space, this.objects, this.changes);
  }

  // ---- clients and segments ----

  mountSegment(segment: Segment, clientId: UUID): Result<null> {
    return this.mounts.mountSegment(segment, clientId);
  }

  reMountSegment(segments: Segment[], clientId: UUID): Result<null> {
    return this.mounts.reMountSegment(segments, clientId);
  }

  unmountSegment(segmentId: UUID, clientId: UUID): Result<null> {
    return this.mounts.unmountSegment(segmentId, clientId);
  }

  /** Clients become known by mounting (MountSegment, or ReMountSegment, even of no segment); other calls do not. */
  ping(clientId: UUID): Result<{ viewVersionId: bigint; clientStatus: number }> {
    return this.clients.ping(clientId);
  }

  // ---- writes ----

  putStart(clientId: UUID, key: string, length: bigint, config: ReplicateConfigWire, tenant: string): Result<ReplicaDescriptor[]> {
    return this.writes.putStart(clientId, key, length, config, tenant);
  }

  /** Ends a put or an upsert. */
  putEnd(clientId: UUID, meta: { key: string; objectChecksum: bigint | null }, tenant: string): Result<null> {
    return this.writes.putEnd(clientId, meta, tenant);
  }

  /** Revokes a put or an upsert. */
  putRevoke(clientId: UUID, key: string, tenant: string): Result<null> {
    return this.writes.putRevoke(clientId, key, tenant);
  }

  upsertStart(clientId: UUID, key: string, length: bigint, config: ReplicateConfigWire, tenant: string): Result<ReplicaDescriptor[]> {
    return this.writes.upsertStart(clientId, key, length, config, tenant);
  }

  // ---- reads (they grant leases) ----

  getReplicaList(key: string, tenant: string): Result<GetReplicaListResponse> {
    return this.retention.getReplicaList(key, tenant);
  }

  existKey(key: string, tenant: string): Result<boolean> {
    return this.retention.existKey(key, tenant);
  }

  // ---- removal ----

  remove(key: string, force: boolean, tenant: string): Result<null> {
    return this.retention.remove(key, force, tenant);
  }

  /** Remove every removable object of the tenant whose key matches; the count. */
  removeWhere(match: (key: string) => boolean, force: boolean, tenant: string): number {
    return this.retention.removeWhere(match, force, tenant);
  }

  removeByRegex(pattern: string, force: boolean, tenant: string): Result<bigint> {
    return this.retention.removeByRegex(pattern, force, tenant);
  }

  // ---- time-driven work ----

  /**
   * Everything that happens because time passed: expired clients lose their
   * segments, writes unfinished past the release timeout are given up on,
   * quarantined space becomes free, expired soft pins lapse (they
   * are read lazily), and eviction runs if space is short. Call it often
   * (the master does every 100 ms).
   */
  sweep(): void {
    const now = this.now();
    this.clients.expire(now, this.config.clientTtlMs, (c) => {
      for (const seg of [...c.segments]) this.mounts.dropSegment(seg);
      this.counters.expiredClients++;
    });
    // Abandoned writes: a scan of every object, so not every sweep (Mooncake's runs once per release timeout).
    if (now >= this.nextWriteScan) {
      this.nextWriteScan = now + Math.min(60_000, Math.max(1000, this.config.putStartReleaseMs / 10));
      this.counters.discardedWrites += this.writes.discardAbandonedWrites();
    }
    this.space.releaseDue(now);
    this.retention.maybeEvict();
  }

  // ---- durable state: what changed, and a successor's restore (src/master/records.ts) ----

  /** Start recording changes for a journal (nothing is recorded otherwise: no cost without HA). */
  trackChanges(): void {
    this.changes.start();
  }

  /** The journal's name of an object: its tenant and key. */
  static objectName(tenant: string, key: string): string {
    return objectSlot(tenant, key);
  }

  /**
   * What changed since the last call, as records (null: deleted), or null when
   * nothing did. The master commits it before it answers the requests that
   * made it.
   */
  takeChanges(): ChangeSet | null {
    return this.durable.takeChanges();
  }

  /** Every segment and object as records (a snapshot, e.g. to seed an empty journal). */
  exportState(): StateSnapshot {
    return this.durable.exportState();
  }

  /**
   * Take over a predecessor's state. Every recorded client gets a full TTL
   * from now to ping (it does not know the master changed); replicas in
   * segments the records do not hold are dropped, and objects left with none.
   */
  restore(state: StateSnapshot): void {
    this.durable.restore(state);
  }

  // ---- what a scrape or a test reads ----

  get stats(): MasterStats {
    const now = this.now();
    let leased = 0;
    let writing = 0;
    for (const o of this.objects.values()) {
      if (o.leaseUntil > now) leased++;
      if (o.writing) writing++;
    }
    return {
      clients: this.clients.size,
      segments: this.space.mountedCount,
      objects: this.objects.size,
      capacityBytes: this.space.capacity,
      usedBytes: this.space.used,
      leasedObjects: leased,
      writingObjects: writing,
      pendingFreeRegions: this.space.pendingFreeCount,
      dormantSegments: this.space.dormantCount,
    };
  }

  /** Per segment: name, capacity and used bytes. */
  segmentUsage(): { name: string; capacity: number; used: number }[] {
    return [...this.space.mounted()].map((s) => ({ name: s.wire.name, capacity: s.allocator.capacity, used: s.allocator.used }));
  }
}
