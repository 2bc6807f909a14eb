/**
 * One peer of the TCP client: its lanes (lane.ts), the slices waiting for
 * room on them, and its connect history.
 *
 * Beyond Mooncake (one connection and one request at a time): each peer has a
 * small pool of persistent lanes; each lane pipelines many requests, whose
 * replies come back in order on that connection (the protocol has no ids, so
 * order is the match). Slices go to the lane with the fewest bytes
 * outstanding, up to a per-lane window, which bounds memory and keeps all
 * lanes busy. A peer that keeps failing to connect is paused, and new
 * connections are rate-limited, so that retries cannot turn into a connection
 * storm against it.
 */
import { channels } from '../../diagnostics.js';
import { teError, ErrorCode, TransferEngineError } from '../../errors.js';
import { detachedError } from '../../memory.js';
import { cancels, Failure, type Slice } from '../slice.js';
import { Lane, failureOf, type LaneOwner } from './lane.js';
import type { PeerAddress, TcpClientOptions } from './options.js';

/** Connect failures in a row (with no lane connected) after which a peer is paused (TcpClientOptions.peerPauseMs). */
const PAUSE_AFTER = 3;
/**
 * New connections per peer per second, after a burst of two per lane: lanes
 * are persistent, so this only bites when connections keep dying, and then
 * keeps retries from turning into a connection storm against the peer.
 */
const CONNECTS_PER_SEC = 10;
/** An idle peer is kept this long after its last connect, so that a burst of reconnects still meets its spent connect budget. */
const FORGET_AFTER_MS = 2000;

/** What a peer needs from the client (client.ts). */
export interface PeerClient {
  readonly options: TcpClientOptions;
  /** Times a peer was paused for failing to connect (stats). */
  peerPauses: number;
}

export class Peer implements LaneOwner {
  readonly lanes: Lane[] = [];
  private queue: Slice[] = [];
  private qHead = 0;

  constructor(
    readonly client: PeerClient,
    readonly addr: PeerAddress,
  ) {}

  get options(): TcpClientOptions {
    return this.client.options;
  }

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
  /** The count of task cancels (slice.ts, `cancels`) at this peer's last sweep. */
  private cancelsSeen = cancels.count;

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
      `${this.label} is paused for ${this.options.peerPauseMs} ms after ${this.connectFailures} failed connects in a row`,
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
    const burst = 2 * this.options.lanesPerPeer;
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
    const opts = this.options;
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
    const pauseMs = this.options.peerPauseMs;
    if (++this.connectFailures >= PAUSE_AFTER && pauseMs > 0) {
      this.pausedUntil = performance.now() + pauseMs;
      this.client.peerPauses++;
      if (channels.peerPause.hasSubscribers) channels.peerPause.publish({ host: this.addr.host, port: this.addr.port, pauseMs });
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

  /**
   * Settle, instead of sending, the queued slices of tasks halted (canceled,
   * or doomed this round) since they were queued, wherever they are in the
   * queue: the pump only meets them at its head, which a stalled lane may
   * keep it from reaching until the transfer timeout. The order of the rest
   * is kept.
   */
  private dropHalted(): void {
    const q = this.queue;
    let kept = this.qHead;
    let dropped: Slice[] | null = null;
    for (let i = this.qHead; i < q.length; i++) {
      const s = q[i]!;
      if (s.halted) (dropped ??= []).push(s);
      else q[kept++] = s;
    }
    if (!dropped) return;
    if (kept === this.qHead) {
      this.queue = [];
      this.qHead = 0;
    } else q.length = kept;
    // Settled once the queue is consistent: settling runs the owners' code.
    for (const s of dropped) sendable(s);
  }

  /** Time out lanes and queued slices; returns true when this peer can be forgotten (idle, no recent history). */
  sweep(now: number): boolean {
    const timeout = this.options.timeoutMs;
    if (this.cancelsSeen !== cancels.count) {
      // A task was canceled somewhere since the last sweep: its slices queued here (if any) go now, pins and all.
      this.cancelsSeen = cancels.count;
      if (this.qHead < this.queue.length) this.dropHalted();
    }
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
    return now - this.tokensAt > FORGET_AFTER_MS; // and the connect budget while it matters
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
 * this round (a sibling was rejected...) or was canceled, or whose local
 * memory was detached. One property read per slice on the way to a lane.
 */
function sendable(slice: Slice): boolean {
  if (slice.halted) {
    // (A canceled task ignores the error: it was reported CANCELED already, this only drains it.)
    slice.settle(teError(ErrorCode.CLOSED, 'not sent: the transfer was canceled, or another part of it had already failed'), Failure.SKIPPED);
    return false;
  }
  if (slice.region.detached) {
    slice.settle(detachedError(slice.region, 'local memory'), Failure.FATAL);
    return false;
  }
  return true;
}
