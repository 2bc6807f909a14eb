/**
 * Registered memory and its synthetic 64-bit address space.
 *
 * Node has no stable raw pointers, so each registered region gets an address
 * from a bump allocator: page-aligned, non-zero, below 2^53 (exact as a JS
 * number and as a JSON integer), with an unmapped guard page between regions.
 * Addresses are never reused, so a stale address held by a peer can never
 * alias a newer region of the same engine; and each engine starts at its own
 * random base, so a stale address of one engine almost never names live
 * memory of another (README, Engine identity).
 */
import { randomInt } from 'node:crypto';
import { teError, ErrorCode, type TransferEngineError } from './errors.js';

import { ADDRESS_BASE, ADDRESS_BASE_LIMIT, PAGE_SIZE } from './address-space.js';

export { ADDRESS_BASE, ADDRESS_BASE_LIMIT, PAGE_SIZE };

/** A page-aligned base uniform in [ADDRESS_BASE, ADDRESS_BASE_LIMIT): 2^40 - 2^32 possible values. */
export function randomAddressBase(): number {
  return ADDRESS_BASE + randomInt(0, (ADDRESS_BASE_LIMIT - ADDRESS_BASE) / PAGE_SIZE) * PAGE_SIZE;
}

/**
 * What peers may do with a region: nothing ('none': not published, every
 * request refused), READ it ('read'), or READ and WRITE it ('readwrite', the
 * default, as with Mooncake). Local transfers are not restricted.
 */
export type RegionAccess = 'none' | 'read' | 'readwrite';

const ACCESS_MODES: ReadonlySet<string> = new Set(['none', 'read', 'readwrite']);

/**
 * An access mode from Mooncake's `remote_accessible` boolean (true:
 * 'readwrite', false: 'none') or a mode itself; anything else is
 * TE_INVALID_ARGUMENT.
 */
export function toRegionAccess(v: unknown): RegionAccess {
  if (v === true) return 'readwrite';
  if (v === false) return 'none';
  if (typeof v === 'string' && ACCESS_MODES.has(v)) return v as RegionAccess;
  throw teError(ErrorCode.INVALID_ARGUMENT, `access must be true, false, 'none', 'read' or 'readwrite', not ${JSON.stringify(v) ?? String(v)}`);
}

export interface RegisterOptions {
  /** Device the memory lives on: 'cpu:0', '*', ... (kept and published; GPU locations are refused). */
  location?: string;
  /** What peers may do; default 'readwrite'. A boolean is Mooncake's remote_accessible (false: 'none'). */
  access?: RegionAccess | boolean;
  /** Mooncake's name: false is access 'none'. Ignored when `access` is given. */
  remoteAccessible?: boolean;
  /** The /dev/shm file backing the memory, published so same-host peers can copy directly. */
  shmName?: string;
}

export class Region {
  /** Transfers (local or remote) currently using this region. */
  pins = 0;
  /** Peers may READ it (the data server checks these two per request). */
  readonly remoteReadable: boolean;
  /** Peers may WRITE it. */
  readonly remoteWritable: boolean;
  /** The registered length: the region's place in the address space, whatever later happens to the memory. */
  readonly length: number;
  readonly end: number;
  /** Where the region starts in its ArrayBuffer (kept: a detached view reads 0). */
  readonly byteOffset: number;
  constructor(
    readonly addr: number,
    /** A fixed-length view (never length-tracking): it reads 0 bytes long once its memory is detached or shrunk. */
    readonly bytes: Uint8Array,
    readonly location: string,
    readonly access: RegionAccess,
    readonly shmName: string | undefined,
  ) {
    this.remoteReadable = access !== 'none';
    this.remoteWritable = access === 'readwrite';
    this.length = bytes.byteLength;
    this.end = addr + this.length;
    this.byteOffset = bytes.byteOffset;
  }
  /** Published to peers at all (Mooncake's remote_accessible). */
  get remoteAccessible(): boolean {
    return this.remoteReadable;
  }
  /**
   * The memory is gone from under the view: its ArrayBuffer was transferred
   * (postMessage, structuredClone with transfer) or a resizable one shrank
   * below the region (it comes back if the buffer grows again). Such a region
   * stays registered, so that it can be unregistered, but it is not published
   * and every transfer touching it is refused.
   */
  get detached(): boolean {
    return this.bytes.byteLength !== this.length;
  }
}

/** The error for a transfer that touches a detached region. */
export function detachedError(region: Region, what = 'memory'): TransferEngineError {
  return teError(
    ErrorCode.MEMORY_DETACHED,
    `${what} at ${fmtAddr(region.addr)} (${region.length} bytes) is registered but its ArrayBuffer was detached (transferred) or shrunk; unregister it`,
  );
}

export interface ResolvedRange {
  region: Region;
  /** Offset of the range's start inside the region. */
  offset: number;
}

/**
 * A fixed-length view of the memory. A view made without a length over a
 * resizable ArrayBuffer tracks the buffer's length, so growing it would grow
 * the region over its neighbours' addresses: the registered range is fixed here.
 */
function toBytes(mem: Uint8Array | ArrayBuffer, what: string): Uint8Array {
  if (mem instanceof Uint8Array || mem instanceof ArrayBuffer) {
    // (A view over detached memory cannot even be constructed.)
    if (mem.byteLength === 0) throw teError(ErrorCode.INVALID_ARGUMENT, `cannot register an empty region (${what} is 0 bytes long, or detached)`);
    return mem instanceof Uint8Array ? new Uint8Array(mem.buffer, mem.byteOffset, mem.byteLength) : new Uint8Array(mem, 0, mem.byteLength);
  }
  // SharedArrayBuffer or other views would work too, but keep one contract.
  throw teError(ErrorCode.INVALID_ARGUMENT, 'memory must be a Uint8Array, Buffer or ArrayBuffer');
}

const GPU_LOCATION = /^(cuda|musa|hip|maca|npu|gpu)[:]/i;

export interface RegistryOptions {
  /** First address (page-aligned, in [ADDRESS_BASE, ADDRESS_BASE_LIMIT)); default: randomAddressBase(). */
  base?: number;
}

export class MemoryRegistry {
  private next: number;
  /** Sorted by address (allocation order is address order). */
  private regions: Region[] = [];
  /** Regions by the memory they view, to refuse a second registration of the same bytes. */
  private readonly byMemory = new WeakMap<ArrayBufferLike, Region[]>();

  constructor(options: RegistryOptions = {}) {
    const base = options.base ?? randomAddressBase();
    if (!Number.isSafeInteger(base) || base % PAGE_SIZE !== 0 || base < ADDRESS_BASE || base >= ADDRESS_BASE_LIMIT) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `address base ${String(base)} must be page-aligned in [${fmtAddr(ADDRESS_BASE)}, ${fmtAddr(ADDRESS_BASE_LIMIT)})`);
    }
    this.next = base;
  }

  /** The first address this registry hands out. */
  get base(): number {
    return this.regions[0]?.addr ?? this.next;
  }

  register(mem: Uint8Array | ArrayBuffer, options: RegisterOptions = {}): Region {
    return this.registerAll([mem], options)[0]!;
  }

  /**
   * Register several pieces of memory, all or none: each must be non-empty
   * and overlap no registered memory nor another piece of the list (the same
   * bytes under two addresses would let two peers' writes alias).
   */
  registerAll(mems: ReadonlyArray<Uint8Array | ArrayBuffer>, options: RegisterOptions = {}): Region[] {
    const views = mems.map((m, i) => toBytes(m, mems.length === 1 ? 'memory' : `memory [${i}]`));
    const location = options.location ?? '*';
    if (typeof location !== 'string' || location.length === 0) {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'location must be a non-empty string such as "cpu:0" or "*"');
    }
    if (GPU_LOCATION.test(location)) {
      throw teError(ErrorCode.NOT_SUPPORTED, `location "${location}" is GPU memory, which is not supported on this host`);
    }
    if (options.access === undefined && options.remoteAccessible !== undefined && typeof options.remoteAccessible !== 'boolean') {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'remoteAccessible must be a boolean');
    }
    const access = toRegionAccess(options.access ?? options.remoteAccessible ?? 'readwrite');
    views.forEach((bytes, i) => {
      const what = views.length === 1 ? 'memory' : `memory [${i}]`;
      const start = bytes.byteOffset;
      const end = start + bytes.byteLength;
      const clash = (this.byMemory.get(bytes.buffer) ?? []).find((r) => r.byteOffset < end && start < r.byteOffset + r.length);
      if (clash) {
        throw teError(
          ErrorCode.ADDRESS_OVERLAPPED,
          `${what} (bytes ${start}..${end} of its ArrayBuffer) overlaps the region registered at ${fmtAddr(clash.addr)} (bytes ${clash.byteOffset}..${clash.byteOffset + clash.length})`,
        );
      }
      for (let j = 0; j < i; j++) {
        const o = views[j]!;
        if (o.buffer === bytes.buffer && o.byteOffset < end && start < o.byteOffset + o.byteLength) {
          throw teError(ErrorCode.ADDRESS_OVERLAPPED, `memory [${i}] overlaps memory [${j}] of the same list`);
        }
      }
    });
    let total = 0;
    for (const v of views) total += Math.ceil(v.length / PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE;
    if (!Number.isSafeInteger(this.next + total + PAGE_SIZE)) throw teError(ErrorCode.INVALID_ARGUMENT, 'address space exhausted');
    return views.map((bytes) => this.add(bytes, location, access, options.shmName));
  }

  private add(bytes: Uint8Array, location: string, access: RegionAccess, shmName: string | undefined): Region {
    const addr = this.next;
    const end = addr + bytes.length;
    this.next = Math.ceil(end / PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE; // guard page
    const region = new Region(addr, bytes, location, access, shmName);
    this.regions.push(region);
    const same = this.byMemory.get(bytes.buffer);
    if (same) same.push(region);
    else this.byMemory.set(bytes.buffer, [region]);
    return region;
  }

  /** Remove the region starting at `addr`. Refused while transfers use it. */
  unregister(addr: number): Region {
    const idx = this.indexOfBase(addr);
    if (idx < 0) throw teError(ErrorCode.INVALID_ARGUMENT, `no region is registered at address ${fmtAddr(addr)}`);
    const region = this.regions[idx]!;
    if (region.pins > 0) {
      throw teError(ErrorCode.REGION_BUSY, `region at ${fmtAddr(addr)} has ${region.pins} transfer(s) in flight; unregister it after they finish`);
    }
    this.regions.splice(idx, 1);
    const same = this.byMemory.get(region.bytes.buffer);
    if (same) {
      same.splice(same.indexOf(region), 1);
      if (same.length === 0) this.byMemory.delete(region.bytes.buffer);
    }
    return region;
  }

  /**
   * Map `[addr, addr+length)` to (region, offset), or null unless the whole
   * range lies in one region. Unsafe numbers (>= 2^53) never match.
   */
  resolve(addr: number, length: number): ResolvedRange | null {
    if (!(length > 0) || !Number.isSafeInteger(addr) || !Number.isSafeInteger(length) || !Number.isSafeInteger(addr + length)) {
      return null;
    }
    const rs = this.regions;
    let lo = 0;
    let hi = rs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const r = rs[mid]!;
      if (addr < r.addr) hi = mid - 1;
      else if (addr >= r.end) lo = mid + 1;
      else return addr + length <= r.end ? { region: r, offset: addr - r.addr } : null;
    }
    return null;
  }

  /**
   * The address of `bytes`' first byte when it lies in registered memory,
   * else 0. Detached memory has no address (its regions stay registered,
   * but no transfer may use them).
   */
  addressOf(bytes: Uint8Array): number {
    if (bytes.buffer.byteLength === 0) return 0;
    const at = bytes.byteOffset;
    const r = (this.byMemory.get(bytes.buffer) ?? []).find((x) => at >= x.byteOffset && at < x.byteOffset + x.length);
    return r && !r.detached ? r.addr + (at - r.byteOffset) : 0;
  }

  /** The regions registered over `buffer` (views of it, or itself), in registration order; detached memory keeps its regions. */
  regionsOf(buffer: ArrayBufferLike): readonly Region[] {
    return this.byMemory.get(buffer) ?? [];
  }

  /** Registered regions in address (= registration) order. */
  list(): readonly Region[] {
    return this.regions;
  }

  private indexOfBase(addr: number): number {
    const r = this.resolve(addr, 1);
    return r && r.offset === 0 ? this.regions.indexOf(r.region) : -1;
  }
}

export function fmtAddr(addr: number | bigint): string {
  return `0x${addr.toString(16)}`;
}
