/**
 * Local memory as Mooncake's Python binding sees it: registerMemory and friends,
 * getBufferAddress, managed buffers, and the local ranges transfers and copies
 * use. Registrations of user memory are the core's: this module asks it
 * (registerLocalMemory, registeredAt, registrationsIn) and keeps no copy. What
 * it keeps is what the core does not have: the managed-buffer pool, and the
 * ranges registerMemory(address) records inside it.
 */
import type { TransferEngine as CoreEngine } from '../engine/engine.js';
import { ErrorCode, teError } from '../errors.js';
import { fmtAddr } from '../memory.js';
import { toLength, toLocalAddress, type MemoryArg } from './args.js';
import { ManagedBuffers, MOONCAKE_BUDDY, SHM_BUDDY } from './managed-buffers.js';

const GPU_LOCATION = /^(cuda|musa|hip|maca|npu|gpu)[:]/i;

export class Registrations {
  /** The Python binding's managed buffers (allocate_managed_buffer): a pool over chunks it registers with the core; the core has no such pool. */
  readonly managed: ManagedBuffers;
  /**
   * registerMemory(address) inside managed buffers: address -> length. The
   * memory is registered with the core already (with its chunk), so the
   * binding's call only records the range; the core has no notion of such sub-ranges.
   */
  private readonly managedRanges = new Map<number, number>();

  constructor(
    private readonly core: CoreEngine,
    /** Managed buffers in /dev/shm (the core's shm option). */
    shm: boolean,
  ) {
    this.managed = new ManagedBuffers(
      {
        allocate: (size) => core.allocateLocalMemory(size, '*'),
        unregister: (addr) => core.unregisterLocalMemory(addr),
      },
      // /dev/shm pages are reserved up front: smaller chunks than Mooncake's 2 GiB.
      shm ? SHM_BUDDY : MOONCAKE_BUDDY,
    );
  }

  // ------------------------------------------------------- registration

  /** Register all of `mems` (with their capacities), or none: a failure undoes the ones done. */
  registerAll(mems: readonly MemoryArg[], capacities: ReadonlyArray<number | bigint>, location: string): void {
    if (mems.length !== capacities.length) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `${mems.length} buffers but ${capacities.length} capacities: the lists must have the same length`);
    }
    const undo: Array<() => void> = [];
    try {
      mems.forEach((mem, i) => undo.push(this.register(mem, capacities[i]!, location)));
    } catch (e) {
      for (const u of undo.reverse()) u();
      throw e;
    }
  }

  /** Register one piece of memory; returns how to undo it (for registerAll). */
  register(mem: MemoryArg, capacity: number | bigint, location: string): () => void {
    const cap = toLength(capacity, 'capacity');
    if (mem.kind === 'bytes') {
      // The core sees a view of `cap` bytes: a capacity beyond the buffer cannot reach it.
      if (cap > mem.byteLength) {
        throw teError(ErrorCode.INVALID_ARGUMENT, `capacity ${cap} is larger than the buffer (${mem.byteLength} bytes)`);
      }
      // The core refuses memory that overlaps registered memory (ERR_ADDRESS_OVERLAPPED), an empty location, GPU ones.
      const addr = this.core.registerLocalMemory(new Uint8Array(mem.buffer, mem.start, cap), location);
      return () => this.unregisterAddress(addr);
    }
    // An address: only managed memory can be named by address, and it is registered already, so the
    // core is not called: the checks it would make of the location are made here.
    if (location.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'location must be a non-empty string such as "cpu:0" or "*"');
    if (GPU_LOCATION.test(location)) throw teError(ErrorCode.NOT_SUPPORTED, `location "${location}" is GPU memory, which is not supported on this host`);
    const addr = toLocalAddress(mem.value, 'bufferAddr');
    if (this.managed.owner(addr, cap) === undefined) {
      let inRegistered = false;
      try {
        this.core.localView(addr, 1);
        inRegistered = true;
      } catch {
        /* not registered */
      }
      if (inRegistered) throw teError(ErrorCode.ADDRESS_OVERLAPPED, `${fmtAddr(addr)} is inside memory that is already registered`);
      throw teError(
        ErrorCode.ADDRESS_NOT_REGISTERED,
        `${fmtAddr(addr)} is not memory this engine owns: Node cannot register a raw address; pass the Uint8Array/ArrayBuffer itself, or an address from allocateManagedBuffer()`,
      );
    }
    for (const [a, len] of this.managedRanges) {
      if (a < addr + cap && addr < a + len) {
        throw teError(ErrorCode.ADDRESS_OVERLAPPED, `[${fmtAddr(addr)}, +${cap}) overlaps the registration at ${fmtAddr(a)}`);
      }
    }
    this.managedRanges.set(addr, cap);
    return () => this.managedRanges.delete(addr);
  }

  /** The address of the byte `mem` starts at when it lies in registered memory, else 0 (getBufferAddress). */
  addressOf(mem: Extract<MemoryArg, { kind: 'bytes' }>): number {
    if (mem.buffer.byteLength === 0) return 0; // detached (or shrunk to nothing): no usable address
    const r = this.core.registrationsIn(mem.buffer).find((x) => mem.start >= x.byteOffset && mem.start < x.byteOffset + x.length);
    return r ? r.addr + (mem.start - r.byteOffset) : 0;
  }

  /** Unregister one registration, named by its address or its memory. */
  unregister(mem: MemoryArg): void {
    this.unregisterAddress(this.registrationAddress(mem));
  }

  /** Unregister several; checks all first, so an unknown or busy one changes nothing. */
  unregisterAll(mems: readonly MemoryArg[]): void {
    const addrs = mems.map((mem) => this.registrationAddress(mem));
    if (new Set(addrs).size !== addrs.length) throw teError(ErrorCode.INVALID_ARGUMENT, 'the same registration is listed twice');
    for (const a of addrs) {
      if (!this.managedRanges.has(a) && !this.isUserRegistration(a)) throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, `no registration starts at ${fmtAddr(a)}`);
    }
    const user = addrs.filter((a) => this.isUserRegistration(a));
    this.core.unregisterLocalMemoryBatch(user); // all or nothing (REGION_BUSY)
    for (const a of addrs) this.managedRanges.delete(a);
  }

  /** A registration of the caller's starts at `addr` (the pool's own chunks and large buffers are not the caller's to end). */
  private isUserRegistration(addr: number): boolean {
    return !this.managed.contains(addr) && this.core.registeredAt(addr) !== undefined;
  }

  /** The address a registration is known by. */
  private registrationAddress(mem: MemoryArg): number {
    if (mem.kind === 'address') return toLocalAddress(mem.value, 'bufferAddr');
    const regions = this.core.registrationsIn(mem.buffer);
    if (mem.buffer.byteLength === 0 && regions.length > 0) {
      // Detached (transferred) memory: its views read offset 0, so the registration is found by its buffer alone.
      if (regions.length === 1) return regions[0]!.addr;
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `this buffer's memory was detached and ${regions.length} registrations used it (at ${regions.map((r) => fmtAddr(r.addr)).join(', ')}): unregister them by address`,
      );
    }
    const r = regions.find((x) => x.byteOffset === mem.start);
    if (!r) throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, 'this buffer is not registered (no registration starts at its first byte)');
    return r.addr;
  }

  private unregisterAddress(addr: number): void {
    if (this.managedRanges.delete(addr)) return;
    if (this.isUserRegistration(addr)) {
      this.core.unregisterLocalMemory(addr); // REGION_BUSY while in use: nothing changes
      return;
    }
    throw teError(
      ErrorCode.ADDRESS_NOT_REGISTERED,
      this.managed.buddy.chunkOf(addr) !== undefined
        ? `no registration starts at ${fmtAddr(addr)}: managed buffers are registered by the engine; free them with freeManagedBuffer()`
        : `no registration starts at ${fmtAddr(addr)}`,
    );
  }

  // ---------------------------------------------------- managed buffers

  allocate(length: number | bigint): number {
    return this.managed.allocate(toLength(length));
  }

  free(bufferAddr: number | bigint, length: number | bigint): void {
    const addr = toLocalAddress(bufferAddr, 'bufferAddr');
    const len = toLength(length);
    this.managed.free(addr, len);
    // Registrations of the freed range end with it.
    for (const [a, l] of this.managedRanges) if (a < addr + len && addr < a + l) this.managedRanges.delete(a);
  }

  // ------------------------------------------------------- local ranges

  /**
   * A local range for a copy: inside registered memory (the core's check),
   * and, when it is managed memory, inside one live managed buffer (the pool's).
   */
  view(addr: number | bigint, length: number, what: string): Uint8Array {
    const a = toLocalAddress(addr, what);
    this.managed.owner(a, length);
    return this.core.localView(a, length);
  }

  /**
   * The managed buffers a transfer's local ranges lie in (to pin while it
   * runs), refusing a range in freed managed memory or spilling past its
   * buffer: the core sees only the chunk, which stays registered.
   */
  managedOwners(ranges: ReadonlyArray<{ source: number; length: number }>): number[] {
    const pins: number[] = [];
    for (const r of ranges) {
      const owner = this.managed.owner(r.source, r.length);
      if (owner !== undefined) pins.push(owner);
    }
    return pins;
  }
}
