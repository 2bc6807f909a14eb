/**
 * The rules of writing an object: Put and Upsert start, end and revoke, what
 * a write's replicas become at each step, and when a write nobody finished
 * stops blocking its key.
 */
import type { ChangeTracker } from './changes.js';
import type { ClientRegistry } from './clients.js';
import type { MasterConfig } from './config.js';
import { fail, objectSlot, ok, OK_VOID, uuidKey, type Replica, type Result, type StoredObject } from './model.js';
import { describe, type ObjectTable } from './objects.js';
import type { Placement } from './placement.js';
import type { Retention } from './retention.js';
import type { SegmentSpace } from './segment-space.js';
import { ReplicaStatus, SoftPinAction, StoreErrorCode as EC, type ReplicaDescriptor, type ReplicateConfigWire, type UUID } from '../store/master-protocol.js';

/** Mooncake's DFS_SERVICE_UNAVAILABLE: a DFS replica was asked of a master without one. */
const DFS_SERVICE_UNAVAILABLE = -1601;

export class Writes {
  constructor(
    private readonly config: Readonly<MasterConfig>,
    private readonly now: () => number,
    private readonly clients: ClientRegistry,
    private readonly space: SegmentSpace,
    private readonly objects: ObjectTable,
    private readonly changes: ChangeTracker,
    private readonly placement: Placement,
    private readonly retention: Retention,
  ) {}

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
    const writer = this.clients.get(clientId);
    const slot = objectSlot(tenant, key);
    const existing = this.objects.find(tenant, key);
    if (existing) {
      // A complete object whose replicas all sleep in files nobody serves is superseded by a new put.
      if (!existing.writing && this.objects.readable(existing).length === 0) this.objects.remove(existing);
      else if (!this.discardStaleWrite(existing)) return fail(EC.OBJECT_ALREADY_EXISTS);
    }
    const size = Number(length);
    const replicas = this.placement.place(size, config, writer);
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
      softPinUntil: this.retention.softPinDeadline(config, 0),
      checksum: null,
    };
    for (const r of replicas) r.segment.objects.add(obj);
    this.objects.add(obj);
    this.changes.objectChanged(obj);
    return ok(replicas.map((r) => describe(r)));
  }

  /**
   * An existing object blocks a new put unless it is a write nobody finished
   * within the discard timeout; then it goes, and its space is quarantined
   * until the release timeout (its writer may still be copying into it).
   */
  private discardStaleWrite(obj: StoredObject): boolean {
    if (!obj.writing) return false;
    if (obj.writeStartedAt + this.config.putStartDiscardMs >= this.now()) return false;
    return this.giveUp(obj, obj.writeStartedAt + this.config.putStartReleaseMs);
  }

  /**
   * End a write nobody will finish, its new space freed at `releaseAt` (0: now).
   * True when the object went; false when an upsert to new space fell back to its old value.
   */
  private giveUp(obj: StoredObject, releaseAt: number): boolean {
    const previous = obj.previous;
    if (previous !== null && !obj.replicas.every((r) => previous.includes(r))) {
      // A stale upsert to new space: the old value stands, the new space is quarantined.
      for (const rep of obj.replicas) {
        rep.segment.objects.delete(obj);
        if (!previous.includes(rep)) this.space.freeReplica(rep, releaseAt);
      }
      obj.replicas = previous;
      obj.previous = null;
      obj.writing = false;
      for (const rep of obj.replicas) rep.segment.objects.add(obj);
      this.changes.objectChanged(obj);
      return false;
    }
    // A stale put, or a stale in-place upsert (its old bytes are half overwritten): the object goes.
    this.objects.remove(obj, releaseAt);
    return true;
  }

  /**
   * Writes nobody finished within the release timeout (their writer died, or
   * lost the master, between Start and End) are given up on: a put or an
   * in-place upsert goes, an upsert to new space keeps its old value. Their
   * space is free at once: the writer's time to copy into it is over.
   * Mooncake's eviction thread does the same (DiscardExpiredProcessingReplicas);
   * without it such an object stayed for good unless its key was written again:
   * its space used, `objects_writing` counting it, and (HA) in etcd.
   * Returns how many writes were given up on.
   */
  discardAbandonedWrites(): number {
    const now = this.now();
    const stale: StoredObject[] = [];
    for (const obj of this.objects.values()) if (obj.writing && obj.writeStartedAt + this.config.putStartReleaseMs <= now) stale.push(obj);
    for (const obj of stale) this.giveUp(obj, 0);
    return stale.length;
  }

  private owned(clientId: UUID, tenant: string, key: string): Result<StoredObject> {
    const obj = this.objects.find(tenant, key);
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
          this.space.freeReplica(old, obj.leaseUntil);
        }
      }
      obj.previous = null;
      for (const rep of obj.replicas) rep.segment.objects.add(obj);
    }
    this.changes.objectChanged(obj);
    this.objects.touch(obj);
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
        this.objects.remove(obj);
        return OK_VOID;
      }
      for (const rep of obj.replicas) {
        rep.segment.objects.delete(obj);
        this.space.freeReplica(rep);
      }
      obj.replicas = obj.previous;
      obj.previous = null;
      obj.writing = false;
      for (const rep of obj.replicas) rep.segment.objects.add(obj);
      this.changes.objectChanged(obj);
      return OK_VOID;
    }
    this.objects.remove(obj);
    return OK_VOID;
  }

  /**
   * Write a key whether or not it exists. A new key is a put. An existing one
   * of the same size with no reader holding a lease is rewritten in place
   * (Mooncake does the same: the capture shows the same address); otherwise
   * new space is placed and the old replicas stay readable until UpsertEnd.
   */
  upsertStart(clientId: UUID, key: string, length: bigint, config: ReplicateConfigWire, tenant: string): Result<ReplicaDescriptor[]> {
    const obj = this.objects.find(tenant, key);
    if (!obj || this.discardStaleWrite(obj)) return this.putStart(clientId, key, length, config, tenant);
    if (key.length === 0 || length === 0n || config.replicaNum === 0n || length > BigInt(Number.MAX_SAFE_INTEGER)) return fail(EC.INVALID_PARAMS);
    const invalid = this.validateConfig(config);
    if (invalid !== EC.OK) return fail(invalid);
    if (obj.writing) return fail(EC.OBJECT_REPLICA_BUSY);
    const writer = this.clients.get(clientId);
    const size = Number(length);
    let replicas: Replica[];
    if (size === obj.size && obj.leaseUntil <= this.now()) {
      replicas = obj.replicas;
    } else {
      obj.writing = true; // eviction skips objects being written: not this one while room is made for it
      try {
        replicas = this.placement.place(size, config, writer);
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
    obj.softPinUntil = this.retention.softPinDeadline(config, obj.softPinUntil);
    for (const r of replicas) r.status = ReplicaStatus.PROCESSING;
    this.changes.objectChanged(obj);
    return ok(replicas.map((r) => describe(r)));
  }
}
