/**
 * Moving an object's bytes to and from its replicas, over one core engine:
 * the client's local buffer values are copied through, the WRITE of a value
 * to every replica the master placed, the READ of a complete replica within
 * the read lease. Transfers started in one turn of the event loop (a store
 * batch's keys) share one engine batch.
 */
import { TransferEngine as CoreEngine } from '../engine/engine.js';
import { TransferOpcode, TaskStatus, type TransferRequest } from '../engine/types.js';
import { teError, ErrorCode } from '../errors.js';
import { ReplicaStatus, StoreErrorCode, type GetReplicaListResponse, type ReplicaDescriptor } from './master-protocol.js';
import type { StagingBuffer } from './staging.js';
import { StoreError } from './store-errors.js';

interface Pending {
  requests: TransferRequest[];
  what: string;
  resolve: () => void;
  reject: (e: unknown) => void;
}

export class ReplicaIO {
  private readonly pending: Pending[] = [];
  private closed = false;

  constructor(
    private readonly engine: CoreEngine,
    /** The local buffer; null without one (localBufferSize 0). */
    private readonly staging: StagingBuffer | null,
    /** Its address in the engine's registered memory. */
    private readonly stagingBase: number,
  ) {}

  /** Run `fn` with a block of the local buffer big enough for `size` bytes: its address and a view of it. */
  async staged(size: number, fn: (addr: number, view: Uint8Array) => Promise<void>): Promise<void> {
    const staging = this.staging;
    if (!staging) throw new StoreError(StoreErrorCode.INVALID_PARAMS, 'this store has no local buffer (localBufferSize 0): use putFrom/getInto with registered memory');
    if (size > staging.capacity) throw new StoreError(StoreErrorCode.INVALID_PARAMS, `${size} bytes do not fit in the local buffer of ${staging.capacity} bytes (localBufferSize)`);
    const n = Math.max(1, size);
    const off = await staging.acquire(n);
    try {
      await fn(this.stagingBase + off, this.engine.localView(this.stagingBase + off, n));
    } finally {
      staging.release(off, n);
    }
  }

  /** WRITE `size` bytes at `addr` to every replica the master placed for `key`. */
  write(addr: number, size: number, replicas: ReplicaDescriptor[], key: string): Promise<void> {
    return this.transfer(TransferOpcode.WRITE, addr, size, replicas, key);
  }

  /**
   * READ a complete memory replica (the next one if a read fails) within the
   * read lease the master granted at `t0`: a read that ends after it may have
   * raced an eviction, and fails LEASE_EXPIRED as Mooncake's does.
   */
  async read(addr: number, size: number, list: GetReplicaListResponse, key: string, t0: number): Promise<void> {
    const complete = list.replicas.filter((r) => r.status === ReplicaStatus.COMPLETE && memoryBuffer(r));
    if (complete.length === 0) throw new StoreError(StoreErrorCode.INVALID_REPLICA, `"${key}" has no complete memory replica`);
    let last: unknown;
    for (const rep of complete) {
      try {
        await this.transfer(TransferOpcode.READ, addr, size, [rep], key);
        if (performance.now() - t0 > Number(list.leaseTtlMs)) {
          throw new StoreError(StoreErrorCode.LEASE_EXPIRED, `reading "${key}" ended after its ${list.leaseTtlMs} ms read lease`);
        }
        return;
      } catch (e) {
        last = e;
        if (e instanceof StoreError && e.storeCode === StoreErrorCode.LEASE_EXPIRED) throw e;
      }
    }
    throw last;
  }

  /** No more transfers: those not started yet fail with TE_CLOSED. */
  close(): void {
    this.closed = true;
    this.staging?.close();
  }

  /** The same bytes written to (or read from) each replica: one request per replica. */
  private transfer(opcode: TransferOpcode, addr: number, size: number, replicas: ReplicaDescriptor[], key: string): Promise<void> {
    if (replicas.length === 0) return Promise.reject(new StoreError(StoreErrorCode.INVALID_REPLICA, `the master placed no replica of "${key}"`));
    let requests: TransferRequest[];
    try {
      requests = replicas.map((rep) => {
        const d = memoryBuffer(rep);
        if (!d) throw new StoreError(StoreErrorCode.NOT_SUPPORTED, `a replica of "${key}" is not in memory (variant ${rep.descriptor.index}): this client reads and writes memory replicas only`);
        if (d.size !== BigInt(size)) throw new StoreError(StoreErrorCode.INVALID_REPLICA, `a replica of "${key}" is ${d.size} bytes, not ${size}`);
        return { opcode, source: addr, targetId: this.engine.segmentHandle(d.transportEndpoint), targetOffset: d.bufferAddress, length: size };
      });
    } catch (e) {
      return Promise.reject(e);
    }
    return this.submit(requests, `${opcode === TransferOpcode.WRITE ? 'writing' : 'reading'} "${key}"`);
  }

  /**
   * Run requests as part of one engine batch with every other submit of this
   * turn of the event loop: a store batch's keys (each with its own replicas)
   * then cost one batch and one pump of the lanes, not one each.
   */
  private submit(requests: TransferRequest[], what: string): Promise<void> {
    if (this.closed) return Promise.reject(teError(ErrorCode.CLOSED, 'the store is closed'));
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ requests, what, resolve, reject });
      if (this.pending.length === 1) queueMicrotask(() => void this.flush());
    });
  }

  private async flush(): Promise<void> {
    const group = this.pending.splice(0);
    const all = group.flatMap((g) => g.requests);
    let id = 0;
    try {
      id = this.engine.allocateBatchID(all.length);
      try {
        this.engine.submitTransfer(id, all);
      } catch {
        // One request refused at submission refuses them all: each on its own says whose it was.
        this.engine.freeBatchID(id);
        id = 0;
        for (const g of group) void this.runAlone(g);
        return;
      }
      const statuses = await this.engine.waitBatch(id);
      let at = 0;
      for (const g of group) {
        settle(g, statuses.slice(at, at + g.requests.length));
        at += g.requests.length;
      }
    } catch (e) {
      for (const g of group) g.reject(e);
    } finally {
      this.free(id);
    }
  }

  private async runAlone(g: Pending): Promise<void> {
    let id = 0;
    try {
      id = this.engine.allocateBatchID(g.requests.length);
      this.engine.submitTransfer(id, g.requests);
      settle(g, await this.engine.waitBatch(id));
    } catch (e) {
      g.reject(e);
    } finally {
      this.free(id);
    }
  }

  private free(id: number): void {
    if (!id) return;
    try {
      this.engine.freeBatchID(id);
    } catch {
      /* the engine closed meanwhile */
    }
  }
}

/** A submit's outcome from its tasks' statuses: done, or TRANSFER_FAIL with the first failure. */
function settle(g: Pending, statuses: ReadonlyArray<{ status: TaskStatus; error?: Error }>): void {
  const bad = statuses.find((x) => x.status !== TaskStatus.COMPLETED);
  if (bad) g.reject(new StoreError(StoreErrorCode.TRANSFER_FAIL, `${g.what} failed: ${bad.error?.message ?? TaskStatus[bad.status]}`, bad.error));
  else g.resolve();
}

/** The memory buffer of a replica, or null for disk and other kinds. */
export function memoryBuffer(r: ReplicaDescriptor): { size: bigint; bufferAddress: bigint; transportEndpoint: string } | null {
  const d = r.descriptor;
  if (d.index === 0 || d.index === 1) return d.value.bufferDescriptor;
  return null;
}

/** The object's size: its first replica's (as Mooncake's get_size). */
export function objectSize(list: GetReplicaListResponse, key: string): number {
  const first = list.replicas[0];
  const d = first ? memoryBuffer(first) : null;
  if (!first || !d) throw new StoreError(StoreErrorCode.INVALID_REPLICA, `"${key}" has no memory replica`);
  if (d.size > BigInt(Number.MAX_SAFE_INTEGER)) throw new StoreError(StoreErrorCode.INVALID_REPLICA, `"${key}" claims ${d.size} bytes`);
  return Number(d.size);
}
