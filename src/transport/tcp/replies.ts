/**
 * The read side of one client lane: the requests it has sent, in send order,
 * and the parsing of their replies. The protocol has no request ids: replies
 * come back in request order, so the head of the queue is the request the
 * next reply bytes belong to.
 *
 * A v2 reply is a status frame, then (READ) the data; a v1 reply is the READ
 * data alone, and a v1 WRITE has none. Large READ data are read straight into
 * the destination (read-buffer.ts, `direct`); smaller replies are parsed from
 * the scratch. Nothing here touches the socket: the lane hands each read in
 * and ends itself when `parse` reports a fault, so this is testable with bytes
 * alone (test/tcp-units.test.ts).
 */
import {
  decodeStatus,
  STATUS_SIZE,
  STATUS_OK,
  STATUS_ADDR_REJECTED,
  STATUS_FILE_REJECTED,
  STATUS_FILE_IO_ERROR,
} from '../../codec/wire.js';
import { teError, ErrorCode, type TransferEngineError } from '../../errors.js';
import { authRequiredError } from '../../auth.js';
import { AuthKind, authKindAt } from '../../codec/auth.js';
import { detachedError, fmtAddr } from '../../memory.js';
import { Failure, type Slice } from '../slice.js';
import { ReadBuffer } from './read-buffer.js';

const SCRATCH_SIZE = 256 * 1024;
/** READ data at least this large go straight into the destination. */
const DIRECT_MIN = 32 * 1024;
/** Free room at the scratch's end below which unhandled bytes move to its front. */
const TAIL_MIN = 4096;

/** Why a lane must end, found while reading its replies. */
export interface ReplyFault {
  error: TransferEngineError;
  /** The lane never became usable: counts as a failure to connect (lane.ts, destroy). */
  connectFailure: boolean;
  /** How the failure counts for the retry policy; absent: derived from the error (lane.ts, failureOf). */
  failure?: Failure;
}

export class Replies {
  /** Everything read from the connection, handshake bytes included (the lane handles those first). */
  readonly rb = new ReadBuffer(SCRATCH_SIZE, TAIL_MIN);
  /** Requests awaiting reply bytes, in send order: slices[head..]. */
  private slices: Slice[] = [];
  private head = 0;
  /** Bytes of the requests in flight (v1 WRITEs, which have no reply, are added by the lane). */
  outstanding = 0;
  /** A request completed since the lane last looked: its window room may take queued slices. */
  freed = false;
  /** The server rejected a request and will close: the requests behind it never ran. */
  rejected = false;
  /**
   * v2 WRITE payloads whose write callback has run. The lane numbers each
   * payload write (Slice.bodySeq) and Node runs a stream's write callbacks in
   * order, so a count is enough to know whose payload is out.
   */
  private bodiesDone = 0;
  /**
   * WRITEs whose OK was read before Node reported their payload written. A
   * legitimate OK can be read before the write callback runs (both are events
   * of the same loop turn); such a WRITE completes when its callback runs.
   */
  private awaitBody: Slice[] = [];
  /** The head of awaitBody at the last sweep (see ackedTooSoon). */
  private awaitMark: Slice | null = null;
  private closed = false;

  constructor(
    /** The peer, for error messages. */
    private readonly label: string,
    private readonly v2: boolean,
  ) {}

  /** Requests awaiting reply bytes. */
  get count(): number {
    return this.slices.length - this.head;
  }

  /** Replies or payload writes still to come: ending the lane now would leave requests half done. */
  get busy(): boolean {
    return this.head < this.slices.length || this.awaitBody.length > 0;
  }

  /** A request was sent (or staged to be): its reply comes after those of the requests before it. */
  expect(slice: Slice): void {
    this.outstanding += slice.length;
    this.slices.push(slice);
  }

  /** The buffer for the next read (Node's `onread`). */
  nextBuffer(): Uint8Array {
    const rb = this.rb;
    if (rb.prepare()) {
      const head = this.head < this.slices.length ? this.slices[this.head]! : null;
      // (A detached destination cannot be a read buffer: its bytes go through the scratch, where copying them fails.)
      if (head && !head.write && !head.region.detached) {
        if (head.length - head.received >= DIRECT_MIN) {
          if (head.statusSeen || !this.v2) return rb.direct(head.local.subarray(head.received));
          return rb.first(STATUS_SIZE); // status alone, then the data goes direct
        }
      } else if (!head && this.v2) {
        // Idle: Node picks the next read buffer now, before we send anything. Every v2 reply
        // starts with a status frame, so read just that: a large READ behind it then lands directly
        // instead of being copied out of the scratch.
        return rb.first(STATUS_SIZE);
      }
    }
    return rb.tail();
  }

  /**
   * A read of `n` bytes landed in `buf`. Returns true when it was READ data
   * read straight into the head's destination (handled here); false when the
   * bytes were buffered: the lane handles its handshake bytes, then `parse`.
   */
  landed(n: number, buf: Uint8Array): boolean {
    if (!this.rb.landed(n, buf)) return false;
    const head = this.slices[this.head]!;
    head.received += n;
    if (head.received === head.length) this.complete(head);
    return true;
  }

  /** Handle the buffered replies. Returns null, or why the lane must end. */
  parse(): ReplyFault | null {
    const rb = this.rb;
    const buf = rb.bytes;
    while (!this.closed) {
      const avail = rb.end - rb.start;
      if (avail === 0) return null;
      if (this.head === this.slices.length) {
        const error =
          authKindAt(buf, rb.start) === AuthKind.CHALLENGE
            ? authRequiredError(this.label)
            : teError(ErrorCode.PROTOCOL_ERROR, `${this.label} sent ${avail} byte(s) nobody asked for`);
        return { error, connectFailure: false };
      }
      const head = this.slices[this.head]!;
      if (this.v2 && !head.statusSeen) {
        if (avail < STATUS_SIZE) return null;
        const code = decodeStatus(buf, rb.start);
        rb.start += STATUS_SIZE;
        if (code === STATUS_OK) {
          head.statusSeen = true;
          if (!head.write) continue;
          // A WRITE is done when both its OK has come and its payload has left (see awaitBody).
          if (head.bodySeq <= this.bodiesDone) this.complete(head);
          else {
            this.shift(head);
            this.awaitBody.push(head);
          }
          continue;
        }
        if (code === STATUS_ADDR_REJECTED) {
          this.rejected = true;
          this.shift(head);
          head.settle(
            teError(
              ErrorCode.ADDRESS_REJECTED,
              `${this.label} rejected ${head.write ? 'WRITE' : 'READ'} of ${head.length} bytes at ${fmtAddr(head.remoteAddr)} (outside its registered memory)`,
            ),
            Failure.REJECTED,
          );
          continue;
        }
        if ((code === STATUS_FILE_REJECTED || code === STATUS_FILE_IO_ERROR) && head.fileId !== undefined) {
          // Like an address rejection, the server closes after it: the slices behind it never ran.
          this.rejected = true;
          this.shift(head);
          const what = `${head.write ? 'WRITE' : 'READ'} of ${head.length} bytes at offset ${head.remoteAddr} of file id ${head.fileId}`;
          head.settle(
            code === STATUS_FILE_REJECTED
              ? teError(ErrorCode.ADDRESS_REJECTED, `${this.label} rejected the file ${what} (unknown file id, outside the file's size, or misaligned for direct I/O)`)
              : teError(ErrorCode.IO_ERROR, `${this.label} failed the file ${what}: its read or write of the file failed`),
            code === STATUS_FILE_REJECTED ? Failure.REJECTED : Failure.FATAL,
          );
          continue;
        }
        if (authKindAt(buf, rb.start - STATUS_SIZE) === AuthKind.CHALLENGE) {
          return { error: authRequiredError(this.label), connectFailure: true }; // a peer with a secret: we have none
        }
        const why = code === -1 ? 'a bad status frame (not a v2 peer, or out of step)' : `unknown status ${code}`;
        return { error: teError(ErrorCode.PROTOCOL_ERROR, `${this.label} sent ${why}`), connectFailure: false };
      }
      head.received += rb.copyTo(head.local, head.received, head.length - head.received);
      if (head.received < head.length) return null;
      this.complete(head);
    }
    return null;
  }

  /**
   * Handling a read threw (a READ destination whose memory was detached
   * throws on copy): the slice at the head fails on its own; the others, whose
   * replies can no longer be told apart on this connection, are resent elsewhere.
   */
  readFailed(e: unknown): ReplyFault {
    const head = this.head < this.slices.length ? this.slices[this.head]! : null;
    if (head && head.region.detached) {
      this.shift(head);
      head.settle(detachedError(head.region, 'local memory'), Failure.FATAL);
      return { error: teError(ErrorCode.PEER_UNREACHABLE, `connection to ${this.label} dropped: a READ's destination memory was detached`, e), connectFailure: false };
    }
    const error = teError(ErrorCode.PROTOCOL_ERROR, `reading from ${this.label} failed: ${e instanceof Error ? e.message : String(e)}`, e);
    return { error, connectFailure: false, failure: Failure.FATAL };
  }

  /** A payload write (staged flush or zero-copy) finished: complete the WRITEs whose OK was waiting for it. */
  bodyWritten(err: Error | null | undefined): void {
    if (this.closed) return;
    this.bodiesDone++;
    if (err) return; // the socket's 'error' ends the lane, and the waiting WRITEs with it
    const q = this.awaitBody;
    if (q.length === 0 || q[0]!.bodySeq > this.bodiesDone) return;
    let n = 1;
    while (n < q.length && q[n]!.bodySeq <= this.bodiesDone) n++;
    const done = q.splice(0, n);
    for (const s of done) s.settle(null);
  }

  /**
   * Called once per sweep. An OK is read at most one loop turn before its
   * payload's write callback runs (the kernel had taken the bytes, or the peer
   * could not have them). Returns the WRITE still waiting for its payload at
   * two sweeps in a row: it was acknowledged before its payload could have
   * arrived, and the peer is not following the protocol.
   */
  ackedTooSoon(): Slice | null {
    const waiting = this.awaitBody.length > 0 ? this.awaitBody[0]! : null;
    if (waiting && waiting === this.awaitMark) return waiting;
    this.awaitMark = waiting;
    return null;
  }

  /**
   * The lane ended: returns every request not done, WRITEs acknowledged but
   * with their payload write unconfirmed first (they are not done either),
   * and expects nothing more.
   */
  close(): Slice[] {
    this.closed = true;
    const rest = this.slices.slice(this.head);
    const pending = this.awaitBody.length > 0 ? [...this.awaitBody, ...rest] : rest;
    this.awaitBody = [];
    this.awaitMark = null;
    this.slices = [];
    this.head = 0;
    this.outstanding = 0;
    return pending;
  }

  private shift(slice: Slice): void {
    this.slices[this.head++] = undefined as unknown as Slice;
    if (this.head === this.slices.length) {
      this.slices = [];
      this.head = 0;
    } else if (this.head > 1024) {
      this.slices = this.slices.slice(this.head);
      this.head = 0;
    }
    this.outstanding -= slice.length;
  }

  private complete(slice: Slice): void {
    this.shift(slice);
    this.freed = true;
    slice.settle(null);
  }
}
