/**
 * The documents behind the status page: what one engine serves at
 * /status.json on its metrics port (EngineStatus), and what a metadata server
 * or Store master serves at its /status.json (ClusterStatus), built from the
 * descriptors it holds and the engines' documents. JSON only: addresses as
 * hex strings, sizes as numbers (bytes, exact below 2^53).
 */
/** One failed transfer request, as the engine that submitted it saw it. */
export interface RecentError {
  /** ISO 8601, UTC. */
  time: string;
  opcode: 'read' | 'write';
  status: 'failed' | 'timeout' | 'canceled';
  code: string;
  message: string;
  /** The peer segment it was addressed to; absent for local requests. */
  peer?: string;
}

/** Traffic this engine initiated to one peer segment it has open. */
export interface PeerTrafficStatus {
  segment: string;
  bytesRead: number;
  bytesWritten: number;
  completed: number;
  failed: number;
}

export interface BufferStatus {
  name: string;
  /** Hex, "0x...". */
  addr: string;
  length: number;
  access?: 'read';
}

export interface FileStatus {
  path: string;
  size: number;
  access?: 'read';
}

export interface EngineTotals {
  bytesRead: number;
  bytesWritten: number;
  tasksCompleted: number;
  tasksFailed: number;
  inflight: number;
  retries: number;
  peerPauses: number;
  lanes: number;
  serverConnections: number;
  requestsServed: number;
  requestsRejected: number;
  authFailures: number;
}

/** GET /status.json on an engine's metrics port. */
export interface EngineStatus {
  segment: string;
  engineId: number;
  /** The engine's lifecycle state: 'new', 'initializing', 'ready' or 'closed'. */
  state: string;
  /** Null when serving; else why not (as /health says). */
  notServing: string | null;
  transports: string[];
  totals: EngineTotals;
  /** The first MAX_LISTED registrations; the totals count them all. */
  buffers: BufferStatus[];
  buffersTotal: number;
  files: FileStatus[];
  filesTotal: number;
  /** The busiest peers first, at most MAX_PEERS. */
  peers: PeerTrafficStatus[];
  /** Newest first, at most MAX_RECENT_ERRORS. */
  errors: RecentError[];
}

/** Bounds that keep every status document small whatever the cluster does. */
export const MAX_PEERS = 64;
export const MAX_RECENT_ERRORS = 20;
export const MAX_LISTED = 64;
/** Segments a metadata server's status lists (and engines it asks); more are counted in segmentsTotal. */
export const MAX_SEGMENTS = 256;

/** A segment as a metadata server sees it: its descriptor, and its engine's status when reachable. */
export interface SegmentStatus {
  name: string;
  protocol: string;
  /** host:port of its RPC port (rpc_meta), when published. */
  rpc?: string;
  /** The first MAX_LISTED of each, and how many there are. */
  buffers: BufferStatus[];
  buffersTotal: number;
  /** Bytes of all its buffers. */
  bufferBytes: number;
  files: FileStatus[];
  filesTotal: number;
  /**
   * 'up': its engine answered; 'unreachable': it advertises a metrics port that did not answer in time;
   * 'no-metrics': it advertises none (a Mooncake peer, or an engine without TE_METRICS_PORT);
   * 'bad-descriptor': its descriptor does not decode.
   */
  reach: 'up' | 'unreachable' | 'no-metrics' | 'bad-descriptor';
  /** Why it is not 'up'. */
  detail?: string;
  engine?: EngineStatus;
  /** Bytes/s its engine read and wrote since the previous sample; absent until two samples exist. */
  readRate?: number;
  writeRate?: number;
}

/** One point of the throughput chart: all engines that answered, summed. */
export interface ThroughputSample {
  /** Milliseconds since the epoch. */
  t: number;
  readRate: number;
  writeRate: number;
}

/** A Store master's own view: mounted segments and objects. */
export interface StoreStatus {
  role: string;
  clients: number;
  objects: number;
  capacityBytes: number;
  usedBytes: number;
  segments: { name: string; capacity: number; used: number }[];
}

/** GET /status.json on a metadata server or a Store master. */
export interface ClusterStatus {
  /** ISO 8601, UTC. */
  generatedAt: string;
  /** What serves the page: 'metadata-server' or 'master'. */
  server: string;
  /** By name, at most MAX_SEGMENTS. */
  segments: SegmentStatus[];
  segmentsTotal: number;
  /** Oldest first, one per sample interval, the last HISTORY_SECONDS. */
  history: ThroughputSample[];
  /** Recent errors of all engines, newest first, each with the segment that reported it. */
  errors: (RecentError & { segment: string })[];
  store?: StoreStatus;
}
