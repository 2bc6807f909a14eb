/**
 * Initiator side of the Mooncake-compatible TCP data protocol: the client the
 * engine submits slices to. It keeps one Peer (peer.ts) per address, whose
 * lanes (lane.ts) carry the requests, cuts large slices into wire requests
 * (pieces.ts), and sweeps for timeouts.
 *
 * Zero copy: WRITE payloads are written straight from registered memory; large
 * READ payloads are read by the kernel straight into the destination
 * (read-buffer.ts). Small replies are parsed from a scratch buffer and copied,
 * which costs less than one syscall each.
 */
import { teError, ErrorCode, TransferEngineError } from '../../errors.js';
import { Slice, Failure, type SliceOwner } from '../slice.js';
import { Peer } from './peer.js';
import { pieceAt, pieceCount } from '../../pieces.js';
import { WIRE_MAX, type PeerAddress, type TcpClientOptions } from './options.js';

export type { PeerAddress, TcpClientOptions } from './options.js';

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
    const count = pieceCount(slice.length, WIRE_MAX);
    const parts = new SliceParts(slice, count);
    for (let k = 0; k < count; k++) {
      // Each part pins the region itself (a Slice is a lease), as the engine's slices do.
      const local = pieceAt(slice.local, k, WIRE_MAX);
      peer.enqueue(new Slice(parts, slice.write, slice.remoteAddr + BigInt(k * WIRE_MAX), local, slice.region, slice.fileId));
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
