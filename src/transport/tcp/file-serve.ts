/**
 * Serving our file requests (src/codec/wire.ts, "file requests") on one data
 * connection.
 *
 * File I/O is asynchronous, but a connection's responses must come back in
 * request order (the protocol has no ids). Requests therefore start their
 * I/O as soon as they are admitted, several at once, and their responses are
 * sent strictly in order as the head of the queue completes. A request that
 * overlaps an unfinished one on the same file, where either writes, waits
 * for it (so a READ after a WRITE sees the written bytes); so does one that
 * would exceed the connection's staging window. The connection parks such a
 * request and offers it again on progress().
 *
 * A rejected request (unknown id, outside [0, size), misaligned for direct
 * I/O, malformed) ends the connection once every response before it is out,
 * like a rejected memory request; so does an I/O error.
 */
import { STATUS_OK_FRAME, STATUS_FILE_REJECTED_FRAME, STATUS_FILE_IO_ERROR_FRAME } from '../../codec/wire.js';
import { TransferEngineError } from '../../errors.js';
import type { FileServeContext } from '../../file/local-files.js';
import type { RegisteredFile } from '../../file/registry.js';
import { Lease } from '../../lease.js';
import type { Staging } from '../../file/staging.js';
import type { FileTarget } from './targets.js';

export { MAX_FILE_REQUEST, checkFileRequest } from './targets.js';
export type { FileServeContext };

/** Staged bytes (I/O running or data not yet taken by the kernel) per connection before requests wait. */
const WINDOW_BYTES = 32 * 1024 * 1024;
const WINDOW_OPS = 64;


export interface FileConnectionSink {
  /** Queue bytes on the socket, after everything queued before; `sent` once the kernel has them. */
  send(bytes: Uint8Array, sent?: () => void): void;
  /** Send this last status frame and close the connection. */
  fail(frame: Buffer): void;
  /** Hold writes until uncork(), so a run of responses leaves in one writev. */
  cork(): void;
  uncork(): void;
  /** Responses went out or I/O finished: a parked request may go ahead. */
  progress(): void;
}

export class FileOp {
  /** 'body': receiving a WRITE's payload; 'io': in the file pool; 'done': response ready. */
  state: 'body' | 'io' | 'done' = 'io';
  error: TransferEngineError | null = null;
  /** A pin of the file from admission until its I/O returns (or the connection ends before the I/O starts). */
  readonly pin: Lease | null;
  constructor(
    readonly file: RegisteredFile | null,
    readonly write: boolean,
    readonly offset: number,
    readonly size: number,
    readonly staging: Staging | null,
    /** Rejected at admission: its response is the rejection frame. */
    readonly rejected: boolean,
  ) {
    this.pin = file ? new Lease(file) : null;
  }
}

export type Admission =
  | { kind: 'started' }
  /** Receive the WRITE's payload into `body`, then call bodyReceived(op). */
  | { kind: 'body'; body: Uint8Array; op: FileOp }
  /** Offer the same header again after progress(). */
  | { kind: 'hold' };

export class FileConnection {
  private readonly ops: FileOp[] = [];
  private stagedBytes = 0;
  private closed = false;

  constructor(
    private readonly ctx: FileServeContext,
    private readonly sink: FileConnectionSink,
  ) {}

  /** Responses not yet sent: a memory request arriving now must wait for them. */
  get pending(): boolean {
    return this.ops.length > 0;
  }

  /** Start a file request the lookup found servable (targets.ts), or say that it must wait. */
  admit(t: FileTarget): Admission {
    const { file: f, header: h } = t;
    if (this.mustWait(f, h)) return { kind: 'hold' };
    const staging = this.ctx.staging.take(h.size, f.directIO);
    this.stagedBytes += staging.backing.length;
    const op = new FileOp(f, h.write, h.offset, h.size, staging, false);
    this.ops.push(op);
    if (h.write) {
      op.state = 'body';
      return { kind: 'body', body: staging.view, op };
    }
    this.run(op);
    return { kind: 'started' };
  }

  /**
   * A refused request: its rejection frame goes out once every response
   * before it is out, then the connection closes (the sink's fail).
   */
  refuse(): void {
    const rejected = new FileOp(null, false, 0, 0, null, true);
    rejected.state = 'done';
    this.ops.push(rejected);
    this.flush();
  }

  private mustWait(file: RegisteredFile, h: FileTarget['header']): boolean {
    if (this.ops.length >= WINDOW_OPS) return true;
    if (this.stagedBytes > 0 && this.stagedBytes + h.size > WINDOW_BYTES) return true;
    const end = h.offset + h.size;
    for (const op of this.ops) {
      if (op.state === 'done' || op.file !== file || (!op.write && !h.write)) continue;
      if (op.offset < end && h.offset < op.offset + op.size) return true;
    }
    return false;
  }

  /** A WRITE's payload is complete in its staging buffer: write it to the file. */
  bodyReceived(op: FileOp): void {
    op.state = 'io';
    this.run(op);
  }

  private run(op: FileOp): void {
    this.ctx.io.submit(op.file!, op.write, op.offset, op.staging!.view, (err) => {
      op.pin!.release();
      op.state = 'done';
      op.error = err;
      if (this.closed) {
        this.release(op);
        return;
      }
      this.scheduleFlush();
    });
  }

  private flushScheduled = false;

  /**
   * Flush after every I/O callback of this loop turn has run, so completions
   * that land together leave in one writev: each writev to a loopback socket
   * costs tens of microseconds (the receiver's wakeup), whatever its size.
   */
  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (this.closed) return;
      this.flush();
      this.sink.progress();
    });
  }

  private release(op: FileOp): void {
    if (!op.staging) return;
    this.stagedBytes -= op.staging.backing.length;
    this.ctx.staging.give(op.staging);
  }

  /** Send the responses at the head of the queue that are ready, in order. */
  private flush(): void {
    if (this.closed || this.ops.length === 0 || this.ops[0]!.state !== 'done') return;
    // One writev for the frame and data of every ready response (an 8-byte frame alone costs a whole TCP send).
    this.sink.cork();
    try {
      this.flushReady();
    } finally {
      this.sink.uncork();
    }
  }

  private flushReady(): void {
    while (!this.closed && this.ops.length > 0 && this.ops[0]!.state === 'done') {
      const op = this.ops.shift()!;
      if (op.rejected || op.error) {
        this.release(op);
        this.sink.fail(op.rejected ? STATUS_FILE_REJECTED_FRAME : STATUS_FILE_IO_ERROR_FRAME);
        return; // the sink closes the connection, which calls close()
      }
      this.sink.send(STATUS_OK_FRAME);
      if (op.write) this.release(op);
      else {
        // Straight from staging, reused once the kernel has it; that frees window room a parked request may wait for.
        this.sink.send(op.staging!.view, () => {
          this.release(op);
          if (!this.closed) this.sink.progress();
        });
      }
    }
  }

  /** The connection is gone: operations in the pool finish on their own; nothing more is sent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const op of this.ops) {
      if (op.state === 'body') {
        op.pin!.release();
        this.release(op);
      } else if (op.state === 'done') this.release(op);
    }
    this.ops.length = 0;
  }
}
