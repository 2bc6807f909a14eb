/**
 * Registered memory and its synthetic 64-bit address space.
 *
 * Node has no stable raw pointers, so each registered region gets an address
 * from a bump allocator: page-aligned, non-zero, below 2^53 (exact as a JS
 * number and as a JSON integer), with an unmapped guard page between regions.
 * Addresses are never reused, so a stale address held by a peer can never
 * alias a newer region.
 */
import { teError, ErrorCode } from './errors.js';

export const PAGE_SIZE = 4096;
/** First address handed out (2^44): far from 0, far below 2^53. */
export const ADDRESS_BASE = 0x1000_0000_0000;

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
  constructor(
    readonly addr: number,
    readonly bytes: Uint8Array,
    readonly location: string,
    readonly access: RegionAccess,
    readonly shmName: string | undefined,
  ) {
    this.remoteReadable = access !== 'none';
    this.remoteWritable = access === 'readwrite';
  }
  /** Published to peers at all (Mooncake's remote_accessible). */
  get remoteAccessible(): boolean {
    return this.remoteReadable;
  }
  get length(): number {
    return this.bytes.length;
  }
  get end(): number {
    return this.addr + this.bytes.length;
  }
}

export interface ResolvedRange {
  region: Region;
  /** Offset of the range's start inside the region. */
  offset: number;
}

function toBytes(mem: Uint8Array | ArrayBuffer): Uint8Array {
  if (mem instanceof Uint8Array) return mem;
  if (mem instanceof ArrayBuffer) return new Uint8Array(mem);
  // SharedArrayBuffer or other views would work too, but keep one contract.
  throw teError(ErrorCode.INVALID_ARGUMENT, 'memory must be a Uint8Array, Buffer or ArrayBuffer');
}

const GPU_LOCATION = /^(cuda|musa|hip|maca|npu|gpu)[:]/i;

export class MemoryRegistry {
  private next = ADDRESS_BASE;
  /** Sorted by address (allocation order is address order). */
  private regions: Region[] = [];

  register(mem: Uint8Array | ArrayBuffer, options: RegisterOptions = {}): Region {
    const bytes = toBytes(mem);
    if (bytes.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'cannot register an empty region');
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
    const addr = this.next;
    const end = addr + bytes.length;
    if (!Number.isSafeInteger(end + 2 * PAGE_SIZE)) throw teError(ErrorCode.INVALID_ARGUMENT, 'address space exhausted');
    this.next = Math.ceil(end / PAGE_SIZE) * PAGE_SIZE + PAGE_SIZE; // guard page
    const region = new Region(addr, bytes, location, access, options.shmName);
    this.regions.push(region);
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
