/**
 * TCP as a Transport: every request addressed to a peer (its memory, or its
 * files) that no same-host transport took. A request is cut into slices of
 * TE_TCP_SPLIT_SIZE (file requests: at most MAX_FILE_REQUEST), each pinning
 * the local region, which the client (client.ts) spreads over the peer's
 * lanes. The client exists while tcp is installed (src/engine/tcp-transports.ts
 * attaches and detaches it); this object lives as long as the engine, so the
 * dispatcher's list of transports never changes.
 */
import { teError, ErrorCode } from '../../errors.js';
import { pieceAt, pieceCount } from '../../pieces.js';
import { Slice } from '../slice.js';
import type { Job, PeerEndpoint, TaskSink, Transport } from '../transport.js';
import type { TcpClient } from './client.js';
import { MAX_FILE_REQUEST } from './targets.js';
import type { PeerAddress } from './options.js';

export interface TcpTransportOptions {
  /** TE_TCP_SPLIT_SIZE: the largest slice of a memory request. */
  splitSize: number;
  /** Source address for data connections carrying memory of a location (EngineOptions.sourceAddress). */
  sourceAddress?: ((location: string) => string | undefined) | undefined;
}

export class TcpTransport implements Transport {
  readonly name = 'tcp';
  private current: TcpClient | null = null;
  /** Peer pauses counted by clients already detached. */
  private pastPeerPauses = 0;

  constructor(private readonly options: TcpTransportOptions) {}

  /** The client while tcp is installed, else null. */
  get client(): TcpClient | null {
    return this.current;
  }

  /** tcp installed: requests go through `client` from now on. */
  attach(client: TcpClient): void {
    this.current = client;
  }

  /** tcp uninstalled: the client closes, its slices in flight fail (TE_CLOSED); new requests find no transport. */
  detach(): void {
    const c = this.current;
    this.current = null;
    if (!c) return;
    this.pastPeerPauses += c.peerPauses;
    c.close();
  }

  /** Every request to a peer; the planner refuses them while tcp is uninstalled. */
  canServe(job: Job): boolean {
    return job.to.kind === 'peer' || job.to.kind === 'peer-file';
  }

  submit(task: TaskSink, job: Job): void {
    const to = job.to;
    const client = this.current;
    if (!client || (to.kind !== 'peer' && to.kind !== 'peer-file')) {
      // Uninstalled between the plan and now (a segment that was still opening).
      task.error = teError(ErrorCode.NO_TRANSPORT, 'the tcp transport was uninstalled while the segment opened');
      task.finish();
      return;
    }
    const file = to.kind === 'peer-file' ? to.file.id : undefined;
    const split = file === undefined ? this.options.splitSize : Math.min(this.options.splitSize, MAX_FILE_REQUEST);
    const count = pieceCount(job.local.length, split);
    // Set before the first slice goes out: one that settles at once (a paused peer) must not end the task early.
    task.pending = count;
    const peer = this.address(to.kind === 'peer' ? to : to.peer, file !== undefined, job.region.location);
    for (let k = 0; k < count; k++) {
      client.submit(peer, new Slice(task, job.write, job.target + BigInt(k * split), pieceAt(job.local, k, split), job.region, file));
    }
  }

  /**
   * A retry round (src/engine/dispatch.ts): a task's held slices again, to the
   * peer as its descriptor says now. The task's `pending` already counts them.
   * False when tcp is uninstalled: nothing was sent.
   */
  resend(task: TaskSink, slices: readonly Slice[], endpoint: PeerEndpoint): boolean {
    const client = this.current;
    if (!client || slices.length === 0) return false;
    const first = slices[0]!;
    const peer = this.address(endpoint, first.fileId !== undefined, first.region.location);
    // The new slices pin their regions (each is a lease) before the caller releases the round's holds.
    for (const s of slices) client.submit(peer, new Slice(task, s.write, s.remoteAddr, s.local, s.region, s.fileId));
    return true;
  }

  stats(): { lanes: number; peerPauses: number } {
    return { lanes: this.current?.laneCount ?? 0, peerPauses: this.pastPeerPauses + (this.current?.peerPauses ?? 0) };
  }

  close(): void {
    this.detach();
  }

  /** The address the client keys its peer on: the endpoint's own object unless a source address is asked for. */
  private address(endpoint: PeerEndpoint, files: boolean, location: string): PeerAddress {
    const base = files ? endpoint.files : endpoint.data;
    const localAddress = this.options.sourceAddress?.(location);
    return localAddress === undefined ? base : { ...base, localAddress };
  }
}
