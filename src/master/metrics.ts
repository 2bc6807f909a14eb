/**
 * The master's Prometheus exposition (text format 0.0.4): objects, space per
 * segment, leases, evictions, requests by method and result, clients. Label
 * values are bounded: methods come from the wire table, results from the
 * error-code table, segments from what clients mounted (one per client).
 */
import { encodeMetrics, type MetricFamily, type Sample } from '../codec/prometheus.js';
import { MAX_SEGMENTS, type StoreStatus } from '../status/types.js';
import { storeErrorName } from '../store/master-protocol.js';
import type { MasterService } from './service.js';
import type { RequestObserver } from './rpc-server.js';

export { PROMETHEUS_CONTENT_TYPE } from '../codec/prometheus.js';

export class MasterMetrics {
  /** `method\0result` -> count. */
  private readonly requests = new Map<string, number>();

  readonly observe: RequestObserver = (method, outcome, errorCode) => {
    const result = outcome === 'app_error' ? (storeErrorName(errorCode ?? 0) ?? `code_${errorCode}`).toLowerCase() : outcome;
    const k = `${method}\u0000${result}`;
    this.requests.set(k, (this.requests.get(k) ?? 0) + 1);
  };

  constructor(
    private readonly svc: MasterService,
    private readonly connections: () => number,
  ) {}

  render(): string {
    const s = this.svc.stats;
    const c = this.svc.counters;
    const one = (name: string, type: 'gauge' | 'counter', help: string, value: number): MetricFamily => ({ name, help, type, samples: [{ value }] });
    const usage = this.svc.segmentUsage();
    const requests: Sample[] = [...this.requests].sort().map(([k, n]) => {
      const [method, result] = k.split('\u0000') as [string, string];
      return { labels: { method, result }, value: n };
    });
    return encodeMetrics([
      one('mooncake_master_objects', 'gauge', 'Objects the master holds (complete or being written).', s.objects),
      one('mooncake_master_objects_writing', 'gauge', 'Objects with a put or upsert in progress.', s.writingObjects),
      one('mooncake_master_leased_objects', 'gauge', 'Objects under a read lease.', s.leasedObjects),
      one('mooncake_master_clients', 'gauge', 'Clients the master considers alive.', s.clients),
      one('mooncake_master_segments', 'gauge', 'Mounted segments.', s.segments),
      one('mooncake_master_dormant_file_segments', 'gauge', 'File segments whose provider left; their objects wait for the file to be mounted again.', s.dormantSegments),
      one('mooncake_master_capacity_bytes', 'gauge', 'Capacity of all mounted segments.', s.capacityBytes),
      one('mooncake_master_used_bytes', 'gauge', 'Space allocated to replicas in all mounted segments.', s.usedBytes),
      one('mooncake_master_rpc_connections', 'gauge', 'Open RPC connections.', this.connections()),
      { name: 'mooncake_master_segment_capacity_bytes', help: 'Capacity of one mounted segment.', type: 'gauge', samples: usage.map((u) => ({ labels: { segment: u.name }, value: u.capacity })) },
      { name: 'mooncake_master_segment_used_bytes', help: 'Space allocated in one mounted segment.', type: 'gauge', samples: usage.map((u) => ({ labels: { segment: u.name }, value: u.used })) },
      one('mooncake_master_evicted_objects_total', 'counter', 'Objects evicted to make room.', c.evictedObjects),
      one('mooncake_master_evicted_bytes_total', 'counter', 'Replica bytes evicted to make room.', c.evictedBytes),
      one('mooncake_master_eviction_rounds_total', 'counter', 'Eviction rounds run.', c.evictionRounds),
      one('mooncake_master_expired_clients_total', 'counter', 'Clients whose segments were unmounted for missing pings.', c.expiredClients),
      one('mooncake_master_dropped_replicas_total', 'counter', 'Replicas lost with an unmounted segment.', c.droppedReplicas),
      one('mooncake_master_discarded_writes_total', 'counter', 'Puts and upserts given up on: not ended within the release timeout.', c.discardedWrites),
      { name: 'mooncake_master_requests_total', help: 'RPC requests by method and result.', type: 'counter', samples: requests },
    ]);
  }
}

/** The master's part of the status page (src/status/): its role, totals and mounted segments (at most MAX_SEGMENTS). */
export function storeStatus(role: string, svc: MasterService): StoreStatus {
  const s = svc.stats;
  return {
    role,
    clients: s.clients,
    objects: s.objects,
    capacityBytes: s.capacityBytes,
    usedBytes: s.usedBytes,
    segments: svc
      .segmentUsage()
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .slice(0, MAX_SEGMENTS),
  };
}
