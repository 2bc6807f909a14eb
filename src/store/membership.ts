/**
 * A store client's standing with the master (Mooncake's heartbeat thread,
 * docs/store-wire.md §4.2): the segments it mounted, a Ping every second,
 * ReMountSegment of all of them when the master answers NEED_REMOUNT (always
 * after the first mount, and after a master restart, which forgets everyone),
 * and after 3 failed pings in a row a fresh ServiceReady with its version
 * check. The master unmounts the segments of a client that stops pinging for
 * its client TTL (10 s).
 */
import { TransferEngineError } from '../errors.js';
import { checkVersion, storeError } from './store-errors.js';
import { ClientStatus, Master, type Segment, type UUID } from './master-protocol.js';
import type { RpcClient } from './rpc-client.js';

export const PING_INTERVAL_MS = 1000;
const FAILURES_BEFORE_RECONNECT = 3;

export interface MembershipEvents {
  /** The master asked for a remount and got it (a restarted master: the metadata it served may be gone too). */
  remounted(): void;
  /** A ping or remount failed (for the log). */
  failed(e: TransferEngineError): void;
}

export class Membership {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private failures = 0;
  /** A ping or remount in progress: the next tick waits for it. */
  private busy = false;
  readonly segments: Segment[] = [];
  /** Counters, for tests and stats. */
  readonly stats = { pings: 0, remounts: 0, pingFailures: 0, reconnects: 0 };

  constructor(
    private readonly rpc: RpcClient,
    readonly clientId: UUID,
    private readonly events: MembershipEvents,
  ) {}

  /** MountSegment; on success the segment is remounted with the others whenever the master asks. */
  async mount(segment: Segment): Promise<void> {
    const r = await this.rpc.call(Master.MountSegment, [segment, this.clientId]);
    if (!r.ok) throw storeError(r.error, `MountSegment of ${segment.name} (${segment.size} bytes)`);
    this.segments.push(segment);
    this.start();
  }

  private start(): void {
    if (this.timer || this.stopped) return;
    this.schedule(0); // the first ping at once: it answers NEED_REMOUNT, and the remount makes us a known client
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => void this.tick(), ms);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    this.timer = null;
    if (this.stopped || this.busy) return;
    this.busy = true;
    try {
      if (this.failures >= FAILURES_BEFORE_RECONNECT) {
        this.stats.reconnects++;
        this.failures = 0;
        await checkVersion(this.rpc);
      }
      this.stats.pings++;
      const r = await this.rpc.call(Master.Ping, this.clientId);
      if (!r.ok) throw storeError(r.error, 'Ping');
      if (r.value.clientStatus === ClientStatus.NEED_REMOUNT && this.segments.length > 0 && !this.stopped) {
        const m = await this.rpc.call(Master.ReMountSegment, [this.segments, this.clientId]);
        if (!m.ok) throw storeError(m.error, 'ReMountSegment');
        this.stats.remounts++;
        this.events.remounted();
      }
      this.failures = 0;
    } catch (e) {
      this.failures++;
      this.stats.pingFailures++;
      if (e instanceof TransferEngineError) this.events.failed(e);
    } finally {
      this.busy = false;
      if (!this.stopped) this.schedule(PING_INTERVAL_MS);
    }
  }

  /** UnmountSegment of one mounted segment; it is no longer remounted. Throws the master's error. */
  async unmount(segmentId: UUID): Promise<void> {
    const i = this.segments.findIndex((s) => s.id.first === segmentId.first && s.id.second === segmentId.second);
    if (i < 0) return;
    const [segment] = this.segments.splice(i, 1);
    const r = await this.rpc.call(Master.UnmountSegment, [segmentId, this.clientId]);
    if (!r.ok) throw storeError(r.error, `UnmountSegment of ${segment!.name}`);
  }

  /** Stop pinging; then, unless `unmount` is false, unmount every segment (failures are reported, not thrown). */
  async stop(unmount = true): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (!unmount) return;
    for (const s of this.segments.splice(0)) {
      try {
        const r = await this.rpc.call(Master.UnmountSegment, [s.id, this.clientId]);
        if (!r.ok) this.events.failed(storeError(r.error, `UnmountSegment of ${s.name}`));
      } catch (e) {
        if (e instanceof TransferEngineError) this.events.failed(e);
      }
    }
  }
}

