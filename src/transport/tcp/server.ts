/**
 * Target side of the Mooncake-compatible TCP data protocol (reference §1).
 *
 * One connection carries a sequence of requests, served strictly in order:
 * read a 24-byte header, validate `[addr, addr+size)` against the registered
 * regions, then either receive the WRITE body into the region (then, in v2,
 * acknowledge with one OK frame) or send the READ data (v2: OK frame first).
 * A rejected range gets the v2 rejection frame and the connection is closed,
 * as Mooncake does. Idle connections are never closed (pooled Mooncake
 * clients reuse them); a connection in the middle of something (a partial
 * header or body, responses the client does not read, unfinished
 * authentication) that makes no progress for the stall timeout is.
 *
 * Limits (src/limits.ts): connections per peer address, responses queued per
 * connection (beyond them the server stops reading that connection), and,
 * with a shared secret, our authentication before the first request byte is
 * looked at (src/auth.ts).
 *
 * Zero copy: Node 20 does not let a server-accepted socket read into caller
 * memory (`onread`), so each accepted handle is adopted by a new net.Socket
 * created with `onread`. Large WRITE bodies are then read by the kernel
 * straight into the destination region; READ data is written straight from it.
 */
import net from 'node:net';
import {
  HEADER_SIZE,
  decodeHeader,
  STATUS_OK_FRAME,
  STATUS_REJECTED_FRAME,
  STATUS_FILE_REJECTED_FRAME,
  STATUS_ENGINE_CONFIRMED_FRAME,
  STATUS_WRONG_ENGINE_FRAME,
  OPCODE_HELLO,
  isFileOpcode,
  type RequestHeader,
} from '../../codec/wire.js';
import type { MemoryRegistry, Region } from '../../memory.js';
import { closeServer, listenInRange } from '../../net.js';
import { AuthServerSide } from '../../auth.js';
import { AuthKind, REJECT_FRAME, RESPONSE_SIZE, authKindAt } from '../../codec/auth.js';
import { ConnectionsPerAddress, DEFAULT_LIMITS, type ListenerLimits } from '../../limits.js';
import { FileConnection, type FileOp, type FileServeContext } from './file-serve.js';

/** Bytes read per syscall while parsing headers and small bodies. */
const SCRATCH_SIZE = 256 * 1024;
/** Bodies at least this large are read directly into the region. */
const DIRECT_MIN = 32 * 1024;
/**
 * READ data queued before the server stops taking requests. Queued data are
 * views of registered memory (no copies), so a few MiB cost nothing; the 16 KiB
 * default would serve one request per drain.
 */
const WRITE_WINDOW = 4 * 1024 * 1024;
/** After a rejection, how long to wait for the client to close before dropping it. */
const REJECT_GRACE_MS = 2000;

interface AdoptableSocket extends net.Socket {
  _handle: unknown;
  _read(n: number): void;
}

export interface DataServerStats {
  connections: number;
  requests: number;
  rejected: number;
  /** Connections closed at once: their address had TE_MAX_DATA_CONNECTIONS_PER_PEER open. */
  refused: number;
  /** Connections whose authentication failed (nothing of theirs was served). */
  authRejected: number;
  /** Connections closed for making no progress mid-request for the stall timeout. */
  stalled: number;
  /** Most responses any connection had queued at once (bounded by TE_MAX_REQUESTS_IN_FLIGHT). */
  peakQueued: number;
}

export interface DataServerOptions {
  /** Require our shared-secret authentication before the first request. */
  authSecret?: Uint8Array | undefined;
  /** This engine's id, confirmed to clients that check it (src/codec/wire.ts, engine identity); absent: every check fails. */
  engineId?: number;
  limits?: Pick<ListenerLimits, 'maxDataConnectionsPerPeer' | 'maxRequestsInFlight' | 'stallTimeoutMs' | 'keepAliveMs'>;
}

export class TcpDataServer {
  private readonly server: net.Server;
  private readonly conns = new Set<ServerConnection>();
  readonly stats: DataServerStats = { connections: 0, requests: 0, rejected: 0, refused: 0, authRejected: 0, stalled: 0, peakQueued: 0 };
  port = 0;
  readonly authSecret: Uint8Array | undefined;
  readonly engineId: number | undefined;
  readonly maxInFlight: number;
  readonly stallMs: number;
  /** TCP keepalive delay for accepted connections (0: off). */
  readonly keepAliveMs: number;
  private readonly perAddress: ConnectionsPerAddress;
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly registry: MemoryRegistry,
    /** Registered files, for our file requests; null: every file request is rejected. */
    readonly files: FileServeContext | null = null,
    options: DataServerOptions = {},
  ) {
    const limits = options.limits ?? DEFAULT_LIMITS;
    this.authSecret = options.authSecret;
    this.engineId = options.engineId;
    this.maxInFlight = limits.maxRequestsInFlight;
    this.stallMs = limits.stallTimeoutMs;
    this.keepAliveMs = limits.keepAliveMs;
    this.perAddress = new ConnectionsPerAddress(limits.maxDataConnectionsPerPeer);
    this.server = net.createServer({ pauseOnConnect: true, noDelay: true }, (s) => this.adopt(s as AdoptableSocket));
    this.server.on('error', () => {
      /* listen errors are reported by listen(); later errors leave existing connections alone */
    });
  }

  async listen(host: string, port: number, minPort: number, maxPort: number): Promise<number> {
    this.port = await listenInRange(this.server, host, port, minPort, maxPort);
    return this.port;
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  private adopt(accepted: AdoptableSocket): void {
    const from = accepted.remoteAddress ?? '';
    if (!this.perAddress.tryAdd(from)) {
      this.stats.refused++;
      accepted.destroy(); // before a byte is read
      return;
    }
    const handle = accepted._handle;
    accepted._handle = null; // the original Socket object lets go of the handle...
    accepted.destroy(); // ...and is released, so server.close() does not wait for it
    if (!handle) {
      this.perAddress.remove(from);
      return;
    }
    const conn = new ServerConnection(this, handle);
    this.conns.add(conn);
    this.stats.connections++;
    conn.sock.once('close', () => {
      this.conns.delete(conn);
      this.perAddress.remove(from);
    });
    this.sweepTimer ??= setInterval(() => this.sweep(), Math.max(10, Math.min(1000, this.stallMs / 4))).unref();
  }

  /** Close connections stuck mid-request (their pins are released by the teardown). */
  private sweep(): void {
    if (this.conns.size === 0) {
      clearInterval(this.sweepTimer!);
      this.sweepTimer = null;
      return;
    }
    const now = performance.now();
    for (const c of this.conns) {
      if (c.stalled(now, this.stallMs)) {
        this.stats.stalled++;
        c.abort();
        this.conns.delete(c);
      }
    }
  }

  async close(): Promise<void> {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const done = closeServer(this.server);
    for (const c of this.conns) c.sock.destroy();
    this.conns.clear();
    await done;
  }
}

/** A READ whose data is queued on the socket but not yet taken by the kernel. */
interface QueuedRead {
  region: Region;
  start: number;
  end: number;
  /** Its pin was released (the kernel took the data, or the connection was torn down). */
  released?: boolean;
}

class ServerConnection {
  readonly sock: AdoptableSocket;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
  private rStart = 0;
  private rEnd = 0;
  /**
   * Where the first read after a stop lands. Node asks for the next read
   * buffer right after each callback, before a stop is lifted, so it must not
   * be a slice of the scratch that may since have been compacted.
   */
  private readonly overflow = Buffer.allocUnsafe(64 * 1024);
  /** The view handed to the kernel for the current read when it is a WRITE body. */
  private directView: Uint8Array | null = null;
  /** Current WRITE body being received. */
  private body: Uint8Array | null = null;
  private bodyOff = 0;
  private bodyRegion: Region | null = null;
  private bodyV2 = false;
  /** Read exactly one header next (the previous request was large, so its successor likely is too). */
  private lastWasLarge = false;
  /** Waiting for 'drain' before serving more requests. */
  private paused = false;
  /**
   * READ data are sent zero-copy, straight from the region. A later WRITE on
   * this connection to the same bytes must wait until the kernel has them, so
   * requests keep the order they were sent in (as Mooncake's server does).
   */
  private readonly queuedReads: QueuedRead[] = [];
  private heldWrite: RequestHeader | null = null;
  private stopped = false;
  private dead = false;
  /** Status frames handed to the socket and not yet taken by the kernel. */
  private acksUnsent = 0;
  /** Too many responses queued (TE_MAX_REQUESTS_IN_FLIGHT): read nothing more until half have left. */
  private full = false;
  /** Bytes came in or responses went out since the last sweep. */
  private progressed = false;
  private lastProgress = performance.now();
  /** Output bytes not yet taken by the kernel, at the last sweep. */
  private lastOut = 0;
  /** Our authentication, until the client has passed it (null: none required, or done). */
  private auth: AuthServerSide | null = null;
  private readonly ackSent = (): void => {
    this.acksUnsent--;
    this.progressed = true;
    this.unfull();
  };

  constructor(
    private readonly owner: TcpDataServer,
    handle: unknown,
  ) {
    const sockOptions = {
      handle,
      readable: true,
      writable: true,
      writableHighWaterMark: WRITE_WINDOW,
      onread: {
        buffer: (): Uint8Array => this.nextBuffer(),
        callback: (n: number, buf: Uint8Array): boolean => this.onRead(n, buf),
      },
    } as unknown as net.SocketConstructorOpts;
    this.sock = new net.Socket(sockOptions) as AdoptableSocket;
    this.sock.setNoDelay(true);
    if (owner.keepAliveMs > 0) this.sock.setKeepAlive(true, owner.keepAliveMs);
    this.sock.on('error', () => this.gone());
    this.sock.on('close', () => this.gone());
    this.sock.on('drain', () => {
      this.progressed = true;
      if (!this.paused) return;
      this.paused = false;
      this.resume();
    });
    if (owner.authSecret) {
      this.auth = new AuthServerSide(owner.authSecret);
      this.sock.write(this.auth.challenge());
    }
    this.sock.resume();
  }

  private get blocked(): boolean {
    return this.paused || this.full || this.heldWrite !== null || this.dead || this.heldHeader !== null || this.fileStopped;
  }

  /** Stuck mid-request for `stallMs`: the sweep closes it. Idle connections (between requests) are never stuck. */
  stalled(now: number, stallMs: number): boolean {
    // Output moving counts too: one large READ answer is a single write whose callback comes only at its end,
    // but libuv's queue shrinks as a slow reader takes it.
    const out = this.sock.writableLength + ((this.sock._handle as { writeQueueSize?: number } | null)?.writeQueueSize ?? 0);
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
      this.rEnd > this.rStart ||
      this.body !== null ||
      this.queuedReads.length > 0 ||
      this.acksUnsent > 0 ||
      this.heldWrite !== null ||
      this.heldHeader !== null ||
      this.paused ||
      (this.files?.pending ?? false);
    if (!busy) {
      this.lastProgress = now;
      return false;
    }
    return now - this.lastProgress >= stallMs;
  }

  /** Count a queued response; at the limit, stop taking requests. */
  private queued(): void {
    const n = this.queuedReads.length + this.acksUnsent;
    if (n > this.owner.stats.peakQueued) this.owner.stats.peakQueued = n;
    if (n >= this.owner.maxInFlight) this.full = true;
  }

  private unfull(): void {
    if (!this.full || this.queuedReads.length + this.acksUnsent > this.owner.maxInFlight >> 1) return;
    this.full = false;
    this.resume();
  }

  /** Serve what is buffered, then read again if reading was stopped. */
  private resume(): void {
    if (this.blocked) return;
    if (this.process() && this.stopped) {
      this.stopped = false;
      this.sock._read(0); // restart reading, stopped by returning false from onRead
    }
  }

  private nextBuffer(): Uint8Array {
    this.directView = null;
    if (this.blocked) return this.overflow;
    if (this.rStart === this.rEnd) {
      this.rStart = this.rEnd = 0;
      const body = this.body;
      if (body && body.length - this.bodyOff >= DIRECT_MIN) {
        this.directView = body.subarray(this.bodyOff);
        return this.directView;
      }
      if (!body && this.lastWasLarge) return this.scratch.subarray(0, HEADER_SIZE);
    } else if (this.rEnd > SCRATCH_SIZE - this.overflow.length) {
      this.compact();
    }
    return this.scratch.subarray(this.rEnd);
  }

  private compact(): void {
    this.scratch.copyWithin(0, this.rStart, this.rEnd);
    this.rEnd -= this.rStart;
    this.rStart = 0;
  }

  /** Returning false stops reading until resume(). */
  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.dead) return false;
    this.progressed = true;
    try {
      if (buf === this.directView) {
        this.bodyOff += n;
        if (this.bodyOff === this.body!.length) this.finishWrite();
      } else if (buf === this.overflow) {
        // Only taken after the scratch was served, so it fits once compacted.
        if (this.rEnd + n > SCRATCH_SIZE) this.compact();
        this.scratch.set(this.overflow.subarray(0, n), this.rEnd);
        this.rEnd += n;
      } else {
        this.rEnd += n;
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
    let corked = false;
    while (!this.blocked) {
      const avail = this.rEnd - this.rStart;
      const body = this.body;
      if (body) {
        if (avail === 0) break;
        if (this.bodyRegion?.detached) throw new Error('the region receiving a WRITE was detached');
        const take = Math.min(avail, body.length - this.bodyOff);
        body.set(this.scratch.subarray(this.rStart, this.rStart + take), this.bodyOff);
        this.rStart += take;
        this.bodyOff += take;
        if (this.bodyOff < body.length) break;
        if (!corked) {
          corked = true;
          this.sock.cork();
        }
        this.finishWrite();
        continue;
      }
      if (avail < HEADER_SIZE) break;
      const h = decodeHeader(this.scratch, this.rStart);
      const raw = this.scratch.subarray(this.rStart, this.rStart + HEADER_SIZE);
      this.rStart += HEADER_SIZE;
      if (!corked) {
        corked = true;
        this.sock.cork();
      }
      this.route(h, raw);
    }
    if (corked) this.sock.uncork();
    return !this.blocked;
  }

  private serve(h: RequestHeader): void {
    if (h.opcode === OPCODE_HELLO) {
      this.identify(h);
      return;
    }
    this.owner.stats.requests++;
    const range = h.size > 0 ? this.owner.registry.resolve(h.addr, h.size) : null;
    // A region closed to peers, a WRITE into a read-only one, or memory detached since it was
    // registered (README, Memory) is refused exactly like an unknown range.
    if (!range || !(h.write ? range.region.remoteWritable : range.region.remoteReadable) || range.region.detached) {
      this.reject(h);
      return;
    }
    const region = range.region;
    if (h.write && this.overlapsQueuedRead(region, range.offset, range.offset + h.size)) {
      this.heldWrite = h; // served again from readSent() once the kernel has the READ data
      return;
    }
    const view = region.bytes.subarray(range.offset, range.offset + h.size);
    // Only a large WRITE body is worth a header-sized read first (so the body lands directly); READ headers come in runs.
    this.lastWasLarge = h.write && h.size >= DIRECT_MIN;
    region.pins++;
    if (h.write) {
      this.body = view;
      this.bodyOff = 0;
      this.bodyRegion = region;
      this.bodyV2 = h.v2;
      return;
    }
    if (h.v2) this.sock.write(STATUS_OK_FRAME);
    const q: QueuedRead = { region, start: range.offset, end: range.offset + h.size };
    this.queuedReads.push(q);
    this.queued();
    // Written straight from the region; the pin holds until the kernel has the bytes.
    if (!this.sock.write(view, () => this.readSent(q))) this.paused = true;
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

  private overlapsQueuedRead(region: Region, start: number, end: number): boolean {
    for (const q of this.queuedReads) if (q.region === region && q.start < end && start < q.end) return true;
    return false;
  }

  private readSent(q: QueuedRead): void {
    if (q.released) return; // torn down before the kernel took it
    q.released = true;
    q.region.pins--;
    this.progressed = true;
    const i = this.queuedReads.indexOf(q);
    if (i >= 0) this.queuedReads.splice(i, 1);
    this.unfull();
    const h = this.heldWrite;
    if (!h || this.dead) return;
    this.heldWrite = null;
    this.owner.stats.requests--; // counted when it was first seen
    this.serve(h);
    this.resume();
  }

  private finishWrite(): void {
    if (this.bodyFile) {
      const op = this.bodyFile;
      this.bodyFile = null;
      this.body = null;
      this.files!.bodyReceived(op);
      return;
    }
    this.bodyRegion!.pins--;
    this.bodyRegion = null;
    this.body = null;
    if (!this.bodyV2) return;
    this.acksUnsent++;
    this.queued();
    if (!this.sock.write(STATUS_OK_FRAME, this.ackSent)) this.paused = true;
  }

  /**
   * Our authentication: nothing the client sent is looked at as a request
   * before its answer to our challenge checks out. Returns true once passed
   * (the rest of the scratch is then served), false while waiting or refused.
   */
  private authenticate(): boolean {
    const avail = this.rEnd - this.rStart;
    // Anything but our answer (a Mooncake request header, say) is refused at its first 8 bytes.
    const early = avail >= 8 && authKindAt(this.scratch, this.rStart) !== AuthKind.RESPONSE;
    if (!early && avail < RESPONSE_SIZE) return false;
    const accept = early ? null : this.auth!.verify(this.scratch.subarray(this.rStart, this.rStart + RESPONSE_SIZE));
    if (!accept) {
      this.owner.stats.authRejected++;
      this.rStart = this.rEnd;
      this.closeWith(REJECT_FRAME);
      return false;
    }
    this.auth = null;
    this.rStart += RESPONSE_SIZE;
    this.sock.write(accept);
    return true;
  }

  // ------------------------------------------------------- file requests (ours)

  private files: FileConnection | null = null;
  /** A request parked until file operations ahead of it progress (its raw header). */
  private heldHeader: Buffer | null = null;
  /** The file WRITE whose payload is being received into `body`. */
  private bodyFile: FileOp | null = null;
  /** A file request was rejected: read nothing more; the connection closes once earlier responses are out. */
  private fileStopped = false;

  /**
   * File requests go to the file pipeline (src/transport/tcp/file-serve.ts). A
   * memory request waits while file responses are pending, so every response
   * keeps request order.
   */
  private route(h: RequestHeader, raw: Uint8Array): void {
    const file = isFileOpcode(h.opcode);
    if (!file && !this.files?.pending) {
      this.serve(h);
      return;
    }
    if (!this.files) {
      const ctx = this.owner.files;
      if (!ctx) {
        this.owner.stats.requests++;
        this.owner.stats.rejected++;
        this.closeWith(STATUS_FILE_REJECTED_FRAME); // this engine serves no files
        return;
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
          this.fileProgress();
        },
      });
    }
    if (!file) {
      this.heldHeader = Buffer.from(raw);
      return;
    }
    const a = this.files.admit(raw);
    if (a.kind === 'hold') {
      this.heldHeader = Buffer.from(raw);
      return;
    }
    this.owner.stats.requests++;
    this.lastWasLarge = a.kind === 'body' && a.body.length >= DIRECT_MIN; // as for memory: only a large WRITE body
    if (a.kind === 'reject') {
      this.owner.stats.rejected++;
      this.fileStopped = true;
    } else if (a.kind === 'body') {
      this.body = a.body;
      this.bodyOff = 0;
      this.bodyFile = a.op;
    }
  }

  private fileProgress(): void {
    const raw = this.heldHeader;
    if (!raw || this.dead) return;
    this.heldHeader = null;
    this.route(decodeHeader(raw), raw);
    this.resume();
  }

  /** End the connection after a last status frame (a file request refused or failed). */
  private closeWith(frame: Buffer): void {
    this.dead = true;
    this.sock.end(frame);
    setTimeout(() => this.sock.destroy(), REJECT_GRACE_MS).unref();
    this.teardown();
  }

  private reject(h: RequestHeader): void {
    this.owner.stats.rejected++;
    this.dead = true;
    if (h.v2) {
      this.sock.end(STATUS_REJECTED_FRAME);
      // The client closes once it reads the frame; do not wait forever for it.
      setTimeout(() => this.sock.destroy(), REJECT_GRACE_MS).unref();
    } else {
      // v1 has no rejection frame: close, but after the responses to earlier requests (Mooncake
      // finishes each response before it reads the next header, so those always reach the client).
      this.sock.end();
      setTimeout(() => this.sock.destroy(), REJECT_GRACE_MS).unref();
    }
    this.teardown();
  }

  private teardown(): void {
    this.dead = true;
    this.heldWrite = null;
    this.heldHeader = null;
    this.bodyFile = null;
    this.files?.close();
    if (this.bodyRegion) {
      this.bodyRegion.pins--;
      this.bodyRegion = null;
      this.body = null;
    }
  }

  /** The socket is gone: nothing reads the queued READs' regions any more, whether or not Node calls their write callbacks. */
  private gone(): void {
    this.teardown();
    for (const q of this.queuedReads) {
      if (q.released) continue;
      q.released = true;
      q.region.pins--;
    }
    this.queuedReads.length = 0;
  }

  /** Close at once and release everything held (the stall sweep): pins go now, not at the 'close' event. */
  abort(): void {
    // A reset, not a FIN queued behind unsent data: the kernel drops the data at once, and the peer learns.
    this.sock.resetAndDestroy();
    this.gone();
  }
}
