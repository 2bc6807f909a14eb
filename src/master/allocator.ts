/**
 * The space allocator of one mounted memory segment: hands out offsets in
 * [0, capacity) for the master's replicas (the job of Mooncake's
 * OffsetBufferAllocator).
 *
 * Policy: address-ordered first fit with a lookahead of 4: of the first
 * LOOKAHEAD free blocks that fit, in address order, the smallest (an exact
 * fit stops the search); the allocation takes the low end of it. Free
 * coalesces with both neighbours, so a free region is always one block.
 *
 * Why: with random eviction (a store under pressure), address order keeps
 * small objects packed low and lets frees merge into the large holes big
 * objects need; best fit (which segregated size classes such as TLSF or
 * sebbbi's OffsetAllocator approximate) scatters small objects over the
 * whole segment. Measured by benchmarks/master-allocator.ts (BENCHMARKS.md,
 * "Master: the segment allocator's fragmentation"): on mixed sizes this
 * policy leaves the segment fuller when a put first fails than first fit,
 * and clearly fuller than best fit or a TLSF good fit (an earlier version of
 * this file); on small objects only, best fit is slightly ahead. The
 * lookahead buys back part of best fit's edge on narrow size ranges
 * (fewer slivers) without its scattering: 1 is plain first fit,
 * 8 and more lose on mixed sizes what they gain on narrow ones.
 *
 * Structure: the free blocks in a treap (a randomized balanced binary tree)
 * keyed by offset, each node holding the largest block size in its subtree:
 * "the first blocks in address order of at least n bytes" descends only
 * into subtrees that hold one, so allocate and free are O(log n) expected
 * (O(LOOKAHEAD log n) for allocate) with any number of blocks, and
 * largestFree is the root's. Allocated blocks are found by offset in a Map.
 * Offsets and sizes are plain numbers (safe integers): no bigint on the hot
 * path.
 */

/** Fitting blocks looked at per allocation, in address order (see above for why 4). */
const LOOKAHEAD = 4;

/**
 * A run of bytes [offset, offset + size), free or allocated, linked to its
 * neighbours in address order; a free one is also a node of the free tree.
 */
interface Block {
  offset: number;
  size: number;
  isFree: boolean;
  prev: Block | null;
  next: Block | null;
  /** Free tree: children, heap priority, largest size in the subtree. */
  left: Block | null;
  right: Block | null;
  priority: number;
  maxSize: number;
}

export interface SegmentAllocatorOptions {
  /** Offsets and reserved lengths are multiples of it; a power of two (default 8). */
  alignment?: number;
}

export class SegmentAllocator {
  readonly #capacity: number;
  readonly #alignment: number;
  /** Allocated blocks by offset: what free() looks up. */
  readonly #allocated = new Map<number, Block>();
  /** The free blocks, by offset. */
  #root: Block | null = null;
  #freeBlocks = 0;
  #used = 0;
  /** xorshift32 state for treap priorities: seeded, so a run is reproducible. */
  #seed = 0x9e3779b9;
  /** The search's state (fields, not a closure: allocate allocates nothing else). */
  #best: Block | null = null;
  #seen = 0;

  constructor(capacity: number, options: SegmentAllocatorOptions = {}) {
    const alignment = options.alignment ?? 8;
    if (!Number.isSafeInteger(capacity) || capacity <= 0) throw new RangeError(`capacity must be a positive safe integer, got ${capacity}`);
    // 2 ** round(log2) reproduces exactly the powers of two, for any safe integer.
    if (!Number.isSafeInteger(alignment) || alignment <= 0 || 2 ** Math.round(Math.log2(alignment)) !== alignment) {
      throw new RangeError(`alignment must be a power of two, got ${alignment}`);
    }
    this.#capacity = capacity;
    this.#alignment = alignment;
    // The whole segment is one free block. Allocations take the low end of a block
    // and reserve multiples of the alignment, so every offset stays aligned; when
    // the capacity is not a multiple, the tail rides in the last block.
    this.#insert(this.#block(0, capacity, null, null));
  }

  /**
   * An allocator holding exactly the given allocations (a master taking over
   * from the state its predecessor committed): each `{ offset, size }` as
   * allocate() returned it, in any order. RangeError when they are not
   * aligned, overlap or leave the segment.
   */
  static restore(capacity: number, allocations: Iterable<{ offset: number; size: number }>, options: SegmentAllocatorOptions = {}): SegmentAllocator {
    const a = new SegmentAllocator(capacity, options);
    const align = a.#alignment;
    const taken = [...allocations].map(({ offset, size }) => {
      if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(size) || offset < 0 || size <= 0 || offset % align !== 0) {
        throw new RangeError(`allocation [${offset}, +${size}) is not an aligned range`);
      }
      return { offset, size: Math.ceil(size / align) * align };
    });
    taken.sort((x, y) => x.offset - y.offset);
    // Rebuild the chain: free gaps (into the tree) and allocations (into the map), in address order.
    a.#root = null;
    a.#freeBlocks = 0;
    let at = 0;
    let prev: Block | null = null;
    const link = (offset: number, size: number, free: boolean): void => {
      const b = a.#block(offset, size, prev, null);
      if (prev !== null) prev.next = b;
      prev = b;
      if (free) a.#insert(b);
      else {
        b.isFree = false;
        a.#allocated.set(offset, b);
        a.#used += size;
      }
    };
    for (const t of taken) {
      if (t.offset < at) throw new RangeError(`allocation at ${t.offset} overlaps the one before`);
      if (t.offset + t.size > capacity) throw new RangeError(`allocation [${t.offset}, +${t.size}) ends past the capacity ${capacity}`);
      if (t.offset > at) link(at, t.offset - at, true);
      link(t.offset, t.size, false);
      at = t.offset + t.size;
    }
    if (at < capacity) link(at, capacity - at, true);
    return a;
  }

  get capacity(): number {
    return this.#capacity;
  }
  /** Bytes reserved by live allocations, alignment rounding included. */
  get used(): number {
    return this.#used;
  }
  /** capacity - used. (Not `free`: that name is the method.) */
  get freeBytes(): number {
    return this.#capacity - this.#used;
  }
  /** The largest free block (0 when full). */
  get largestFree(): number {
    return this.#root?.maxSize ?? 0;
  }
  /** Live allocations. */
  get allocations(): number {
    return this.#allocated.size;
  }
  get freeBlocks(): number {
    return this.#freeBlocks;
  }

  /**
   * Reserve `size` bytes (rounded up to the alignment); the offset, or
   * undefined when no free block fits. RangeError for a size that is not a
   * positive safe integer.
   */
  allocate(size: number): number | undefined {
    if (!Number.isSafeInteger(size) || size <= 0) throw new RangeError(`size must be a positive safe integer, got ${size}`);
    const need = Math.ceil(size / this.#alignment) * this.#alignment;
    if (need > this.largestFree) return undefined;
    this.#best = null;
    this.#seen = 0;
    this.#search(this.#root, need);
    const block = this.#best!; // largestFree >= need: some block fits
    this.#best = null;
    let taken: Block;
    if (block.size === need) {
      this.#remove(block.offset);
      taken = block;
    } else {
      // The low end is allocated; the rest stays in the tree at the same place in
      // address order (nothing lies between), so only its path's maxima change.
      taken = this.#block(block.offset, need, block.prev, block);
      if (block.prev !== null) block.prev.next = taken;
      block.prev = taken;
      block.offset += need;
      block.size -= need;
      this.#refresh(this.#root, block.offset);
    }
    taken.isFree = false;
    this.#allocated.set(taken.offset, taken);
    this.#used += need;
    return taken.offset;
  }

  /** Release the allocation starting at `offset`. RangeError when none does (never allocated, or freed already). */
  free(offset: number): void {
    const block = this.#allocated.get(offset);
    if (block === undefined) throw new RangeError(`no allocation starts at offset ${offset} (never allocated, or already freed)`);
    this.#allocated.delete(offset);
    this.#used -= block.size;
    // Coalesce with both neighbours: a free neighbour grows over the block (keeping
    // its place in address order) rather than the block joining the tree.
    const prev = block.prev?.isFree ? block.prev : null;
    const next = block.next?.isFree ? block.next : null;
    if (prev !== null) {
      prev.size += block.size;
      this.#unlink(block);
      if (next !== null) {
        this.#remove(next.offset);
        prev.size += next.size;
        this.#unlink(next);
      }
      this.#refresh(this.#root, prev.offset);
    } else if (next !== null) {
      next.offset = block.offset;
      next.size += block.size;
      this.#unlink(block);
      this.#refresh(this.#root, next.offset);
    } else {
      block.isFree = true;
      this.#insert(block);
    }
  }

  /**
   * Check the internal invariants (O(blocks); for tests): the blocks tile
   * [0, capacity) in order, no two free blocks touch, the free tree holds
   * exactly the free blocks in address order with right maxima and heap
   * order, and the counters agree. Throws an Error naming the first broken.
   */
  checkInvariants(): void {
    const fail = (what: string): never => {
      throw new Error(`SegmentAllocator invariant broken: ${what}`);
    };
    let inTree = 0;
    let lastOffset = -1;
    const walk = (t: Block | null, parentPriority: number): number => {
      if (t === null) return 0;
      if (t.priority > parentPriority) fail(`heap order at ${t.offset}`);
      const leftMax = walk(t.left, t.priority);
      if (!t.isFree || t.offset <= lastOffset) fail(`tree order at ${t.offset}`);
      lastOffset = t.offset;
      inTree++;
      const max = Math.max(t.size, leftMax, walk(t.right, t.priority));
      if (t.maxSize !== max) fail(`maxSize at ${t.offset}`);
      return max;
    };
    walk(this.#root, Infinity);
    let first = this.#allocated.get(0) ?? this.#root;
    while (first?.left) first = first.left;
    let at = 0;
    let used = 0;
    let free = 0;
    let prev: Block | null = null;
    for (let b = first ?? null; b !== null; prev = b, b = b.next) {
      if (b.offset !== at || b.size <= 0 || b.prev !== prev) fail(`block at ${b.offset} does not follow the one before`);
      if (b.offset % this.#alignment !== 0) fail(`block at ${b.offset} is not aligned`);
      if (b.isFree) {
        free++;
        if (prev?.isFree) fail(`free blocks at ${prev.offset} and ${b.offset} touch`);
      } else {
        used += b.size;
        if (this.#allocated.get(b.offset) !== b) fail(`allocated block at ${b.offset} is not in the map`);
      }
      at += b.size;
    }
    if (at !== this.#capacity) fail(`blocks end at ${at}, not at the capacity`);
    if (free !== inTree || free !== this.#freeBlocks) fail(`${free} free blocks, ${inTree} in the tree, ${this.#freeBlocks} counted`);
    if (used !== this.#used) fail(`${used} bytes allocated, ${this.#used} counted`);
  }

  #block(offset: number, size: number, prev: Block | null, next: Block | null): Block {
    this.#seed ^= this.#seed << 13;
    this.#seed ^= this.#seed >>> 17;
    this.#seed ^= this.#seed << 5;
    return { offset, size, isFree: true, prev, next, left: null, right: null, priority: this.#seed >>> 0, maxSize: size };
  }

  /** Take `b` out of the address-ordered chain (it was merged into a neighbour). */
  #unlink(b: Block): void {
    if (b.prev !== null) b.prev.next = b.next;
    if (b.next !== null) b.next.prev = b.prev;
  }

  /**
   * In-order over the subtrees that hold a block of at least `need` bytes,
   * keeping the smallest of the first LOOKAHEAD found in #best; true once done.
   */
  #search(t: Block | null, need: number): boolean {
    if (t === null || t.maxSize < need) return false;
    if (this.#search(t.left, need)) return true;
    if (t.size >= need) {
      if (this.#best === null || t.size < this.#best.size) this.#best = t;
      if (++this.#seen === LOOKAHEAD || t.size === need) return true;
    }
    return this.#search(t.right, need);
  }

  static #update(t: Block): void {
    t.maxSize = Math.max(t.size, t.left?.maxSize ?? 0, t.right?.maxSize ?? 0);
  }

  /** Recompute the maxima on the path to the node at `offset` (its size or offset changed in place). */
  #refresh(t: Block | null, offset: number): void {
    if (t === null) return;
    if (offset < t.offset) this.#refresh(t.left, offset);
    else if (offset > t.offset) this.#refresh(t.right, offset);
    SegmentAllocator.#update(t);
  }

  #insert(b: Block): void {
    b.left = b.right = null;
    b.maxSize = b.size;
    this.#root = this.#insertAt(this.#root, b);
    this.#freeBlocks++;
  }

  #insertAt(t: Block | null, b: Block): Block {
    if (t === null) return b;
    if (b.offset < t.offset) {
      const l = this.#insertAt(t.left, b);
      t.left = l;
      if (l.priority > t.priority) {
        // Rotate right: l goes up.
        t.left = l.right;
        l.right = t;
        SegmentAllocator.#update(t);
        SegmentAllocator.#update(l);
        return l;
      }
    } else {
      const r = this.#insertAt(t.right, b);
      t.right = r;
      if (r.priority > t.priority) {
        t.right = r.left;
        r.left = t;
        SegmentAllocator.#update(t);
        SegmentAllocator.#update(r);
        return r;
      }
    }
    SegmentAllocator.#update(t);
    return t;
  }

  #remove(offset: number): void {
    this.#root = this.#removeAt(this.#root, offset);
    this.#freeBlocks--;
  }

  #removeAt(t: Block | null, offset: number): Block | null {
    if (t === null) throw new Error(`SegmentAllocator: free block at ${offset} missing from the tree`);
    if (offset === t.offset) {
      const merged = SegmentAllocator.#merge(t.left, t.right);
      t.left = t.right = null;
      return merged;
    }
    if (offset < t.offset) t.left = this.#removeAt(t.left, offset);
    else t.right = this.#removeAt(t.right, offset);
    SegmentAllocator.#update(t);
    return t;
  }

  /** Join two treaps, every offset in `a` below every offset in `b`. */
  static #merge(a: Block | null, b: Block | null): Block | null {
    if (a === null) return b;
    if (b === null) return a;
    if (a.priority > b.priority) {
      a.right = SegmentAllocator.#merge(a.right, b);
      SegmentAllocator.#update(a);
      return a;
    }
    b.left = SegmentAllocator.#merge(a, b.left);
    SegmentAllocator.#update(b);
    return b;
  }
}
