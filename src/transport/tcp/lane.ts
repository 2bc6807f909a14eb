/**
 * One connection of the TCP client to a peer: it opens the socket, passes the
 * checks before the first request (our authentication, the peer's identity,
 * a revalidation of a Mooncake peer), writes requests, hands what it reads to
 * its replies (replies.ts), times out, and ends.
 *
 * Writing: small v2 requests, header and payload, are copied into a staging
 * buffer that leaves in one stream write per pump (a memcpy of a few KiB
 * costs less than two stream writes and two iovecs each); larger WRITE
 * payloads are written straight from registered memory, corked so that header
 * and payload leave in one writev.
 */
import net from 'node:net';
import tls from 'node:tls';
import { resetSocket, TLS_WRITE_ALONE_MIN, uncorked } from '../../net.js';
import { tlsClientOptions, tlsError, tlsHandshakeEndedError } from '../../tls.js';
import { encodeHeader, encodeFileHeader, encodeHello, decodeStatus, HEADER_SIZE, STATUS_SIZE, STATUS_ENGINE_CONFIRMED, STATUS_WRONG_ENGINE } from '../../codec/wire.js';
import { channels } from '../../diagnostics.js';
import { teError, ErrorCode, TransferEngineError } from '../../errors.js';
import { AuthClientSide, authRequiredError } from '../../auth.js';
import { AuthKind, authKindAt } from '../../codec/auth.js';
import { fmtAddr } from '../../memory.js';
import { Failure, type Slice } from '../slice.js';
import type { PeerAddress, TcpClientOptions } from './options.js';
import { Replies, type ReplyFault } from './replies.js';

/**
 * Bytes a lane may have outstanding before new slices wait or go elsewhere.
 * Small on purpose: a socket holding more than the kernel's TCP small-queue
 * limit (about 1 MiB) is paced and throttled by the kernel, which on loopback
 * cost much of the throughput (BENCHMARKS.md, "What each optimisation
 * gained"). Two wire requests of WIRE_MAX (pieces.ts) per lane, not one, so
 * the sender always has the next one queued: with one, READs fell into a slow
 * pacing mode in most runs. (Links with much longer round trips want more lanes.)
 */
const LANE_WINDOW_BYTES = 512 * 1024;
const LANE_WINDOW_SLICES = 1024;
/**
 * The window of lanes carrying our file requests (PeerAddress.files): the
 * owner's storage adds milliseconds per request, so keeping its queue full
 * needs more bytes in flight than loopback memory does.
 */
const FILE_WINDOW_BYTES = 8 * 1024 * 1024; // a smaller window left remote direct reads well below local ones (BENCHMARKS.md, "File segments")
/**
 * v2 requests with at most this much payload (READs: none) are copied, header
 * and payload, into a staging buffer and leave in one stream write per pump:
 * a memcpy of a few KiB costs less than two stream writes and two iovecs each.
 */
const COALESCE_MAX = 16 * 1024;
const STAGE_SIZE = 256 * 1024;

interface Stage {
  buf: Buffer;
  /** Flushes of it the stream has not finished writing. */
  writing: number;
  /** Full: no more requests go into it; it is reused once `writing` drops to 0. */
  retired: boolean;
}

/** What a lane needs from its peer (peer.ts). */
export interface LaneOwner {
  readonly addr: PeerAddress;
  readonly options: TcpClientOptions;
  /** host:port, for messages. */
  readonly label: string;
  /** Some lane of the peer is connected (past every check). */
  hasConnectedLane(): boolean;
  /** Move queued slices onto lanes with room. */
  pump(): void;
  /** This lane failed to connect. */
  connectFailed(err: TransferEngineError, failure: Failure): void;
  /** This lane ended; `requeue` were never run by the peer and go to another lane. */
  laneGone(lane: Lane, requeue: Slice[]): void;
}

/** How a lane's failure counts for the retry policy (src/transport/slice.ts). */
export function failureOf(err: TransferEngineError, connectFailure: boolean): Failure {
  switch (err.code) {
    case ErrorCode.PEER_CHANGED:
      return Failure.WRONG_PEER;
    case ErrorCode.PEER_UNREACHABLE:
      return connectFailure ? Failure.CONNECT : Failure.LOST;
    case ErrorCode.TIMEOUT:
      return connectFailure ? Failure.CONNECT : Failure.TIMEOUT;
    default:
      return Failure.FATAL; // protocol errors, authentication, closed
  }
}

export class Lane {
  private readonly sock: net.Socket;
  connected = false;
  private dead = false;
  private readonly replies: Replies;
  /** v1 writes waiting for their payload to reach the kernel. */
  private v1Writes = 0;
  private lastProgress = performance.now();
  private blocked = false; // write() returned false; wait for 'drain'
  private readonly connectTimer: NodeJS.Timeout;
  /** Small requests waiting for uncork: stage.buf[stageStart, staged). Bytes before stageStart belong to the stream. */
  private stage: Stage | null = null;
  private stageStart = 0;
  private staged = 0;
  /** Staging buffers the stream is done with, reused (fresh ones would page-fault on every fill). */
  private spareStages: Buffer[] = [];
  /** v2 WRITE payload writes handed to the stream with a callback (staged flushes and zero-copy payloads): see Replies.bodiesDone. */
  private bodiesQueued = 0;
  /** One callback for all payload writes of this lane (no closure per request). */
  private readonly bodyWritten = (err?: Error | null): void => this.replies.bodyWritten(err);
  private readonly window: number;
  /** Our authentication, until the peer has passed it (null: no secret, or done). */
  private auth: AuthClientSide | null = null;
  private tcpConnected = false;
  /** A TLS lane: large WRITE payloads are written outside the cork (TLS_WRITE_ALONE_MIN). */
  private readonly encrypted: boolean;
  /** TLS: connected, the handshake not done (tcpConnected waits for its end). */
  private tlsPending = false;
  /** The identity check was (or will be, once connected) sent and its answer has not come. */
  private helloPending = false;
  /** PeerAddress.revalidate is running. */
  private revalidating = false;

  constructor(private readonly peer: LaneOwner) {
    const { host, port, localAddress } = peer.addr;
    this.replies = new Replies(peer.label, peer.addr.v2);
    this.window = peer.addr.files ? FILE_WINDOW_BYTES : LANE_WINDOW_BYTES;
    const opts = {
      host,
      port,
      ...(localAddress !== undefined ? { localAddress } : {}),
      noDelay: true,
      // Queued writes are views of registered memory, not copies: let a whole window queue
      // before write() reports backpressure (the 16 KiB default stalls every lane per slice).
      writableHighWaterMark: 4 * this.window,
      ...(net.isIP(host) === 0 ? { family: 4 } : {}),
      onread: {
        buffer: (): Uint8Array => this.replies.nextBuffer(),
        callback: (n: number, buf: Uint8Array): boolean => this.onRead(n, buf),
      },
    } as net.NetConnectOpts;
    const tlsSettings = peer.options.tls;
    // TLS decrypts straight into the buffers onread hands it (tls.connect takes the option, Node >= 14.18).
    this.sock = tlsSettings ? tls.connect({ ...opts, ...tlsClientOptions(tlsSettings) } as tls.ConnectionOptions) : net.connect(opts);
    if (tlsSettings) this.sock.setNoDelay(true);
    this.encrypted = tlsSettings !== undefined;
    const keepAlive = peer.options.keepAliveMs ?? 0;
    if (keepAlive > 0) this.sock.setKeepAlive(true, keepAlive);
    const secret = peer.options.authSecret;
    if (secret) this.auth = new AuthClientSide(secret, peer.label);
    this.helloPending = peer.addr.engineId !== undefined;
    const { revalidate } = peer.addr;
    if (!this.helloPending && revalidate && !peer.hasConnectedLane()) {
      // A Mooncake peer has no identity to check: its descriptor is fetched again (src/engine/segments.ts decides when that is needed).
      this.revalidating = true;
      revalidate().then(
        () => {
          this.revalidating = false;
          if (this.gatePassed()) this.peer.pump();
        },
        (e: unknown) => this.destroy(e instanceof TransferEngineError ? e : teError(ErrorCode.PEER_UNREACHABLE, `cannot check that ${peer.label} is still the same peer: ${String(e)}`, e), true),
      );
    }
    // The lane counts as connected once authenticated, identified and revalidated, all within the same deadline.
    const ms = peer.options.connectTimeoutMs;
    this.connectTimer = setTimeout(() => {
      if (this.tlsPending) this.destroy(tlsHandshakeEndedError(peer.label, `was silent for ${ms} ms`), true);
      else if (!this.tcpConnected) this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `connecting to ${peer.label} timed out after ${ms} ms`), true);
      else if (this.auth) this.destroy(this.auth.notAuthenticating(), true);
      else {
        // Accepted, then silent: a hung peer, which is a timeout (no progress), not a connect failure that retrying cures.
        const what = this.helloPending ? 'did not confirm its identity' : 'could not be checked again (descriptor refetch)';
        this.destroy(teError(ErrorCode.TIMEOUT, `${peer.label} accepted the connection but ${what} within ${ms} ms`), true, Failure.TIMEOUT);
      }
    }, ms);
    this.connectTimer.unref();
    if (tlsSettings) this.sock.once('connect', () => (this.tlsPending = true));
    // With TLS the connection counts from the end of the handshake, which checked the peer's certificate.
    this.sock.once(tlsSettings ? 'secureConnect' : 'connect', () => {
      this.tlsPending = false;
      this.tcpConnected = true;
      if (this.auth) return; // the server speaks first
      if (this.helloPending) this.sendHello();
      // Without checks pending, requests were written while connecting; a revalidation that is over lets them go now.
      if (this.gatePassed()) this.peer.pump();
    });
    this.sock.on('drain', () => {
      this.blocked = false;
      this.peer.pump();
    });
    this.sock.on('error', (e: NodeJS.ErrnoException) => {
      const refused = tlsSettings ? (tlsError(peer.label, e) ?? (this.tlsPending ? tlsHandshakeEndedError(peer.label, `failed (${e.code ?? e.message})`) : null)) : null;
      if (refused) {
        this.destroy(refused, !this.connected);
        return;
      }
      const what = this.connected ? 'connection to' : 'cannot connect to';
      this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${what} ${peer.label} failed: ${e.code ?? e.message}`, e), !this.connected);
    });
    this.sock.on('close', () => {
      if (this.tlsPending) this.destroy(tlsHandshakeEndedError(peer.label, 'closed the connection'), true);
      else if (this.auth) this.destroy(this.auth.notAuthenticating(), true);
      else if (this.helloPending) this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${peer.label} closed the connection before confirming its identity`), true);
      else this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${peer.label} closed the connection with transfers in flight`), false);
    });
  }

  /** Bytes of the requests in flight. */
  get outstanding(): number {
    return this.replies.outstanding;
  }

  // ------------------------------------------------ checks before the first request

  /** Not ready for requests yet: authentication, identity or revalidation outstanding. */
  private get gated(): boolean {
    return this.auth !== null || this.helloPending || this.revalidating;
  }

  /** Every check before the first request passed: the lane takes slices. Returns true if it just became ready. */
  private gatePassed(): boolean {
    if (this.dead || this.connected || !this.tcpConnected || this.gated) return false;
    clearTimeout(this.connectTimer);
    this.connected = true;
    this.lastProgress = performance.now();
    if (channels.connect.hasSubscribers) {
      const a = this.peer.addr;
      channels.connect.publish({ host: a.host, port: a.port, files: a.files === true, ok: true });
    }
    return true;
  }

  private sendHello(): void {
    const h = Buffer.allocUnsafe(HEADER_SIZE);
    encodeHello(h, 0, this.peer.addr.engineId!);
    this.sock.write(h);
  }

  /** The answer to the identity check: requests go out only after the peer confirmed it is the engine we mean. */
  private checkHello(): void {
    const rb = this.replies.rb;
    if (rb.available < STATUS_SIZE) return;
    const label = this.peer.label;
    if (authKindAt(rb.bytes, rb.start) === AuthKind.CHALLENGE) {
      this.destroy(authRequiredError(label), true);
      return;
    }
    const code = decodeStatus(rb.bytes, rb.start);
    rb.start += STATUS_SIZE;
    if (code === STATUS_ENGINE_CONFIRMED) {
      this.helloPending = false;
      if (this.gatePassed()) this.replies.freed = true; // pump once this read is handled
      return;
    }
    if (code === -1) {
      this.destroy(teError(ErrorCode.PROTOCOL_ERROR, `${label} answered the identity check with a bad status frame`), true);
      return;
    }
    const who = code === STATUS_WRONG_ENGINE ? 'another engine of ours' : 'a process that is not one of our engines (a Mooncake peer?)';
    this.destroy(
      teError(
        ErrorCode.PEER_CHANGED,
        `${label} is now ${who}, not the engine ${String(this.peer.addr.engineId)} this segment's descriptor names: that peer is gone`,
      ),
      true,
    );
  }

  /** Run the authentication on the bytes read so far; requests go out only once it is done. */
  private authenticate(): void {
    const auth = this.auth!;
    const rb = this.replies.rb;
    try {
      for (;;) {
        const st = auth.step(rb.bytes, rb.start, rb.end);
        if (st.kind === 'more') return;
        rb.start += st.consumed;
        if (st.kind === 'reply') {
          this.sock.write(st.reply);
          continue;
        }
        this.auth = null;
        if (this.helloPending) this.sendHello();
        if (this.gatePassed()) this.replies.freed = true; // pump: the queue may now use this lane
        return;
      }
    } catch (e) {
      this.destroy(e as TransferEngineError, true);
    }
  }

  // ------------------------------------------------------------------ writing

  hasRoom(): boolean {
    return !this.gated && !this.dead && !this.blocked && this.replies.outstanding < this.window && this.replies.count < LANE_WINDOW_SLICES;
  }

  corked = false;

  cork(): void {
    this.corked = true;
    this.sock.cork();
  }

  uncork(): void {
    this.flushStage();
    this.corked = false;
    this.sock.uncork();
  }

  /** Hand the staged requests to the stream (in order with everything else written). */
  private flushStage(): void {
    if (this.staged === this.stageStart) return;
    const st = this.stage!;
    const bytes = st.buf.subarray(this.stageStart, this.staged);
    this.stageStart = this.staged; // the stream owns these bytes now; later requests go after them
    st.writing++;
    this.bodiesQueued++;
    const ok = this.sock.write(bytes, (err) => {
      if (--st.writing === 0 && st.retired && this.spareStages.length < 2) this.spareStages.push(st.buf);
      this.replies.bodyWritten(err);
    });
    if (!ok) this.blocked = true;
  }

  private newStage(): Stage {
    this.flushStage();
    const old = this.stage;
    if (old) {
      old.retired = true;
      if (old.writing === 0 && this.spareStages.length < 2) this.spareStages.push(old.buf);
    }
    this.stageStart = this.staged = 0;
    this.stage = { buf: this.spareStages.pop() ?? Buffer.allocUnsafe(STAGE_SIZE), writing: 0, retired: false };
    return this.stage;
  }

  send(slice: Slice): void {
    const v2 = this.peer.addr.v2;
    const replies = this.replies;
    slice.received = 0;
    slice.statusSeen = false;
    const body = slice.write ? slice.length : 0;
    if (v2 && body <= COALESCE_MAX) {
      const stage = this.stage && this.staged + HEADER_SIZE + body <= STAGE_SIZE ? this.stage.buf : this.newStage().buf;
      const at = this.staged;
      if (slice.fileId !== undefined) encodeFileHeader(stage, at, slice.length, slice.remoteAddr, slice.write, slice.fileId);
      else encodeHeader(stage, at, slice.length, slice.remoteAddr, slice.write, true);
      if (body > 0) stage.set(slice.local, at + HEADER_SIZE);
      this.staged = at + HEADER_SIZE + body;
      if (replies.count === 0) this.lastProgress = performance.now();
      replies.expect(slice);
      if (body > 0) slice.bodySeq = this.bodiesQueued + 1; // the next flush carries it
      if (!this.corked) this.flushStage();
      return;
    }
    this.flushStage(); // larger requests go zero-copy, after the staged ones
    const header = Buffer.allocUnsafe(HEADER_SIZE);
    // File slices (ours) always go on v2 lanes: the engine submits them with v2 set.
    if (slice.fileId !== undefined) encodeFileHeader(header, 0, slice.length, slice.remoteAddr, slice.write, slice.fileId);
    else encodeHeader(header, 0, slice.length, slice.remoteAddr, slice.write, v2);
    if (replies.count === 0) this.lastProgress = performance.now();
    if (slice.write && !v2) {
      // v1 has no acknowledgement: done once the payload is handed to the kernel.
      replies.outstanding += slice.length;
      this.sock.write(header);
      this.v1Writes++;
      const ok = this.sock.write(slice.local, (err) => {
        this.v1Writes--;
        replies.outstanding -= slice.length;
        this.lastProgress = performance.now();
        slice.settle(err ? teError(ErrorCode.PEER_UNREACHABLE, `write to ${this.peer.label} failed: ${err.message}`, err) : null, Failure.LOST);
      });
      if (!ok) this.blocked = true;
      return;
    }
    replies.expect(slice);
    const write = (): boolean => {
      let ok = this.sock.write(header);
      if (slice.write) {
        slice.bodySeq = ++this.bodiesQueued;
        ok = this.sock.write(slice.local, this.bodyWritten);
      }
      return ok;
    };
    const ok = this.encrypted && slice.write && slice.length >= TLS_WRITE_ALONE_MIN ? uncorked(this.sock, write) : write();
    if (!ok) this.blocked = true;
  }

  // ------------------------------------------------------------------ reading

  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.dead) return false;
    this.lastProgress = performance.now();
    try {
      if (!this.replies.landed(n, buf)) this.consume();
    } catch (e) {
      this.fail(this.replies.readFailed(e));
    }
    if (this.replies.freed && !this.dead) {
      this.replies.freed = false;
      this.peer.pump();
    }
    return !this.dead;
  }

  /** Handle the buffered bytes: authentication, then the identity answer, then replies. */
  private consume(): void {
    if (this.auth !== null) {
      this.authenticate();
      if (this.auth !== null || this.dead) return;
    }
    if (this.helloPending) {
      this.checkHello();
      if (this.helloPending || this.dead) return;
    }
    const fault = this.replies.parse();
    if (fault) this.fail(fault);
  }

  private fail(f: ReplyFault): void {
    this.destroy(f.error, f.connectFailure, f.failure ?? failureOf(f.error, f.connectFailure));
  }

  // ------------------------------------------------------------ health and end

  /** Connected and moving bytes within the timeout. */
  progressing(now: number, timeout: number): boolean {
    return this.connected && !this.dead && now - this.lastProgress <= timeout;
  }

  sweep(now: number, timeout: number): void {
    if (this.dead) return;
    const early = this.replies.ackedTooSoon();
    if (early) {
      const err = teError(ErrorCode.PROTOCOL_ERROR, `${this.peer.label} acknowledged a WRITE of ${early.length} bytes at ${fmtAddr(early.remoteAddr)} before its payload could have arrived`);
      this.destroy(err, false, Failure.FATAL);
      return;
    }
    const busy = this.replies.busy || this.v1Writes > 0;
    if (busy && now - this.lastProgress > timeout) {
      this.destroy(teError(ErrorCode.TIMEOUT, `no progress from ${this.peer.label} for ${timeout} ms`), false);
    }
  }

  /**
   * End the lane. Slices that never reached the server are resent elsewhere;
   * the rest fail with `err`, as `failure` (by default derived from the error).
   */
  destroy(err: TransferEngineError, connectFailure: boolean, failure: Failure = failureOf(err, connectFailure)): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.connectTimer);
    if (!this.connected && channels.connect.hasSubscribers) {
      const a = this.peer.addr;
      channels.connect.publish({ host: a.host, port: a.port, files: a.files === true, ok: false, error: err.message });
    }
    // With requests unfinished, reset rather than close: a graceful close lets the kernel go on
    // sending WRITE payloads still in the send queue, which would land after their slices were
    // reported failed (or were resent and completed), over whatever the application wrote there
    // since. RST discards the queue. An idle lane closes gracefully, and so does a v1 lane, whose
    // writes were reported done once in the send queue.
    const unfinished = this.peer.addr.v2 && this.replies.busy;
    if (unfinished && this.connected && !this.sock.destroyed) resetSocket(this.sock);
    else this.sock.destroy();
    this.stage = null; // staged requests never left: they are in the replies' queue, handled below
    this.stageStart = this.staged = 0;
    this.spareStages = [];
    const pending = this.replies.close();
    // Behind a rejection the server ran nothing more (it serves in order, then closes), so
    // resending is safe; each round removes one rejected request, so this cannot loop.
    const resend = this.replies.rejected && err.code !== ErrorCode.CLOSED;
    const requeue: Slice[] = [];
    for (const s of pending) {
      if (resend) requeue.push(s);
      else s.settle(err, failure);
    }
    // v1 writes settle through their write callbacks, which Node calls with an error on destroy.
    if (connectFailure) this.peer.connectFailed(err, failure);
    this.peer.laneGone(this, requeue);
  }
}
