/**
 * The master's Prometheus exposition (text format 0.0.4): objects, space per
 * segment, leases, evictions, requests by method and result, clients. Label
 * values are bounded: methods come from the wire table, results from the
 * error-code table, segments from what clients mounted (one per client).
 */
import { storeErrorName } from '../store/master-protocol.js';
import type { MasterService } from './service.js';
import type { RequestObserver } from './rpc-server.js';

export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** Escape a label value as the text format requires. */
function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

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
    const out: string[] = [];
    const gauge = (name: string, help: string, value: number): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${value}`);
    };
    const counter = (name: string, help: string, value: number): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`, `${name} ${value}`);
    };
    gauge('mooncake_master_objects', 'Objects the master holds (complete or being written).', s.objects);
    gauge('mooncake_master_objects_writing', 'Objects with a put or upsert in progress.', s.writingObjects);
    gauge('mooncake_master_leased_objects', 'Objects under a read lease.', s.leasedObjects);
    gauge('mooncake_master_clients', 'Clients the master considers alive.', s.clients);
    gauge('mooncake_master_segments', 'Mounted segments.', s.segments);
    gauge('mooncake_master_dormant_file_segments', 'File segments whose provider left; their objects wait for the file to be mounted again.', s.dormantSegments);
    gauge('mooncake_master_capacity_bytes', 'Capacity of all mounted segments.', s.capacityBytes);
    gauge('mooncake_master_used_bytes', 'Space allocated to replicas in all mounted segments.', s.usedBytes);
    gauge('mooncake_master_rpc_connections', 'Open RPC connections.', this.connections());
    out.push('# HELP mooncake_master_segment_capacity_bytes Capacity of one mounted segment.', '# TYPE mooncake_master_segment_capacity_bytes gauge');
    const usage = this.svc.segmentUsage();
    for (const u of usage) out.push(`mooncake_master_segment_capacity_bytes{segment="${label(u.name)}"} ${u.capacity}`);
    out.push('# HELP mooncake_master_segment_used_bytes Space allocated in one mounted segment.', '# TYPE mooncake_master_segment_used_bytes gauge');
    for (const u of usage) out.push(`mooncake_master_segment_used_bytes{segment="${label(u.name)}"} ${u.used}`);
    counter('mooncake_master_evicted_objects_total', 'Objects evicted to make room.', c.evictedObjects);
    counter('mooncake_master_evicted_bytes_total', 'Replica bytes evicted to make room.', c.evictedBytes);
    counter('mooncake_master_eviction_rounds_total', 'Eviction rounds run.', c.evictionRounds);
    counter('mooncake_master_expired_clients_total', 'Clients whose segments were unmounted for missing pings.', c.expiredClients);
    counter('mooncake_master_dropped_replicas_total', 'Replicas lost with an unmounted segment.', c.droppedReplicas);
    out.push('# HELP mooncake_master_requests_total RPC requests by method and result.', '# TYPE mooncake_master_requests_total counter');
    for (const [k, n] of [...this.requests].sort()) {
      const [method, result] = k.split('\u0000') as [string, string];
      out.push(`mooncake_master_requests_total{method="${label(method)}",result="${label(result)}"} ${n}`);
    }
    return `${out.join('\n')}\n`;
  }
}
