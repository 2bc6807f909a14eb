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
import {
  encodeHeader,
  encodeFileHeader,
  encodeHello,
  decodeStatus,
  HEADER_SIZE,
  STATUS_SIZE,
  STATUS_OK,
  STATUS_ADDR_REJECTED,
  STATUS_FILE_REJECTED,
  STATUS_FILE_IO_ERROR,
  STATUS_ENGINE_CONFIRMED,
  STATUS_WRONG_ENGINE,
} from '../../codec/wire.js';
import { teError, ErrorCode, TransferEngineError } from '../../errors.js';
import { AuthClientSide, authRequiredError } from '../../auth.js';
import { AuthKind, authKindAt } from '../../codec/auth.js';
import { detachedError, fmtAddr } from '../../memory.js';
import { Slice, Failure, type SliceOwner } from '../slice.js';

const SCRATCH_SIZE = 256 * 1024;
const DIRECT_MIN = 32 * 1024;
/**
 * Bytes a lane may have outstanding before new slices wait or go elsewhere.
 * Small on purpose: a socket holding more than the kernel's TCP small-queue
 * limit (about 1 MiB) is paced and throttled by the kernel, which on loopback
 * cost 1.3-2.3x in throughput (BENCHMARKS.md). Two wire requests of WIRE_MAX
 * per lane, not one, so the sender always has the next one queued: with one,
 * READs fell into a slow pacing mode in most runs. (Links with much longer
 * round trips want more lanes.)
 */
const LANE_WINDOW_BYTES = 512 * 1024;
const LANE_WINDOW_SLICES = 1024;
/**
 * The window of lanes carrying our file requests (PeerAddress.files): the
 * owner's storage adds milliseconds per request, so keeping its queue full
 * needs more bytes in flight than loopback memory does.
 */
const FILE_WINDOW_BYTES = 8 * 1024 * 1024; // 1 MiB direct reads here: 0.4-0.6x of local with 256 KiB-1 MiB, 0.85-0.9x with 4-8 MiB
/**
 * Largest wire request: bigger slices are sent as several requests, so that
 * each lane keeps a few in flight within its window.
 */
const WIRE_MAX = 256 * 1024;
/**
 * v2 requests with at most this much payload (READs: none) are copied, header
 * and payload, into a staging buffer and leave in one stream write per pump:
 * a memcpy of a few KiB costs less than two stream writes and two iovecs each.
 */
const COALESCE_MAX = 16 * 1024;
const STAGE_SIZE = 256 * 1024;
/** Connect failures in a row (with no lane connected) after which a peer is paused (TcpClientOptions.peerPauseMs). */
const PAUSE_AFTER = 3;
/**
 * New connections per peer per second, after a burst of two per lane: lanes
 * are persistent, so this only bites when connections keep dying, and then
 * keeps retries from turning into a connection storm against the peer.
 */
const CONNECTS_PER_SEC = 10;

interface Stage {
  buf: Buffer;
  /** Flushes of it the stream has not finished writing. */
  writing: number;
  /** Full: no more requests go into it; it is reused once `writing` drops to 0. */
  retired: boolean;
}

export interface TcpClientOptions {
  /**
   * Our shared secret: every lane authenticates (src/auth.ts) before its first
   * request, and a peer that does not is TE_AUTH_FAILED.
   */
  authSecret?: Uint8Array | undefined;
  lanesPerPeer: number;
  /** No progress for this long ends the lane's slices in TIMEOUT. */
  timeoutMs: number;
  connectTimeoutMs: number;
  /** TCP keepalive on lanes after this long idle (TE_TCP_KEEPALIVE_MS); 0 or absent: off. */
  keepAliveMs?: number;
  /**
   * After PAUSE_AFTER connect failures in a row, a peer is paused this long:
   * slices to it fail at once (Failure.PAUSED) instead of connecting again;
   * then one connection probes it. 0: never paused.
   */
  peerPauseMs: number;
}

export interface PeerAddress {
  host: string;
  port: number;
  /** Speak v2 (acknowledged writes). */
  v2: boolean;
  /** Source address of the data connections (MC_CUSTOM_TOPO_JSON's preferred NIC); default: the OS picks. */
  localAddress?: string;
  /** Lanes for our file requests: kept apart, with FILE_WINDOW_BYTES each, and slices not cut to WIRE_MAX. */
  files?: boolean;
  /**
   * The peer engine's id (its descriptor's engine_id): each lane checks that
   * this engine answers (src/codec/wire.ts, engine identity) before its first
   * request; another one is TE_PEER_CHANGED. Absent for Mooncake peers.
   */
  engineId?: number;
  /**
   * For peers without an engine id (Mooncake): called before a lane opens
   * while no other lane to the peer is connected; the lane takes requests
   * only once it resolves. It rejects when the peer's descriptor changed or
   * cannot be fetched: whoever holds the port now is not known to be the peer.
   */
  revalidate?: () => Promise<void>;
}

export class TcpClient {
  private readonly peers = new Map<string, Peer>();
  /** The peer of the last submit, by address object identity. */
  private lastAddr: PeerAddress | null = null;
  private lastPeer: Peer | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(readonly options: TcpClientOptions) {}

  submit(addr: PeerAddress, slice: Slice): void {
    if (this.closed) {
      slice.settle(teError(ErrorCode.CLOSED, 'the TCP transport is closed'));
      return;
    }
    // The engine passes the same address object for every request to a segment: skip the key.
    let peer = addr === this.lastAddr ? this.lastPeer : null;
    if (!peer) {
      // The engine id is part of the key: a new engine at the same port starts with a clean history.
      const key = `${addr.host}|${addr.port}|${addr.v2 ? 2 : 1}|${addr.localAddress ?? ''}|${addr.engineId ?? ''}${addr.files ? '|files' : ''}`;
      peer = this.peers.get(key) ?? null;
      if (!peer) {
        peer = new Peer(this, addr);
        this.peers.set(key, peer);
      }
      this.lastAddr = addr;
      this.lastPeer = peer;
    }
    if (peer.pausedUntil !== 0 && peer.paused(performance.now())) {
      slice.settle(peer.pausedError(), Failure.PAUSED);
      return;
    }
    this.ensureSweep();
    if (slice.length <= WIRE_MAX || addr.files) {
      peer.enqueue(slice);
      return;
    }
    // Larger slices go as several wire requests, so that a lane's window holds a few of them.
    const parts = new SliceParts(slice, Math.ceil(slice.length / WIRE_MAX));
    for (let off = 0; off < slice.length; off += WIRE_MAX) {
      slice.region.pins++; // each part holds its own pin, as the engine's slices do
      const local = slice.local.subarray(off, Math.min(slice.length, off + WIRE_MAX));
      peer.enqueue(new Slice(parts, slice.write, slice.remoteAddr + BigInt(off), local, slice.region, slice.fileId));
    }
  }

  /** Times a peer was paused for failing to connect (stats). */
  peerPauses = 0;

  /** Drop idle peers with no lanes and no queue. */
  forget(peer: Peer): void {
    for (const [k, p] of this.peers) if (p === peer) this.peers.delete(k);
    if (this.lastPeer === peer) this.lastAddr = this.lastPeer = null;
  }

  private ensureSweep(): void {
    if (this.sweepTimer) return;
    const every = Math.max(50, Math.min(1000, this.options.timeoutMs / 4));
    this.sweepTimer = setInterval(() => this.sweep(), every);
    this.sweepTimer.unref();
  }

  private sweep(): void {
    const now = performance.now();
    // Peers without lanes are forgotten here, once their pause and connect history expire, not when
    // their last lane dies: a fresh Peer would forget the failures and the connect budget.
    for (const p of [...this.peers.values()]) if (p.sweep(now)) this.forget(p);
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
    this.lastAddr = this.lastPeer = null;
  }
}

/** The wire requests a large slice was cut into: the slice settles when the last one does (with the first error). */
class SliceParts implements SliceOwner {
  private error: TransferEngineError | null = null;
  private failure: Failure = Failure.NONE;

  constructor(
    private readonly slice: Slice,
    private pending: number,
  ) {}

  get halted(): boolean {
    return this.slice.halted;
  }

  halt(): void {
    this.slice.owner.halt();
  }

  sliceDone(part: Slice, error: TransferEngineError | null): void {
    if (error && !this.error) {
      this.error = error;
      this.failure = part.failure;
    }
    if (--this.pending === 0) this.slice.settle(this.error, this.failure);
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
  /** Connect failures in a row while no lane was connected. */
  private connectFailures = 0;
  /** While now < pausedUntil (and no lane is connected) slices fail at once; 0: not paused. */
  pausedUntil = 0;
  /** Connect budget (CONNECTS_PER_SEC, burst of two per lane). */
  private connectTokens = Infinity; // clamped to the burst at first use
  private tokensAt = performance.now();
  /** A pump waiting for connect budget (only when no lane exists). */
  private budgetTimer: NodeJS.Timeout | null = null;

  paused(now: number): boolean {
    if (now >= this.pausedUntil) {
      this.pausedUntil = 0; // over: the next connect is the probe
      return false;
    }
    for (const l of this.lanes) if (l.connected) return false;
    return true;
  }

  pausedError(): TransferEngineError {
    return teError(
      ErrorCode.PEER_UNREACHABLE,
      `${this.label} is paused for ${this.client.options.peerPauseMs} ms after ${this.connectFailures} failed connects in a row`,
    );
  }

  /** A lane connected: the peer is healthy again. */
  connectSucceeded(): void {
    this.connectFailures = 0;
    this.pausedUntil = 0;
  }

  /**
   * May a new lane be opened now? Within the connect budget, and one probe at
   * a time after repeated failures. Without a lane, a pump is scheduled for
   * when the budget allows one (slices wait in the queue, bounded by its timeout).
   */
  private mayConnect(): boolean {
    if (this.connectFailures >= PAUSE_AFTER && this.lanes.length > 0) return false;
    const now = performance.now();
    const burst = 2 * this.client.options.lanesPerPeer;
    this.connectTokens = Math.min(burst, this.connectTokens + ((now - this.tokensAt) * CONNECTS_PER_SEC) / 1000);
    this.tokensAt = now;
    if (this.connectTokens >= 1) {
      this.connectTokens--;
      return true;
    }
    if (this.lanes.length === 0 && !this.budgetTimer) {
      this.budgetTimer = setTimeout(() => {
        this.budgetTimer = null;
        this.pump();
      }, Math.ceil(((1 - this.connectTokens) * 1000) / CONNECTS_PER_SEC));
    }
    return false;
  }

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
      const slice = this.queue[this.qHead]!;
      // Settled at once, even while no lane has room, so a doomed task ends without waiting its turn.
      if (!sendable(slice)) {
        this.queue[this.qHead++] = undefined as unknown as Slice;
        continue;
      }
      let best: Lane | null = null;
      for (const l of this.lanes) {
        if (!l.hasRoom()) continue;
        if (!best || l.outstanding < best.outstanding) best = l;
      }
      // Prefer opening another lane over stacking onto a busy one.
      if ((!best || best.outstanding > 0) && this.lanes.length < opts.lanesPerPeer && this.mayConnect()) {
        const lane = new Lane(this);
        this.lanes.push(lane);
        // A lane still authenticating takes slices once it is through (it pumps then).
        if (!lane.hasRoom()) continue;
        best = lane;
      }
      if (!best) break;
      if (this.connectFailures !== 0 && best.connected) this.connectSucceeded();
      this.queue[this.qHead++] = undefined as unknown as Slice;
      if (!best.corked) {
        best.cork();
        corked.push(best);
      }
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

  /** Some lane of this peer is connected (past every check). */
  hasConnectedLane(): boolean {
    for (const l of this.lanes) if (l.connected) return true;
    return false;
  }

  laneGone(lane: Lane, requeue: Slice[]): void {
    if (lane.connected) this.connectSucceeded(); // it did connect: failures are no longer "in a row"
    const i = this.lanes.indexOf(lane);
    if (i >= 0) this.lanes.splice(i, 1);
    if (requeue.length) this.requeueFront(requeue);
    if (this.qHead < this.queue.length) this.pump();
  }

  /**
   * A connect failed. If no lane is connected the address is dead: fail the
   * queue and the sibling lanes still connecting there, rather than retry in a
   * loop (the engine retries with backoff); after PAUSE_AFTER of these in a
   * row, pause the peer.
   */
  connectFailed(err: TransferEngineError, failure: Failure = failureOf(err, true)): void {
    if (this.lanes.some((l) => l.connected)) return;
    const pauseMs = this.client.options.peerPauseMs;
    if (++this.connectFailures >= PAUSE_AFTER && pauseMs > 0) {
      this.pausedUntil = performance.now() + pauseMs;
      this.client.peerPauses++;
    }
    this.failQueue(err, failure);
    for (const l of [...this.lanes]) l.destroy(err, false, failure);
  }

  failQueue(err: TransferEngineError, failure: Failure): void {
    const q = this.queue;
    const h = this.qHead;
    this.queue = [];
    this.qHead = 0;
    for (let i = h; i < q.length; i++) q[i]!.settle(err, failure);
  }

  /** Time out lanes and queued slices; returns true when this peer can be forgotten (idle, no recent history). */
  sweep(now: number): boolean {
    const timeout = this.client.options.timeoutMs;
    // Queued slices time out when none of the peer's lanes moves anything (a slow link with a long
    // queue is progress, not a timeout). The queue is FIFO, so only its head can be the oldest.
    // Before the lanes are swept: a lane timing out there would open another for slices that waited too long already.
    if (this.qHead < this.queue.length && !this.lanes.some((l) => l.progressing(now, timeout))) {
      while (this.qHead < this.queue.length && now - this.queue[this.qHead]!.queuedAt > timeout) {
        const s = this.queue[this.qHead]!;
        this.queue[this.qHead++] = undefined as unknown as Slice;
        s.settle(teError(ErrorCode.TIMEOUT, `transfer to ${this.label} waited more than ${timeout} ms for a connection`), Failure.TIMEOUT);
      }
    }
    for (const l of [...this.lanes]) l.sweep(now, timeout);
    if (this.lanes.length > 0 || this.qHead < this.queue.length || this.budgetTimer) return false;
    if (now < this.pausedUntil) return false; // keep the failure count for the probe after the pause
    return now - this.tokensAt > 2000; // and the connect budget while it matters
  }

  fail(err: TransferEngineError): void {
    if (this.budgetTimer) clearTimeout(this.budgetTimer);
    this.budgetTimer = null;
    this.failQueue(err, Failure.FATAL);
    for (const l of [...this.lanes]) l.destroy(err, false, Failure.FATAL);
  }
}

/**
 * Settle, instead of sending, a slice whose task has already failed for good
 * this round (a sibling was rejected...) or whose local memory was detached.
 */
function sendable(slice: Slice): boolean {
  if (slice.halted) {
    slice.settle(teError(ErrorCode.CLOSED, 'not sent: another part of the same transfer had already failed'), Failure.SKIPPED);
    return false;
  }
  if (slice.region.detached) {
    slice.settle(detachedError(slice.region, 'local memory'), Failure.FATAL);
    return false;
  }
  return true;
}

/** How a lane's failure counts for the retry policy (src/transport/slice.ts). */
function failureOf(err: TransferEngineError, connectFailure: boolean): Failure {
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
  /** Small requests waiting for uncork: stage.buf[stageStart, staged). Bytes before stageStart belong to the stream. */
  private stage: Stage | null = null;
  private stageStart = 0;
  private staged = 0;
  /** Staging buffers the stream is done with, reused (fresh ones would page-fault on every fill). */
  private spareStages: Buffer[] = [];
  /**
   * v2 WRITE payloads: writes handed to the stream with a callback (staged
   * flushes and zero-copy payloads), and callbacks run. Node runs a stream's
   * write callbacks in order, so counts are enough to know whose payload is out.
   */
  private bodiesQueued = 0;
  private bodiesDone = 0;
  /**
   * WRITEs whose OK was read before Node reported their payload written. A
   * legitimate OK can be read before the write callback runs (both are events
   * of the same loop turn); such a WRITE completes when its callback runs.
   */
  private awaitBody: Slice[] = [];
  /** The head of awaitBody at the last sweep (see sweep). */
  private awaitMark: Slice | null = null;
  /** One callback for all payload writes of this lane (no closure per request). */
  private readonly bodyWritten = (err?: Error | null): void => this.onBodyWritten(err);

  private readonly window: number;

  constructor(private readonly peer: Peer) {
    const { host, port, localAddress } = peer.addr;
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
        buffer: (): Uint8Array => this.nextBuffer(),
        callback: (n: number, buf: Uint8Array): boolean => this.onRead(n, buf),
      },
    } as net.NetConnectOpts;
    this.sock = net.connect(opts);
    const keepAlive = peer.client.options.keepAliveMs ?? 0;
    if (keepAlive > 0) this.sock.setKeepAlive(true, keepAlive);
    const secret = peer.client.options.authSecret;
    if (secret) this.auth = new AuthClientSide(secret, peer.label);
    this.helloPending = peer.addr.engineId !== undefined;
    const { revalidate } = peer.addr;
    if (!this.helloPending && revalidate && !peer.hasConnectedLane()) {
      // A Mooncake peer has no identity to check: its descriptor is fetched again (engine.ts decides when that is needed).
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
    const ms = peer.client.options.connectTimeoutMs;
    this.connectTimer = setTimeout(() => {
      if (!this.tcpConnected) this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `connecting to ${peer.label} timed out after ${ms} ms`), true);
      else if (this.auth) this.destroy(this.auth.notAuthenticating(), true);
      else {
        // Accepted, then silent: a hung peer, which is a timeout (no progress), not a connect failure that retrying cures.
        const what = this.helloPending ? 'did not confirm its identity' : 'could not be checked again (descriptor refetch)';
        this.destroy(teError(ErrorCode.TIMEOUT, `${peer.label} accepted the connection but ${what} within ${ms} ms`), true, Failure.TIMEOUT);
      }
    }, ms);
    this.connectTimer.unref();
    this.sock.once('connect', () => {
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
      const what = this.connected ? 'connection to' : 'cannot connect to';
      this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${what} ${peer.label} failed: ${e.code ?? e.message}`, e), !this.connected);
    });
    this.sock.on('close', () => {
      if (this.auth) this.destroy(this.auth.notAuthenticating(), true);
      else if (this.helloPending) this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${peer.label} closed the connection before confirming its identity`), true);
      else this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `${peer.label} closed the connection with transfers in flight`), false);
    });
  }

  /** Our authentication, until the peer has passed it (null: no secret, or done). */
  private auth: AuthClientSide | null = null;
  private tcpConnected = false;
  /** The identity check was (or will be, once connected) sent and its answer has not come. */
  private helloPending = false;
  /** PeerAddress.revalidate is running. */
  private revalidating = false;

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
    return true;
  }

  private sendHello(): void {
    const h = Buffer.allocUnsafe(HEADER_SIZE);
    encodeHello(h, 0, this.peer.addr.engineId!);
    this.sock.write(h);
  }

  /** The answer to the identity check: requests go out only after the peer confirmed it is the engine we mean. */
  private checkHello(): void {
    if (this.rEnd - this.rStart < STATUS_SIZE) return;
    const label = this.peer.label;
    if (authKindAt(this.scratch, this.rStart) === AuthKind.CHALLENGE) {
      this.destroy(authRequiredError(label), true);
      return;
    }
    const code = decodeStatus(this.scratch, this.rStart);
    this.rStart += STATUS_SIZE;
    if (code === STATUS_ENGINE_CONFIRMED) {
      this.helloPending = false;
      if (this.gatePassed()) this.freed = true; // pump once this read is handled
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
    try {
      for (;;) {
        const st = auth.step(this.scratch, this.rStart, this.rEnd);
        if (st.kind === 'more') return;
        this.rStart += st.consumed;
        if (st.kind === 'reply') {
          this.sock.write(st.reply);
          continue;
        }
        this.auth = null;
        if (this.helloPending) this.sendHello();
        if (this.gatePassed()) this.freed = true; // pump: the queue may now use this lane
        return;
      }
    } catch (e) {
      this.destroy(e as TransferEngineError, true);
    }
  }

  hasRoom(): boolean {
    return !this.gated && !this.dead && !this.blocked && this.outstanding < this.window && this.inflight.length - this.iHead < LANE_WINDOW_SLICES;
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
      this.onBodyWritten(err);
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
      if (this.iHead === this.inflight.length) this.lastProgress = performance.now();
      this.outstanding += slice.length;
      this.inflight.push(slice);
      if (body > 0) slice.bodySeq = this.bodiesQueued + 1; // the next flush carries it
      if (!this.corked) this.flushStage();
      return;
    }
    this.flushStage(); // larger requests go zero-copy, after the staged ones
    const header = Buffer.allocUnsafe(HEADER_SIZE);
    // File slices (ours) always go on v2 lanes: the engine submits them with v2 set.
    if (slice.fileId !== undefined) encodeFileHeader(header, 0, slice.length, slice.remoteAddr, slice.write, slice.fileId);
    else encodeHeader(header, 0, slice.length, slice.remoteAddr, slice.write, v2);
    if (this.iHead === this.inflight.length) this.lastProgress = performance.now();
    this.outstanding += slice.length;
    let ok = this.sock.write(header);
    if (slice.write) {
      if (v2) {
        this.inflight.push(slice);
        slice.bodySeq = ++this.bodiesQueued;
        ok = this.sock.write(slice.local, this.bodyWritten);
      } else {
        // v1 has no acknowledgement: done once the payload is handed to the kernel.
        this.v1Writes++;
        ok = this.sock.write(slice.local, (err) => {
          this.v1Writes--;
          this.outstanding -= slice.length;
          this.lastProgress = performance.now();
          slice.settle(err ? teError(ErrorCode.PEER_UNREACHABLE, `write to ${this.peer.label} failed: ${err.message}`, err) : null, Failure.LOST);
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
      // (A detached destination cannot be a read buffer: its bytes go through the scratch, where copying them fails.)
      if (head && !head.write && !head.region.detached) {
        const remaining = head.length - head.received;
        if (remaining >= DIRECT_MIN) {
          if (head.statusSeen || !this.peer.addr.v2) {
            this.directView = head.local.subarray(head.received);
            return this.directView;
          }
          return this.scratch.subarray(0, STATUS_SIZE); // status alone, then the data goes direct
        }
      } else if (!head && this.peer.addr.v2) {
        // Idle: Node picks the next read buffer now, before we send anything. Every v2 response
        // starts with a status frame, so read just that: a large READ behind it then lands directly
        // instead of being copied out of the scratch.
        return this.scratch.subarray(0, STATUS_SIZE);
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
    try {
      if (buf === this.directView) {
        const head = this.inflight[this.iHead]!;
        head.received += n;
        if (head.received === head.length) this.complete(head);
      } else {
        this.rEnd += n;
        this.consume();
      }
    } catch (e) {
      this.readFailed(e);
    }
    if (this.freed && !this.dead) {
      this.freed = false;
      this.peer.pump();
    }
    return !this.dead;
  }

  /**
   * Handling a read threw (a READ destination whose memory was detached
   * throws on copy): the slice at the head fails on its own; the others, whose
   * responses can no longer be told apart on this connection, are resent elsewhere.
   */
  private readFailed(e: unknown): void {
    const head = this.iHead < this.inflight.length ? this.inflight[this.iHead]! : null;
    if (head && head.region.detached) {
      this.shift(head);
      head.settle(detachedError(head.region, 'local memory'), Failure.FATAL);
      this.destroy(teError(ErrorCode.PEER_UNREACHABLE, `connection to ${this.peer.label} dropped: a READ's destination memory was detached`, e), false);
      return;
    }
    this.destroy(teError(ErrorCode.PROTOCOL_ERROR, `reading from ${this.peer.label} failed: ${e instanceof Error ? e.message : String(e)}`, e), false, Failure.FATAL);
  }

  /** Handle the bytes in the scratch: authentication, then the identity answer, then responses. */
  private consume(): void {
    if (this.auth !== null) {
      this.authenticate();
      if (this.auth !== null || this.dead) return;
    }
    if (this.helloPending) {
      this.checkHello();
      if (this.helloPending || this.dead) return;
    }
    this.parse();
  }

  private parse(): void {
    const v2 = this.peer.addr.v2;
    while (!this.dead) {
      const avail = this.rEnd - this.rStart;
      if (avail === 0) return;
      if (this.iHead === this.inflight.length) {
        const err =
          authKindAt(this.scratch, this.rStart) === AuthKind.CHALLENGE
            ? authRequiredError(this.peer.label)
            : teError(ErrorCode.PROTOCOL_ERROR, `${this.peer.label} sent ${avail} byte(s) nobody asked for`);
        this.destroy(err, false);
        return;
      }
      const head = this.inflight[this.iHead]!;
      if (v2 && !head.statusSeen) {
        if (avail < STATUS_SIZE) return;
        const code = decodeStatus(this.scratch, this.rStart);
        this.rStart += STATUS_SIZE;
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
              `${this.peer.label} rejected ${head.write ? 'WRITE' : 'READ'} of ${head.length} bytes at ${fmtAddr(head.remoteAddr)} (outside its registered memory)`,
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
              ? teError(ErrorCode.ADDRESS_REJECTED, `${this.peer.label} rejected the file ${what} (unknown file id, outside the file's size, or misaligned for direct I/O)`)
              : teError(ErrorCode.IO_ERROR, `${this.peer.label} failed the file ${what}: its read or write of the file failed`),
            code === STATUS_FILE_REJECTED ? Failure.REJECTED : Failure.FATAL,
          );
          continue;
        }
        if (authKindAt(this.scratch, this.rStart - STATUS_SIZE) === AuthKind.CHALLENGE) {
          this.destroy(authRequiredError(this.peer.label), true); // a peer with a secret: we have none
          return;
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

  /** A payload write (staged flush or zero-copy) finished: complete the WRITEs whose OK was waiting for it. */
  private onBodyWritten(err: Error | null | undefined): void {
    if (this.dead) return;
    this.bodiesDone++;
    if (err) return; // the socket's 'error' ends the lane, and the waiting WRITEs with it
    const q = this.awaitBody;
    if (q.length === 0 || q[0]!.bodySeq > this.bodiesDone) return;
    let n = 1;
    while (n < q.length && q[n]!.bodySeq <= this.bodiesDone) n++;
    const done = q.splice(0, n);
    for (const s of done) s.settle(null);
  }

  /** Connected and moving bytes within the timeout. */
  progressing(now: number, timeout: number): boolean {
    return this.connected && !this.dead && now - this.lastProgress <= timeout;
  }

  sweep(now: number, timeout: number): void {
    if (this.dead) return;
    // An OK is read at most one loop turn before its payload's write callback runs (the kernel had
    // taken the bytes, or the peer could not have them). A WRITE still waiting at two sweeps in a
    // row was acknowledged before its payload could have arrived: the peer is not following the protocol.
    const waiting = this.awaitBody.length > 0 ? this.awaitBody[0]! : null;
    if (waiting && waiting === this.awaitMark) {
      const err = teError(ErrorCode.PROTOCOL_ERROR, `${this.peer.label} acknowledged a WRITE of ${waiting.length} bytes at ${fmtAddr(waiting.remoteAddr)} before its payload could have arrived`);
      this.destroy(err, false, Failure.FATAL);
      return;
    }
    this.awaitMark = waiting;
    const busy = this.iHead < this.inflight.length || this.v1Writes > 0 || waiting !== null;
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
    // With requests unfinished, reset rather than close: a graceful close lets the kernel go on
    // sending WRITE payloads still in the send queue, which would land after their slices were
    // reported failed (or were resent and completed), over whatever the application wrote there
    // since. RST discards the queue. An idle lane closes gracefully, and so does a v1 lane, whose
    // writes were reported done once in the send queue.
    const unfinished = this.peer.addr.v2 && (this.iHead < this.inflight.length || this.awaitBody.length > 0);
    if (unfinished && this.connected && !this.sock.destroyed) this.sock.resetAndDestroy();
    else this.sock.destroy();
    this.stage = null; // staged requests never left: they are in `inflight`, handled below
    this.stageStart = this.staged = 0;
    this.spareStages = [];
    // WRITEs acknowledged but with their payload write unconfirmed are not done: they fail (or are resent) too.
    const pending = this.awaitBody.length > 0 ? [...this.awaitBody, ...this.inflight.slice(this.iHead)] : this.inflight.slice(this.iHead);
    this.awaitBody = [];
    this.awaitMark = null;
    this.inflight = [];
    this.iHead = 0;
    this.outstanding = 0;
    // Behind a rejection the server ran nothing more (it serves in order, then closes), so
    // resending is safe; each round removes one rejected request, so this cannot loop.
    const resend = this.rejected && err.code !== ErrorCode.CLOSED;
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
