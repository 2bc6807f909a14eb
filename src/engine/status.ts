/**
 * The engine's status document (GET /status.json on its metrics port): what
 * it registered, the peers it talks to and what it moved to each, its
 * totals and its recent failures. The status page of a metadata server
 * reads it from every engine that advertises a metrics port; a user in P2P
 * mode can read it directly. Everything in it is bounded (MAX_PEERS,
 * MAX_RECENT_ERRORS, and the registrations the descriptor publishes anyway).
 */
import type { SegmentDesc } from '../codec/descriptor.js';
import { buffersOf, filesOf } from '../status/segment-view.js';
import { MAX_PEERS, type EngineStatus } from '../status/types.js';
import type { HttpPage } from '../metadata/http-server.js';
import { notServing, type MetricsSource } from './metrics.js';
import type { PeerTraffic } from './segments.js';

/** What the status document reads beyond the metrics. */
export interface StatusSource extends MetricsSource {
  /** This engine's descriptor as peers see it (its public buffers and files). */
  descriptor(): SegmentDesc;
  /** The open peer segments and their traffic. */
  peers(): Iterable<{ name: string; traffic: PeerTraffic }>;
}

export function engineStatus(src: StatusSource): EngineStatus {
  const s = src.stats();
  const state = src.lifecycle();
  const desc = state === 'ready' ? src.descriptor() : null;
  const peers = [...src.peers()]
    .map(({ name, traffic: t }) => ({ segment: name, bytesRead: t.bytesRead, bytesWritten: t.bytesWritten, completed: t.completed, failed: t.failed }))
    .sort((a, b) => b.bytesRead + b.bytesWritten - (a.bytesRead + a.bytesWritten) || (a.segment < b.segment ? -1 : 1))
    .slice(0, MAX_PEERS);
  return {
    segment: src.segmentName(),
    engineId: src.telemetry.engineId,
    state,
    notServing: notServing(src),
    transports: [...src.transports()],
    totals: {
      bytesRead: s.bytesRead,
      bytesWritten: s.bytesWritten,
      tasksCompleted: s.tasksCompleted,
      tasksFailed: s.tasksFailed,
      inflight: src.telemetry.inflight,
      retries: s.retries,
      peerPauses: s.peerPauses,
      lanes: s.lanes,
      serverConnections: s.dataConnections,
      requestsServed: s.requestsServed,
      requestsRejected: s.requestsRejected,
      authFailures: s.authRejected,
    },
    buffers: desc ? buffersOf(desc) : [],
    buffersTotal: desc?.buffers.length ?? 0,
    files: desc ? filesOf(desc) : [],
    filesTotal: desc?.fileBuffers?.length ?? 0,
    peers,
    errors: src.telemetry.recentErrors(),
  };
}

/** The metrics port's /status.json. */
export function statusPage(src: StatusSource): HttpPage {
  return { status: 200, body: `${JSON.stringify(engineStatus(src))}\n`, type: 'application/json; charset=utf-8' };
}
