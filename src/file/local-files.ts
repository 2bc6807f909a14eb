/**
 * An engine's file segment: its registered files, the worker pool that reads
 * and writes them, and what its data servers need to serve them to peers.
 * Also the range checks both sides apply before a file request is sent.
 */
import type { FileBufferDesc } from '../codec/file-buffers.js';
import { teError, ErrorCode } from '../errors.js';
import { Lease } from '../lease.js';
import type { FileConfig } from './config.js';
import { FileIO, type IoDone } from './io.js';
import { FileRegistry, type RegisteredFile, type RegisterFileOptions } from './registry.js';
import { StagingPool } from './staging.js';

/**
 * Check a file request's range before anything is sent or started:
 * `[offset, offset+length)` inside `[0, size)`, and aligned when `align` > 1.
 * Throws INVALID_ARGUMENT naming the request and the file.
 */
export function checkFileRange(what: string, fileId: number, offset: bigint, length: number, size: number, align: number): void {
  if (offset < 0n || offset + BigInt(length) > BigInt(size)) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: [${offset}, +${length}) is outside file id ${fileId}'s [0, ${size})`);
  }
  if (align > 1 && (offset % BigInt(align) !== 0n || length % align !== 0)) {
    throw teError(
      ErrorCode.INVALID_ARGUMENT,
      `${what}: file id ${fileId} uses direct I/O, so offset (${offset}) and length (${length}) must be multiples of ${align}`,
    );
  }
}

/** A file id in a request: a u32. */
export function checkFileId(what: string, fileId: unknown): number {
  if (typeof fileId !== 'number' || !Number.isInteger(fileId) || fileId < 0 || fileId > 0xffff_ffff) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: fileId ${String(fileId)} is not a file id (an integer in [0, 2^32))`);
  }
  return fileId;
}

/** What a data server needs to serve files; shared by all its connections. */
export interface FileServeContext {
  files: FileRegistry;
  io: FileIO;
  staging: StagingPool;
}

export class LocalFiles {
  readonly registry: FileRegistry;
  readonly staging = new StagingPool();
  readonly io: FileIO;
  readonly context: FileServeContext;

  constructor(readonly config: FileConfig) {
    this.registry = new FileRegistry(config.directIO);
    this.io = new FileIO(config.workers, this.staging);
    this.context = { files: this.registry, io: this.io, staging: this.staging };
  }

  register(path: string, size: number, options?: RegisterFileOptions): RegisteredFile {
    return this.registry.register(path, size, options);
  }

  unregister(path: string): void {
    this.registry.unregister(path);
  }

  byId(id: number): RegisteredFile | undefined {
    return this.registry.byId(id);
  }

  /** The descriptor's file_buffers, with the handle same-host peers reopen the file by. */
  describe(): FileBufferDesc[] {
    // 'none' files are not published (as 'none' memory), and the owner refuses every request for them.
    return this.registry.list().filter((f) => f.access !== 'none').map((f) => ({
      id: f.id,
      path: f.path,
      size: f.size,
      align: f.align,
      ...(f.access === 'read' ? { access: 'read' as const } : {}),
      owner: { pid: process.pid, fd: f.fd, dev: f.dev, ino: f.ino },
    }));
  }

  /** A local transfer between registered memory and a file: pins both until the I/O returns. */
  transfer(file: RegisteredFile, write: boolean, offset: number, mem: Uint8Array, done: IoDone): void {
    const pin = new Lease(file);
    this.io.submit(file, write, offset, mem, (err) => {
      pin.release();
      done(err);
    });
  }

  close(): void {
    this.io.close();
    this.registry.close();
    this.staging.clear();
  }
}
