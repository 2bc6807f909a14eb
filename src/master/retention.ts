/**
 * How long an object stays: read leases (granted by GetReplicaList and
 * ExistKey, as Mooncake does; honoured by Remove and eviction), hard and soft
 * pins, explicit removal, and eviction when space is short.
 */
import type { MasterConfig } from './config.js';
import { fail, ok, OK_VOID, type MasterCounters, type Result, type StoredObject } from './model.js';
import { describe, type ObjectTable } from './objects.js';
import type { SegmentSpace } from './segment-space.js';
import { SoftPinAction, StoreErrorCode as EC, type GetReplicaListResponse, type ReplicateConfigWire } from '../store/master-protocol.js';

export class Retention {
  constructor(
    private readonly config: Readonly<MasterConfig>,
    private readonly now: () => number,
    private readonly space: SegmentSpace,
    private readonly objects: ObjectTable,
    private readonly counters: MasterCounters,
  ) {}

  // ---- leases: reads grant them ----

  private grantLease(obj: StoredObject): void {
    obj.leaseUntil = Math.max(obj.leaseUntil, this.now() + this.config.leaseTtlMs);
    this.objects.touch(obj);
  }

  getReplicaList(key: string, tenant: string): Result<GetReplicaListResponse> {
    const obj = this.objects.find(tenant, key);
    if (!obj) return fail(EC.OBJECT_NOT_FOUND);
    const replicas = this.objects.readable(obj);
    if (replicas.length === 0) return fail(EC.REPLICA_IS_NOT_READY);
    this.grantLease(obj);
    return ok({ replicas: replicas.map((r) => describe(r)), leaseTtlMs: BigInt(this.config.leaseTtlMs), objectChecksum: obj.checksum });
  }

  existKey(key: string, tenant: string): Result<boolean> {
    const obj = this.objects.find(tenant, key);
    if (!obj || this.objects.readable(obj).length === 0) return ok(false);
    this.grantLease(obj); // as Mooncake: a client that asks is likely to read next
    return ok(true);
  }

  // ---- pins: a write sets them ----

  /** The soft pin a write leaves on its object, given the one it has (`current`). */
  softPinDeadline(config: ReplicateConfigWire, current: number): number {
    if (config.softPinAction === SoftPinAction.DISABLE) return 0;
    if (config.softPinAction === SoftPinAction.PRESERVE) return current;
    return this.now() + Number(config.softPinTtlMs ?? BigInt(this.config.softPinTtlMs));
  }

  // ---- removal ----

  remove(key: string, force: boolean, tenant: string): Result<null> {
    const obj = this.objects.find(tenant, key);
    if (!obj) return fail(EC.OBJECT_NOT_FOUND);
    if (!force && obj.leaseUntil > this.now()) return fail(EC.OBJECT_HAS_LEASE);
    // Even with force: a write in progress would copy into freed space.
    if (obj.writing) return fail(EC.REPLICA_IS_NOT_READY);
    this.objects.remove(obj, force ? obj.leaseUntil : 0);
    return OK_VOID;
  }

  /** Remove every removable object of the tenant whose key matches; the count. */
  removeWhere(match: (key: string) => boolean, force: boolean, tenant: string): number {
    const now = this.now();
    let n = 0;
    for (const obj of [...this.objects.values()]) {
      if (obj.tenant !== tenant || obj.writing || !match(obj.key)) continue;
      if (!force && obj.leaseUntil > now) continue;
      this.objects.remove(obj, force ? obj.leaseUntil : 0);
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

  // ---- eviction ----

  maybeEvict(): void {
    if (this.space.capacity > 0 && this.space.used > this.space.capacity * this.config.evictionHighWatermark) this.evict(0);
  }

  /**
   * One eviction round: least recently used first, never a leased, hard-pinned
   * or half-written object; soft-pinned ones only when nothing else is left and
   * allowed. Frees the eviction ratio of the capacity (at least what brings
   * usage under the watermark); for a put waiting for `need` bytes, it stops as
   * soon as some segment has a free block that large, so a put evicts what it
   * needs where it needs it rather than a global quota.
   */
  evict(need: number): void {
    const target = need > 0 ? Infinity : Math.max(this.space.capacity * this.config.evictionRatio, this.space.used - this.space.capacity * this.config.evictionHighWatermark);
    const roomFor = (): boolean => need > 0 && this.space.roomFor(need);
    const now = this.now();
    let freed = 0;
    this.counters.evictionRounds++;
    for (const softPinned of this.config.allowEvictSoftPinned ? [false, true] : [false]) {
      for (const obj of [...this.objects.values()]) {
        if (freed >= target) return;
        if (obj.writing || obj.hardPin || obj.leaseUntil > now) continue;
        if ((obj.softPinUntil > now) !== softPinned) continue;
        // Only replicas in mounted segments free space that counts; an object asleep in a file is left there.
        const inMounted = obj.replicas.filter((r) => this.space.attached(r.segment)).length;
        if (inMounted === 0) continue;
        freed += obj.size * inMounted;
        this.counters.evictedObjects++;
        this.counters.evictedBytes += obj.size * inMounted;
        this.objects.remove(obj);
        if (roomFor()) return;
      }
    }
  }
}
