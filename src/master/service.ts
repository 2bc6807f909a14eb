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
 */
import { SegmentAllocator } from './allocator.js';
import type { MasterConfig } from './config.js';
import type { ChangeSet, ObjectRecord, ReplicaRecord, SegmentRecord, StateSnapshot } from './records.js';
import {
  ClientStatus,
  isFileSegmentId,
  ReplicaStatus,
  SoftPinAction,
  StoreErrorCode as EC,
  type GetReplicaListResponse,
  type ReplicaDescriptor,
  type ReplicateConfigWire,
  type Segment,
  type UUID,
} from '../store/master-protocol.js';
import type { Expected } from '../store/codec/struct-pack.js';

export type Result<T> = Expected<T, number>;
export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T>(error: number): Result<T> => ({ ok: false, error });
const OK_VOID: Result<null> = ok(null);

/** Mooncake's DFS_SERVICE_UNAVAILABLE: a DFS replica was asked of a master without one. */
const DFS_SERVICE_UNAVAILABLE = -1601;

export const uuidKey = (u: UUID): string => `${u.first.toString(16)}-${u.second.toString(16)}`;

interface Client {
  readonly id: UUID;
  lastSeen: number;
  readonly segments: Set<MountedSegment>;
  hostId: string;
}

export interface MountedSegment {
  readonly key: string;
  /** What the owner mounted; a file segment remounted after its provider restarted gets the new one. */
  wire: Segment;
  client: Client;
  readonly allocator: SegmentAllocator;
  /** Objects with a replica here: what an unmount must visit. */
  readonly objects: Set<StoredObject>;
}

interface Replica {
  readonly id: bigint;
  readonly segment: MountedSegment;
  readonly offset: number;
  readonly size: number;
  status: number;
}

interface StoredObject {
  readonly tenant: string;
  readonly key: string;
  /** Map key in `objects`: tenant and key. */
  readonly slot: string;
  size: number;
  replicas: Replica[];
  /** True between Put/UpsertStart and End or Revoke. */
  writing: boolean;
  /** The client that started the write in progress. */
  writer: string;
  writeStartedAt: number;
  /** An upsert in progress keeps the replicas it replaces here until it ends. */
  previous: Replica[] | null;
  leaseUntil: number;
  hardPin: boolean;
  /** 0: not soft-pinned. */
  softPinUntil: number;
  checksum: bigint | null;
}

/** Space that becomes reusable at `at` (monotonic ms). */
interface PendingFree {
  readonly segment: MountedSegment;
  readonly offset: number;
  readonly at: number;
}

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

/** Counters a scrape reads; monotonic. */
export interface MasterCounters {
  evictedObjects: number;
  evictedBytes: number;
  evictionRounds: number;
  expiredClients: number;
  droppedReplicas: number;
}

export class MasterService {
  private readonly clients = new Map<string, Client>();
  private readonly segments = new Map<string, MountedSegment>();
  /**
   * File segments whose provider left (unmounted, or silent past the client
   * TTL): their objects are in the file, so they are kept, unreadable, until
   * the same file is mounted again (same segment id and size).
   */
  private readonly dormant = new Map<string, MountedSegment>();
  /** Every object, least recently used first (a read or write moves it to the end). */
  private readonly objects = new Map<string, StoredObject>();
  private readonly pendingFrees: PendingFree[] = [];
  private nextReplicaId = 1n;
  private capacity = 0;
  private used = 0;
  readonly counters: MasterCounters = { evictedObjects: 0, evictedBytes: 0, evictionRounds: 0, expiredClients: 0, droppedReplicas: 0 };

  constructor(
    readonly config: Readonly<MasterConfig>,
    private readonly now: () => number,
    /** Wall-clock ms, for the times records carry (a successor's monotonic clock is another). */
    private readonly wallNow: () => number = Date.now,
  ) {}

  // ---- clients and segments ----

  private touchClient(id: UUID): Client {
    const k = uuidKey(id);
    let c = this.clients.get(k);
    if (!c) {
      c = { id, lastSeen: this.now(), segments: new Set(), hostId: '' };
      this.clients.set(k, c);
    }
    c.lastSeen = this.now();
    return c;
  }

  mountSegment(segment: Segment, clientId: UUID): Result<null> {
    if (segment.size <= 0n || segment.size > BigInt(Number.MAX_SAFE_INTEGER) || segment.name.length === 0 || segment.teEndpoint.length === 0) {
      return fail(EC.INVALID_PARAMS);
    }
    const key = uuidKey(segment.id);
    const existing = this.segments.get(key);
    const client = this.touchClient(clientId);
    if (segment.hostId) client.hostId = segment.hostId;
    // Mounting the same segment again is idempotent (Mooncake answers OK too).
    if (existing && existing.client === client) return OK_VOID;
    if (existing) {
      // Another client: only a file's new provider (the old one died before its TTL ran out; the file's lock
      // guarantees one live provider) takes a segment over.
      if (!isFileSegmentId(segment.id) || existing.wire.size !== segment.size) return fail(EC.SEGMENT_ALREADY_EXISTS);
      this.detach(existing);
    }
    const asleep = this.dormant.get(key);
    if (asleep) {
      this.dormant.delete(key);
      if (asleep.wire.size === segment.size) {
        // The same file back: its objects are readable again, at the addresses of the new mapping.
        asleep.wire = segment;
        asleep.client = client;
        this.segments.set(key, asleep);
        client.segments.add(asleep);
        this.capacity += asleep.allocator.capacity;
        this.used += asleep.allocator.used;
        this.segmentChanged(asleep);
        return OK_VOID;
      }
      this.forget(asleep); // a file of another size: what it held is not there any more
    }
    const mounted: MountedSegment = { key, wire: segment, client, allocator: new SegmentAllocator(Number(segment.size)), objects: new Set() };
    this.segments.set(key, mounted);
    client.segments.add(mounted);
    this.capacity += mounted.allocator.capacity;
    this.segmentChanged(mounted);
    return OK_VOID;
  }

  reMountSegment(segments: Segment[], clientId: UUID): Result<null> {
    for (const s of segments) {
      const r = this.mountSegment(s, clientId);
      if (!r.ok) return r;
    }
    this.touchClient(clientId);
    return OK_VOID;
  }

  unmountSegment(segmentId: UUID, clientId: UUID): Result<null> {
    const seg = this.segments.get(uuidKey(segmentId));
    if (!seg) return OK_VOID; // idempotent, as Mooncake
    if (seg.client.id.first !== clientId.first || seg.client.id.second !== clientId.second) return fail(EC.ILLEGAL_CLIENT);
    this.dropSegment(seg);
    return OK_VOID;
  }

  /** A segment leaves: a file segment sleeps (detach), any other is forgotten with its replicas. */
  private dropSegment(seg: MountedSegment): void {
    if (isFileSegmentId(seg.wire.id)) this.detach(seg);
    else {
      this.unlink(seg);
      this.forget(seg);
    }
  }

  /** Out of the mounted set and its owner's, out of the capacity. */
  private unlink(seg: MountedSegment): void {
    this.segments.delete(seg.key);
    seg.client.segments.delete(seg);
    this.capacity -= seg.allocator.capacity;
    this.used -= seg.allocator.used;
  }

  /**
   * A file segment's provider left: its complete replicas stay (in the file),
   * unreadable until it comes back; writes in progress there are dropped as
   * for any segment (their writer or their provider is gone).
   */
  private detach(seg: MountedSegment): void {
    this.unlink(seg);
    this.dormant.set(seg.key, seg);
    this.segmentChanged(seg);
    for (const obj of [...seg.objects]) {
      if (!obj.writing) continue;
      const previous = obj.previous;
      if (previous && !obj.replicas.every((r) => previous.includes(r))) {
        // An upsert to new space: the old value stands wherever it is.
        for (const rep of obj.replicas) if (!previous.includes(rep)) this.freeReplica(rep);
        obj.replicas = previous;
        obj.previous = null;
        obj.writing = false;
        for (const rep of obj.replicas) rep.segment.objects.add(obj);
        this.objectChanged(obj);
        continue;
      }
      this.removeObject(obj);
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
        this.objects.delete(obj.slot);
        this.objectRemoved(obj);
        continue;
      }
      if (obj.replicas.length === 0 && obj.previous) {
        // The upsert lost its new replicas: the old ones stand.
        obj.replicas = obj.previous;
        obj.previous = null;
        obj.writing = false;
      }
      this.objectChanged(obj);
    }
    seg.objects.clear();
    this.segmentRemoved(seg);
    for (let i = this.pendingFrees.length - 1; i >= 0; i--) if (this.pendingFrees[i]!.segment === seg) this.pendingFrees.splice(i, 1);
  }

  /** Clients become known by mounting (MountSegment, or ReMountSegment, even of no segment); other calls do not. */
  ping(clientId: UUID): Result<{ viewVersionId: bigint; clientStatus: number }> {
    const c = this.clients.get(uuidKey(clientId));
    if (!c) {
      // Unknown (a restarted master, or expired): the client remounts, which makes it known.
      return ok({ viewVersionId: 0n, clientStatus: ClientStatus.NEED_REMOUNT });
    }
    c.lastSeen = this.now();
    return ok({ viewVersionId: 0n, clientStatus: ClientStatus.OK });
  }

  // ---- writes ----

  private slot(tenant: string, key: string): string {
    return `${tenant}\u0000${key}`;
  }

  private validateConfig(config: ReplicateConfigWire): number {
    if (config.nofReplicaNum > 0n) return EC.INVALID_PARAMS; // no NoF pool here (Mooncake without USE_NOF says the same)
    if (config.dfsReplicaNum > 0n) return DFS_SERVICE_UNAVAILABLE;
    if (config.softPinAction > SoftPinAction.DISABLE) return EC.INVALID_PARAMS;
    if (config.softPinAction !== SoftPinAction.ENABLE && config.softPinTtlMs !== null) return EC.INVALID_PARAMS;
    if (config.softPinAction === SoftPinAction.ENABLE && config.softPinTtlMs !== null && config.softPinTtlMs > BigInt(this.config.maxSoftPinTtlMs)) {
      return EC.INVALID_PARAMS;
    }
    return EC.OK;
  }

  putStart(clientId: UUID, key: string, length: bigint, config: ReplicateConfigWire, tenant: string): Result<ReplicaDescriptor[]> {
    if (key.length === 0 || length === 0n || config.replicaNum === 0n || length > BigInt(Number.MAX_SAFE_INTEGER)) return fail(EC.INVALID_PARAMS);
    const invalid = this.validateConfig(config);
    if (invalid !== EC.OK) return fail(invalid);
    const writer = this.clients.get(uuidKey(clientId));
    const slot = this.slot(tenant, key);
    const existing = this.objects.get(slot);
    if (existing) {
      // A complete object whose replicas all sleep in files nobody serves is superseded by a new put.
      if (!existing.writing && this.readable(existing).length === 0) this.removeObject(existing);
      else if (!this.discardStaleWrite(existing)) return fail(EC.OBJECT_ALREADY_EXISTS);
    }
    const size = Number(length);
    const replicas = this.place(size, config, writer);
    if (replicas.length === 0) return fail(EC.NO_AVAILABLE_HANDLE);
    const now = this.now();
    const obj: StoredObject = {
      tenant,
      key,
      slot,
      size,
      replicas,
      writing: true,
      writer: uuidKey(clientId),
      writeStartedAt: now,
      previous: null,
      leaseUntil: 0,
      hardPin: config.withHardPin,
      softPinUntil: this.softPinDeadline(config, 0),
      checksum: null,
    };
    for (const r of replicas) r.segment.objects.add(obj);
    this.objects.set(slot, obj);
    this.objectChanged(obj);
    return ok(replicas.map((r) => this.describe(r)));
  }

  /**
   * An existing object blocks a new put unless it is a write nobody finished
   * within the discard timeout; then it goes, and its space is quarantined
   * until the release timeout (its writer may still be copying into it).
   */
  private discardStaleWrite(obj: StoredObject): boolean {
    if (!obj.writing) return false;
    if (obj.writeStartedAt + this.config.putStartDiscardMs >= this.now()) return false;
    const releaseAt = obj.writeStartedAt + this.config.putStartReleaseMs;
    const previous = obj.previous;
    if (previous !== null && !obj.replicas.every((r) => previous.includes(r))) {
      // A stale upsert to new space: the old value stands, the new space is quarantined.
      for (const rep of obj.replicas) {
        rep.segment.objects.delete(obj);
        if (!previous.includes(rep)) this.freeReplica(rep, releaseAt);
      }
      obj.replicas = previous;
      obj.previous = null;
      obj.writing = false;
      for (const rep of obj.replicas) rep.segment.objects.add(obj);
      this.objectChanged(obj);
      return false;
    }
    // A stale put, or a stale in-place upsert (its old bytes are half overwritten): the object goes.
    this.removeObject(obj, releaseAt);
    return true;
  }

  private softPinDeadline(config: ReplicateConfigWire, current: number): number {
    if (config.softPinAction === SoftPinAction.DISABLE) return 0;
    if (config.softPinAction === SoftPinAction.PRESERVE) return current;
    return this.now() + Number(config.softPinTtlMs ?? BigInt(this.config.softPinTtlMs));
  }

  /**
   * Up to replicaNum replicas on distinct segments: the preferred segments
   * first (the deprecated single name wins over the list, as in Mooncake),
   * then segments on the writer's host when asked, then the others from a
   * rotating start so load spreads. Fewer than asked is success (Mooncake
   * places 2 of 3 on 2 segments too); none is NO_AVAILABLE_HANDLE, after one
   * eviction attempt.
   */
  private place(size: number, config: ReplicateConfigWire, writer: Client | undefined): Replica[] {
    const want = Math.min(Number(config.replicaNum), this.segments.size);
    let replicas = this.tryPlace(size, want, config, writer);
    if (replicas.length === 0 && want > 0 && [...this.segments.values()].some((s) => s.allocator.capacity >= size)) {
      this.evict(size);
      replicas = this.tryPlace(size, want, config, writer);
    }
    this.maybeEvict();
    return replicas;
  }

  private rotation = 0;

  private candidates(config: ReplicateConfigWire, writer: Client | undefined): MountedSegment[] {
    const all = [...this.segments.values()];
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
      const before = seg.allocator.used;
      const offset = seg.allocator.allocate(size);
      if (offset === undefined) continue;
      this.used += seg.allocator.used - before;
      out.push({ id: this.nextReplicaId++, segment: seg, offset, size, status: ReplicaStatus.PROCESSING });
    }
    return out;
  }

  private describe(r: Replica): ReplicaDescriptor {
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

  private freeReplica(r: Replica, at = 0): void {
    if (!this.holds(r.segment)) return; // forgotten: its allocator is gone
    if (at > this.now()) {
      this.pendingFrees.push({ segment: r.segment, offset: r.offset, at });
      return;
    }
    this.release(r.segment, r.offset);
  }

  /** The segment is mounted, or dormant (a file segment), so its allocator still counts. */
  private holds(seg: MountedSegment): boolean {
    return this.segments.get(seg.key) === seg || this.dormant.get(seg.key) === seg;
  }

  private attached(seg: MountedSegment): boolean {
    return this.segments.get(seg.key) === seg;
  }

  /** Return space to a segment's allocator; the master's used bytes count mounted segments only. */
  private release(seg: MountedSegment, offset: number): void {
    if (!this.holds(seg)) return;
    const before = seg.allocator.used;
    seg.allocator.free(offset);
    if (this.attached(seg)) this.used -= before - seg.allocator.used;
  }

  /** Remove an object and free its replicas (now, or at `freeAt` for space a writer or reader may still touch). */
  private removeObject(obj: StoredObject, freeAt = 0): void {
    this.objects.delete(obj.slot);
    for (const r of new Set([...obj.replicas, ...(obj.previous ?? [])])) {
      r.segment.objects.delete(obj);
      this.freeReplica(r, freeAt);
    }
    obj.replicas = [];
    obj.previous = null;
    this.objectRemoved(obj);
  }

  private owned(clientId: UUID, tenant: string, key: string): Result<StoredObject> {
    const obj = this.objects.get(this.slot(tenant, key));
    if (!obj) return fail(EC.OBJECT_NOT_FOUND);
    if (obj.writing && obj.writer !== uuidKey(clientId)) return fail(EC.ILLEGAL_CLIENT);
    return ok(obj);
  }

  putEnd(clientId: UUID, meta: { key: string; objectChecksum: bigint | null }, tenant: string): Result<null> {
    const r = this.owned(clientId, tenant, meta.key);
    if (!r.ok) return r;
    const obj = r.value;
    if (!obj.writing) return obj.replicas.length > 0 ? OK_VOID : fail(EC.INVALID_WRITE); // a retried End
    for (const rep of obj.replicas) rep.status = ReplicaStatus.COMPLETE;
    obj.writing = false;
    obj.checksum = meta.objectChecksum;
    if (obj.previous) {
      // An upsert to new space: the old replicas may still be read under a lease.
      for (const old of obj.previous) {
        if (!obj.replicas.includes(old)) {
          old.segment.objects.delete(obj);
          this.freeReplica(old, obj.leaseUntil);
        }
      }
      obj.previous = null;
      for (const rep of obj.replicas) rep.segment.objects.add(obj);
    }
    this.objectChanged(obj);
    this.touch(obj);
    return OK_VOID;
  }

  putRevoke(clientId: UUID, key: string, tenant: string): Result<null> {
    const r = this.owned(clientId, tenant, key);
    if (!r.ok) return r;
    const obj = r.value;
    if (!obj.writing) return fail(EC.INVALID_WRITE);
    if (obj.previous) {
      const inPlace = obj.replicas.every((rep) => obj.previous!.includes(rep));
      if (inPlace) {
        // The old bytes were being overwritten: the object is gone.
        this.removeObject(obj);
        return OK_VOID;
      }
      for (const rep of obj.replicas) {
        rep.segment.objects.delete(obj);
        this.freeReplica(rep);
      }
      obj.replicas = obj.previous;
      obj.previous = null;
      obj.writing = false;
      for (const rep of obj.replicas) rep.segment.objects.add(obj);
      this.objectChanged(obj);
      return OK_VOID;
    }
    this.removeObject(obj);
    return OK_VOID;
  }

  /**
   * Write a key whether or not it exists. A new key is a put. An existing one
   * of the same size with no reader holding a lease is rewritten in place
   * (Mooncake does the same: the capture shows the same address); otherwise
   * new space is placed and the old replicas stay readable until UpsertEnd.
   */
  upsertStart(clientId: UUID, key: string, length: bigint, config: ReplicateConfigWire, tenant: string): Result<ReplicaDescriptor[]> {
    const obj = this.objects.get(this.slot(tenant, key));
    if (!obj || this.discardStaleWrite(obj)) return this.putStart(clientId, key, length, config, tenant);
    if (key.length === 0 || length === 0n || config.replicaNum === 0n || length > BigInt(Number.MAX_SAFE_INTEGER)) return fail(EC.INVALID_PARAMS);
    const invalid = this.validateConfig(config);
    if (invalid !== EC.OK) return fail(invalid);
    if (obj.writing) return fail(EC.OBJECT_REPLICA_BUSY);
    const writer = this.clients.get(uuidKey(clientId));
    const size = Number(length);
    let replicas: Replica[];
    if (size === obj.size && obj.leaseUntil <= this.now()) {
      replicas = obj.replicas;
    } else {
      obj.writing = true; // eviction skips objects being written: not this one while room is made for it
      try {
        replicas = this.place(size, config, writer);
      } finally {
        obj.writing = false;
      }
      if (replicas.length === 0) return fail(EC.NO_AVAILABLE_HANDLE);
      for (const r of replicas) r.segment.objects.add(obj);
    }
    obj.previous = obj.replicas;
    obj.replicas = replicas;
    obj.size = size;
    obj.writing = true;
    obj.writer = uuidKey(clientId);
    obj.writeStartedAt = this.now();
    obj.hardPin = config.withHardPin;
    obj.softPinUntil = this.softPinDeadline(config, obj.softPinUntil);
    for (const r of replicas) r.status = ReplicaStatus.PROCESSING;
    this.objectChanged(obj);
    return ok(replicas.map((r) => this.describe(r)));
  }

  // ---- reads ----

  private touch(obj: StoredObject): void {
    this.objects.delete(obj.slot);
    this.objects.set(obj.slot, obj);
  }

  /** Complete replicas in mounted segments (not in a dormant file segment). */
  private readable(obj: StoredObject): Replica[] {
    const ok = (r: Replica): boolean => r.status === ReplicaStatus.COMPLETE && this.attached(r.segment);
    if (obj.writing) return obj.previous?.filter((r) => ok(r) && !obj.replicas.includes(r)) ?? [];
    return obj.replicas.filter(ok);
  }

  private grantLease(obj: StoredObject): void {
    obj.leaseUntil = Math.max(obj.leaseUntil, this.now() + this.config.leaseTtlMs);
    this.touch(obj);
  }

  getReplicaList(key: string, tenant: string): Result<GetReplicaListResponse> {
    const obj = this.objects.get(this.slot(tenant, key));
    if (!obj) return fail(EC.OBJECT_NOT_FOUND);
    const replicas = this.readable(obj);
    if (replicas.length === 0) return fail(EC.REPLICA_IS_NOT_READY);
    this.grantLease(obj);
    return ok({ replicas: replicas.map((r) => this.describe(r)), leaseTtlMs: BigInt(this.config.leaseTtlMs), objectChecksum: obj.checksum });
  }

  existKey(key: string, tenant: string): Result<boolean> {
    const obj = this.objects.get(this.slot(tenant, key));
    if (!obj || this.readable(obj).length === 0) return ok(false);
    this.grantLease(obj); // as Mooncake: a client that asks is likely to read next
    return ok(true);
  }

  // ---- removal ----

  remove(key: string, force: boolean, tenant: string): Result<null> {
    const obj = this.objects.get(this.slot(tenant, key));
    if (!obj) return fail(EC.OBJECT_NOT_FOUND);
    if (!force && obj.leaseUntil > this.now()) return fail(EC.OBJECT_HAS_LEASE);
    // Even with force: a write in progress would copy into freed space.
    if (obj.writing) return fail(EC.REPLICA_IS_NOT_READY);
    this.removeObject(obj, force ? obj.leaseUntil : 0);
    return OK_VOID;
  }

  /** Remove every removable object of the tenant whose key matches; the count. */
  removeWhere(match: (key: string) => boolean, force: boolean, tenant: string): number {
    const now = this.now();
    let n = 0;
    for (const obj of [...this.objects.values()]) {
      if (obj.tenant !== tenant || obj.writing || !match(obj.key)) continue;
      if (!force && obj.leaseUntil > now) continue;
      this.removeObject(obj, force ? obj.leaseUntil : 0);
      n++;
    }
    return n;
  }

  removeByRegex(pattern: string, force: boolean, tenant: string): Result<bigint> {
    let re: RegExp;
    try {
      re = new RegExp(pattern, 'u');
    } catch {
      return fail(EC.INVALID_PARAMS);
    }
    return ok(BigInt(this.removeWhere((k) => re.test(k), force, tenant)));
  }

  // ---- time-driven work ----

  /**
   * Everything that happens because time passed: expired clients lose their
   * segments, quarantined space becomes free, expired soft pins lapse (they
   * are read lazily), and eviction runs if space is short. Call it often
   * (the master does every 100 ms).
   */
  sweep(): void {
    const now = this.now();
    for (const [k, c] of this.clients) {
      if (c.lastSeen + this.config.clientTtlMs < now) {
        for (const seg of [...c.segments]) this.dropSegment(seg);
        this.clients.delete(k);
        this.counters.expiredClients++;
      }
    }
    for (let i = this.pendingFrees.length - 1; i >= 0; i--) {
      const p = this.pendingFrees[i]!;
      if (p.at > now) continue;
      this.pendingFrees.splice(i, 1);
      this.release(p.segment, p.offset);
    }
    this.maybeEvict();
  }

  private maybeEvict(): void {
    if (this.capacity > 0 && this.used > this.capacity * this.config.evictionHighWatermark) this.evict(0);
  }

  /**
   * One eviction round: least recently used first, never a leased, hard-pinned
   * or half-written object; soft-pinned ones only when nothing else is left and
   * allowed. Frees the eviction ratio of the capacity (at least what brings
   * usage under the watermark); for a put waiting for `need` bytes, it stops as
   * soon as some segment has a free block that large, so a put evicts what it
   * needs where it needs it rather than a global quota.
   */
  private evict(need: number): void {
    const target = need > 0 ? Infinity : Math.max(this.capacity * this.config.evictionRatio, this.used - this.capacity * this.config.evictionHighWatermark);
    const roomFor = (): boolean => need > 0 && [...this.segments.values()].some((s) => s.allocator.largestFree >= need);
    const now = this.now();
    let freed = 0;
    this.counters.evictionRounds++;
    for (const softPinned of this.config.allowEvictSoftPinned ? [false, true] : [false]) {
      for (const obj of [...this.objects.values()]) {
        if (freed >= target) return;
        if (obj.writing || obj.hardPin || obj.leaseUntil > now) continue;
        if ((obj.softPinUntil > now) !== softPinned) continue;
        // Only replicas in mounted segments free space that counts; an object asleep in a file is left there.
        const inMounted = obj.replicas.filter((r) => this.attached(r.segment)).length;
        if (inMounted === 0) continue;
        freed += obj.size * inMounted;
        this.counters.evictedObjects++;
        this.counters.evictedBytes += obj.size * inMounted;
        this.removeObject(obj);
        if (roomFor()) return;
      }
    }
  }

  // ---- durable state: what changed, and a successor's restore (src/master/records.ts) ----

  /** Objects and segments changed since takeChanges(); kept only with a journal attached. */
  private tracking = false;
  private readonly dirtyObjects = new Set<StoredObject>();
  private readonly goneObjects = new Map<string, StoredObject>();
  private readonly dirtySegments = new Set<MountedSegment>();

  /** Start recording changes for a journal (nothing is recorded otherwise: no cost without HA). */
  trackChanges(): void {
    this.tracking = true;
  }

  private objectChanged(obj: StoredObject): void {
    if (this.tracking) this.dirtyObjects.add(obj);
  }

  private objectRemoved(obj: StoredObject): void {
    if (!this.tracking) return;
    this.dirtyObjects.delete(obj);
    this.goneObjects.set(obj.slot, obj);
  }

  private segmentChanged(seg: MountedSegment): void {
    if (this.tracking) this.dirtySegments.add(seg);
  }

  private segmentRemoved(seg: MountedSegment): void {
    if (this.tracking) this.dirtySegments.add(seg); // written as a deletion: it is neither mounted nor dormant
  }

  /** The journal's name of an object: its tenant and key. */
  static objectName(tenant: string, key: string): string {
    return `${tenant}\u0000${key}`;
  }

  /**
   * What changed since the last call, as records (null: deleted), or null when
   * nothing did. The master commits it before it answers the requests that
   * made it.
   */
  takeChanges(): ChangeSet | null {
    if (this.dirtyObjects.size === 0 && this.goneObjects.size === 0 && this.dirtySegments.size === 0) return null;
    const objects = new Map<string, ObjectRecord | null>();
    for (const slot of this.goneObjects.keys()) objects.set(slot, null);
    for (const obj of this.dirtyObjects) objects.set(obj.slot, this.objects.get(obj.slot) === obj ? this.objectRecord(obj) : null);
    const segments = new Map<string, SegmentRecord | null>();
    for (const seg of this.dirtySegments) segments.set(seg.key, this.holds(seg) ? this.segmentRecord(seg) : null);
    this.dirtyObjects.clear();
    this.goneObjects.clear();
    this.dirtySegments.clear();
    return { objects, segments };
  }

  /** Every segment and object as records (a snapshot, e.g. to seed an empty journal). */
  exportState(): StateSnapshot {
    return {
      segments: [...this.segments.values(), ...this.dormant.values()].map((s) => this.segmentRecord(s)),
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
    return { segment: seg.wire, client: seg.client.id, dormant: !this.attached(seg) };
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
    if (this.segments.size > 0 || this.dormant.size > 0 || this.objects.size > 0) throw new Error('restore() is for an empty master');
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
      const client = rec.dormant ? { id: rec.client, lastSeen: this.now(), segments: new Set<MountedSegment>(), hostId: '' } : this.touchClient(rec.client);
      const seg: MountedSegment = {
        key,
        wire: rec.segment,
        client,
        allocator: SegmentAllocator.restore(Number(rec.segment.size), allocations.get(key) ?? []),
        objects: new Set(),
      };
      byKey.set(key, seg);
      if (rec.dormant) this.dormant.set(key, seg);
      else {
        this.segments.set(key, seg);
        client.segments.add(seg);
        this.capacity += seg.allocator.capacity;
        this.used += seg.allocator.used;
      }
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
        if (rep.id >= this.nextReplicaId) this.nextReplicaId = rep.id + 1n;
        return rep;
      };
      const replicas = o.replicas.map(replica).filter((r): r is Replica => r !== null);
      const previous = o.previous === null ? null : o.previous.map(replica).filter((r): r is Replica => r !== null);
      if (replicas.length === 0 && (previous?.length ?? 0) === 0) continue;
      const slot = this.slot(o.tenant, o.key);
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
      this.objects.set(slot, obj);
    }
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
      segments: this.segments.size,
      objects: this.objects.size,
      capacityBytes: this.capacity,
      usedBytes: this.used,
      leasedObjects: leased,
      writingObjects: writing,
      pendingFreeRegions: this.pendingFrees.length,
      dormantSegments: this.dormant.size,
    };
  }

  /** Per segment: name, capacity and used bytes. */
  segmentUsage(): { name: string; capacity: number; used: number }[] {
    return [...this.segments.values()].map((s) => ({ name: s.wire.name, capacity: s.allocator.capacity, used: s.allocator.used }));
  }
}
