/**
 * The shared-memory transport: same-host transfers as plain copies between
 * our memory and a mapping of the peer's /dev/shm file.
 *
 * It serves a request (canServe) when the addon is loaded, the peer has our
 * machine id and the range lies in one region it published with a valid shm
 * name. A copy that fails hands the rest of the request to TCP, which carries
 * it or reports why not (a range the peer refuses, a peer gone): the copy's
 * own error is not the task's.
 *
 * Safety against a peer's mistakes (see also src/native/native.c):
 *  - names must match our pattern (no '/', no '..', only /dev/shm/transfer-engine-*);
 *  - the file must be a regular file of our uid whose fstat size equals the
 *    descriptor's length before it is mapped (MALFORMED otherwise);
 *  - peer mappings are never exposed to JS; every copy checks the range,
 *    re-checks the file with fstat (removed -> PEER_UNREACHABLE, shrunk ->
 *    PEER_UNREACHABLE) and runs under the addon's SIGBUS guard, so a file
 *    truncated in between still cannot kill the process.
 * A peer that exits leaves our mapping valid (the kernel keeps the pages);
 * once its file is removed (its exit hook, or the reaper) copies fail.
 *
 * Copies are synchronous (memcpy on the calling thread): at 1-4 MiB they take
 * tens to hundreds of microseconds, less than handing them to a thread; larger
 * requests go a piece per event-loop turn (submit).
 */
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { localMachineId } from '../shm/identity.js';
import { COPY_SKIP_STAT, fromNative, loadNative, type NativeHandle, type NativeAddon } from '../native/addon.js';
import { SHM_DIR, validateShmName } from '../shm/names.js';
import { Lease } from '../lease.js';
import { pieceAt, pieceCount } from '../pieces.js';
import type { Job, ShmPeerRegion, TaskSink, Transport, TransportHost } from './transport.js';

export type { ShmPeerRegion } from './transport.js';

/**
 * Same-host copies larger than this go this much at a time, one piece per
 * event-loop turn: a 64 MiB copy in one piece would hold the loop (every
 * socket, every timer) for its whole duration (benchmarks/shm-stall.ts).
 */
const SHM_CHUNK = 4 * 1024 * 1024;

export interface ShmTransportOptions {
  /** Our machine identity (default TE_MACHINE_ID, else boot id + machine id). */
  machineId?: string;
  /** Peer mappings kept open (least recently used ones are dropped). Default 256. */
  maxMappings?: number;
  /** Tests only: skip the per-copy fstat so the SIGBUS guard is what catches truncation. */
  testSkipStatCheck?: boolean;
}

interface Entry {
  handle: NativeHandle;
  size: number;
  addr: bigint;
  writable: boolean;
}

function toSafe(v: unknown, what: string): number {
  if (typeof v === 'bigint' && v >= 0n && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return v;
  throw teError(ErrorCode.MALFORMED, `${what} must be a non-negative integer below 2^53, got ${String(v)}`);
}

function toAddr(v: unknown): bigint {
  if (typeof v === 'bigint' && v >= 0n) return v;
  if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
  throw teError(ErrorCode.MALFORMED, `shm region addr must be a non-negative integer, got ${String(v)}`);
}

/** Native failures after which the cached mapping is useless. */
const STALE = new Set(['ERR_TE_SHM_MISSING', 'ERR_TE_SHM_TRUNCATED', 'ERR_TE_SHM_CLOSED']);

export class ShmTransport implements Transport {
  readonly name = 'shm';
  readonly machineId: string | undefined;
  private readonly native: NativeAddon | undefined;
  private readonly unavailable: TransferEngineError | undefined;
  private readonly maxMappings: number;
  private readonly copyFlags: number;
  /** shm name -> mapping; Map order is recency (oldest first). */
  private readonly cache = new Map<string, Entry>();
  private closed = false;
  /** Requests served by copies (their first piece succeeded). */
  private copies = 0;

  constructor(options: ShmTransportOptions = {}) {
    this.machineId = localMachineId(options.machineId);
    const max = options.maxMappings ?? 256;
    if (!Number.isSafeInteger(max) || max < 1) throw teError(ErrorCode.INVALID_ARGUMENT, 'maxMappings must be a positive integer');
    this.maxMappings = max;
    this.copyFlags = options.testSkipStatCheck === true ? COPY_SKIP_STAT : 0;
    let native: NativeAddon | undefined;
    let unavailable: TransferEngineError | undefined;
    try {
      native = loadNative();
    } catch (e) {
      unavailable = e as TransferEngineError;
    }
    this.native = native;
    this.unavailable = unavailable;
  }

  /** The addon is loaded (else every copy throws TE_NOT_SUPPORTED). */
  get available(): boolean {
    return this.native !== undefined && !this.closed;
  }

  /** Both sides have an identity and it is the same. */
  sameMachine(peerMachineId: string | undefined): boolean {
    return this.machineId !== undefined && typeof peerMachineId === 'string' && peerMachineId === this.machineId;
  }

  /** Whether copy() may be tried for this peer (and region): never throws. */
  canReach(peerMachineId: string | undefined, region?: ShmPeerRegion): boolean {
    if (!this.available || !this.sameMachine(peerMachineId)) return false;
    if (region === undefined) return true;
    try {
      validateShmName(region.shmName);
      return toSafe(region.size, 'size') > 0;
    } catch {
      return false;
    }
  }

  /** A peer's memory on this host, the whole range inside one of its shared-memory regions. */
  canServe(job: Job): boolean {
    const to = job.to;
    // Most peers publish no shared memory (cached per descriptor): that check comes first, before
    // the machine ids (two long strings) are compared.
    if (to.kind !== 'peer' || to.shmRegions.length === 0 || !this.canReach(to.machineId)) return false;
    return locateShmRegion(to.shmRegions, job.target, job.local.length) !== null;
  }

  /**
   * Copy the job SHM_CHUNK at a time, one piece per event-loop turn, so that
   * other I/O is served in between; the memory stays pinned until the last
   * piece. A piece that fails (the mapping is gone, the file shrank) gives
   * what is left back to the host, for TCP: it succeeds or says why not.
   */
  submit(task: TaskSink, job: Job, host: TransportHost): void {
    const to = job.to;
    const hit = to.kind === 'peer' ? locateShmRegion(to.shmRegions, job.target, job.local.length) : null;
    if (to.kind !== 'peer' || !hit) {
      host.reroute(this, task, job); // canServe said no
      return;
    }
    const len = job.local.length;
    const first = pieceAt(job.local, 0, SHM_CHUNK);
    try {
      this.copy(to.machineId, hit.region, hit.offset, first, job.write);
    } catch {
      host.reroute(this, task, job);
      return;
    }
    this.copies++;
    task.transferred = first.length;
    if (first.length === len) {
      task.finish();
      return;
    }
    const pin = new Lease(job.region);
    const count = pieceCount(len, SHM_CHUNK);
    let k = 1;
    const next = (): void => {
      if (task.canceled) {
        pin.release();
        task.finish();
        return;
      }
      if (!host.ready()) {
        pin.release();
        task.error = teError(ErrorCode.CLOSED, 'the engine was closed during a same-host copy');
        task.finish();
        return;
      }
      const piece = pieceAt(job.local, k, SHM_CHUNK);
      try {
        this.copy(to.machineId, hit.region, hit.offset + k * SHM_CHUNK, piece, job.write);
      } catch {
        const done = k * SHM_CHUNK;
        host.reroute(this, task, { write: job.write, local: job.local.subarray(done), region: job.region, target: job.target + BigInt(done), to });
        pin.release();
        return;
      }
      task.transferred += piece.length;
      if (++k < count) {
        setImmediate(next);
        return;
      }
      pin.release();
      task.finish();
    };
    setImmediate(next);
  }

  stats(): { copies: number; mappings: number } {
    return { copies: this.copies, mappings: this.cache.size };
  }

  /**
   * Copy between `localView` and bytes [offset, offset + localView.length) of
   * the peer's region: write=true local -> peer, false peer -> local.
   * Throws TransferEngineError:
   *  CLOSED / NOT_SUPPORTED   transport closed / addon missing;
   *  NO_TRANSPORT             the peer is on another host (or has no identity);
   *  MALFORMED                bad name, size or addr in the descriptor, or the
   *                           file's size disagrees with it;
   *  INVALID_ARGUMENT         bad offset or view (our caller's bug);
   *  ADDRESS_REJECTED         the range is outside the region, or a write to a read-only one;
   *  PEER_UNREACHABLE         the file is missing, removed or truncated.
   */
  copy(peerMachineId: string | undefined, region: ShmPeerRegion, offset: number, localView: Uint8Array, write: boolean): void {
    if (this.closed) throw teError(ErrorCode.CLOSED, 'the shm transport is closed');
    if (!this.native) throw this.unavailable ?? teError(ErrorCode.NOT_SUPPORTED, 'shared memory is not available');
    if (!this.sameMachine(peerMachineId)) {
      throw teError(
        ErrorCode.NO_TRANSPORT,
        `peer machine id ${JSON.stringify(peerMachineId ?? null)} is not ours (${JSON.stringify(this.machineId ?? null)}): shared memory needs the same host`,
      );
    }
    if (region === null || typeof region !== 'object') throw teError(ErrorCode.INVALID_ARGUMENT, 'region must be an object');
    const name = validateShmName(region.shmName, 'peer shm name');
    const size = toSafe(region.size, 'shm region size');
    if (size === 0) throw teError(ErrorCode.MALFORMED, 'shm region size is 0');
    const addr = toAddr(region.addr);
    if (!(localView instanceof Uint8Array)) throw teError(ErrorCode.INVALID_ARGUMENT, 'localView must be a Uint8Array');
    if (typeof write !== 'boolean') throw teError(ErrorCode.INVALID_ARGUMENT, 'write must be a boolean');
    if (!Number.isSafeInteger(offset) || offset < 0) throw teError(ErrorCode.INVALID_ARGUMENT, `offset must be a non-negative integer, got ${String(offset)}`);
    const length = localView.length;
    if (length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'localView is empty');
    if (offset + length > size) {
      throw teError(ErrorCode.ADDRESS_REJECTED, `range [${offset}, +${length}) is outside the ${size}-byte shm region ${name}`);
    }
    const writable = region.readOnly !== true;
    if (write && !writable) throw teError(ErrorCode.ADDRESS_REJECTED, `shm region ${name} is read-only for peers`);

    const entry = this.mapping(this.native, name, size, addr, writable);
    try {
      this.native.peerCopy(entry.handle, offset, localView, write, this.copyFlags);
    } catch (e) {
      if (STALE.has((e as { code?: string }).code ?? '')) this.drop(name);
      throw fromNative(e, `shm ${write ? 'write to' : 'read from'} ${name}`, ErrorCode.PEER_UNREACHABLE);
    }
  }

  /** Forget one peer region's mapping (the peer unregistered it or went away). */
  drop(shmName: string): boolean {
    const e = this.cache.get(shmName);
    if (!e) return false;
    this.cache.delete(shmName);
    this.native?.closePeer(e.handle);
    return true;
  }

  /** Keep only these names' mappings, e.g. after re-reading a peer's descriptor. Returns how many were dropped. */
  retain(keep: Iterable<string>): number {
    const set = new Set(keep);
    let n = 0;
    for (const name of [...this.cache.keys()]) if (!set.has(name) && this.drop(name)) n++;
    return n;
  }

  dropAll(): void {
    for (const name of [...this.cache.keys()]) this.drop(name);
  }

  /** Peer mappings currently cached. */
  get mappingCount(): number {
    return this.cache.size;
  }

  close(): void {
    this.dropAll();
    this.closed = true;
  }

  private mapping(native: NativeAddon, name: string, size: number, addr: bigint, writable: boolean): Entry {
    const hit = this.cache.get(name);
    if (hit) {
      this.cache.delete(name);
      // Same name, different layout or access: the descriptor changed; map afresh.
      if (hit.size === size && hit.addr === addr && hit.writable === writable) {
        this.cache.set(name, hit);
        return hit;
      }
      native.closePeer(hit.handle);
    }
    let handle: NativeHandle;
    try {
      handle = native.openPeer(`${SHM_DIR}/${name}`, size, writable);
    } catch (e) {
      throw fromNative(e, `cannot map peer shm region ${name}`, ErrorCode.PEER_UNREACHABLE);
    }
    const entry: Entry = { handle, size, addr, writable };
    this.cache.set(name, entry);
    if (this.cache.size > this.maxMappings) {
      const oldest = this.cache.keys().next().value as string;
      this.drop(oldest);
    }
    return entry;
  }
}

export interface LocatedShmRange {
  region: ShmPeerRegion;
  offset: number;
}

/**
 * The region holding all of [addr, addr + length) and the offset into it, or
 * null. For turning a request's target address into copy() arguments.
 */
export function locateShmRegion(regions: readonly ShmPeerRegion[], addr: number | bigint, length: number): LocatedShmRange | null {
  if (!Number.isSafeInteger(length) || length <= 0) return null;
  let a: bigint;
  try {
    a = toAddr(addr);
  } catch {
    return null;
  }
  const end = a + BigInt(length);
  for (const region of regions) {
    let base: bigint;
    let size: number;
    try {
      base = toAddr(region.addr);
      size = toSafe(region.size, 'size');
    } catch {
      continue;
    }
    if (a >= base && end <= base + BigInt(size)) return { region, offset: Number(a - base) };
  }
  return null;
}
