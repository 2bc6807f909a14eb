/**
 * The segments this engine has opened: handles, the descriptors fetched for
 * them, fetches shared by concurrent opens, refetches after failures (a peer
 * that moved or restarted), and where their data and file requests go.
 */
import type { SegmentDesc } from '../codec/descriptor.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import type { PeerAddress } from '../transport/tcp/client.js';
import type { PeerEndpoint, ShmPeerRegion } from '../transport/transport.js';
import type { SegmentHandle } from './types.js';

export interface RemoteSegment {
  handle: SegmentHandle;
  name: string;
  desc: SegmentDesc;
  /** Where its data port is: the descriptor name's host (P2P) or rpc_meta's (central modes). */
  host: string;
  /** How transports reach it, built from desc and host (endpointOf), replaced when they change. */
  endpoint: PeerEndpoint;
  /** Bumped each time a refetched descriptor moved the peer (stale-peer recovery). */
  generation: number;
  refreshing: Promise<RefreshResult> | null;
  /** When the last refetch ended (performance.now()), and what it found; null: never refetched. */
  refreshedAt: number;
  lastRefresh: RefreshResult | null;
  /** When a fetch last returned this segment's descriptor (open or refetch). */
  fetchedAt: number;
  /** What this engine's requests to it moved while it was open (the status page's peers). */
  readonly traffic: PeerTraffic;
}

/** Counted when each task to the peer ends (batch.ts, Task.finish): a few increments, no allocation. */
export interface PeerTraffic {
  bytesRead: number;
  bytesWritten: number;
  completed: number;
  failed: number;
}

/** What a refetch found: the same descriptor, a changed one (now cached), or why it could not be fetched. */
export type RefreshResult = 'same' | 'changed' | TransferEngineError;

/** A segment whose first descriptor fetch is running (openSegment, segmentHandle). */
export class PendingOpen {
  /** closeSegment() came first: the segment is not kept when the fetch ends. */
  cancelled = false;
  readonly segment: Promise<RemoteSegment>;

  constructor(
    readonly handle: SegmentHandle,
    readonly name: string,
    open: (pending: PendingOpen) => Promise<RemoteSegment>,
  ) {
    this.segment = open(this);
    this.segment.catch(() => {}); // its waiters see the error; nobody may be waiting
  }
}

/** Rounds within this long of a refetch reuse its answer instead of asking again. */
const REFRESH_MIN_INTERVAL_MS = 100;
/** A Mooncake peer's descriptor older than this is fetched again before a new connection takes requests (revalidate). */
const REVALIDATE_AFTER_MS = 1000;

/** Does a fetched descriptor name the same peer, at the same place, with the same memory? */
function sameSegment(seg: RemoteSegment, desc: SegmentDesc, host: string): boolean {
  const a = seg.desc;
  return (
    seg.host === host &&
    a.tcpDataPort === desc.tcpDataPort &&
    a.tcpProtoVersion === desc.tcpProtoVersion &&
    a.engineId === desc.engineId &&
    a.buffers.length === desc.buffers.length &&
    a.buffers.every((x, i) => x.addr === desc.buffers[i]!.addr && x.length === desc.buffers[i]!.length)
  );
}

export interface SegmentSource {
  /** Fetch a segment's descriptor and where its data port is (PeerRpc.lookup). */
  lookup(name: string): Promise<{ desc: SegmentDesc; host: string }>;
  /** Throws unless the engine is ready (it may close while a fetch runs). */
  ready(): void;
  /** MC_FORCE_TCP_V1: speak the v1 data protocol to every peer. */
  readonly forceTcpV1: boolean;
}

export class SegmentTable {
  private readonly byName = new Map<string, RemoteSegment>();
  private readonly byHandle = new Map<SegmentHandle, RemoteSegment>();
  /** Segments whose first fetch runs, by name and by handle. */
  private readonly openingByName = new Map<string, PendingOpen>();
  private readonly openingByHandle = new Map<SegmentHandle, PendingOpen>();
  private nextHandle = 1;

  constructor(private readonly source: SegmentSource) {}

  /** Open a segment by (checked) name: its handle once its descriptor is fetched; concurrent opens share one fetch. */
  async open(name: string): Promise<SegmentHandle> {
    const open = this.byName.get(name);
    if (open) return open.handle;
    return (await this.beginOpen(name).segment).handle;
  }

  /** An open segment's handle, or a new one whose descriptor is fetched in the background. */
  handleOf(name: string): SegmentHandle {
    return this.byName.get(name)?.handle ?? this.beginOpen(name).handle;
  }

  /** Segments open (descriptor fetched) and opening. */
  get count(): { open: number; opening: number } {
    return { open: this.byHandle.size, opening: this.openingByHandle.size };
  }

  /** The open segments. */
  list(): IterableIterator<RemoteSegment> {
    return this.byHandle.values();
  }

  get(handle: SegmentHandle): RemoteSegment | undefined {
    return this.byHandle.get(handle);
  }

  /** The fetch of a segment still opening, if `handle` is one. */
  opening(handle: SegmentHandle): PendingOpen | undefined {
    return this.openingByHandle.get(handle);
  }

  /** Forget a segment (requests already submitted to it go on). A segment still opening is not kept. */
  close(handle: SegmentHandle): void {
    const pending = this.openingByHandle.get(handle);
    if (pending) {
      pending.cancelled = true;
      this.openingByHandle.delete(handle);
      this.openingByName.delete(pending.name);
      return;
    }
    const seg = this.byHandle.get(handle);
    if (!seg) throw teError(ErrorCode.INVALID_SEGMENT, `segment handle ${String(handle)} is not open`);
    this.byHandle.delete(handle);
    this.byName.delete(seg.name);
  }

  /** The cached descriptor of an open segment. */
  descriptor(handle: SegmentHandle): SegmentDesc {
    const seg = this.byHandle.get(handle);
    if (!seg) {
      if (this.openingByHandle.has(handle)) throw teError(ErrorCode.INVALID_SEGMENT, `segment handle ${String(handle)} is still opening: await openSegment() for its descriptor`);
      throw teError(ErrorCode.INVALID_SEGMENT, `segment handle ${String(handle)} is not open`);
    }
    return seg.desc;
  }

  /** The fetch of a segment's descriptor, started once per name until it ends. */
  private beginOpen(name: string): PendingOpen {
    const running = this.openingByName.get(name);
    if (running) return running;
    const handle = this.nextHandle++;
    const pending = new PendingOpen(handle, name, async (self) => {
      try {
        const { desc, host } = await this.source.lookup(name);
        this.source.ready(); // closed while we waited?
        const seg: RemoteSegment = {
          handle,
          name,
          desc,
          host,
          endpoint: this.endpointOf(name, desc, host, () => this.revalidate(seg)),
          generation: 0,
          refreshing: null,
          refreshedAt: 0,
          lastRefresh: null,
          fetchedAt: performance.now(),
          traffic: { bytesRead: 0, bytesWritten: 0, completed: 0, failed: 0 },
        };
        if (!self.cancelled) {
          this.byHandle.set(handle, seg);
          this.byName.set(name, seg);
        }
        return seg;
      } finally {
        this.openingByName.delete(name);
        this.openingByHandle.delete(handle);
      }
    });
    this.openingByName.set(name, pending);
    this.openingByHandle.set(handle, pending);
    return pending;
  }

  /**
   * How transports reach a segment, built once per descriptor (the TCP client
   * keys its peers on the address objects). Our peers publish an engine id,
   * which every lane checks; for the others (Mooncake) a lane opened while
   * none is connected first fetches the descriptor again (revalidate). File
   * requests go to the file listener if the peer publishes one, else to its
   * data port; always v2 (status frames), on lanes of their own.
   */
  private endpointOf(name: string, desc: SegmentDesc, host: string, revalidate: () => Promise<void>): PeerEndpoint {
    const data: PeerAddress = { host, port: desc.tcpDataPort, v2: desc.tcpProtoVersion >= 2 && !this.source.forceTcpV1 };
    if (desc.engineId !== undefined) data.engineId = desc.engineId;
    else data.revalidate = revalidate;
    const ep = desc.fileEndpoint;
    const files: PeerAddress = { host: ep?.host ?? host, port: ep?.port ?? desc.tcpDataPort, v2: true, files: true };
    // The file listener is the same engine's: it confirms the same identity.
    if (desc.engineId !== undefined) files.engineId = desc.engineId;
    return { kind: 'peer', name, machineId: desc.machineId, data, files, shmRegions: shmRegionsOf(desc) };
  }

  /**
   * Before a Mooncake peer gets requests on a new connection (none other
   * connected): is the descriptor we hold still the peer's? Its process may
   * have died and another taken its data port. A descriptor fetched within
   * REVALIDATE_AFTER_MS counts as checked.
   */
  private async revalidate(seg: RemoteSegment): Promise<void> {
    if (performance.now() - seg.fetchedAt < REVALIDATE_AFTER_MS) return;
    const r = await this.refresh(seg, seg.generation);
    if (r === 'same') return;
    if (r === 'changed') {
      throw teError(ErrorCode.PEER_CHANGED, `segment "${seg.name}" changed since its descriptor was fetched (other memory or another data port): requests meant for the old one are not sent`);
    }
    throw teError(ErrorCode.PEER_UNREACHABLE, `cannot confirm that segment "${seg.name}" is still the peer it was: ${r.message}`, r);
  }

  /**
   * Refetch a segment's descriptor after a failure (or to revalidate it).
   * 'changed': the peer moved, restarted (another engine id) or changed its
   * memory since `generation` (the cache is updated; retrying can help);
   * 'same': it looks the same; an error: it cannot be fetched. Concurrent
   * callers share one refetch, and calls shortly after a refetch reuse its
   * answer (a dead peer is not asked again by every task).
   */
  refresh(seg: RemoteSegment, generation: number): Promise<RefreshResult> {
    if (seg.generation !== generation) return Promise.resolve('changed'); // already refreshed since this task started
    if (!seg.refreshing && seg.lastRefresh !== null && performance.now() - seg.refreshedAt < REFRESH_MIN_INTERVAL_MS) {
      return Promise.resolve(seg.lastRefresh === 'changed' ? 'same' : seg.lastRefresh); // a change then is this generation
    }
    seg.refreshing ??= (async (): Promise<RefreshResult> => {
      let result: RefreshResult;
      try {
        const fresh = await this.source.lookup(seg.name);
        seg.fetchedAt = performance.now();
        if (sameSegment(seg, fresh.desc, fresh.host)) result = 'same';
        else {
          seg.desc = fresh.desc;
          seg.host = fresh.host;
          seg.endpoint = this.endpointOf(seg.name, seg.desc, seg.host, () => this.revalidate(seg));
          seg.generation++;
          result = 'changed';
        }
      } catch (e) {
        result = e instanceof TransferEngineError ? e : teError(ErrorCode.PEER_UNREACHABLE, String(e), e);
      }
      seg.refreshing = null;
      seg.refreshedAt = performance.now();
      seg.lastRefresh = result;
      return result;
    })();
    return seg.refreshing;
  }
}

/** A descriptor's shared-memory regions. */
function shmRegionsOf(desc: SegmentDesc): ShmPeerRegion[] {
  return desc.buffers.flatMap((b) =>
    b.shmName ? [{ shmName: b.shmName, size: b.length, addr: b.addr, ...(b.access === 'read' ? { readOnly: true } : {}) }] : [],
  );
}
