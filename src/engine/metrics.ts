/**
 * The engine's metrics port (TE_METRICS_PORT, option metricsPort): `GET
 * /metrics` in the Prometheus text format and `GET /health`, served by the
 * metadata server's HTTP code with its store turned off, and the engine's
 * status document at `GET /status.json` (status.ts). Names follow
 * Prometheus conventions (`_total`, `_bytes`, `_seconds`) and, where they
 * map, Mooncake's PR #2958 (transfer_requests_total, transfer_bytes_total,
 * transfer_failures_total, inflight_transfers, transfer_latency_seconds).
 * No label holds an address or a key: cardinality is fixed by the code.
 */
import { encodeMetrics, PROMETHEUS_CONTENT_TYPE, type MetricFamily } from '../codec/prometheus.js';
import type { HttpPage } from '../metadata/http-server.js';
import type { Telemetry } from './telemetry.js';
import type { EngineLifecycle, EngineStats } from './types.js';

/** What the pages read from the running engine. */
export interface MetricsSource {
  readonly telemetry: Telemetry;
  lifecycle(): EngineLifecycle;
  stats(): EngineStats;
  /** Installed transport names ('tcp' while the data port serves). */
  transports(): readonly string[];
  segmentName(): string;
  segments(): { open: number; opening: number };
  registered(): { regions: number; bytes: number; files: number };
}

/** Every metric family of an engine. */
export function engineFamilies(src: MetricsSource): MetricFamily[] {
  const s = src.stats();
  const seg = src.segments();
  const reg = src.registered();
  const one = (name: string, type: 'counter' | 'gauge', help: string, value: number): MetricFamily => ({ name, type, help, samples: [{ value }] });
  // One sample per value of a single label, in the order given.
  const byLabel = (name: string, type: 'counter' | 'gauge', help: string, label: string, values: Record<string, number>): MetricFamily => ({
    name,
    type,
    help,
    samples: Object.entries(values).map(([v, value]) => ({ labels: { [label]: v }, value })),
  });
  return [
    ...src.telemetry.families(),
    one('transfer_retries_total', 'counter', 'Slices sent again by retry rounds (MC_RETRY_CNT).', s.retries),
    one('transfer_peer_pauses_total', 'counter', 'Times a peer was paused after failing to connect repeatedly (TE_PEER_PAUSE_MS).', s.peerPauses),
    one('transfer_lanes', 'gauge', 'Data connections open or opening to peers (initiator side).', s.lanes),
    one('transfer_server_connections', 'gauge', 'Data connections from peers open on the data port.', s.dataConnections),
    one('transfer_rpc_connections_total', 'counter', 'Connections accepted on the RPC (handshake) port.', s.rpcConnections),
    byLabel('transfer_server_requests_total', 'counter', 'Requests from peers on the data port, by result.', 'result', { served: s.requestsServed, rejected: s.requestsRejected }),
    one('transfer_auth_failures_total', 'counter', 'Connections whose authentication failed (RPC, data and file ports).', s.authRejected),
    one('transfer_tls_failures_total', 'counter', 'TLS connections refused (RPC, data and file ports): certificate, protocol or stalled handshake.', s.tlsRejected),
    one('transfer_connections_refused_total', 'counter', 'Connections closed at once: too many open from one address.', s.connectionsRefused),
    one('transfer_handshakes_rate_limited_total', 'counter', 'RPC connections closed at once: over TE_HANDSHAKE_RATE.', s.handshakesRateLimited),
    one('transfer_connections_stalled_total', 'counter', 'Connections closed for making no progress mid-request (TE_STALL_TIMEOUT_MS).', s.connectionsStalled),
    byLabel('transfer_segments', 'gauge', 'Peer segments opened by this engine, by state.', 'state', { open: seg.open, opening: seg.opening }),
    one('transfer_registered_regions', 'gauge', 'Memory regions registered.', reg.regions),
    one('transfer_registered_bytes', 'gauge', 'Bytes of memory registered.', reg.bytes),
    one('transfer_registered_files', 'gauge', 'Files registered.', reg.files),
  ];
}

/** Why the engine is not serving, or null when it is (initialized, the tcp data port open). */
export function notServing(src: MetricsSource): string | null {
  const state = src.lifecycle();
  if (state !== 'ready') return state === 'closed' ? 'the engine is closing' : 'the engine is initializing';
  if (!src.transports().includes('tcp')) return 'the tcp transport is uninstalled: the data port is closed';
  return null;
}

/** The pages of the metrics port (status.ts adds /status.json). */
export function metricsPages(src: MetricsSource): Record<string, () => HttpPage> {
  return {
    '/metrics': () => ({ status: 200, body: encodeMetrics(engineFamilies(src)), type: PROMETHEUS_CONTENT_TYPE }),
    '/health': () => {
      const reason = notServing(src);
      const body = reason === null ? { status: 'serving', segment: src.segmentName(), engineId: src.telemetry.engineId } : { status: 'not serving', reason };
      return { status: reason === null ? 200 : 503, body: `${JSON.stringify(body)}\n`, type: 'application/json; charset=utf-8' };
    },
  };
}
