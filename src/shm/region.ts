/**
 * Registered memory that lives in named shared memory, so that engines on
 * the same host can copy into and out of it directly.
 *
 * Where and how big: one file per region, /dev/shm/transfer-engine-<pid>-<16
 * hex>, exactly the region's size, pages reserved up front (posix_fallocate:
 * a full /dev/shm is an allocation error now, never a SIGBUS later) and
 * counted against /dev/shm's tmpfs limit and the memory cgroup. Removed on
 * free(), on process exit, when the region's memory is garbage-collected, and
 * after a crash by the next engine's reaper (reaper.ts).
 *
 * SIGBUS: the owner never shrinks its file (it has no API that could) and
 * keeps it at full size until free(), which first detaches the ArrayBuffer so
 * JS cannot touch the pages once they are unmapped. Peers never receive an
 * ArrayBuffer over another engine's memory; they copy through the addon's
 * guarded path (transport/shm.ts).
 */
import { closeSync, unlinkSync } from 'node:fs';
import { constants as bufferConstants } from 'node:buffer';
import { teError, ErrorCode } from '../errors.js';
import { fromNative, loadNative, nativeErrno, type NativeHandle, type NativeAddon } from '../native/addon.js';
import { makeShmName, SHM_DIR } from './names.js';

export interface ShmRegionOptions {
  /** Pre-fault the page tables (MAP_POPULATE) so first touches do not fault 4 KiB at a time. Default true. */
  populate?: boolean;
}

interface Cleanup {
  path: string;
  fd: number;
}

/** Best-effort removal when a region is dropped without free() or the process exits. */
function cleanup(c: Cleanup): void {
  if (c.fd < 0) return;
  try {
    unlinkSync(c.path);
  } catch {
    // already gone (reaped, or removed by hand)
  }
  try {
    closeSync(c.fd);
  } catch {
    // already closed
  }
  c.fd = -1;
}

const live = new Set<Cleanup>();
let exitHookInstalled = false;
// The ArrayBuffer is what users keep; once it is collected nobody can use the memory.
const collected = new FinalizationRegistry<Cleanup>((c) => {
  live.delete(c);
  cleanup(c);
});

function track(c: Cleanup, buffer: ArrayBuffer, token: object): void {
  live.add(c);
  collected.register(buffer, c, token);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // 'exit' handlers must be synchronous: unlink + close are.
    process.once('exit', () => {
      for (const c of live) cleanup(c);
      live.clear();
    });
  }
}

export class ShmRegion {
  /** File name inside /dev/shm, as published in descriptors. */
  readonly name: string;
  readonly path: string;
  readonly size: number;
  private mapped: ArrayBuffer | undefined;
  private view: Uint8Array | undefined;
  private readonly state: Cleanup;

  /** @internal use allocateShmRegion */
  constructor(
    private readonly native: NativeAddon,
    name: string,
    size: number,
    fd: number,
    buffer: ArrayBuffer,
    private readonly handle: NativeHandle,
  ) {
    this.name = name;
    this.path = `${SHM_DIR}/${name}`;
    this.size = size;
    this.mapped = buffer;
    this.view = new Uint8Array(buffer);
    this.state = { path: this.path, fd };
    track(this.state, buffer, this);
  }

  /** The mapping (MAP_SHARED), for registering as local memory. Throws TE_CLOSED after free(). */
  get buffer(): ArrayBuffer {
    if (!this.mapped) throw teError(ErrorCode.CLOSED, `shared-memory region ${this.name} was freed`);
    return this.mapped;
  }

  /** A Uint8Array over the whole mapping. Throws TE_CLOSED after free(). */
  get bytes(): Uint8Array {
    if (!this.view) throw teError(ErrorCode.CLOSED, `shared-memory region ${this.name} was freed`);
    return this.view;
  }

  get freed(): boolean {
    return this.mapped === undefined;
  }

  /**
   * Remove the file, drop the owner lock and unmap. The ArrayBuffer is
   * detached first, so every view of it (Buffers included) becomes empty
   * rather than pointing at unmapped memory. Peers holding a mapping keep
   * the pages until they drop it; their next copy sees the file is gone.
   * Idempotent.
   */
  free(): void {
    const buffer = this.mapped;
    if (!buffer) return;
    this.mapped = undefined;
    this.view = undefined;
    collected.unregister(this);
    live.delete(this.state);
    cleanup(this.state);
    this.native.releaseOwned(this.handle, buffer);
  }
}

/** Largest region: what a Uint8Array can span on this Node. */
export const MAX_SHM_REGION = bufferConstants.MAX_LENGTH;

/**
 * A new zero-filled region of `size` bytes in /dev/shm. TE_NOT_SUPPORTED when
 * the addon is missing or /dev/shm cannot hold it (the message names the
 * errno, e.g. ENOSPC); TE_INVALID_ARGUMENT for a bad size.
 */
export function allocateShmRegion(size: number, options: ShmRegionOptions = {}): ShmRegion {
  if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_SHM_REGION) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `shared-memory region size must be an integer in [1, ${MAX_SHM_REGION}], got ${String(size)}`);
  }
  const populate = options.populate ?? true;
  if (typeof populate !== 'boolean') throw teError(ErrorCode.INVALID_ARGUMENT, 'populate must be a boolean');
  const native = loadNative();
  // A new name per attempt: EEXIST (a 64-bit collision) or EWOULDBLOCK (a
  // reaper locked the file in the instant between create and our lock).
  for (let attempt = 0; ; attempt++) {
    const name = makeShmName();
    try {
      const m = native.createShm(`${SHM_DIR}/${name}`, size, populate);
      return new ShmRegion(native, name, size, m.fd, m.buffer, m.handle);
    } catch (e) {
      const errno = nativeErrno(e);
      if (attempt < 3 && (errno === 'EEXIST' || errno === 'EWOULDBLOCK' || errno === 'EAGAIN')) continue;
      throw fromNative(e, `cannot allocate ${size} bytes of shared memory in ${SHM_DIR}`, ErrorCode.NOT_SUPPORTED);
    }
  }
}

/**
 * Zero-filled memory whose start is aligned to `alignment` (a power of two,
 * default 4096), e.g. for O_DIRECT. Freed by the GC like any ArrayBuffer.
 */
export function allocateAligned(size: number, alignment = 4096): Uint8Array {
  if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_SHM_REGION) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `aligned allocation size must be an integer in [1, ${MAX_SHM_REGION}], got ${String(size)}`);
  }
  if (!Number.isSafeInteger(alignment) || alignment < 8 || alignment > 2 ** 30 || (alignment & (alignment - 1)) !== 0) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `alignment must be a power of two in [8, 2^30], got ${String(alignment)}`);
  }
  const native = loadNative();
  try {
    return new Uint8Array(native.allocAligned(size, alignment));
  } catch (e) {
    throw fromNative(e, `cannot allocate ${size} aligned bytes`, ErrorCode.NOT_SUPPORTED);
  }
}
