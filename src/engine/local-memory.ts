/**
 * This engine's registered memory: regions registered or allocated (in
 * /dev/shm with the shm option), their entries in the descriptor, and the
 * warning when the descriptor grows too large for peers to accept.
 */
import { bufferEntrySize, type BufferDesc } from '../codec/descriptor.js';
import type { EngineConfig } from '../config.js';
import { teError, ErrorCode } from '../errors.js';
import { MemoryRegistry, fmtAddr, type Region, type RegionAccess } from '../memory.js';
import type { SegmentDirectory } from '../metadata/directory.js';
import { allocateShmRegion, type ShmRegion } from '../shm/index.js';

/**
 * A descriptor's size apart from its buffers: name, ports, ids, timestamp
 * (about 300 bytes), with room for a few registered files.
 */
const DESCRIPTOR_OVERHEAD = 1024;

export interface LocalMemoryContext {
  readonly config: EngineConfig;
  /** Allocate in named shared memory (EngineOptions.shm). */
  readonly shm: boolean;
  /** This engine's segment name: each buffer entry carries it. */
  name(): string;
  /** The central metadata store's directory (re-publish on change); null in P2P mode. */
  directory(): SegmentDirectory | null;
}

export class LocalMemory {
  readonly registry: MemoryRegistry;
  /** Shared memory this engine allocated, by address: freed on unregister and close. */
  private readonly ownedShm = new Map<number, ShmRegion>();
  /** The encoded size of the descriptor's buffer entries (memoryChanged). */
  private bufferEntriesSize = 0;
  /** The last memoryChanged warned that the descriptor is too large (until it shrinks below the limit again). */
  private descriptorTooLarge = false;

  constructor(private readonly ctx: LocalMemoryContext) {
    const base = ctx.config.addressBase;
    this.registry = new MemoryRegistry(base === undefined ? {} : { base });
  }

  /**
   * Register memory; returns its address in this engine's segment.
   * @param location 'cpu:0', '*', ... (GPU locations are not supported on this host)
   * @param access what peers may do: 'readwrite' (default, as Mooncake), 'read', or 'none';
   *   Mooncake's remote_accessible boolean is accepted too (true: 'readwrite', false: 'none')
   */
  register(mem: Uint8Array | ArrayBuffer, location: string, access: RegionAccess | boolean): number {
    const region = this.registry.register(mem, { location, access });
    this.memoryChanged([region], []);
    return region.addr;
  }

  /**
   * Allocate `size` bytes (zeroed) and register them; returns the address.
   * With the `shm` option the memory lives in /dev/shm and same-host peers
   * copy into and out of it directly. Give it back with unregisterLocalMemory.
   */
  allocate(size: number, location: string, access: RegionAccess | boolean): number {
    if (!Number.isSafeInteger(size) || size <= 0) throw teError(ErrorCode.INVALID_ARGUMENT, `size ${String(size)} must be a positive integer`);
    let registered: Region;
    if (this.ctx.shm) {
      const region = allocateShmRegion(size);
      try {
        registered = this.registry.register(region.bytes, { location, access, shmName: region.name });
      } catch (e) {
        region.free();
        throw e;
      }
      this.ownedShm.set(registered.addr, region);
    } else {
      let mem: ArrayBuffer;
      try {
        mem = new ArrayBuffer(size); // virtual until touched
      } catch (e) {
        throw teError(ErrorCode.OUT_OF_MEMORY, `cannot allocate ${size} bytes: ${(e as Error).message}`, e);
      }
      registered = this.registry.register(mem, { location, access });
    }
    this.memoryChanged([registered], []);
    return registered.addr;
  }

  /** Register several regions; all or none (a failure unregisters the ones already done). */
  registerAll(mems: Array<Uint8Array | ArrayBuffer>, location: string, access: RegionAccess | boolean): number[] {
    if (!Array.isArray(mems)) throw teError(ErrorCode.INVALID_ARGUMENT, 'expected an array of buffers');
    const regions = this.registry.registerAll(mems, { location, access });
    this.memoryChanged(regions, []);
    return regions.map((r) => r.addr);
  }

  /** Unregister the region starting at `addr`. Refused (TE_REGION_BUSY) while transfers use it. */
  unregister(addr: number): void {
    const region = this.registry.unregister(addr);
    this.freeOwnedShm(addr);
    this.memoryChanged([], [region]);
  }

  /**
   * Registered memory changed: central modes re-publish the descriptor (as
   * Mooncake does), and the descriptor's size is kept up to date, so that
   * the registration that makes it too large for peers to accept is told so.
   */
  private memoryChanged(added: readonly Region[], removed: readonly Region[]): void {
    this.ctx.directory()?.descriptorChanged();
    for (const r of added) if (r.remoteAccessible) this.bufferEntriesSize += bufferEntrySize(this.ctx.name(), this.bufferDesc(r));
    for (const r of removed) if (r.remoteAccessible) this.bufferEntriesSize -= bufferEntrySize(this.ctx.name(), this.bufferDesc(r));
    const limit = this.ctx.directory() ? this.ctx.config.maxDescriptorSize : Math.min(this.ctx.config.handshakeMaxLength, this.ctx.config.maxDescriptorSize);
    const size = this.bufferEntriesSize + DESCRIPTOR_OVERHEAD;
    if (size <= limit) {
      this.descriptorTooLarge = false;
      return;
    }
    if (this.descriptorTooLarge) return; // said once per crossing
    this.descriptorTooLarge = true;
    const what = this.ctx.directory() ? 'TE_MAX_DESCRIPTOR_SIZE' : 'MC_HANDSHAKE_MAX_LENGTH, the handshake frame limit';
    process.emitWarning(
      `the segment descriptor of ${this.ctx.name()} is now about ${size} bytes with ${this.registry.list().length} regions, above the ${limit} bytes peers accept (${what}, applied by each peer): peers can no longer open this segment; register fewer, larger regions, or raise the limit on every peer`,
      { type: 'TransferEngineWarning', code: 'TE_DESCRIPTOR_TOO_LARGE' },
    );
  }

  /** A region as the descriptor publishes it. */
  private bufferDesc(r: Region): BufferDesc {
    return {
      name: this.ctx.name(),
      addr: BigInt(r.addr),
      length: BigInt(r.length),
      ...(r.shmName ? { shmName: r.shmName } : {}),
      ...(r.remoteWritable ? {} : { access: 'read' as const }),
    };
  }

  /** Shared memory from allocateLocalMemory goes away with its registration (its file is removed). */
  private freeOwnedShm(addr: number): void {
    const region = this.ownedShm.get(addr);
    if (!region) return;
    this.ownedShm.delete(addr);
    region.free();
  }

  /** Unregister several regions; checks all first, so a busy or unknown one changes nothing. */
  unregisterAll(addrs: number[]): void {
    if (!Array.isArray(addrs)) throw teError(ErrorCode.INVALID_ARGUMENT, 'expected an array of addresses');
    for (const a of addrs) {
      const r = this.registry.resolve(a, 1);
      if (!r || r.offset !== 0) throw teError(ErrorCode.INVALID_ARGUMENT, `no region is registered at address ${fmtAddr(a)}`);
      if (r.region.pins > 0) throw teError(ErrorCode.REGION_BUSY, `region at ${fmtAddr(a)} has transfers in flight`);
    }
    const removed = addrs.map((a) => {
      const region = this.registry.unregister(a);
      this.freeOwnedShm(a);
      return region;
    });
    this.memoryChanged([], removed);
  }

  /** The descriptor's buffers: detached memory is left out (peers refuse a buffer of length 0, and it cannot be served). */
  buffers(): BufferDesc[] {
    return this.registry
      .list()
      .filter((r) => r.remoteAccessible && !r.detached)
      .map((r) => this.bufferDesc(r));
  }

  /** Free the shared memory we own (its files are removed). */
  close(): void {
    for (const region of this.ownedShm.values()) region.free();
    this.ownedShm.clear();
  }
}
