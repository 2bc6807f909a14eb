/**
 * A file mounted as a store segment (MountFileSegment of Mooncake Store,
 * PR #793): the whole
 * file mapped MAP_SHARED and registered with the engine as memory, so every
 * client, Mooncake's Python ones included, reads and writes its replicas with
 * plain memory requests, and the bytes live in the file. Its segment id is
 * derived from the file (host, device, inode, path), so a provider that
 * restarts and mounts the same file mounts the same segment, and the master
 * (ours) gives back the objects it still holds there.
 */
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, realpathSync } from 'node:fs';
import { teError, ErrorCode } from '../errors.js';
import { hostMachineId } from '../shm/identity.js';
import { fromNative, loadNative, nativeErrno, type NativeHandle } from '../native/addon.js';
import { FILE_SEGMENT_TAG, type UUID } from './master-protocol.js';

/** The segment id of a file: the same for the same file on the same host, across restarts. */
export function fileSegmentId(canonicalPath: string, dev: number | bigint, ino: number | bigint): UUID {
  const h = createHash('sha256').update(`${hostMachineId() ?? 'unknown-host'}\0${String(dev)}\0${String(ino)}\0${canonicalPath}`).digest();
  return { first: h.readBigUInt64LE(0), second: FILE_SEGMENT_TAG };
}

export class MappedFile {
  private handle: NativeHandle | null;
  private buffer: ArrayBuffer | null;

  private constructor(
    /** The canonical path (symlinks resolved). */
    readonly path: string,
    readonly size: number,
    readonly id: UUID,
    private fd: number,
    handle: NativeHandle,
    buffer: ArrayBuffer,
  ) {
    this.handle = handle;
    this.buffer = buffer;
  }

  /**
   * Map `path` (an existing, non-empty regular file, writable by us).
   * TE_INVALID_ARGUMENT for a missing, empty or special file, TE_REGION_BUSY
   * when another process serves it already, TE_NOT_SUPPORTED without the addon.
   */
  static open(path: string): MappedFile {
    if (typeof path !== 'string' || path.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'a file segment needs a path');
    let canonical: string;
    try {
      canonical = realpathSync(path);
    } catch (e) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `file segment ${path}: ${(e as Error).message}`, e);
    }
    const native = loadNative();
    let m: ReturnType<typeof native.mapFile>;
    try {
      m = native.mapFile(canonical);
    } catch (e) {
      if (nativeErrno(e) === 'EWOULDBLOCK' || nativeErrno(e) === 'EAGAIN') {
        throw teError(ErrorCode.REGION_BUSY, `file segment ${canonical} is served by another process already (it holds the file's lock)`, e);
      }
      throw fromNative(e, `cannot map file segment ${canonical}`, ErrorCode.INVALID_ARGUMENT);
    }
    const st = fstatSync(m.fd, { bigint: true });
    return new MappedFile(canonical, m.size, fileSegmentId(canonical, st.dev, st.ino), m.fd, m.handle, m.buffer);
  }

  /** The mapping; throws TE_CLOSED after close(). */
  get memory(): ArrayBuffer {
    if (!this.buffer) throw teError(ErrorCode.CLOSED, `file segment ${this.path} is closed`);
    return this.buffer;
  }

  /** Write dirty pages to the file now. */
  sync(): void {
    if (this.handle) loadNative().syncMapping(this.handle);
  }

  /** Flush, unmap (every view of the mapping becomes empty) and release the lock. Idempotent. */
  close(): void {
    const { handle, buffer } = this;
    if (!handle || !buffer) return;
    this.handle = null;
    this.buffer = null;
    const native = loadNative();
    try {
      native.syncMapping(handle);
    } finally {
      native.releaseOwned(handle, buffer);
      closeSync(this.fd);
      this.fd = -1;
    }
  }
}
