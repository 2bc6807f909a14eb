/**
 * The core API's vocabulary, in Mooncake's C++ terms: opcodes, task statuses,
 * segment handles, batch ids, requests and their statuses, the engine's
 * options and counters. Types only (and two enums): no behaviour.
 */
import type { EngineConfig } from '../config.js';
import type { TransferEngineError } from '../errors.js';

export enum TransferOpcode {
  READ = 0,
  WRITE = 1,
}

/** Same order and values as Mooncake's TaskStatus. */
export enum TaskStatus {
  WAITING = 0,
  PENDING = 1,
  INVALID = 2,
  CANCELED = 3,
  COMPLETED = 4,
  TIMEOUT = 5,
  FAILED = 6,
}

export type SegmentHandle = number;
export type BatchID = number;

/** Where an engine is in its life: init() not called yet, running, ready for use, or closed (for good). */
export type EngineLifecycle = 'new' | 'initializing' | 'ready' | 'closed';

/** A registration of local memory, as registeredAt / registrationsIn report it. */
export interface LocalRegistration {
  /** Its address in this engine's segment. */
  addr: number;
  /** Its registered length in bytes. */
  length: number;
  /** Where it starts in its ArrayBuffer (kept when the memory is detached: a detached view reads offset 0). */
  byteOffset: number;
}

export interface TransferRequest {
  opcode: TransferOpcode;
  /** Local address inside registered memory (from registerLocalMemory). */
  source: number;
  targetId: SegmentHandle;
  /** Address in the target segment (for memory segments, the peer's 64-bit address). */
  targetOffset: number | bigint;
  length: number;
  /**
   * Set to address a registered file of the target segment (its id from the
   * descriptor's fileBuffers, or registerLocalFile for this engine's own):
   * targetOffset is then the offset in the file.
   */
  fileId?: number;
}

/** A memory request apart from its target segment: what checkRequests can check before the segment is open. */
export type RequestRanges = Pick<TransferRequest, 'opcode' | 'source' | 'targetOffset' | 'length'>;

/** waitBatch's options. */
export interface WaitOptions {
  /** Its abort cancels the batch's unfinished tasks (cancelBatch); they end CANCELED. */
  signal?: AbortSignal;
}

export interface TransferStatus {
  status: TaskStatus;
  /** Bytes acknowledged so far: a true lower bound. */
  transferred: number;
  /** Why the task failed or timed out. */
  error?: TransferEngineError;
}

export interface EngineOptions {
  /**
   * Metadata service, as Mooncake's connection string: 'P2PHANDSHAKE' (default),
   * 'http://host:port/metadata', 'etcd://h1:2379,h2:2379' (or a bare 'host:port'),
   * 'redis://host[:port]'. Falls back to MC_METADATA_SERVER. See metadataConnString()
   * for a separate metadata type (Mooncake's initializeExt).
   */
  metadataServer?: string;
  /** Address the RPC and data ports listen on. Default: MC_TCP_BIND_ADDRESS, else the IPv4 address of the host name. */
  listenHost?: string;
  /** Environment to read MC_* settings from (default process.env). */
  env?: Record<string, string | undefined>;
  /** Settings that override the environment. */
  config?: Partial<EngineConfig>;
  /**
   * Source address for data connections carrying memory of a location (from
   * MC_CUSTOM_TOPO_JSON's preferred NICs, see src/api/topology.ts); undefined: the OS picks.
   */
  sourceAddress?: (location: string) => string | undefined;
  /**
   * Allocate memory handed out by allocateLocalMemory() from named shared
   * memory (/dev/shm), so that engines on the same host copy into and out of it
   * directly instead of through TCP. Reading and writing peers' shared memory
   * needs no option: it is chosen whenever a peer on this host publishes some.
   */
  shm?: boolean;
  /** This host's identity for the same-host check (default TE_MACHINE_ID, else boot id + machine id). */
  machineId?: string;
  /**
   * Serve `GET /metrics` (Prometheus text) and `GET /health` on this port, on
   * the RPC port's address (default TE_METRICS_PORT; 0: not served).
   */
  metricsPort?: number;
  /**
   * Shared secret (at least 16 bytes; default TE_AUTH_SECRET): both ports then
   * require our challenge-response authentication before any request, and this
   * engine talks only to peers holding the same secret. Mooncake peers cannot
   * connect to such an engine (README, Security).
   */
  authSecret?: string | Uint8Array;
}

/** The handle of the engine's own segment: requests to it are served by a local copy. */
export const LOCAL_SEGMENT: SegmentHandle = 0;

/** What the listeners refused (README, Security): cumulative, for monitoring and tests. */
export interface SecurityCounters {
  /** Connections (RPC, data, file ports) whose authentication failed. */
  authRejected: number;
  /** TLS connections (RPC, data, file ports) refused: a certificate, a client without TLS, a handshake not done within the stall timeout. */
  tlsRejected: number;
  /** Connections closed at once because their address had too many open. */
  connectionsRefused: number;
  /** RPC connections closed at once because their address exceeded TE_HANDSHAKE_RATE. */
  handshakesRateLimited: number;
  /** Connections closed for making no progress mid-request for TE_STALL_TIMEOUT_MS. */
  connectionsStalled: number;
}

/** Retries (README, Retries): cumulative, for monitoring and tests. */
export interface RetryCounters {
  /** Slices resent by retry rounds (MC_RETRY_CNT). */
  retries: number;
  /** Times a peer was paused after failing to connect repeatedly (TE_PEER_PAUSE_MS). */
  peerPauses: number;
}

/** Cumulative counters, for monitoring (MC_TE_METRIC) and tests. */
export interface TransferCounters {
  bytesWritten: number;
  bytesRead: number;
  tasksCompleted: number;
  tasksFailed: number;
}

/** The engine's counters (stats()): tasks, bytes, connections, requests served, security and retries. */
export type EngineStats = TransferCounters & {
  dataConnections: number;
  lanes: number;
  requestsServed: number;
  requestsRejected: number;
  /** Connections accepted on the RPC (handshake) port: one per descriptor fetch, notify or probe of a peer. */
  rpcConnections: number;
  shmCopies: number;
  fileSameHost: number;
  fileSameHostFallbacks: number;
} & SecurityCounters &
  RetryCounters;
