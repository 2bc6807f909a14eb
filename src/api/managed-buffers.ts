/**
 * Managed buffers (allocate_managed_buffer / free_managed_buffer): a buddy
 * allocator over large registered chunks, as in Mooncake's Python binding:
 * size classes 8 KiB, 16 KiB, ... 256 MiB carved from 2 GiB chunks registered
 * with location '*'; larger requests get memory of their own, registered alone.
 *
 * Unlike Mooncake, a freed block merges with its free buddy (repeatedly), so
 * long alloc/free runs do not fragment the chunks into small pieces. Every
 * free is checked against the allocation it ends (start address and exact
 * length): a double free, a wrong length or a foreign address is refused and
 * leaves the allocator as it was.
 *
 * Chunks are plain `new ArrayBuffer(size)`: the allocation is virtual, pages
 * are touched only when used, and chunks are created only when a class runs dry.
 */
import { ErrorCode, TransferEngineError, teError } from '../errors.js';
import { ApiFailure, ERR_INVALID_MANAGED_BUFFER, ERR_OUT_OF_MEMORY, ERR_REGION_BUSY } from './codes.js';

export interface BuddyConfig {
  /** Smallest block (class 0). */
  minBlock: number;
  /** Number of classes: the largest block is minBlock << (classes - 1). */
  classes: number;
  /** Bytes per chunk: a multiple of the largest block. */
  chunkSize: number;
}

export const MOONCAKE_BUDDY: BuddyConfig = { minBlock: 8 * 1024, classes: 16, chunkSize: 2 * 1024 * 1024 * 1024 };
/** In shared memory every chunk's pages are reserved when it is created: one largest block per chunk. */
export const SHM_BUDDY: BuddyConfig = { ...MOONCAKE_BUDDY, chunkSize: 256 * 1024 * 1024 };

function hex(a: number): string {
  return `0x${a.toString(16)}`;
}

function invalid(message: string): ApiFailure {
  return new ApiFailure(ERR_INVALID_MANAGED_BUFFER, ErrorCode.INVALID_ARGUMENT, message);
}

/**
 * One class's free blocks: a set for the buddy lookups of coalescing, and a
 * stack so that allocation takes the most recently freed block (its pages are
 * already touched: reusing them avoids page faults). Removal from the middle
 * (a buddy merged away) leaves a stale stack entry, skipped when popped.
 */
class FreeList {
  private readonly set = new Set<number>();
  private stack: number[] = [];

  get size(): number {
    return this.set.size;
  }

  has(addr: number): boolean {
    return this.set.has(addr);
  }

  add(addr: number): void {
    this.set.add(addr);
    this.stack.push(addr);
    if (this.stack.length > 2 * this.set.size + 64) this.stack = [...this.set]; // drop stale entries
  }

  delete(addr: number): boolean {
    return this.set.delete(addr);
  }

  /** The most recently added block still free. Precondition: size > 0. */
  pop(): number {
    for (;;) {
      const a = this.stack.pop()!;
      if (this.set.delete(a)) return a;
    }
  }

  values(): IterableIterator<number> {
    return this.set.values();
  }
}

interface Allocation {
  cls: number;
  /** The length asked for; free must name it exactly. */
  length: number;
}

/**
 * The allocator proper: address arithmetic only, no memory. `newChunk` is
 * called when no block of a large enough class is free; it returns the new
 * chunk's base address (any value: buddies are computed relative to it).
 */
export class BuddyAllocator {
  readonly maxBlock: number;
  private readonly free: FreeList[];
  private readonly allocated = new Map<number, Allocation>();
  /** Chunk bases, ascending. */
  private readonly chunks: number[] = [];

  constructor(
    readonly config: BuddyConfig,
    private readonly newChunk: (size: number) => number,
  ) {
    const { minBlock, classes, chunkSize } = config;
    this.maxBlock = minBlock * 2 ** (classes - 1);
    if (!(chunkSize >= this.maxBlock && chunkSize % this.maxBlock === 0)) {
      throw new RangeError(`chunk size ${chunkSize} must be a multiple of the largest block ${this.maxBlock}`);
    }
    this.free = Array.from({ length: classes }, () => new FreeList());
  }

  blockSize(cls: number): number {
    return this.config.minBlock * 2 ** cls;
  }

  /** The smallest class that holds `length` bytes, or -1 above the largest block. */
  classOf(length: number): number {
    if (length > this.maxBlock) return -1;
    let cls = 0;
    while (this.blockSize(cls) < length) cls++;
    return cls;
  }

  alloc(length: number): number {
    const cls = this.classOf(length);
    if (cls < 0) throw new RangeError(`length ${length} is above the largest block ${this.maxBlock}`);
    let c = cls;
    while (c < this.config.classes && this.free[c]!.size === 0) c++;
    if (c === this.config.classes) {
      this.addChunk();
      c = this.config.classes - 1;
    }
    let addr = this.take(c);
    // Split down to the wanted class; the upper halves stay free.
    while (c > cls) {
      c--;
      this.free[c]!.add(addr + this.blockSize(c));
    }
    this.allocated.set(addr, { cls, length });
    return addr;
  }

  private take(cls: number): number {
    return this.free[cls]!.pop();
  }

  private addChunk(): void {
    const size = this.config.chunkSize;
    const base = this.newChunk(size);
    this.chunks.push(base);
    this.chunks.sort((a, b) => a - b);
    const top = this.config.classes - 1;
    // Pushed high to low, so the chunk is used from its start.
    for (let off = size - this.maxBlock; off >= 0; off -= this.maxBlock) this.free[top]!.add(base + off);
  }

  /** The chunk base containing addr, or undefined. */
  chunkOf(addr: number): number | undefined {
    const cs = this.chunks;
    let lo = 0;
    let hi = cs.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const b = cs[mid]!;
      if (addr < b) hi = mid - 1;
      else if (addr >= b + this.config.chunkSize) lo = mid + 1;
      else return b;
    }
    return undefined;
  }

  /** The allocation starting exactly at addr. */
  allocation(addr: number): { length: number; size: number } | undefined {
    const a = this.allocated.get(addr);
    return a && { length: a.length, size: this.blockSize(a.cls) };
  }

  /**
   * The allocated block containing addr: an aligned block of some class whose
   * start is allocated with that class (one probe per class).
   */
  blockContaining(addr: number): { addr: number; length: number; size: number } | undefined {
    const base = this.chunkOf(addr);
    if (base === undefined) return undefined;
    const off = addr - base;
    for (let cls = 0; cls < this.config.classes; cls++) {
      const size = this.blockSize(cls);
      const start = base + off - (off % size);
      const a = this.allocated.get(start);
      if (a && a.cls === cls) return { addr: start, length: a.length, size };
    }
    return undefined;
  }

  /** Check the free is legal without changing anything. */
  validateFree(addr: number, length: number): void {
    const a = this.allocated.get(addr);
    if (!a) {
      if (this.chunkOf(addr) === undefined) throw invalid(`${hex(addr)} is not a managed buffer address (foreign address)`);
      throw invalid(`no managed buffer is allocated at ${hex(addr)} (already freed, or not the start of a buffer)`);
    }
    if (a.length !== length) throw invalid(`the buffer at ${hex(addr)} was allocated with length ${a.length}, not ${length}`);
  }

  freeBlock(addr: number, length: number): void {
    this.validateFree(addr, length);
    let cls = this.allocated.get(addr)!.cls;
    this.allocated.delete(addr);
    const base = this.chunkOf(addr)!;
    let off = addr - base;
    // Merge with the free buddy while there is one, up to the largest block.
    while (cls < this.config.classes - 1) {
      const size = this.blockSize(cls);
      const buddy = base + (off ^ size);
      if (!this.free[cls]!.delete(buddy)) break;
      off = Math.min(off, buddy - base);
      cls++;
    }
    this.free[cls]!.add(base + off);
  }

  get chunkCount(): number {
    return this.chunks.length;
  }

  get allocationCount(): number {
    return this.allocated.size;
  }

  /** Free blocks per class (index = class). */
  freeCounts(): number[] {
    return this.free.map((s) => s.size);
  }

  /**
   * Throws if the structure is inconsistent: every chunk must be tiled exactly
   * by aligned free and allocated blocks, and no two free buddies may both be
   * free in the same class (they would have merged). For tests.
   */
  checkInvariants(): void {
    const size = this.config.chunkSize;
    const blocks: Array<{ addr: number; size: number; free: boolean; cls: number }> = [];
    this.free.forEach((set, cls) => {
      for (const a of set.values()) blocks.push({ addr: a, size: this.blockSize(cls), free: true, cls });
    });
    for (const [a, rec] of this.allocated) {
      if (rec.length > this.blockSize(rec.cls) || (rec.cls > 0 && rec.length <= this.blockSize(rec.cls - 1))) {
        throw new Error(`allocation at ${hex(a)}: length ${rec.length} is not in class ${rec.cls}`);
      }
      blocks.push({ addr: a, size: this.blockSize(rec.cls), free: false, cls: rec.cls });
    }
    const byChunk = new Map<number, typeof blocks>();
    for (const b of blocks) {
      const base = this.chunkOf(b.addr);
      if (base === undefined) throw new Error(`block ${hex(b.addr)} is outside every chunk`);
      if ((b.addr - base) % b.size !== 0) throw new Error(`block ${hex(b.addr)} of size ${b.size} is not aligned in its chunk`);
      if (!byChunk.has(base)) byChunk.set(base, []);
      byChunk.get(base)!.push(b);
    }
    for (const base of this.chunks) {
      const list = (byChunk.get(base) ?? []).sort((x, y) => x.addr - y.addr);
      let at = base;
      for (const b of list) {
        if (b.addr !== at) throw new Error(`chunk ${hex(base)}: ${b.addr < at ? 'overlap' : 'hole'} at ${hex(Math.min(at, b.addr))}`);
        at = b.addr + b.size;
      }
      if (at !== base + size) throw new Error(`chunk ${hex(base)}: blocks end at ${hex(at)}, not ${hex(base + size)}`);
    }
    this.free.forEach((set, cls) => {
      if (cls === this.config.classes - 1) return;
      for (const a of set.values()) {
        const base = this.chunkOf(a)!;
        const buddy = base + ((a - base) ^ this.blockSize(cls));
        if (set.has(buddy)) throw new Error(`free buddies ${hex(a)} and ${hex(buddy)} (size ${this.blockSize(cls)}) were not merged`);
      }
    });
  }
}

/** Where managed memory comes from: the core engine's allocateLocalMemory (shared memory with its shm option). */
export interface MemoryRegistrar {
  /** Allocate and register `size` bytes; returns the address. */
  allocate(size: number): number;
  unregister(addr: number): void;
}

/** The buddy allocator plus real memory, registration, large buffers and in-flight pins. */
export class ManagedBuffers {
  readonly buddy: BuddyAllocator;
  /** Buffers above the largest class: registered alone. addr -> length. */
  private readonly large = new Map<number, number>();
  /** In-flight transfers per buffer start, so a buffer in use cannot be freed. */
  private readonly pins = new Map<number, number>();

  constructor(
    private readonly registrar: MemoryRegistrar,
    config: BuddyConfig = MOONCAKE_BUDDY,
  ) {
    this.buddy = new BuddyAllocator(config, (size) => allocate(this.registrar, size));
  }

  allocate(length: number): number {
    if (length > this.buddy.maxBlock) {
      const addr = allocate(this.registrar, length);
      this.large.set(addr, length);
      return addr;
    }
    return this.buddy.alloc(length);
  }

  free(addr: number, length: number): void {
    const largeLength = this.large.get(addr);
    if (largeLength !== undefined) {
      if (largeLength !== length) throw invalid(`the buffer at ${hex(addr)} was allocated with length ${largeLength}, not ${length}`);
      this.checkNotPinned(addr);
      this.registrar.unregister(addr); // drops our only reference: the memory goes with it
      this.large.delete(addr);
      return;
    }
    this.buddy.validateFree(addr, length);
    this.checkNotPinned(addr);
    this.buddy.freeBlock(addr, length);
  }

  private checkNotPinned(addr: number): void {
    const n = this.pins.get(addr) ?? 0;
    if (n > 0) throw new ApiFailure(ERR_REGION_BUSY, ErrorCode.REGION_BUSY, `the managed buffer at ${hex(addr)} has ${n} transfer(s) in flight`);
  }

  /**
   * For a range that falls in managed memory: the start of the live buffer
   * holding all of it, or an error if it is not inside one (a freed buffer, or
   * spilling over its end). undefined: the range is not managed memory at all.
   */
  owner(addr: number, length: number): number | undefined {
    for (const [a, len] of this.large) {
      if (addr >= a && addr < a + len) return addr + length <= a + len ? a : undefined; // the core rejects the spill-over
    }
    if (this.buddy.chunkOf(addr) === undefined) return undefined;
    const b = this.buddy.blockContaining(addr);
    if (!b) throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, `${hex(addr)} is in managed memory but in no allocated managed buffer (freed?)`);
    if (addr + length > b.addr + b.length) {
      throw teError(
        ErrorCode.ADDRESS_NOT_REGISTERED,
        `range [${hex(addr)}, +${length}) runs past the end of the managed buffer at ${hex(b.addr)} (length ${b.length})`,
      );
    }
    return b.addr;
  }

  /**
   * Is `addr` inside memory this pool registered with the core (a chunk, or a
   * large buffer)? Such a registration is the pool's: the caller never
   * unregisters it (freeManagedBuffer ends a large buffer's).
   */
  contains(addr: number): boolean {
    if (this.buddy.chunkOf(addr) !== undefined) return true;
    for (const [a, len] of this.large) if (addr >= a && addr < a + len) return true;
    return false;
  }

  pin(addr: number): void {
    this.pins.set(addr, (this.pins.get(addr) ?? 0) + 1);
  }

  unpin(addr: number): void {
    const n = (this.pins.get(addr) ?? 0) - 1;
    if (n <= 0) this.pins.delete(addr);
    else this.pins.set(addr, n);
  }

  get largeCount(): number {
    return this.large.size;
  }
}

function allocate(registrar: MemoryRegistrar, size: number): number {
  try {
    return registrar.allocate(size);
  } catch (e) {
    if (e instanceof TransferEngineError && e.code === ErrorCode.OUT_OF_MEMORY) throw e; // ERR_OUT_OF_MEMORY
    // The core's own messages already say what could not be allocated; anything else gets that said.
    const detail = e instanceof Error ? e.message : String(e);
    throw new ApiFailure(ERR_OUT_OF_MEMORY, ErrorCode.OUT_OF_MEMORY, e instanceof TransferEngineError ? detail : `cannot allocate ${size} bytes: ${detail}`, e);
  }
}
