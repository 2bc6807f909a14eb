/**
 * File reads and writes on a bounded pool of workers
 * (MC_NVMEOF_GENERIC_NUM_WORKERS operations in flight).
 *
 * The workers are libuv's threadpool (callback fs.read/fs.write on the
 * registered descriptor), not worker_threads: a threadpool pread lands
 * straight in the caller's memory, while a worker thread cannot touch a
 * non-shared Buffer, so it needs a staging copy and a message per operation;
 * fs/promises FileHandle.read costs a promise per operation. This way was the
 * fastest of the three (benchmarks/file-workers.ts; BENCHMARKS.md, "File
 * segments", the worker pool table).
 * libuv runs UV_THREADPOOL_SIZE threads (default 4); Node
 * reads it once, before this module loads, so it is for the user to raise.
 *
 * Large operations are cut into CHUNK-byte pieces so one big transfer uses
 * several workers. With direct I/O, memory that is not 4096-aligned goes
 * through an aligned bounce buffer; offsets and lengths were checked against
 * the alignment before anything was submitted.
 */
import fs from 'node:fs';
import { teError, ErrorCode, type TransferEngineError } from '../errors.js';
import { pieceAt, pieceCount } from '../pieces.js';
import { loadNative } from '../native/addon.js';
import { DIRECT_IO_ALIGN, type RegisteredFile } from './registry.js';
import type { Staging, StagingPool } from './staging.js';

/** Largest single read or write handed to a worker. */
export const IO_CHUNK = 1024 * 1024;
/**
 * Operations each worker keeps queued (Mooncake's workers keep an aio queue
 * of 256). A queue deeper than libuv's thread count lets a thread go straight
 * to the next operation instead of sleeping until the main thread, busy with
 * sockets, hands it one (BENCHMARKS.md, "File segments": what each change to
 * the remote file path gained).
 */
export const WORKER_QUEUE_DEPTH = 8;

export type IoDone = (err: TransferEngineError | null) => void;

interface Op {
  file: RegisteredFile;
  write: boolean;
  /** Offset in the file. */
  offset: number;
  buf: Uint8Array;
  /** Shared by the chunks of one submit(). */
  group: { remaining: number; error: TransferEngineError | null; done: IoDone };
}

function ioError(e: NodeJS.ErrnoException, op: Op, at: number): TransferEngineError {
  const what = `${op.write ? 'writing' : 'reading'} ${op.buf.length} bytes of file "${op.file.path}" (id ${op.file.id}) at offset ${at}`;
  if (e.code === 'EINVAL' && op.file.directIO) return teError(ErrorCode.IO_ERROR, `${what}: the kernel refused the direct I/O (EINVAL)`, e);
  return teError(ErrorCode.IO_ERROR, `${what} failed: ${e.code ?? e.message}`, e);
}

export class FileIO {
  private readonly queue: Op[] = [];
  private qHead = 0;
  private active = 0;
  private closed = false;

  private readonly maxInFlight: number;

  constructor(
    readonly workers: number,
    private readonly staging: StagingPool,
  ) {
    this.maxInFlight = workers * WORKER_QUEUE_DEPTH;
  }

  /**
   * Read `buf.length` bytes at `offset` into `buf`, or write `buf` there.
   * The caller has checked the range against the file's size and alignment.
   * `done` is called once, after every piece has returned.
   */
  submit(file: RegisteredFile, write: boolean, offset: number, buf: Uint8Array, done: IoDone): void {
    if (this.closed) {
      done(teError(ErrorCode.CLOSED, 'the engine was closed'));
      return;
    }
    const pieces = pieceCount(buf.length, IO_CHUNK);
    const group = { remaining: pieces, error: null, done };
    for (let k = 0; k < pieces; k++) {
      this.queue.push({ file, write, offset: offset + k * IO_CHUNK, buf: pieceAt(buf, k, IO_CHUNK), group });
    }
    this.pump();
  }

  /** Operations handed to the OS right now, for tests. */
  get inFlight(): number {
    return this.active;
  }

  private pump(): void {
    while (this.active < this.maxInFlight && this.qHead < this.queue.length) {
      const op = this.queue[this.qHead]!;
      this.queue[this.qHead++] = undefined as unknown as Op;
      this.start(op);
    }
    if (this.qHead === this.queue.length) {
      this.queue.length = 0;
      this.qHead = 0;
    }
  }

  private start(op: Op): void {
    const file = op.file;
    if (!file.usable()) {
      this.settle(op, file.releasedError());
      return;
    }
    let bounce: Staging | null = null;
    let io = op.buf;
    if (file.directIO && loadNative().addressModulo(op.buf, DIRECT_IO_ALIGN) !== 0) {
      bounce = this.staging.take(op.buf.length, true);
      io = bounce.view;
      if (op.write) io.set(op.buf);
    }
    this.active++;
    file.inflight++;
    let done = 0;
    const finish = (err: TransferEngineError | null): void => {
      this.active--;
      file.inflight--;
      file.maybeClose();
      if (bounce) {
        if (!err && !op.write) op.buf.set(io);
        this.staging.give(bounce);
      }
      this.settle(op, err);
      this.pump();
    };
    const step = (): void => {
      const cb = (e: NodeJS.ErrnoException | null, n: number): void => {
        if (e) return finish(ioError(e, op, op.offset + done));
        if (n === 0) {
          // Only a file that shrank under us (someone truncated it) ends before `size`.
          const why = op.write ? 'the write made no progress' : `the file ends at ${op.offset + done}, below its registered size ${file.size}`;
          return finish(teError(ErrorCode.IO_ERROR, `${op.write ? 'writing' : 'reading'} file "${file.path}" (id ${file.id}): ${why}`));
        }
        done += n;
        if (done < io.length) step();
        else finish(null);
      };
      if (op.write) fs.write(file.fd, io, done, io.length - done, op.offset + done, cb);
      else fs.read(file.fd, io, done, io.length - done, op.offset + done, cb);
    };
    step();
  }

  private settle(op: Op, err: TransferEngineError | null): void {
    const g = op.group;
    if (err && !g.error) g.error = err;
    if (--g.remaining === 0) g.done(g.error);
  }

  /** Fail what has not started; operations in the OS finish and report normally. */
  close(): void {
    this.closed = true;
    const err = teError(ErrorCode.CLOSED, 'the engine was closed before the file operation started');
    while (this.qHead < this.queue.length) {
      const op = this.queue[this.qHead]!;
      this.queue[this.qHead++] = undefined as unknown as Op;
      this.settle(op, err);
    }
    this.queue.length = 0;
    this.qHead = 0;
  }
}
