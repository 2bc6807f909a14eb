/**
 * One connection of the data server (server.ts).
 *
 * A connection carries a sequence of requests, served strictly in order:
 * read a 24-byte header, look up what it reads or writes (targets.ts), then
 * either receive the WRITE body into the region (then, in v2, acknowledge
 * with one OK frame) or send the READ data (v2: OK frame first). File
 * requests go to the file pipeline (file-serve.ts). A refused request gets
 * its rejection frame and the connection is closed, as Mooncake does.
 *
 * Zero copy: large WRITE bodies are read by the kernel straight into the
 * destination region (read-buffer.ts, `direct`); READ data are written
 * straight from it. The socket comes from node-internals.ts.
 *
 * A request is served only while nothing blocks the connection; what can:
 * `paused` (the socket's buffer is full: wait for 'drain'), `full` (the
 * responses queued reached TE_MAX_REQUESTS_IN_FLIGHT), `held` (a request is
 * parked until what it waits for progresses) and `ending` (no more requests:
 * one was refused, or the connection ended). While blocked, reading stops.
 */
import type net from 'node:net';
import { resetSocket, TLS_WRITE_ALONE_MIN, uncorked } from '../../net.js';
import {
  HEADER_SIZE,
  decodeHeader,
  isFileOpcode,
  OPCODE_HELLO,
  STATUS_OK_FRAME,
  STATUS_FILE_REJECTED_FRAME,
  STATUS_ENGINE_CONFIRMED_FRAME,
  STATUS_WRONG_ENGINE_FRAME,
  type RequestHeader,
} from '../../codec/wire.js';
import { Lease } from '../../lease.js';
import type { Region } from '../../memory.js';
import { AuthServerSide } from '../../auth.js';
import { AuthKind, REJECT_FRAME, RESPONSE_SIZE, authKindAt } from '../../codec/auth.js';
import { FileConnection, type FileOp, type FileServeContext } from './file-serve.js';
import { acceptSocket, type AcceptedSocket, type SocketReader } from './node-internals.js';
import { ReadBuffer } from './read-buffer.js';
import type { FileTarget, MemoryTarget, Targets } from './targets.js';

/** Bytes read per syscall while parsing headers and small bodies. */
const SCRATCH_SIZE = 256 * 1024;
/** Bodies at least this large are read directly into the region. */
const DIRECT_MIN = 32 * 1024;
/** The read that can land after reading stopped (ReadBuffer.spare); also the least tail room of a read. */
const SPARE_SIZE = 64 * 1024;
/**
 * READ data queued before the server stops taking requests. Queued data are
 * views of registered memory (no copies), so a few MiB cost nothing; the 16 KiB
 * default would serve one request per drain.
 */
export const WRITE_WINDOW = 4 * 1024 * 1024;
/** After a refusal, how long to wait for the client to close before dropping it. */
const REJECT_GRACE_MS = 2000;

export interface DataServerStats {
  connections: number;
  requests: number;
  rejected: number;
  /** Connections closed at once: their address had TE_MAX_DATA_CONNECTIONS_PER_PEER open. */
  refused: number;
  /** Connections whose authentication failed (nothing of theirs was served). */
  authRejected: number;
  /** TLS connections refused: certificate, protocol, TE_TLS_PEER_NAME, or a handshake not done within the stall timeout. */
  tlsRejected: number;
  /** Connections closed for making no progress mid-request for the stall timeout. */
  stalled: number;
  /** Most responses any connection had queued at once (bounded by TE_MAX_REQUESTS_IN_FLIGHT). */
  peakQueued: number;
}

/** What a connection needs from its server (server.ts). */
export interface ConnectionHost {
  readonly stats: DataServerStats;
  readonly targets: Targets;
  /** What serving files needs (staging, I/O); null: this server serves none. */
  readonly files: FileServeContext | null;
  /** Require our shared-secret authentication before the first request. */
  readonly authSecret: Uint8Array | undefined;
  readonly engineId: number | undefined;
  readonly maxInFlight: number;
  /** TCP keepalive delay (0: off). */
  readonly keepAliveMs: number;
}

/**
 * A READ whose data is queued on the socket but not yet taken by the kernel.
 * It holds a pin of its region (it is the lease) until the kernel has the data
 * or the connection is torn down, whichever comes first.
 */
class QueuedRead extends Lease {
  constructor(
    readonly region: Region,
    readonly start: number,
    readonly end: number,
  ) {
    super(region);
  }
}

/**
 * The responses a connection has handed to its socket and the kernel has not
 * taken yet: READ data, written straight from a region whose pin they hold,
 * and v2 WRITE acknowledgements. A connection with TE_MAX_REQUESTS_IN_FLIGHT
 * of them takes no more requests until half have left.
 */
class QueuedResponses {
  private readonly reads: QueuedRead[] = [];
  /** Status frames handed to the socket and not yet taken by the kernel. */
  acks = 0;

  constructor(
    private readonly stats: DataServerStats,
    private readonly max: number,
  ) {}

  get empty(): boolean {
    return this.reads.length === 0 && this.acks === 0;
  }

  /** After one more was queued: true at the limit. */
  atLimit(): boolean {
    const n = this.reads.length + this.acks;
    if (n > this.stats.peakQueued) this.stats.peakQueued = n;
    return n >= this.max;
  }

  /** Down to half the limit: requests may be taken again. */
  get drained(): boolean {
    return this.reads.length + this.acks <= this.max >> 1;
  }

  /** READ data `[start, end)` of `region` were queued; the region is pinned (the entry is the lease) until taken(). */
  read(region: Region, start: number, end: number): QueuedRead {
    const q = new QueuedRead(region, start, end);
    this.reads.push(q);
    return q;
  }

  /** The kernel has a READ's data: release its pin. False if that was done already (torn down before). */
  taken(q: QueuedRead): boolean {
    if (!q.release()) return false;
    const i = this.reads.indexOf(q);
    if (i >= 0) this.reads.splice(i, 1);
    return true;
  }

  /** Some queued READ data come from `[start, end)` of `region`. */
  overlaps(region: Region, start: number, end: number): boolean {
    for (const q of this.reads) if (q.region === region && q.start < end && start < q.end) return true;
    return false;
  }

  /** The socket is gone: nothing reads the queued READs' regions any more, whether or not Node calls their write callbacks. */
  releaseAll(): void {
    for (const q of this.reads) {
      q.release();
    }
    this.reads.length = 0;
  }
}

export class ServerConnection implements SocketReader {
  sock!: net.Socket;
  /** A TLS connection: large payloads are written outside the cork (TLS_WRITE_ALONE_MIN). */
  private encrypted = false;
  private io!: AcceptedSocket;
  private readonly rb = new ReadBuffer(SCRATCH_SIZE, SPARE_SIZE, SPARE_SIZE);
  /** The WRITE body being received, into a region (bodyRegion) or a file's staging (bodyFile). */
  private body: Uint8Array | null = null;
  private bodyOff = 0;
  private bodyRegion: Region | null = null;
  /** The pin of bodyRegion while its WRITE body arrives. */
  private bodyPin: Lease | null = null;
  private bodyV2 = false;
  private bodyFile: FileOp | null = null;
  /** Read exactly one header next (the previous request was large, so its successor likely is too). */
  private lastWasLarge = false;
  /** Waiting for 'drain' before serving more requests. */
  private paused = false;
  /** Too many responses queued (TE_MAX_REQUESTS_IN_FLIGHT): read nothing more until half have left. */
  private full = false;
  /**
   * A parked request (a copy of its header): a WRITE to bytes that a queued
   * READ's data still come from (requests keep the order they were sent in,
   * as Mooncake's server does), or any request behind file responses not yet
   * out. It is offered again when those make progress.
   */
  private held: Buffer | null = null;
  /** No more requests: one was refused (the connection closes once the responses before it are out), or it ended. */
  private ending = false;
  private dead = false;
  /** Reading was stopped by returning false from onRead; resume() restarts it. */
  private stopped = false;
  private readonly out: QueuedResponses;
  /** Bytes came in or responses went out since the last sweep. */
  private progressed = false;
  private lastProgress = performance.now();
  /** Output bytes not yet taken by the kernel, at the last sweep. */
  private lastOut = 0;
  /** Our authentication, until the client has passed it (null: none required, or done). */
  private auth: AuthServerSide | null = null;
  /** The file pipeline, from the first file request on. */
  private files: FileConnection | null = null;
  private readonly ackSent = (): void => {
    this.out.acks--;
    this.progressed = true;
    this.unfull();
  };

  /** Serve an accepted connection; null when it was gone before it could be taken over. */
  static accept(owner: ConnectionHost, accepted: net.Socket, zeroCopy = true): ServerConnection | null {
    const conn = new ServerConnection(owner);
    const io = acceptSocket(accepted, WRITE_WINDOW, conn, zeroCopy);
    if (!io) return null;
    conn.start(io);
    return conn;
  }

  private constructor(private readonly owner: ConnectionHost) {
    this.out = new QueuedResponses(owner.stats, owner.maxInFlight);
  }

  private start(io: AcceptedSocket): void {
    this.io = io;
    const sock = (this.sock = io.sock);
    this.encrypted = (sock as { encrypted?: boolean }).encrypted === true;
    sock.setNoDelay(true);
    if (this.owner.keepAliveMs > 0) sock.setKeepAlive(true, this.owner.keepAliveMs);
    sock.on('error', () => this.gone());
    sock.on('close', () => this.gone());
    sock.on('drain', () => {
      this.progressed = true;
      if (!this.paused) return;
      this.paused = false;
      this.resume();
    });
    if (this.owner.authSecret) {
      this.auth = new AuthServerSide(this.owner.authSecret);
      sock.write(this.auth.challenge());
    }
    sock.resume();
  }

  private get blocked(): boolean {
    return this.paused || this.full || this.held !== null || this.ending;
  }

  /** Stuck mid-request for `stallMs`: the sweep closes it. Idle connections (between requests) are never stuck. */
  stalled(now: number, stallMs: number): boolean {
    // Output moving counts too: one large READ answer is a single write whose callback comes only at its end.
    const out = this.io.unsent();
    if (out !== this.lastOut) {
      this.lastOut = out;
      this.progressed = true;
    }
    if (this.progressed) {
      this.progressed = false;
      this.lastProgress = now;
      return false;
    }
    const busy =
      this.auth !== null ||
      this.rb.available > 0 ||
      this.body !== null ||
      !this.out.empty ||
      this.held !== null ||
      this.paused ||
      (this.files?.pending ?? false);
    if (!busy) {
      this.lastProgress = now;
      return false;
    }
    return now - this.lastProgress >= stallMs;
  }

  private unfull(): void {
    if (!this.full || !this.out.drained) return;
    this.full = false;
    this.resume();
  }

  /** Serve what is buffered, then read again if reading was stopped. */
  private resume(): void {
    if (this.blocked) return;
    if (this.process() && this.stopped) {
      this.stopped = false;
      this.io.restart();
    }
  }

  // ------------------------------------------------------------------ reading

  nextBuffer(): Uint8Array {
    const rb = this.rb;
    if (this.blocked) return rb.spare();
    if (rb.prepare()) {
      const body = this.body;
      if (body && body.length - this.bodyOff >= DIRECT_MIN) return rb.direct(body.subarray(this.bodyOff));
      if (!body && this.lastWasLarge) return rb.first(HEADER_SIZE);
    }
    return rb.tail();
  }

  /** Returning false stops reading until resume(). */
  onRead(n: number, buf: Uint8Array): boolean {
    if (this.dead) return false;
    this.progressed = true;
    try {
      if (this.rb.landed(n, buf)) {
        this.bodyOff += n;
        if (this.bodyOff === this.body!.length) this.finishWrite();
      }
      if (this.auth !== null && !this.authenticate()) return !this.dead;
      const more = this.process();
      if (!more) this.stopped = true;
      return more;
    } catch {
      // Serving threw (a region detached under a WRITE body throws on copy): drop this connection only;
      // the client retries, and the retry is refused as any range of detached memory is.
      this.abort();
      return false;
    }
  }

  /** Serve everything buffered. Returns false when reading must stop. */
  private process(): boolean {
    const rb = this.rb;
    let corked = false;
    while (!this.blocked) {
      const body = this.body;
      if (body) {
        if (rb.available === 0) break;
        if (this.bodyRegion?.detached) throw new Error('the region receiving a WRITE was detached');
        this.bodyOff += rb.copyTo(body, this.bodyOff, body.length - this.bodyOff);
        if (this.bodyOff < body.length) break;
        if (!corked) {
          corked = true;
          this.sock.cork();
        }
        this.finishWrite();
        continue;
      }
      if (rb.available < HEADER_SIZE) break;
      const h = decodeHeader(rb.bytes, rb.start);
      const raw = rb.bytes.subarray(rb.start, rb.start + HEADER_SIZE);
      rb.start += HEADER_SIZE;
      if (!corked) {
        corked = true;
        this.sock.cork();
      }
      this.request(h, raw);
    }
    if (corked) this.sock.uncork();
    return !this.blocked;
  }

  /**
   * Our authentication: nothing the client sent is looked at as a request
   * before its answer to our challenge checks out. Returns true once passed
   * (the rest of the scratch is then served), false while waiting or refused.
   */
  private authenticate(): boolean {
    const rb = this.rb;
    const avail = rb.available;
    // Anything but our answer (a Mooncake request header, say) is refused at its first 8 bytes.
    const early = avail >= 8 && authKindAt(rb.bytes, rb.start) !== AuthKind.RESPONSE;
    if (!early && avail < RESPONSE_SIZE) return false;
    const accept = early ? null : this.auth!.verify(rb.bytes.subarray(rb.start, rb.start + RESPONSE_SIZE));
    if (!accept) {
      this.owner.stats.authRejected++;
      rb.discard();
      this.closeWith(REJECT_FRAME);
      return false;
    }
    this.auth = null;
    rb.start += RESPONSE_SIZE;
    this.sock.write(accept);
    return true;
  }

  // ----------------------------------------------------------------- serving

  /** Serve one request (`raw`: its 24 bytes, valid only during this call), or park it. */
  private request(h: RequestHeader, raw: Uint8Array): void {
    // A memory request waits while file responses are pending, so that every response keeps request order.
    if (this.files?.pending && !isFileOpcode(h.opcode)) {
      this.hold(raw);
      return;
    }
    if (h.opcode === OPCODE_HELLO) {
      this.identify(h);
      return;
    }
    const t = this.owner.targets.lookup(h, raw);
    if (t.region !== null) this.serveMemory(h, raw, t);
    else if (t.file !== null) this.serveFile(t, raw);
    else {
      this.owner.stats.requests++;
      this.owner.stats.rejected++;
      // A file request refused behind file responses not yet out goes out after them; anything else at once.
      if (this.files?.pending) {
        this.files.refuse();
        this.ending = true;
      } else this.closeWith(t.frame);
    }
  }

  private serveMemory(h: RequestHeader, raw: Uint8Array, range: MemoryTarget): void {
    const region = range.region;
    if (h.write && this.out.overlaps(region, range.offset, range.offset + h.size)) {
      this.hold(raw); // offered again from readSent() once the kernel has the READ data
      return;
    }
    this.owner.stats.requests++;
    const view = region.bytes.subarray(range.offset, range.offset + h.size);
    // Only a large WRITE body is worth a header-sized read first (so the body lands directly); READ headers come in runs.
    this.lastWasLarge = h.write && h.size >= DIRECT_MIN;
    if (h.write) {
      this.body = view;
      this.bodyOff = 0;
      this.bodyRegion = region;
      this.bodyPin = new Lease(region);
      this.bodyV2 = h.v2;
      return;
    }
    if (h.v2) this.sock.write(STATUS_OK_FRAME);
    const q = this.out.read(region, range.offset, range.offset + h.size);
    if (this.out.atLimit()) this.full = true;
    // Written straight from the region; the pin holds until the kernel has the bytes.
    const sent = (): void => this.readSent(q);
    const ok = this.encrypted && h.size >= TLS_WRITE_ALONE_MIN ? uncorked(this.sock, () => this.sock.write(view, sent)) : this.sock.write(view, sent);
    if (!ok) this.paused = true;
  }

  private serveFile(t: FileTarget, raw: Uint8Array): void {
    const files = this.files ?? this.openFiles();
    if (!files) return;
    const a = files.admit(t);
    if (a.kind === 'hold') {
      this.hold(raw);
      return;
    }
    this.owner.stats.requests++;
    this.lastWasLarge = a.kind === 'body' && a.body.length >= DIRECT_MIN; // as for memory: only a large WRITE body
    if (a.kind === 'body') {
      this.body = a.body;
      this.bodyOff = 0;
      this.bodyFile = a.op;
    }
  }

  /** The file pipeline of this connection, at its first file request. */
  private openFiles(): FileConnection | null {
    const ctx = this.owner.files;
    if (!ctx) {
      // Targets found a file although this server serves none: refuse it as any unknown file.
      this.owner.stats.requests++;
      this.owner.stats.rejected++;
      this.closeWith(STATUS_FILE_REJECTED_FRAME);
      return null;
    }
    this.files = new FileConnection(ctx, {
      send: (bytes, sent) => {
        if (!this.dead && !this.sock.write(bytes, sent)) this.paused = true;
      },
      fail: (frame) => this.closeWith(frame),
      cork: () => this.sock.cork(),
      uncork: () => this.sock.uncork(),
      progress: () => {
        this.progressed = true;
        this.offerHeld();
      },
    });
    return this.files;
  }

  /**
   * The identity check (src/codec/wire.ts): confirm that we are the engine the
   * client means, or say we are not and close, serving nothing after it.
   */
  private identify(h: RequestHeader): void {
    if (h.size === 0 && this.owner.engineId !== undefined && h.addr === this.owner.engineId) {
      this.sock.write(STATUS_ENGINE_CONFIRMED_FRAME);
      return;
    }
    this.closeWith(STATUS_WRONG_ENGINE_FRAME);
  }

  /** Park a request; everything behind it waits too. */
  private hold(raw: Uint8Array): void {
    this.held = Buffer.from(raw);
  }

  /** Something a parked request may wait for progressed: offer it again, then serve what is buffered. */
  private offerHeld(): void {
    const raw = this.held;
    if (!raw || this.dead) return;
    this.held = null;
    this.request(decodeHeader(raw), raw);
    this.resume();
  }

  private readSent(q: QueuedRead): void {
    if (!this.out.taken(q)) return; // torn down before the kernel took it
    this.progressed = true;
    this.unfull();
    this.offerHeld();
  }

  private finishWrite(): void {
    if (this.bodyFile) {
      const op = this.bodyFile;
      this.bodyFile = null;
      this.body = null;
      this.files!.bodyReceived(op);
      return;
    }
    this.bodyPin!.release();
    this.bodyPin = null;
    this.bodyRegion = null;
    this.body = null;
    if (!this.bodyV2) return;
    this.out.acks++;
    if (this.out.atLimit()) this.full = true;
    if (!this.sock.write(STATUS_OK_FRAME, this.ackSent)) this.paused = true;
  }

  // ---------------------------------------------------------------------- end

  /**
   * End the connection after a last status frame (null: none, as for a
   * refused v1 request: v1 has no rejection frame). Responses to earlier
   * requests go out before it: Mooncake finishes each response before it
   * reads the next header, so those always reach the client.
   */
  private closeWith(frame: Buffer | null): void {
    this.dead = this.ending = true;
    if (frame) this.sock.end(frame);
    else this.sock.end();
    // The client closes once it reads the frame; do not wait forever for it.
    setTimeout(() => this.sock.destroy(), REJECT_GRACE_MS).unref();
    this.teardown();
  }

  private teardown(): void {
    this.dead = this.ending = true;
    this.held = null;
    this.bodyFile = null;
    this.files?.close();
    if (this.bodyRegion) {
      this.bodyPin?.release();
      this.bodyPin = null;
      this.bodyRegion = null;
      this.body = null;
    }
  }

  /** The socket is gone: release what its queued responses held. */
  private gone(): void {
    this.teardown();
    this.out.releaseAll();
  }

  /** Close at once and release everything held (the stall sweep): pins go now, not at the 'close' event. */
  abort(): void {
    // A reset, not a FIN queued behind unsent data: the kernel drops the data at once, and the peer learns.
    resetSocket(this.sock);
    this.gone();
  }
}
