/**
 * Initiator side of the Mooncake-compatible TCP data protocol.
 *
 * Beyond Mooncake (one connection and one request at a time): each peer has a
 * small pool of persistent lanes; each lane pipelines many requests, whose
 * responses come back in order on that connection (the protocol has no ids,
 * so order is the match). Slices go to the lane with the fewest bytes
 * outstanding, up to a per-lane window, which bounds memory and keeps all
 * lanes busy.
 *
 * Zero copy: WRITE payloads are written straight from registered memory
 * (corked, so header and payload leave in one writev); large READ payloads
 * are read by the kernel straight into the destination through the socket's
 * `onread` buffer, switched per response. Small responses are parsed from a
 * scratch buffer and copied, which costs less than one syscall each.
 */
import net from 'node:net';
import { encodeHeader, decodeStatus, HEADER_SIZE, STATUS_SIZE, STATUS_OK, STATUS_ADDR_REJECTED } from '../../codec/wire.js';
import { teError, ErrorCode, TransferEngineError } from '../../errors.js';
import { fmtAddr } from '../../memory.js';
import type { Slice } from '../slice.js';

const SCRATCH_SIZE = 256 * 1024;
const DIRECT_MIN = 32 * 1024;
/** Bytes a lane may have outstanding before new slices wait or go elsewhere. */
const LANE_WINDOW_BYTES = 8 * 1024 * 1024;
const LANE_WINDOW_SLICES = 1024;

export interface TcpClientOptions {
  lanesPerPeer: number;
  /** No progress for this long ends the lane's slices in TIMEOUT. */
  timeoutMs: number;
  connectTimeoutMs: number;
}

export interface PeerAddress {
  host: string;
  port: number;
  /** Speak v2 (acknowledged writes). */
  v2: boolean;
  /** Source address of the data connections (MC_CUSTOM_TOPO_JSON's preferred NIC); default: the OS picks. */
  localAddress?: string;
}

export class TcpClient {
  private readonly peers = new Map<string, Peer>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(readonly options: TcpClientOptions) {}

  submit(addr: PeerAddress, slice: Slice): void {
    if (this.closed) {
      slice.settle(teError(ErrorCode.CLOSED, 'the TCP transport is closed'));
      return;
    }
    const key = `${addr.host}|${addr.port}|${addr.v2 ? 2 : 1}|${addr.localAddress ?? ''}`;
    let peer = this.peers.get(key);
    if (!peer) {
      peer = new Peer(this, addr);
      this.peers.set(key, peer);
    }
    this.ensureSweep();
    peer.enqueue(slice);
  }

  /** Drop idle peers with no lanes and no queue. */
  forget(peer: Peer): void {
    for (const [k, p] of this.peers) if (p === peer) this.peers.delete(k);
  }

  private ensureSweep(): void {
    if (this.sweepTimer) return;
    const every = Math.max(50, Math.min(1000, this.options.timeoutMs / 4));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = performance.now();
    for (const p of this.peers.values()) p.sweep(now);
  }

  /** Connections currently open or opening, for tests and stats. */
  get laneCount(): number {
    let n = 0;
    for (const p of this.peers.values()) n += p.lanes.length;
    return n;
  }

  close(): void {
    this.closed = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const err = teError(ErrorCode.CLOSED, 'the engine was closed while the transfer was in flight');
    for (const p of this.peers.values()) p.fail(err);
    this.peers.clear();
  }
}

class Peer {
  readonly lanes: Lane[] = [];
  private queue: Slice[] = [];
  private qHead = 0;

  constructor(
    readonly client: TcpClient,
    readonly addr: PeerAddress,
  ) {}

  get label(): string {
    return `${this.addr.host}:${this.addr.port}`;
  }

  private pumpScheduled = false;

  enqueue(slice: Slice): void {
    slice.queuedAt = performance.now();
    this.queue.push(slice);
    // Pump once after the caller's loop: a whole submitted batch leaves in one writev per lane.
    if (!this.pumpScheduled) {
      this.pumpScheduled = true;
      queueMicrotask(() => {
        this.pumpScheduled = false;
        this.pump();
      });
    }
  }

  requeueFront(slices: Slice[]): void {
    const rest = this.queue.slice(this.qHead);
    this.queue = [...slices, ...rest];
    this.qHead = 0;
  }

  /** Move queued slices onto lanes with room; open lanes as needed. */
  pump(): void {
    const opts = this.client.options;
    // Every lane used stays corked until the end, so each lane sends one writev per pump.
    const corked: Lane[] = [];
    while (this.qHead < this.queue.length) {
      let best: Lane | null = null;
      for (const l of this.lanes) {
        if (!l.hasRoom()) continue;
        if (!best || l.outstanding < best.outstanding) best = l;
      }
      // Prefer opening another lane over stacking onto a busy one.
      if ((!best || best.outstanding > 0) && this.lanes.length < opts.lanesPerPeer) {
        best = new Lane(this);
        this.lanes.push(best);
      }
      if (!best) break;
      if (!best.corked) {
        best.cork();
        corked.push(best);
      }
      const slice = this.queue[this.qHead]!;
      this.queue[this.qHead++] = undefined as unknown as Slice;
      best.send(slice);
    }
    for (const l of corked) l.uncork();
    if (this.qHead === this.queue.length) {
      this.queue = [];
      this.qHead = 0;
    } else if (this.qHead > 1024 && this.qHead * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.qHead);
      this.qHead = 0;
    }
  }

  laneGone(lane: Lane, requeue: Slice[]): void {
    const i = this.lanes.indexOf(lane);
    if (i >= 0) this.lanes.splice(i, 1);
    if (requeue.length) this.requeueFront(requeue);
    if (this.qHead < this.queue.length) this.pump();
    else if (this.lanes.length === 0) this.client.forget(this);
  }

  /**
   * A connect failed. If no lane is connected the address is dead: fail the
   * queue and the sibling lanes still connecting there, rather than retry in a loop.
   */
  connectFailed(err: TransferEngineError): void {
    if (this.lanes.some((l) => l.connected)) return;
    this.failQueue(err);
    for (const l of [...this.lanes]) l.destroy(err, false);
  }

  failQueue(err: TransferEngineError): void {
    const q = this.queue;
    const h = this.qHead;
    this.queue = [];
    this.qHead = 0;
    for (let i = h; i < q.length; i++) q[i]!.settle(err);
  }

  sweep(now: number): void {
    const timeout = this.client.options.timeoutMs;
    for (const l of [...this.lanes]) l.sweep(now, timeout);
    // The queue is FIFO, so only its head can be the oldest.
    while (this.qHead < this.queue.length && now - this.queue[this.qHead]!.queuedAt > timeout) {
      const s = this.queue[this.qHead]!;
      this.queue[this.qHead++] = undefined as unknown as Slice;
      s.settle(teError(ErrorCode.TIMEOUT, `transfer to ${this.label} waited more than ${timeout} ms for a connection`));
    }
  }

  fail(err: TransferEngineError): void {
    this.failQueue(err);
    for (const l of [...this.lanes]) l.destroy(err, false);
  }
}

class Lane {
  private readonly sock: net.Socket;
  connected = false;
  private dead = false;
  /** Slices awaiting response bytes, in send order. */
  private inflight: Slice[] = [];
  private iHead = 0;
  /** v1 writes waiting for their payload to reach the kernel. */
  private v1Writes = 0;
  outstanding = 0;
  private readonly scratch = Buffer.allocUnsafe(SCRATCH_SIZE);
  private rStart = 0;
  private rEnd = 0;
  private directView: Uint8Array | null = null;
  private lastProgress = performance.now();
  /** A slice completed in this read: the window has room for queued ones. */
  private freed = false;
  private blocked = false; // write() returned false; wait for 'drain'
  /** The server rejected a request and will close: the slices behind it never ran. */
  private rejected = false;
  private readonly connectTimer: NodeJS.Timeout;

  constructor(private readonly peer: Peer) {
    const { host, port, localAddress } = peer.addr;
    const opts = {
      host,
      port,
      ...(localAddress !== undefined ? { localAddress } : {}),
      noDelay: true,
      // Queued writes are views of registered memory, not copies: let a whole window queue
      // before write() reports backpressure (the 16 KiB default stalls every lane per slice).
      writableHighWaterMark: LANE_WINDOW_BYTES,
      ...(net.isIP(host) === 0 ? { family: 4 } : {}),
      onread: {
        buffer: (): Uint8Array => this.nextBuffer(),
        callback: (n: number, buf: Uint8Array): boolean => this.onRead(n, buf),
      },
    } as net.NetConnectOpts;
    this.sock = net.connect(opts);
    this.connectTimer = setTimeout(() => {
      const err = teError(ErrorCode.PEER_UNREACHABLE, `connecting to ${peer.label} timed out after ${peer.client.options.connectTimeoutMs} ms`);
      this.destroy(err, true);
    }, peer.client.options.connectTimeoutMs);
    this.connectTimer.unref();
    this.sock.once('connect', () => {
      clearTimeout(this.connectTimer);
      this.connected = true;
      this.lastProgress = performance.now();
    });
    this.sock.on('drain', () => {
      this.blocked = false;
      this.peer.pump();
    });
    this.sock.on('error', (e: NodeJS.ErrnoException) => {
      const what = this.connected ? 'connection to' : 'cannot connect to';
      this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${what} ${peer.label} failed: ${e.code ?? e.message}`, e), !this.connected);
    });
    this.sock.on('close', () => {
      this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${peer.label} closed the connection with transfers in flight`), false);
    });
  }

  hasRoom(): boolean {
    return !this.dead && !this.blocked && this.outstanding < LANE_WINDOW_BYTES && this.inflight.length - this.iHead < LANE_WINDOW_SLICES;
  }

  corked = false;

  cork(): void {
    this.corked = true;
    this.sock.cork();
  }

  uncork(): void {
    this.corked = false;
    this.sock.uncork();
  }

  send(slice: Slice): void {
    const v2 = this.peer.addr.v2;
    slice.received = 0;
    slice.statusSeen = false;
    const header = Buffer.allocUnsafe(HEADER_SIZE);
    encodeHeader(header, 0, slice.length, slice.remoteAddr, slice.write, v2);
    if (this.iHead === this.inflight.length) this.lastProgress = performance.now();
    this.outstanding += slice.length;
    let ok = this.sock.write(header);
    if (slice.write) {
      if (v2) {
        this.inflight.push(slice);
        ok = this.sock.write(slice.local);
      } else {
        // v1 has no acknowledgement: done once the payload is handed to the kernel.
        this.v1Writes++;
        ok = this.sock.write(slice.local, (err) => {
          this.v1Writes--;
          this.outstanding -= slice.length;
          this.lastProgress = performance.now();
          slice.settle(err ? teError(ErrorCode.PEER_UNREACHABLE, `write to ${this.peer.label} failed: ${err.message}`, err) : null);
        });
      }
    } else {
      this.inflight.push(slice);
    }
    if (!ok) this.blocked = true;
  }

  private nextBuffer(): Uint8Array {
    this.directView = null;
    if (this.rStart === this.rEnd) {
      this.rStart = this.rEnd = 0;
      const head = this.iHead < this.inflight.length ? this.inflight[this.iHead]! : null;
      if (head && !head.write) {
        const remaining = head.length - head.received;
        if (remaining >= DIRECT_MIN) {
          if (head.statusSeen || !this.peer.addr.v2) {
            this.directView = head.local.subarray(head.received);
            return this.directView;
          }
          return this.scratch.subarray(0, STATUS_SIZE); // status alone, then the data goes direct
        }
      }
    } else if (this.rEnd > SCRATCH_SIZE - 4096) {
      this.scratch.copyWithin(0, this.rStart, this.rEnd);
      this.rEnd -= this.rStart;
      this.rStart = 0;
    }
    return this.scratch.subarray(this.rEnd);
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.dead) return false;
    this.lastProgress = performance.now();
    if (buf === this.directView) {
      const head = this.inflight[this.iHead]!;
      head.received += n;
      if (head.received === head.length) this.complete(head);
    } else {
      this.rEnd += n;
      this.parse();
    }
    if (this.freed && !this.dead) {
      this.freed = false;
      this.peer.pump();
    }
    return !this.dead;
  }

  private parse(): void {
    const v2 = this.peer.addr.v2;
    while (!this.dead) {
      const avail = this.rEnd - this.rStart;
      if (avail === 0) return;
      if (this.iHead === this.inflight.length) {
        this.destroy(teError(ErrorCode.PROTOCOL_ERROR, `${this.peer.label} sent ${avail} byte(s) nobody asked for`), false);
        return;
      }
      const head = this.inflight[this.iHead]!;
      if (v2 && !head.statusSeen) {
        if (avail < STATUS_SIZE) return;
        const code = decodeStatus(this.scratch, this.rStart);
        this.rStart += STATUS_SIZE;
        if (code === STATUS_OK) {
          head.statusSeen = true;
          if (head.write) this.complete(head);
          continue;
        }
        if (code === STATUS_ADDR_REJECTED) {
          this.rejected = true;
          this.shift(head);
          head.settle(
            teError(
              ErrorCode.ADDRESS_REJECTED,
              `${this.peer.label} rejected ${head.write ? 'WRITE' : 'READ'} of ${head.length} bytes at ${fmtAddr(head.remoteAddr)} (outside its registered memory)`,
            ),
          );
          continue;
        }
        const why = code === -1 ? 'a bad status frame (not a v2 peer, or out of step)' : `unknown status ${code}`;
        this.destroy(teError(ErrorCode.PROTOCOL_ERROR, `${this.peer.label} sent ${why}`), false);
        return;
      }
      const take = Math.min(avail, head.length - head.received);
      head.local.set(this.scratch.subarray(this.rStart, this.rStart + take), head.received);
      head.received += take;
      this.rStart += take;
      if (head.received < head.length) return;
      this.complete(head);
    }
  }

  private shift(slice: Slice): void {
    this.inflight[this.iHead++] = undefined as unknown as Slice;
    if (this.iHead === this.inflight.length) {
      this.inflight = [];
      this.iHead = 0;
    } else if (this.iHead > 1024) {
      this.inflight = this.inflight.slice(this.iHead);
      this.iHead = 0;
    }
    this.outstanding -= slice.length;
  }

  private complete(slice: Slice): void {
    this.shift(slice);
    this.freed = true;
    slice.settle(null);
  }

  sweep(now: number, timeout: number): void {
    const busy = this.iHead < this.inflight.length || this.v1Writes > 0;
    if (busy && now - this.lastProgress > timeout) {
      this.destroy(teError(ErrorCode.TIMEOUT, `no progress from ${this.peer.label} for ${timeout} ms`), false);
    }
  }

  /** End the lane. Slices that never reached the server are resent elsewhere; the rest fail with `err`. */
  destroy(err: TransferEngineError, connectFailure: boolean): void {
    if (this.dead) return;
    this.dead = true;
    clearTimeout(this.connectTimer);
    this.sock.destroy();
    const pending = this.inflight.slice(this.iHead);
    this.inflight = [];
    this.iHead = 0;
    this.outstanding = 0;
    // Behind a rejection the server ran nothing more (it serves in order, then closes), so
    // resending is safe; each round removes one rejected request, so this cannot loop.
    const resend = this.rejected && err.code !== ErrorCode.CLOSED;
    const requeue: Slice[] = [];
    for (const s of pending) {
      if (resend) requeue.push(s);
      else s.settle(err);
    }
    // v1 writes settle through their write callbacks, which Node calls with an error on destroy.
    if (connectFailure) this.peer.connectFailed(err);
    this.peer.laneGone(this, requeue);
  }
}
