/**
 * The core engine, in the vocabulary of Mooncake's C++ API (seed 002):
 * segments, registered memory, batches of READ/WRITE requests whose status is
 * polled (or awaited), pluggable transports. Errors are TransferEngineError
 * with a stable `code`; a request's own failure is reported on its task.
 */
import net from 'node:net';
import os from 'node:os';
import { randomBytes } from 'node:crypto';
import { loadConfig, type EngineConfig } from './config.js';
import { bufferEntrySize, decodeSegmentDesc, encodeSegmentDesc, type BufferDesc, type SegmentDesc } from './codec/descriptor.js';
import { HandshakeType } from './codec/handshake.js';
import { teError, ErrorCode, TransferEngineError } from './errors.js';
import { exchange, HandshakeServer, type Notification } from './handshake.js';
import { MemoryRegistry, detachedError, fmtAddr, type Region, type RegionAccess } from './memory.js';
import { AUTH_SCHEME, secretBytes } from './codec/auth.js';
import { isWildcard, joinHostPort, parseHostPort, resolveIPv4, splitHostPort } from './net.js';
import { DEFAULT_NAME_PORT, parseMetadataConnString } from './metadata/connection.js';
import { SegmentDirectory } from './metadata/directory.js';
import { metadataKeys } from './metadata/keys.js';
import { openMetadataStore, storeOptionsFromEnv } from './metadata/store.js';
import type { RpcMeta } from './metadata/values.js';
import { allocateShmRegion, reapStaleShmFiles, shmNativeAvailable, type ShmRegion } from './shm/index.js';
import { locateShmRegion, ShmTransport, type ShmPeerRegion } from './transport/shm.js';
import { Slice, Failure, type SliceOwner } from './transport/slice.js';
import { TcpClient, type PeerAddress } from './transport/tcp/client.js';
import { TcpDataServer } from './transport/tcp/server.js';
import { MAX_FILE_REQUEST } from './transport/tcp/file-serve.js';
import { SameHostFiles } from './transport/file-same-host.js';
import { loadFileConfig, parseTrid } from './file/config.js';
import { checkFileId, checkFileRange, LocalFiles } from './file/local-files.js';
import type { RegisteredFile, RegisterFileOptions } from './file/registry.js';

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
   * Shared secret (at least 16 bytes; default TE_AUTH_SECRET): both ports then
   * require our challenge-response authentication before any request, and this
   * engine talks only to peers holding the same secret. Mooncake peers cannot
   * connect to such an engine (README, Security).
   */
  authSecret?: string | Uint8Array;
}

/**
 * A descriptor's size apart from its buffers: name, ports, ids, timestamp
 * (about 300 bytes), with room for a few registered files.
 */
const DESCRIPTOR_OVERHEAD = 1024;

/** A random engine id in [1, 2^53) (src/codec/wire.ts, engine identity). */
function newEngineId(): number {
  for (;;) {
    const id = Number(randomBytes(8).readBigUInt64LE() >> 11n);
    if (id > 0) return id;
  }
}

/** The handle of the engine's own segment: requests to it are served by a local copy. */
export const LOCAL_SEGMENT: SegmentHandle = 0;

/** Transports that exist in Mooncake but need hardware this host does not have. */
const UNSUPPORTED_TRANSPORTS = new Set([
  'rdma', 'barex', 'efa', 'cxi', 'ub', 'nccl', 'ascend', 'nvlink', 'nvlink_intra', 'hip', 'maca', 'musa',
  'ubshmem', 'sunrise_link', 'cxl', 'nvmeof',
]);

interface RemoteSegment {
  handle: SegmentHandle;
  name: string;
  desc: SegmentDesc;
  /** Where its data port is: the descriptor name's host (P2P) or rpc_meta's (central modes). */
  host: string;
  /** Built from desc and host (peerAddress), replaced when they change. */
  peer: PeerAddress;
  /** Bumped each time a refetched descriptor moved the peer (stale-peer recovery). */
  generation: number;
  refreshing: Promise<RefreshResult> | null;
  /** When the last refetch ended (performance.now()), and what it found; null: never refetched. */
  refreshedAt: number;
  lastRefresh: RefreshResult | null;
  /** When a fetch last returned this segment's descriptor (open or refetch). */
  fetchedAt: number;
}

/** What a refetch found: the same descriptor, a changed one (now cached), or why it could not be fetched. */
type RefreshResult = 'same' | 'changed' | TransferEngineError;

/** A segment whose first descriptor fetch is running (openSegment, segmentHandle). */
class PendingOpen {
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

/**
 * Backoff before retry round k: uniform in [0, min(RETRY_CAP_MS, RETRY_BASE_MS * 2^k)),
 * "full jitter", so tasks that failed together do not come back together.
 * With MC_RETRY_CNT=5: at most 20+40+80+160+320 ms in all.
 */
const RETRY_BASE_MS = 20;
const RETRY_CAP_MS = 1000;
/** The longest a handshake reply is awaited after the connect timeout (then MC_TRANSFER_TIMEOUT bounds it too). */
const HANDSHAKE_REPLY_GRACE_MS = 10_000;
/** Rounds within this long of a refetch reuse its answer instead of asking again. */
const REFRESH_MIN_INTERVAL_MS = 100;
/** A Mooncake peer's descriptor older than this is fetched again before a new connection takes requests (revalidate). */
const REVALIDATE_AFTER_MS = 1000;

/** What the listeners refused (README, Security): cumulative, for monitoring and tests. */
export interface SecurityCounters {
  /** Connections (RPC, data, file ports) whose authentication failed. */
  authRejected: number;
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

/**
 * One request. Its slices go out; those that fail in a way resending can cure
 * are held (pinned) and, once no slice of the task is in flight, resent
 * together in a retry round (TransferEngine.retryTask), up to MC_RETRY_CNT
 * rounds. Resending is safe because both operations are idempotent: a WRITE
 * puts the same bytes at the same address again (the source stays pinned and
 * unchanged until the task ends), a READ copies the same range into the same
 * place again. A task is COMPLETED only when every slice was acknowledged.
 */
class Task implements SliceOwner {
  status = TaskStatus.WAITING;
  transferred = 0;
  error: TransferEngineError | undefined;
  pending = 0;

  /** Slices to resend in the next round; they keep their region pinned until then. */
  retryable: Slice[] = [];
  /** The first error of this round's failures: the task's error if it gives up. */
  retryError: TransferEngineError | undefined;
  /**
   * Every failure of this round was an address rejection or another engine at
   * the peer's address: resend only if the refetched descriptor changed.
   */
  needsNewDescriptor = true;
  /** A slice failed this round in a way that dooms the round (haltsTask): slices not sent yet are skipped. */
  halted = false;
  /** Every failure of this round was a timeout (no progress for MC_TRANSFER_TIMEOUT). */
  onlyTimeouts = true;
  /** A slice of this round completed. */
  progressed = false;
  /** Retry rounds started. */
  rounds = 0;
  /** The segment's generation this task last sent with. */
  generation: number;
  /** The backoff before the next round. */
  retryTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly batch: Batch,
    readonly write: boolean,
    private readonly counters: TransferCounters,
    /** The peer's segment (set when its open completes, for a task submitted while it opened); null: local, never retried. */
    public seg: RemoteSegment | null = null,
    /** Starts a retry round (the engine's, shared by all tasks); null: no retries. */
    private readonly onRetry: ((task: Task) => void) | null = null,
  ) {
    this.generation = seg?.generation ?? 0;
  }

  halt(): void {
    this.halted = true;
  }

  sliceDone(slice: Slice, error: TransferEngineError | null): void {
    if (error === null) {
      this.transferred += slice.length;
      this.progressed = true;
    } else if (this.onRetry !== null && slice.failure === Failure.SKIPPED) {
      // Never sent: held for the next round like the failure that halted the round, which decides it.
      slice.region.pins++;
      this.retryable.push(slice);
    } else if (this.onRetry !== null && slice.failure !== Failure.FATAL) {
      // Retryable: lost, refused or timed-out connections, a paused peer, an address rejection,
      // another engine at the address. Not: protocol errors (a peer that speaks garbage),
      // authentication, closed, the peer's file I/O, detached local memory.
      slice.region.pins++;
      this.retryable.push(slice);
      this.retryError ??= error;
      if (slice.failure !== Failure.REJECTED && slice.failure !== Failure.WRONG_PEER) this.needsNewDescriptor = false;
      if (slice.failure !== Failure.TIMEOUT) this.onlyTimeouts = false;
    } else this.error ??= error;
    if (--this.pending > 0) return;
    // Timeouts alone are retried only if the task progressed meanwhile (the stall was one
    // connection's): a task with no progress at all for MC_TRANSFER_TIMEOUT ends in TIMEOUT, as documented.
    const stalled = this.onlyTimeouts && !this.progressed;
    if (this.retryable.length > 0 && !this.error && !stalled) this.onRetry!(this);
    else this.giveUp();
  }

  /** Start the next round: the held slices (their pins pass to the new slices), with the round's state reset. */
  takeRetryable(): Slice[] {
    const slices = this.retryable;
    this.retryable = [];
    this.retryError = undefined;
    this.needsNewDescriptor = true;
    this.halted = false;
    this.onlyTimeouts = true;
    this.progressed = false;
    this.pending = slices.length;
    return slices;
  }

  /** Finish without (more) retries: unpin held slices, report the first error. */
  giveUp(): void {
    for (const s of this.retryable) s.region.pins--;
    if (this.retryable.length > 0) this.error ??= this.retryError;
    this.retryable = [];
    this.finish();
  }

  finish(): void {
    const c = this.counters;
    if (this.write) c.bytesWritten += this.transferred;
    else c.bytesRead += this.transferred;
    if (this.error) {
      this.status = this.error.code === ErrorCode.TIMEOUT ? TaskStatus.TIMEOUT : TaskStatus.FAILED;
      c.tasksFailed++;
    } else {
      this.status = TaskStatus.COMPLETED;
      c.tasksCompleted++;
    }
    this.batch.taskFinished();
  }
}

class Batch {
  readonly tasks: Task[] = [];
  unfinished = 0;
  private waiters: Array<() => void> = [];

  constructor(readonly capacity: number) {}

  taskFinished(): void {
    if (--this.unfinished === 0) {
      const w = this.waiters;
      this.waiters = [];
      for (const f of w) f();
    }
  }

  whenDone(): Promise<void> {
    if (this.unfinished === 0) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

type State = 'new' | 'initializing' | 'ready' | 'closed';

const U64_MAX = (1n << 64n) - 1n;

export class TransferEngine {
  private state: State = 'new';
  private config!: EngineConfig;
  /** Registered memory; made by init (its base comes from the configuration). */
  private registry!: MemoryRegistry;
  private handshake: HandshakeServer | null = null;
  private dataServer: TcpDataServer | null = null;
  private tcpClient: TcpClient | null = null;
  private name = '';
  private readonly segmentsByName = new Map<string, RemoteSegment>();
  private readonly segments = new Map<SegmentHandle, RemoteSegment>();
  /** Segments whose first fetch runs, by name and by handle. */
  private readonly opening = new Map<string, PendingOpen>();
  private readonly openingHandles = new Map<SegmentHandle, PendingOpen>();
  private nextSegment = 1;
  private readonly batches = new Map<BatchID, Batch>();
  private nextBatch = 1;
  private notifications: Notification[] = [];
  /** The encoded size of the descriptor's buffer entries (memoryChanged). */
  private bufferEntriesSize = 0;
  /** The last memoryChanged warned that the descriptor is too large (until it shrinks below the limit again). */
  private descriptorTooLarge = false;
  /** Exchanges in progress with RPC ports: close() aborts them, so they end at once instead of at their timeouts. */
  private readonly exchanges = new Set<AbortController>();
  private readonly counters: TransferCounters = { bytesWritten: 0, bytesRead: 0, tasksCompleted: 0, tasksFailed: 0 };
  /** Central metadata store (http/etcd/redis); null in P2P mode. */
  private directory: SegmentDirectory | null = null;
  /** rpc_meta of peers, looked up for Notify/Probe in central modes. */
  private readonly rpcMetaCache = new Map<string, RpcMeta>();
  /** Where the RPC and data ports listen (set by init). */
  private listenAddress = '';
  /** Registered files and their I/O pool (set by init). */
  private files: LocalFiles | null = null;
  /** The nvmeof_generic transport's own listener for file requests (its trid's traddr:trsvcid); null: files use the data port. */
  private fileServer: { server: TcpDataServer; host: string; port: number } | null = null;
  /** Same-host copies into peers' shared memory (set by init). */
  private shm: ShmTransport | null = null;
  /** Shared memory this engine allocated, by address: freed on unregister and close. */
  private readonly ownedShm = new Map<number, ShmRegion>();
  private shmCopies = 0;
  /** Tasks between retry rounds (backoff, or refetching the descriptor): close() ends them. */
  private readonly retrying = new Set<Task>();
  /** Slices resent by retry rounds. */
  private retries = 0;
  /** Peer pauses counted by TCP clients already replaced (uninstallTransport). */
  private pastPeerPauses = 0;
  /** Same-host peers' files, read and written here directly (null: TE_FILE_SAME_HOST=0). */
  private sameHostFiles: SameHostFiles | null = null;
  /** Requests to peers' files served directly / sent over TCP although the peer is on this host. */
  private fileSameHost = 0;
  private fileSameHostFallbacks = 0;

  /** This engine instance's identity: published as engine_id, checked by our peers on each data connection. */
  readonly engineId: number = newEngineId();

  constructor(private readonly options: EngineOptions = {}) {}

  /**
   * Start the engine: bind the RPC (handshake) port and the TCP data port.
   * In P2P mode the segment name becomes the dialable `host:rpcPort`. In central
   * modes the name stays as given, and the descriptor and rpc_meta are published.
   * @param serverName this engine's name; its host part is used unless `connectableName` is given.
   * @param connectableName the host peers dial (Mooncake's ip_or_host_name); central modes default to
   *   MC_TCP_BIND_ADDRESS, an IP in `serverName`, else the first non-loopback IPv4 address.
   * @param rpcPort RPC port to bind; 0 (default) picks a free one in [MC_MIN_RPC_PORT, MC_MAX_RPC_PORT].
   */
  async init(serverName: string, connectableName?: string, rpcPort = 0): Promise<void> {
    if (this.state !== 'new') {
      throw teError(this.state === 'closed' ? ErrorCode.CLOSED : ErrorCode.ALREADY_INITIALIZED, 'init() may be called once');
    }
    if (typeof serverName !== 'string' || serverName.length === 0) {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'serverName must be a non-empty string');
    }
    if (connectableName !== undefined && (typeof connectableName !== 'string' || connectableName.length === 0)) {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'connectableName must be a non-empty string when given');
    }
    if (!Number.isInteger(rpcPort) || rpcPort < 0 || rpcPort > 65535) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `rpcPort ${String(rpcPort)} is not a port number`);
    }
    const env = this.options.env ?? process.env;
    this.config = { ...loadConfig(env), ...this.options.config };
    if (this.options.authSecret !== undefined) this.config.authSecret = secretBytes(this.options.authSecret, 'authSecret', ErrorCode.INVALID_ARGUMENT);
    this.registry = new MemoryRegistry(this.config.addressBase === undefined ? {} : { base: this.config.addressBase });
    const metadata = this.options.metadataServer || env['MC_METADATA_SERVER'] || 'P2PHANDSHAKE';
    const target = parseMetadataConnString(metadata);
    const storeOptions = storeOptionsFromEnv(env); // malformed TE_METADATA_* / MC_REDIS_* fail before any port is bound
    const fileConfig = loadFileConfig(env); // MC_NVMEOF_GENERIC_*, checked as early
    if (this.options.shm && !shmNativeAvailable()) {
      throw teError(ErrorCode.NOT_SUPPORTED, 'shared memory was asked for (shm option) but the native addon is not built on this host');
    }
    this.state = 'initializing';
    try {
      this.shm = new ShmTransport(this.options.machineId === undefined ? {} : { machineId: this.options.machineId });
      if (this.shm.available) reapStaleShmFiles(); // files of crashed engines on this host
      const central = target.type !== 'p2p';
      // P2P names are addresses (and so are central ones whose port is bound, MC_LEGACY_RPC_PORT_BINDING): a bad port is an error.
      const { host, port: namePort } =
        !central || this.config.legacyRpcPortBinding ? parseHostPort(serverName, 'serverName') : splitHostPort(serverName);
      // Central modes publish this host in rpc_meta (Mooncake: MC_TCP_BIND_ADDRESS, else the first interface).
      const connectHost = connectableName ?? (central ? this.publishedHost(host) : host);
      let port = rpcPort;
      if (port === 0 && this.config.legacyRpcPortBinding && namePort !== undefined) port = namePort;
      const { minPort, maxPort } = this.config;
      if (port === 0 && minPort === maxPort) {
        throw teError(ErrorCode.BAD_ENV, `MC_MIN_RPC_PORT = MC_MAX_RPC_PORT = ${minPort} leaves one port, and the engine binds two there (RPC and data): give a range of at least two ports, or an RPC port outside it`);
      }
      const listenHost = await this.listenHostFor(connectHost, central ? undefined : host);
      this.listenAddress = listenHost;
      this.handshake = new HandshakeServer(
        { metadata: () => this.descriptorJson(), notify: (n) => this.notifications.push(n) },
        this.config.handshakeMaxLength,
        { authSecret: this.config.authSecret, limits: this.config },
      );
      const boundRpc = await this.handshake.listen(listenHost, port, minPort, maxPort);
      // Central modes keep the name as given (it is the key); P2P names are the dialable host:rpcPort.
      this.name = central ? serverName : joinHostPort(connectHost, boundRpc);
      this.files = new LocalFiles(fileConfig);
      if (fileConfig.sameHost) this.sameHostFiles = new SameHostFiles(this.shm.machineId);
      this.dataServer = new TcpDataServer(this.registry, this.files.context, this.dataServerOptions());
      await this.dataServer.listen(listenHost, 0, minPort, maxPort).catch((e: unknown) => {
        if (!(e instanceof TransferEngineError) || e.code !== ErrorCode.PORT_IN_USE) throw e;
        throw teError(ErrorCode.PORT_IN_USE, `the data port: ${e.message} (the RPC port took ${boundRpc}; MC_MIN_RPC_PORT..MC_MAX_RPC_PORT must hold both)`, e);
      });
      this.tcpClient = this.newTcpClient();
      if (target.type !== 'p2p') {
        const store = await openMetadataStore(target, storeOptions);
        this.directory = new SegmentDirectory(store, metadataKeys(env), (meta, name) => this.answersAs(meta, name), this.config.maxDescriptorSize);
        await this.directory.publish(this.name, { ipOrHostName: connectHost, rpcPort: boundRpc }, () => this.buildDescriptor());
      }
      this.state = 'ready';
    } catch (e) {
      const dir = this.directory;
      this.directory = null;
      await dir?.close(); // removes whatever part of our entry was written
      await this.releaseResources();
      this.state = 'new';
      throw e;
    }
  }

  /**
   * Where to listen, checked against where peers will dial (`connectHost`):
   * a wildcard is no address to publish, and a listener of one address family
   * cannot be reached at an address of the other. (Another address of the
   * same family is allowed: proxies and NAT publish one address and listen on
   * another.)
   */
  private async listenHostFor(connectHost: string, p2pNameHost: string | undefined): Promise<string> {
    if (isWildcard(connectHost)) {
      const what = p2pNameHost === connectHost ? `the segment name's host "${connectHost}"` : `connectableName "${connectHost}"`;
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `${what} is a wildcard address, which peers cannot dial: give this host's name or address (MC_TCP_BIND_ADDRESS=0.0.0.0 listens on every interface)`,
      );
    }
    const explicit = this.options.listenHost ?? this.config.bindAddress;
    if (explicit === undefined) return resolveIPv4(connectHost);
    const what = this.options.listenHost !== undefined ? `listenHost "${explicit}"` : `MC_TCP_BIND_ADDRESS="${explicit}"`;
    const code = this.options.listenHost !== undefined ? ErrorCode.INVALID_ARGUMENT : ErrorCode.BAD_ENV;
    if (explicit === '::') return explicit; // dual stack: reachable at either family
    let dialed: string;
    try {
      dialed = await resolveIPv4(connectHost);
    } catch {
      return explicit; // peers may resolve it where we cannot (split DNS): nothing to compare
    }
    const listenFamily = net.isIP(explicit);
    if (listenFamily !== 0 && listenFamily !== net.isIP(dialed)) {
      throw teError(code, `${what} listens on IPv${listenFamily}, but peers will dial ${connectHost} (${dialed}), an IPv${net.isIP(dialed)} address: they could not reach this engine`);
    }
    return explicit;
  }

  private dataServerOptions(): { authSecret: Buffer | undefined; limits: EngineConfig; engineId: number } {
    return { authSecret: this.config.authSecret, limits: this.config, engineId: this.engineId };
  }

  private newTcpClient(): TcpClient {
    return new TcpClient({
      authSecret: this.config.authSecret,
      lanesPerPeer: this.config.lanesPerPeer,
      timeoutMs: this.config.transferTimeoutMs,
      connectTimeoutMs: Math.min(this.config.transferTimeoutMs, this.config.handshakeConnectTimeoutMs),
      peerPauseMs: this.config.peerPauseMs,
      keepAliveMs: this.config.keepAliveMs,
    });
  }

  private ready(): void {
    if (this.state === 'ready') return;
    if (this.state === 'closed') throw teError(ErrorCode.CLOSED, 'the engine is closed');
    throw teError(ErrorCode.NOT_INITIALIZED, 'call init() first');
  }

  /** This engine's segment name (`host:rpcPort` in P2P mode). */
  get segmentName(): string {
    this.ready();
    return this.name;
  }

  get rpcPort(): number {
    this.ready();
    return this.handshake!.port;
  }

  /** The TCP data port published in the descriptor (0 when TCP is uninstalled). */
  get dataPort(): number {
    this.ready();
    return this.dataServer?.port ?? 0;
  }

  // ---------------------------------------------------------------- memory

  /**
   * Register memory; returns its address in this engine's segment.
   * @param location 'cpu:0', '*', ... (GPU locations are not supported on this host)
   * @param access what peers may do: 'readwrite' (default, as Mooncake), 'read', or 'none';
   *   Mooncake's remote_accessible boolean is accepted too (true: 'readwrite', false: 'none')
   */
  registerLocalMemory(mem: Uint8Array | ArrayBuffer, location = '*', access: RegionAccess | boolean = true): number {
    this.ready();
    const region = this.registry.register(mem, { location, access });
    this.memoryChanged([region], []);
    return region.addr;
  }

  /**
   * Allocate `size` bytes (zeroed) and register them; returns the address.
   * With the `shm` option the memory lives in /dev/shm and same-host peers
   * copy into and out of it directly. Give it back with unregisterLocalMemory.
   */
  allocateLocalMemory(size: number, location = '*', access: RegionAccess | boolean = true): number {
    this.ready();
    if (!Number.isSafeInteger(size) || size <= 0) throw teError(ErrorCode.INVALID_ARGUMENT, `size ${String(size)} must be a positive integer`);
    let registered: Region;
    if (this.options.shm) {
      const region = allocateShmRegion(size);
      try {
        registered = this.registry.register(region.bytes, { location, access, shmName: region.name });
      } catch (e) {
        region.free();
        throw e;
      }
      this.ownedShm.set(registered.addr, region);
    } else {
      let mem: ArrayBuffer;
      try {
        mem = new ArrayBuffer(size); // virtual until touched
      } catch (e) {
        throw teError(ErrorCode.OUT_OF_MEMORY, `cannot allocate ${size} bytes: ${(e as Error).message}`, e);
      }
      registered = this.registry.register(mem, { location, access });
    }
    this.memoryChanged([registered], []);
    return registered.addr;
  }

  /** Register several regions; all or none (a failure unregisters the ones already done). */
  registerLocalMemoryBatch(mems: Array<Uint8Array | ArrayBuffer>, location = '*', access: RegionAccess | boolean = true): number[] {
    this.ready();
    if (!Array.isArray(mems)) throw teError(ErrorCode.INVALID_ARGUMENT, 'expected an array of buffers');
    const regions = this.registry.registerAll(mems, { location, access });
    this.memoryChanged(regions, []);
    return regions.map((r) => r.addr);
  }

  /** Unregister the region starting at `addr`. Refused (TE_REGION_BUSY) while transfers use it. */
  unregisterLocalMemory(addr: number): void {
    this.ready();
    const region = this.registry.unregister(addr);
    this.freeOwnedShm(addr);
    this.memoryChanged([], [region]);
  }

  /**
   * Registered memory changed: central modes re-publish the descriptor (as
   * Mooncake does), and the descriptor's size is kept up to date, so that
   * the registration that makes it too large for peers to accept is told so.
   */
  private memoryChanged(added: readonly Region[], removed: readonly Region[]): void {
    this.directory?.descriptorChanged();
    for (const r of added) if (r.remoteAccessible) this.bufferEntriesSize += bufferEntrySize(this.name, this.bufferDesc(r));
    for (const r of removed) if (r.remoteAccessible) this.bufferEntriesSize -= bufferEntrySize(this.name, this.bufferDesc(r));
    const limit = this.directory ? this.config.maxDescriptorSize : Math.min(this.config.handshakeMaxLength, this.config.maxDescriptorSize);
    const size = this.bufferEntriesSize + DESCRIPTOR_OVERHEAD;
    if (size <= limit) {
      this.descriptorTooLarge = false;
      return;
    }
    if (this.descriptorTooLarge) return; // said once per crossing
    this.descriptorTooLarge = true;
    const what = this.directory ? 'TE_MAX_DESCRIPTOR_SIZE' : 'MC_HANDSHAKE_MAX_LENGTH, the handshake frame limit';
    process.emitWarning(
      `the segment descriptor of ${this.name} is now about ${size} bytes with ${this.registry.list().length} regions, above the ${limit} bytes peers accept (${what}, applied by each peer): peers can no longer open this segment; register fewer, larger regions, or raise the limit on every peer`,
      { type: 'TransferEngineWarning', code: 'TE_DESCRIPTOR_TOO_LARGE' },
    );
  }

  /** A region as the descriptor publishes it. */
  private bufferDesc(r: Region): BufferDesc {
    return {
      name: this.name,
      addr: BigInt(r.addr),
      length: BigInt(r.length),
      ...(r.shmName ? { shmName: r.shmName } : {}),
      ...(r.remoteWritable ? {} : { access: 'read' as const }),
    };
  }

  /** Shared memory from allocateLocalMemory goes away with its registration (its file is removed). */
  private freeOwnedShm(addr: number): void {
    const region = this.ownedShm.get(addr);
    if (!region) return;
    this.ownedShm.delete(addr);
    region.free();
  }

  /** Unregister several regions; checks all first, so a busy or unknown one changes nothing. */
  unregisterLocalMemoryBatch(addrs: number[]): void {
    this.ready();
    if (!Array.isArray(addrs)) throw teError(ErrorCode.INVALID_ARGUMENT, 'expected an array of addresses');
    for (const a of addrs) {
      const r = this.registry.resolve(a, 1);
      if (!r || r.offset !== 0) throw teError(ErrorCode.INVALID_ARGUMENT, `no region is registered at address ${fmtAddr(a)}`);
      if (r.region.pins > 0) throw teError(ErrorCode.REGION_BUSY, `region at ${fmtAddr(a)} has transfers in flight`);
    }
    const removed = addrs.map((a) => {
      const region = this.registry.unregister(a);
      this.freeOwnedShm(a);
      return region;
    });
    this.memoryChanged([], removed);
  }

  // ---------------------------------------------------------------- files

  /**
   * Register a local file (seed 004): peers (and this engine) can then read and
   * write `[0, size)` of it by (segment, file id, offset). Returns the file id.
   * The file must exist and hold at least `size` bytes (or pass `grow`); block
   * devices need `allowBlockDevice`. See src/file/registry.ts.
   */
  registerLocalFile(path: string, size: number, options?: RegisterFileOptions): number {
    this.ready();
    const id = this.files!.register(path, size, options).id;
    this.directory?.descriptorChanged();
    return id;
  }

  /** Unregister a file by the path it was registered with. Refused (TE_REGION_BUSY) while transfers use it. */
  unregisterLocalFile(path: string): void {
    this.ready();
    this.files!.unregister(path);
    this.directory?.descriptorChanged();
  }

  /** The address of the memory's first byte if it is registered (and not detached), else 0. */
  addressOf(mem: Uint8Array | ArrayBuffer): number {
    this.ready();
    return this.registry.addressOf(mem instanceof Uint8Array ? mem : new Uint8Array(mem));
  }

  /** A view of registered memory: `[addr, addr+length)` must lie inside one region. */
  localView(addr: number, length: number): Uint8Array {
    this.ready();
    const r = this.resolveLocal(addr, length, 'address');
    return r.region.bytes.subarray(r.offset, r.offset + length);
  }

  private resolveLocal(addr: number, length: number, what: string): { region: Region; offset: number } {
    if (!Number.isSafeInteger(addr) || addr <= 0) throw teError(ErrorCode.INVALID_ARGUMENT, `${what} ${String(addr)} is not a valid address`);
    if (!Number.isSafeInteger(length) || length <= 0) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `length ${String(length)} must be a positive integer`);
    }
    const r = this.registry.resolve(addr, length);
    if (!r) {
      throw teError(
        ErrorCode.ADDRESS_NOT_REGISTERED,
        `${what} range [${fmtAddr(addr)}, +${length}) is not inside one registered region`,
      );
    }
    if (r.region.detached) throw detachedError(r.region, what);
    return r;
  }

  /** This engine's descriptor as peers see it. */
  getLocalSegmentDescriptor(): SegmentDesc {
    this.ready();
    return this.buildDescriptor();
  }

  private buildDescriptor(): SegmentDesc {
    return {
      name: this.name,
      protocol: 'tcp',
      tcpDataPort: this.dataServer?.port ?? 0,
      tcpProtoVersion: 2,
      engineId: this.engineId,
      // Detached memory is left out (peers refuse a buffer of length 0, and it cannot be served): the rest stays usable.
      buffers: this.registry
        .list()
        .filter((r) => r.remoteAccessible && !r.detached)
        .map((r) => this.bufferDesc(r)),
      ...(this.shm?.machineId ? { machineId: this.shm.machineId } : {}),
      ...(this.config.authSecret ? { auth: AUTH_SCHEME } : {}),
      ...(this.files && this.files.registry.size > 0 ? { fileBuffers: this.files.describe() } : {}),
      ...(this.fileServer ? { fileEndpoint: this.fileEndpoint() } : {}),
    };
  }

  private descriptorJson(): string | null {
    return this.state === 'ready' ? encodeSegmentDesc(this.buildDescriptor()) : null;
  }

  // -------------------------------------------------------------- segments

  /**
   * Open a segment by name (P2P: `host:rpcPort`); fetches and caches its
   * descriptor. Concurrent opens of one name share one fetch.
   */
  async openSegment(segmentName: string): Promise<SegmentHandle> {
    this.ready();
    const name = this.segmentKey(segmentName);
    if (name === this.name) return LOCAL_SEGMENT;
    const open = this.segmentsByName.get(name);
    if (open) return open.handle;
    return (await this.beginOpen(name).segment).handle;
  }

  /**
   * The handle of a segment by name, at once: an open segment's, or a new one
   * whose descriptor is fetched in the background (shared with concurrent
   * opens). Memory requests submitted to it meanwhile wait inside their tasks
   * and fail with the fetch's error if it fails (then the handle is dropped;
   * the next call opens the name afresh). For the calls that need the
   * descriptor (getSegmentDescriptor, file requests), await openSegment.
   */
  segmentHandle(segmentName: string): SegmentHandle {
    this.ready();
    const name = this.segmentKey(segmentName);
    if (name === this.name) return LOCAL_SEGMENT;
    return this.segmentsByName.get(name)?.handle ?? this.beginOpen(name).handle;
  }

  /** A segment name as given, checked: non-empty, and in P2P mode a dialable `host[:port]`. */
  private segmentKey(segmentName: unknown): string {
    if (typeof segmentName !== 'string') throw teError(ErrorCode.INVALID_ARGUMENT, 'segment name must be a string');
    const name = segmentName.replace(/^\/+/, '');
    if (name.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'segment name is empty');
    if (!this.directory) parseHostPort(name, 'segment name'); // P2P names are addresses: a bad port is an error, not 12001
    return name;
  }

  /** The fetch of a segment's descriptor, started once per name until it ends. */
  private beginOpen(name: string): PendingOpen {
    const running = this.opening.get(name);
    if (running) return running;
    const handle = this.nextSegment++;
    const pending = new PendingOpen(handle, name, async (self) => {
      try {
        const { desc, host } = await this.lookupSegment(name);
        this.ready(); // closed while we waited?
        const seg: RemoteSegment = {
          handle,
          name,
          desc,
          host,
          peer: { host, port: 0, v2: true }, // replaced at once: the address's revalidate needs the segment
          generation: 0,
          refreshing: null,
          refreshedAt: 0,
          lastRefresh: null,
          fetchedAt: performance.now(),
        };
        seg.peer = this.peerAddress(seg);
        if (!self.cancelled) {
          this.segments.set(handle, seg);
          this.segmentsByName.set(name, seg);
        }
        return seg;
      } finally {
        this.opening.delete(name);
        this.openingHandles.delete(handle);
      }
    });
    this.opening.set(name, pending);
    this.openingHandles.set(handle, pending);
    return pending;
  }

  /**
   * Where the data connections go, built once per descriptor (the TCP client
   * keys its peers on the object). Our peers publish an engine id, which every
   * lane checks; for the others (Mooncake) a lane opened while none is
   * connected first fetches the descriptor again (revalidate).
   */
  private peerAddress(seg: RemoteSegment): PeerAddress {
    const { desc, host } = seg;
    const addr: PeerAddress = { host, port: desc.tcpDataPort, v2: desc.tcpProtoVersion >= 2 && !this.config.forceTcpV1 };
    if (desc.engineId !== undefined) addr.engineId = desc.engineId;
    else addr.revalidate = () => this.revalidate(seg);
    return addr;
  }

  /**
   * Before a Mooncake peer gets requests on a new connection (none other
   * connected): is the descriptor we hold still the peer's? Its process may
   * have died and another taken its data port. A descriptor fetched within
   * REVALIDATE_AFTER_MS counts as checked.
   */
  private async revalidate(seg: RemoteSegment): Promise<void> {
    if (performance.now() - seg.fetchedAt < REVALIDATE_AFTER_MS) return;
    const r = await this.refreshSegment(seg, seg.generation);
    if (r === 'same') return;
    if (r === 'changed') {
      throw teError(ErrorCode.PEER_CHANGED, `segment "${seg.name}" changed since its descriptor was fetched (other memory or another data port): requests meant for the old one are not sent`);
    }
    throw teError(ErrorCode.PEER_UNREACHABLE, `cannot confirm that segment "${seg.name}" is still the peer it was: ${r.message}`, r);
  }

  /**
   * Fetch a segment's descriptor and where its data port is. P2P: ask the peer
   * itself; the data host is the host part of the descriptor's name. Central
   * modes: GET the descriptor and rpc_meta; the data host is rpc_meta's.
   */
  private async lookupSegment(name: string): Promise<{ desc: SegmentDesc; host: string }> {
    let desc: SegmentDesc;
    let host: string;
    if (this.directory) {
      const found = await this.directory.fetchSegment(name);
      desc = found.desc;
      host = found.rpcMeta.ipOrHostName;
      this.rpcMetaCache.set(desc.name, found.rpcMeta);
    } else {
      desc = await this.fetchDescriptor(name);
      host = splitHostPort(desc.name).host;
    }
    if (desc.protocol !== 'tcp') {
      throw teError(
        ErrorCode.NO_TRANSPORT,
        `segment "${name}" uses protocol "${desc.protocol}", which this host cannot speak; start that peer with MC_FORCE_TCP=1`,
      );
    }
    if (desc.tcpDataPort <= 0) throw teError(ErrorCode.MALFORMED, `segment "${name}" publishes no TCP data port`);
    // With a secret we talk only to peers that authenticate; without one, a peer that requires it cannot be used.
    if (desc.auth !== undefined && !this.config.authSecret) {
      throw teError(ErrorCode.AUTH_REQUIRED, `segment "${name}" requires authentication (${desc.auth}): give this engine the same shared secret (authSecret option or TE_AUTH_SECRET)`);
    }
    if (desc.auth === undefined && this.config.authSecret) {
      throw teError(ErrorCode.AUTH_FAILED, `segment "${name}" does not authenticate, and this engine (with a shared secret) talks only to peers that do`);
    }
    return { desc, host };
  }

  /**
   * Refetch a segment's descriptor after a failure (or to revalidate it).
   * 'changed': the peer moved, restarted (another engine id) or changed its
   * memory since `generation` (the cache is updated; retrying can help);
   * 'same': it looks the same; an error: it cannot be fetched. Concurrent
   * callers share one refetch, and calls shortly after a refetch reuse its
   * answer (a dead peer is not asked again by every task).
   */
  private refreshSegment(seg: RemoteSegment, generation: number): Promise<RefreshResult> {
    if (seg.generation !== generation) return Promise.resolve('changed'); // already refreshed since this task started
    if (!seg.refreshing && seg.lastRefresh !== null && performance.now() - seg.refreshedAt < REFRESH_MIN_INTERVAL_MS) {
      return Promise.resolve(seg.lastRefresh === 'changed' ? 'same' : seg.lastRefresh); // a change then is this generation
    }
    seg.refreshing ??= (async (): Promise<RefreshResult> => {
      let result: RefreshResult;
      try {
        const fresh = await this.lookupSegment(seg.name);
        seg.fetchedAt = performance.now();
        if (sameSegment(seg, fresh.desc, fresh.host)) result = 'same';
        else {
          seg.desc = fresh.desc;
          seg.host = fresh.host;
          seg.peer = this.peerAddress(seg);
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

  /** Shared by all tasks: no closure per task. */
  private readonly retryHook = (task: Task): void => this.retryTask(task);

  /**
   * A task's round ended with retryable failures: after a backoff (none for
   * pure address rejections, which only a changed descriptor can cure),
   * refetch the descriptor, then resend. The refetch comes every round, not
   * only after refused connects: a dead peer behind a proxy or load balancer
   * looks like connections accepted and reset, and refetches are shared and
   * reused (refreshSegment). Gives up after MC_RETRY_CNT rounds. The client
   * bounds the connections behind this (per-peer connect budget, pause after
   * repeated connect failures).
   */
  private retryTask(task: Task): void {
    if (task.rounds >= this.config.retryCount || this.state !== 'ready') {
      task.giveUp();
      return;
    }
    const round = task.rounds++;
    this.retrying.add(task);
    if (task.needsNewDescriptor) {
      void this.resend(task);
      return;
    }
    const delay = Math.random() * Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** round);
    task.retryTimer = setTimeout(() => {
      task.retryTimer = null;
      void this.resend(task);
    }, delay);
  }

  private async resend(task: Task): Promise<void> {
    const seg = task.seg!;
    const moved = (await this.refreshSegment(seg, task.generation)) === 'changed';
    if (!this.retrying.delete(task)) return; // ended by close()
    if (moved) task.generation = seg.generation;
    else if (task.needsNewDescriptor) {
      task.giveUp(); // rejected by a peer that has not changed (or another engine at a peer that is gone): resending cannot help
      return;
    }
    const client = this.tcpClient;
    if (this.state !== 'ready' || !client) {
      task.giveUp();
      return;
    }
    const slices = task.takeRetryable();
    this.retries += slices.length;
    const localAddress = this.options.sourceAddress?.(slices[0]!.region.location);
    const base = slices[0]!.fileId === undefined ? seg.peer : this.filePeer(seg);
    const peer = localAddress === undefined ? base : { ...base, localAddress };
    // Each held slice's pin passes to its replacement.
    for (const s of slices) client.submit(peer, new Slice(task, s.write, s.remoteAddr, s.local, s.region, s.fileId));
  }

  /** End tasks waiting between retry rounds (close()). */
  private abandonRetries(err: TransferEngineError): void {
    const tasks = [...this.retrying];
    this.retrying.clear();
    for (const t of tasks) {
      if (t.retryTimer) clearTimeout(t.retryTimer);
      t.retryTimer = null;
      t.error ??= err;
      t.giveUp();
    }
  }

  /** Where a segment's RPC port is. P2P: the name itself is `host:port` (12001 when it has no port); central: its rpc_meta. */
  private async rpcAddress(name: string, fresh = false): Promise<{ host: string; port: number }> {
    if (this.directory) {
      let meta = fresh ? undefined : this.rpcMetaCache.get(name);
      if (!meta) {
        meta = await this.directory.fetchRpcMeta(name);
        this.rpcMetaCache.set(name, meta);
      }
      return { host: meta.ipOrHostName, port: meta.rpcPort };
    }
    const { host, port } = parseHostPort(name, 'segment name');
    return { host, port: port ?? DEFAULT_NAME_PORT };
  }

  /** One framed exchange with a segment's RPC port. Central modes: a cached location that fails is looked up again once. */
  private async rpcExchange(name: string, type: HandshakeType, json: string): Promise<string> {
    const cached = this.directory !== null && this.rpcMetaCache.has(name);
    const { host, port } = await this.rpcAddress(name);
    try {
      return await this.exchangeWith(host, port, type, json);
    } catch (e) {
      if (!cached || !(e instanceof TransferEngineError) || e.code !== ErrorCode.PEER_UNREACHABLE) throw e;
      const again = await this.rpcAddress(name, true);
      if (again.host === host && again.port === port) throw e;
      return this.exchangeWith(again.host, again.port, type, json);
    }
  }

  /**
   * One exchange with an RPC port. The reply is awaited at most
   * MC_TRANSFER_TIMEOUT (and never more than the connect timeout + 10 s): a
   * hung peer fails an open as it fails a transfer.
   */
  private exchangeWith(host: string, port: number, type: HandshakeType, json: string): Promise<string> {
    const { handshakeConnectTimeoutMs: connect, transferTimeoutMs: transfer } = this.config;
    return this.abortable((signal) =>
      exchange(host, port, type, json, {
        connectTimeoutMs: connect,
        timeoutMs: Math.min(connect + HANDSHAKE_REPLY_GRACE_MS, transfer),
        maxFrame: this.config.handshakeMaxLength,
        signal,
        authSecret: this.config.authSecret,
      }),
    );
  }

  /**
   * Run an exchange that close() must end at once. Each gets a signal of its
   * own (one listener each), kept in a set: many concurrent exchanges on one
   * shared signal would pile listeners on it (MaxListenersExceededWarning).
   */
  private async abortable<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const ac = new AbortController();
    if (this.state === 'closed') ac.abort();
    this.exchanges.add(ac);
    try {
      return await run(ac.signal);
    } finally {
      this.exchanges.delete(ac);
    }
  }

  /**
   * Is an engine named `name` still serving at this rpc_meta address? Used
   * before replacing a stale rpc_meta key. Nobody answering: no. A descriptor
   * with another name: no (the port was reused). A Mooncake peer in a
   * central mode answers "null" to Metadata: assume it is the owner.
   */
  private async answersAs(meta: RpcMeta, name: string): Promise<boolean> {
    let reply: string;
    try {
      const hello = `${encodeSegmentDesc(this.buildDescriptor())}\n`;
      reply = await this.abortable((signal) =>
        exchange(meta.ipOrHostName, meta.rpcPort, HandshakeType.METADATA, hello, {
          connectTimeoutMs: Math.min(2000, this.config.handshakeConnectTimeoutMs),
          timeoutMs: 3000,
          maxFrame: this.config.handshakeMaxLength,
          signal,
          authSecret: this.config.authSecret,
        }),
      );
    } catch {
      return false;
    }
    if (reply.trim() === 'null') return true;
    try {
      return decodeSegmentDesc(reply).name === name;
    } catch {
      return false;
    }
  }

  /** The host published in rpc_meta when no connectable name is given (Mooncake's rule, then loopback). */
  private publishedHost(nameHost: string): string {
    // A wildcard listen address (0.0.0.0, ::) is where we listen, not an address peers can dial.
    const wildcard = (a: string | undefined): boolean => a === '0.0.0.0' || a === '::';
    if (this.config.bindAddress && !wildcard(this.config.bindAddress)) return this.config.bindAddress;
    if (this.options.listenHost && !wildcard(this.options.listenHost)) return this.options.listenHost;
    if (this.config.legacyRpcPortBinding || net.isIP(nameHost) !== 0) return nameHost;
    for (const addrs of Object.values(os.networkInterfaces())) {
      for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
    }
    return '127.0.0.1';
  }

  private async fetchDescriptor(name: string): Promise<SegmentDesc> {
    const reply = await this.rpcExchange(name, HandshakeType.METADATA, `${encodeSegmentDesc(this.buildDescriptor())}\n`);
    if (reply.trim() === 'null') {
      throw teError(ErrorCode.INVALID_SEGMENT, `"${name}" serves no P2P metadata (is it in a central metadata mode?)`);
    }
    return decodeSegmentDesc(reply, { maxLength: this.config.maxDescriptorSize });
  }

  /** Forget a segment (requests already submitted to it go on). A segment still opening is not kept. */
  closeSegment(handle: SegmentHandle): void {
    this.ready();
    if (handle === LOCAL_SEGMENT) return;
    const pending = this.openingHandles.get(handle);
    if (pending) {
      pending.cancelled = true;
      this.openingHandles.delete(handle);
      this.opening.delete(pending.name);
      return;
    }
    const seg = this.segments.get(handle);
    if (!seg) throw teError(ErrorCode.INVALID_SEGMENT, `segment handle ${String(handle)} is not open`);
    this.segments.delete(handle);
    this.segmentsByName.delete(seg.name);
  }

  /** The cached descriptor of an open segment. */
  getSegmentDescriptor(handle: SegmentHandle): SegmentDesc {
    this.ready();
    if (handle === LOCAL_SEGMENT) return this.buildDescriptor();
    const seg = this.segments.get(handle);
    if (!seg) {
      if (this.openingHandles.has(handle)) throw teError(ErrorCode.INVALID_SEGMENT, `segment handle ${String(handle)} is still opening: await openSegment() for its descriptor`);
      throw teError(ErrorCode.INVALID_SEGMENT, `segment handle ${String(handle)} is not open`);
    }
    return seg.desc;
  }

  // -------------------------------------------------------------- batches

  allocateBatchID(batchSize: number): BatchID {
    this.ready();
    if (!Number.isSafeInteger(batchSize) || batchSize <= 0) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `batch size ${String(batchSize)} must be a positive integer`);
    }
    const id = this.nextBatch++;
    this.batches.set(id, new Batch(batchSize));
    return id;
  }

  private batch(id: BatchID): Batch {
    const b = this.batches.get(id);
    if (!b) throw teError(ErrorCode.INVALID_BATCH, `batch ${String(id)} does not exist (never allocated, or freed)`);
    return b;
  }

  /**
   * Submit requests to a batch. All requests are validated first: on any
   * error nothing is submitted. Each request's outcome is then reported on its
   * task (getTransferStatus / waitBatch).
   */
  submitTransfer(batchId: BatchID, requests: readonly TransferRequest[]): void {
    this.ready();
    const batch = this.batch(batchId);
    if (!Array.isArray(requests)) throw teError(ErrorCode.INVALID_ARGUMENT, 'requests must be an array');
    if (batch.tasks.length + requests.length > batch.capacity) {
      throw teError(
        ErrorCode.BATCH_FULL,
        `batch ${batchId} holds ${batch.capacity} tasks; ${batch.tasks.length} submitted, ${requests.length} more requested`,
      );
    }
    const plans = requests.map((r, i) => this.plan(r, i));
    for (const p of plans) this.start(batch, p);
  }

  private plan(r: TransferRequest, i: number): Plan {
    if (typeof r !== 'object' || r === null) throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i} is not an object`);
    if (r.opcode !== TransferOpcode.READ && r.opcode !== TransferOpcode.WRITE) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i}: unknown opcode ${String(r.opcode)}`);
    }
    const write = r.opcode === TransferOpcode.WRITE;
    const src = this.resolveLocal(r.source, r.length, `request ${i}: source`);
    const local = src.region.bytes.subarray(src.offset, src.offset + r.length);
    let target: bigint;
    if (typeof r.targetOffset === 'bigint') target = r.targetOffset;
    else if (Number.isSafeInteger(r.targetOffset) && r.targetOffset >= 0) target = BigInt(r.targetOffset);
    else throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i}: targetOffset ${String(r.targetOffset)} is not a valid address`);
    if (target < 0n || target + BigInt(r.length) - 1n > U64_MAX) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `request ${i}: target range overflows the 64-bit address space`);
    }
    if (r.fileId !== undefined) return this.planFile(r, i, write, local, src.region, target);
    if (r.targetId === LOCAL_SEGMENT) {
      // Served by a copy; validated now so that a bad range is a typed error, not a late failure.
      const t = target <= BigInt(Number.MAX_SAFE_INTEGER) ? this.registry.resolve(Number(target), r.length) : null;
      if (!t) {
        throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, `request ${i}: target range [${fmtAddr(target)}, +${r.length}) is not inside one local region`);
      }
      if (t.region.detached) throw detachedError(t.region, `request ${i}: target memory`);
      return { write, local, region: src.region, target, remote: null, targetBytes: t.region.bytes.subarray(t.offset, t.offset + r.length) };
    }
    const seg = this.segments.get(r.targetId);
    const pending = seg ? undefined : this.openingHandles.get(r.targetId);
    if (!seg && !pending) throw teError(ErrorCode.INVALID_SEGMENT, `request ${i}: segment handle ${String(r.targetId)} is not open`);
    if (!this.tcpClient) throw teError(ErrorCode.NO_TRANSPORT, `request ${i}: the tcp transport is not installed`);
    return { write, local, region: src.region, target, remote: seg ?? null, targetBytes: null, ...(pending ? { pending } : {}) };
  }

  /** A request to a file: checked against the file's size and alignment (ours, or the peer's descriptor) before anything moves. */
  private planFile(r: TransferRequest, i: number, write: boolean, local: Uint8Array, region: Region, target: bigint): Plan {
    const what = `request ${i}`;
    const fileId = checkFileId(what, r.fileId);
    if (r.targetId === LOCAL_SEGMENT) {
      const file = this.files!.byId(fileId);
      if (!file) throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: no local file is registered with id ${fileId}`);
      // Local transfers ignore 'none' (as for memory), but a 'read' file is open read-only.
      if (write && file.access === 'read') throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: file id ${fileId} is registered read-only`);
      checkFileRange(what, fileId, target, local.length, file.size, file.align);
      return { write, local, region, target, remote: null, targetBytes: null, file };
    }
    const seg = this.segments.get(r.targetId);
    if (!seg) {
      const opening = this.openingHandles.has(r.targetId);
      throw teError(ErrorCode.INVALID_SEGMENT, `${what}: segment handle ${String(r.targetId)} is ${opening ? 'still opening: file requests need its descriptor, await openSegment() first' : 'not open'}`);
    }
    if (!this.tcpClient) throw teError(ErrorCode.NO_TRANSPORT, `${what}: the tcp transport is not installed`);
    // Only segments that list files get file requests: a Mooncake peer never sees one.
    const desc = seg.desc.fileBuffers?.find((f) => f.id === fileId);
    if (!desc) {
      const listed = seg.desc.fileBuffers?.map((f) => f.id).join(', ');
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `${what}: segment "${seg.name}" publishes ${listed ? `no file with id ${fileId} (its files: ${listed})` : 'no files'}; ` +
          'its descriptor is cached at openSegment, so reopen the segment to see files registered since',
      );
    }
    if (write && desc.access === 'read') throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: file id ${fileId} of segment "${seg.name}" is read-only`);
    checkFileRange(what, fileId, target, local.length, desc.size, desc.align);
    if (this.sameHostFiles?.sameHost(seg.desc.machineId)) {
      // A peer on this host: its file is read and written here (src/transport/file-same-host.ts), or over TCP if that is refused.
      const file = this.sameHostFiles.resolve(seg.name, desc);
      if (file) return { write, local, region, target, remote: seg, targetBytes: null, file };
      return { write, local, region, target, remote: seg, targetBytes: null, fileId, sameHostFallback: true };
    }
    return { write, local, region, target, remote: seg, targetBytes: null, fileId };
  }

  /**
   * Where a segment takes file requests: its file listener if it publishes one, else its data port;
   * always v2 (status frames), on lanes of their own. One object per descriptor, as the client expects.
   */
  private filePeer(seg: RemoteSegment): PeerAddress {
    let addr = filePeers.get(seg.desc);
    if (!addr) {
      const ep = seg.desc.fileEndpoint;
      addr = { host: ep?.host ?? seg.peer.host, port: ep?.port ?? seg.peer.port, v2: true, files: true };
      // The file listener is the same engine's: it confirms the same identity.
      if (seg.desc.engineId !== undefined) addr.engineId = seg.desc.engineId;
      filePeers.set(seg.desc, addr);
    }
    return addr;
  }

  private fileEndpoint(): { host?: string; port: number } {
    const s = this.fileServer!;
    // A wildcard listener is reached at the segment's own data host.
    return s.host === '0.0.0.0' || s.host === '::' ? { port: s.port } : { host: s.host, port: s.port };
  }

  private start(batch: Batch, p: Plan): void {
    const seg = p.remote;
    const task = seg || p.pending ? new Task(batch, p.write, this.counters, seg, this.retryHook) : new Task(batch, p.write, this.counters);
    batch.tasks.push(task);
    batch.unfinished++;
    if (p.targetBytes) {
      if (p.write) p.targetBytes.set(p.local);
      else p.local.set(p.targetBytes);
      task.transferred = p.local.length;
      task.finish();
      return;
    }
    if (p.sameHostFallback) this.fileSameHostFallbacks++;
    if (p.file) {
      if (p.remote) this.fileSameHost++;
      // A local file (or a same-host peer's): the I/O pool reads or writes it; the memory stays pinned until then.
      const region = p.region;
      region.pins++;
      this.files!.transfer(p.file, p.write, Number(p.target), p.local, (err) => {
        region.pins--;
        if (err) task.error = err;
        else task.transferred = p.local.length;
        task.finish();
      });
      return;
    }
    if (p.pending) {
      // The segment is still opening: the task waits for its descriptor, its memory pinned meanwhile.
      const region = p.region;
      region.pins++;
      p.pending.segment.then(
        (opened) => {
          region.pins--;
          if (this.state !== 'ready') {
            task.error = teError(ErrorCode.CLOSED, 'the engine was closed while the segment opened');
            task.finish();
            return;
          }
          task.seg = opened;
          task.generation = opened.generation;
          this.sendRemote(task, { ...p, remote: opened });
        },
        (e: unknown) => {
          region.pins--;
          task.error = e instanceof TransferEngineError ? e : teError(ErrorCode.PEER_UNREACHABLE, `cannot open segment "${p.pending!.name}": ${String(e)}`, e);
          task.finish();
        },
      );
      return;
    }
    this.sendRemote(task, p);
  }

  /** Carry a request to a peer whose descriptor we hold: a same-host copy through shared memory, else TCP slices. */
  private sendRemote(task: Task, p: Plan): void {
    if (p.fileId === undefined && this.copyThroughShm(task, p, p.remote!)) return;
    const split = p.fileId === undefined ? this.config.splitSize : Math.min(this.config.splitSize, MAX_FILE_REQUEST);
    const client = this.tcpClient;
    if (!client) {
      task.error = teError(ErrorCode.NO_TRANSPORT, 'the tcp transport was uninstalled while the segment opened');
      task.finish();
      return;
    }
    const len = p.local.length;
    const count = Math.ceil(len / split);
    task.pending = count;
    const localAddress = this.options.sourceAddress?.(p.region.location);
    const base = p.fileId === undefined ? p.remote!.peer : this.filePeer(p.remote!);
    const peer = localAddress === undefined ? base : { ...base, localAddress };
    for (let k = 0; k < count; k++) {
      const off = k * split;
      const piece = count === 1 ? p.local : p.local.subarray(off, Math.min(len, off + split));
      p.region.pins++;
      client.submit(peer, new Slice(task, p.write, p.target + BigInt(off), piece, p.region, p.fileId));
    }
  }

  /**
   * A peer on this host whose target range lies in one of its shared-memory
   * regions is served by a plain copy. Returns false to let TCP carry the
   * request: another host, no shm region there, or the mapping failed (file
   * gone, size changed); the TCP path then succeeds or reports why not.
   */
  private copyThroughShm(task: Task, p: Plan, seg: RemoteSegment): boolean {
    const shm = this.shm;
    const machineId = seg.desc.machineId;
    if (!shm || !shm.canReach(machineId)) return false;
    const hit = locateShmRegion(shmRegionsOf(seg.desc), p.target, p.local.length);
    if (!hit) return false;
    try {
      shm.copy(machineId, hit.region, hit.offset, p.local, p.write);
    } catch {
      return false;
    }
    this.shmCopies++;
    task.transferred = p.local.length;
    task.finish();
    return true;
  }

  getTransferStatus(batchId: BatchID, taskId: number): TransferStatus {
    this.ready();
    const batch = this.batch(batchId);
    const task = batch.tasks[taskId];
    if (!task) throw teError(ErrorCode.INVALID_ARGUMENT, `batch ${batchId} has no task ${String(taskId)}`);
    return task.error
      ? { status: task.status, transferred: task.transferred, error: task.error }
      : { status: task.status, transferred: task.transferred };
  }

  /** Resolves once every task submitted so far has finished; returns their statuses in order. */
  async waitBatch(batchId: BatchID): Promise<TransferStatus[]> {
    this.ready();
    const batch = this.batch(batchId);
    await batch.whenDone();
    return batch.tasks.map((t) =>
      t.error ? { status: t.status, transferred: t.transferred, error: t.error } : { status: t.status, transferred: t.transferred },
    );
  }

  /** Free a batch. Refused (TE_BATCH_BUSY) while any of its tasks is unfinished. */
  freeBatchID(batchId: BatchID): void {
    this.ready();
    const batch = this.batch(batchId);
    if (batch.unfinished > 0) {
      throw teError(ErrorCode.BATCH_BUSY, `batch ${batchId} has ${batch.unfinished} unfinished task(s)`);
    }
    this.batches.delete(batchId);
  }

  // ----------------------------------------------------------- transports

  /**
   * Install a transport by name. 'tcp' runs here, and 'file' (alias
   * 'nvmeof_generic'), which serves registered files over this engine's own
   * TCP protocol (not NVMe/TCP): on the tcp data port, or, given a trid
   * argument such as "trtype=tcp adrfam=ipv4 traddr=127.0.0.1 trsvcid=4420",
   * on a listener of its own at traddr:trsvcid. RDMA/GPU/NVMe-oF kernel
   * transports are refused as unsupported.
   */
  async installTransport(proto: string, args?: string): Promise<void> {
    this.ready();
    if (proto === 'file' || proto === 'nvmeof_generic') {
      if (args === undefined || args === '') return this.installTransport('tcp');
      const at = parseTrid(args);
      if (this.fileServer) {
        if (this.fileServer.host === at.host && this.fileServer.port === at.port) return;
        throw teError(ErrorCode.INVALID_ARGUMENT, `the file transport already listens at ${joinHostPort(this.fileServer.host, this.fileServer.port)}; uninstall it first`);
      }
      const server = new TcpDataServer(this.registry, this.files!.context, this.dataServerOptions());
      await server.listen(at.host, at.port, at.port, at.port);
      this.fileServer = { server, ...at };
      this.directory?.descriptorChanged(); // file_data_port
      return;
    }
    if (args !== undefined) throw teError(ErrorCode.INVALID_ARGUMENT, `transport "${proto}" takes no argument`);
    if (proto === 'tcp') {
      if (this.dataServer) return;
      const server = new TcpDataServer(this.registry, this.files!.context, this.dataServerOptions());
      await server.listen(this.listenAddress, 0, this.config.minPort, this.config.maxPort);
      this.dataServer = server;
      this.tcpClient = this.newTcpClient();
      this.directory?.descriptorChanged(); // a new data port
      return;
    }
    if (UNSUPPORTED_TRANSPORTS.has(proto)) {
      throw teError(ErrorCode.NOT_SUPPORTED, `transport "${proto}" is not supported on this host (no RDMA devices, GPUs or NVMe-oF here)`);
    }
    throw teError(ErrorCode.INVALID_ARGUMENT, `unknown transport "${proto}"`);
  }

  /** Uninstall a transport: its port closes and its in-flight transfers fail. */
  async uninstallTransport(proto: string): Promise<void> {
    this.ready();
    if ((proto === 'file' || proto === 'nvmeof_generic') && this.fileServer) {
      const { server } = this.fileServer;
      this.fileServer = null; // file requests go back to the data port
      await server.close();
      this.directory?.descriptorChanged();
      return;
    }
    if (proto !== 'tcp') throw teError(ErrorCode.INVALID_ARGUMENT, `transport "${proto}" is not installed${proto === 'file' || proto === 'nvmeof_generic' ? ' with a listener of its own (file requests ride on the tcp data port)' : ''}`);
    const server = this.dataServer;
    const client = this.tcpClient;
    this.dataServer = null;
    this.tcpClient = null;
    this.pastPeerPauses += client?.peerPauses ?? 0;
    client?.close();
    await server?.close();
    this.directory?.descriptorChanged();
  }

  /** Installed transport names. */
  get transports(): string[] {
    // Files are served wherever a data server runs: the tcp data port, or the file transport's own listener.
    return [...(this.dataServer ? ['tcp'] : []), ...(this.dataServer || this.fileServer ? ['file'] : [])];
  }

  // ------------------------------------------------------------ messages

  /**
   * Send a Notify message to a segment's RPC port; the peer queues it for its
   * getNotifies(). Rejects if the peer does not acknowledge it.
   */
  async sendNotify(segmentName: string, notify: Notification): Promise<void> {
    const json = this.notifyFrame(notify);
    const reply = await this.rpcExchange(this.segmentKey(segmentName), HandshakeType.NOTIFY, json);
    let ack: unknown;
    try {
      ack = JSON.parse(reply);
    } catch {
      ack = null;
    }
    // Mooncake treats an empty notify_msg in the reply as a refusal.
    const msg = typeof ack === 'object' && ack !== null ? (ack as { notify_msg?: unknown }).notify_msg : undefined;
    if (typeof msg !== 'string' || msg.length === 0) throw teError(ErrorCode.PROTOCOL_ERROR, `${segmentName} did not accept the notification`);
  }

  /**
   * A Notify message's frame JSON, refused (TE_INVALID_ARGUMENT) when it is larger than a
   * handshake frame may be: the peer would close on it without a word.
   */
  notifyFrame(notify: Notification): string {
    this.ready();
    if (typeof notify?.name !== 'string' || typeof notify.msg !== 'string') {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'a notification is { name: string, msg: string }');
    }
    const json = `${JSON.stringify({ name: notify.name, notify_msg: notify.msg })}\n`;
    const frame = Buffer.byteLength(json) + 1; // the length counts the type byte
    const max = this.config.handshakeMaxLength;
    if (frame > max) {
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `the notification makes a ${frame}-byte handshake frame, above the ${max}-byte limit (MC_HANDSHAKE_MAX_LENGTH, which peers apply too); send large data as a transfer`,
      );
    }
    return json;
  }

  /** Check that a segment's RPC port answers (Mooncake's Probe message). */
  async sendProbe(segmentName: string): Promise<void> {
    this.ready();
    const reply = await this.rpcExchange(this.segmentKey(segmentName), HandshakeType.PROBE, '{}\n');
    if (!/"status"\s*:\s*"success"/.test(reply)) throw teError(ErrorCode.PROTOCOL_ERROR, `${segmentName} answered the probe with ${reply.trim().slice(0, 80)}`);
  }

  /** Drain Notify messages received from peers. */
  getNotifies(): Notification[] {
    this.ready();
    const n = this.notifications;
    this.notifications = [];
    return n;
  }

  /** Counters for tests and monitoring: connections, requests served, bytes and tasks by outcome. */
  stats(): TransferCounters & {
    dataConnections: number;
    lanes: number;
    requestsServed: number;
    requestsRejected: number;
    /** Connections accepted on the RPC (handshake) port: one per descriptor fetch, notify or probe of a peer. */
    rpcConnections: number;
    shmCopies: number;
    fileSameHost: number;
    fileSameHostFallbacks: number;
  } & SecurityCounters & RetryCounters {
    const d = this.dataServer?.stats;
    const h = this.handshake?.stats;
    const f = this.fileServer?.server.stats;
    return {
      ...this.counters,
      dataConnections: this.dataServer?.connectionCount ?? 0,
      lanes: this.tcpClient?.laneCount ?? 0,
      requestsServed: this.dataServer?.stats.requests ?? 0,
      requestsRejected: this.dataServer?.stats.rejected ?? 0,
      rpcConnections: h?.connections ?? 0,
      shmCopies: this.shmCopies,
      retries: this.retries,
      peerPauses: this.pastPeerPauses + (this.tcpClient?.peerPauses ?? 0),
      fileSameHost: this.fileSameHost,
      fileSameHostFallbacks: this.fileSameHostFallbacks,
      authRejected: (d?.authRejected ?? 0) + (h?.authRejected ?? 0) + (f?.authRejected ?? 0),
      connectionsRefused: (d?.refused ?? 0) + (h?.refused ?? 0) + (f?.refused ?? 0),
      handshakesRateLimited: h?.rateLimited ?? 0,
      connectionsStalled: (d?.stalled ?? 0) + (h?.stalled ?? 0) + (f?.stalled ?? 0),
    };
  }

  /** Release ports and connections. In-flight transfers end in FAILED (TE_CLOSED). Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    for (const ac of this.exchanges) ac.abort();
    this.exchanges.clear();
    this.abandonRetries(teError(ErrorCode.CLOSED, 'the engine was closed while the transfer waited to be retried'));
    // Unpublish first, so peers stop finding us before the ports go (bounded by the store's timeouts).
    const dir = this.directory;
    this.directory = null;
    await dir?.close();
    await this.releaseResources();
  }

  /**
   * Resolves once this engine's current descriptor is in the metadata store
   * (at once in P2P mode). Registration changes re-publish in the background;
   * this rejects with the store's error (TE_METADATA_UNAVAILABLE, TE_TIMEOUT, ...)
   * if the latest attempt failed; retries continue until close().
   */
  flushMetadata(): Promise<void> {
    this.ready();
    return this.directory?.flush() ?? Promise.resolve();
  }

  /**
   * Write this engine's rpc_meta and descriptor to the metadata store again,
   * in the background (flushMetadata() waits for it): for a store that lost
   * them, such as an HTTP metadata server that restarted empty. Nothing to do
   * in P2P mode.
   */
  republishMetadata(): void {
    this.ready();
    this.directory?.republish();
  }

  /** The metadata service in use: 'P2PHANDSHAKE', or the store's address. */
  get metadataServer(): string {
    this.ready();
    return this.directory?.label ?? 'P2PHANDSHAKE';
  }

  /** Ports, connections, peer mappings, and the shared memory we own (its files are removed). */
  private async releaseResources(): Promise<void> {
    this.tcpClient?.close();
    this.tcpClient = null;
    const servers = [this.dataServer?.close(), this.handshake?.close(), this.fileServer?.server.close()];
    this.dataServer = null;
    this.handshake = null;
    this.fileServer = null;
    await Promise.all(servers);
    this.sameHostFiles?.close();
    this.sameHostFiles = null;
    this.files?.close(); // descriptors close once the operations in the OS return
    this.files = null;
    this.shm?.close();
    this.shm = null;
    for (const region of this.ownedShm.values()) region.free();
    this.ownedShm.clear();
  }
}

interface Plan {
  write: boolean;
  local: Uint8Array;
  region: Region;
  target: bigint;
  remote: RemoteSegment | null;
  targetBytes: Uint8Array | null;
  /** A local file target. */
  file?: RegisteredFile;
  /** A remote file target: the peer's file id (`target` is the offset in it). */
  fileId?: number;
  /** The peer is on this host but its file goes over TCP (same-host access refused). */
  sameHostFallback?: boolean;
  /** The target segment is still opening (remote is null until then). */
  pending?: PendingOpen;
}

/** File request addresses, one per descriptor object (a refetched descriptor gets a new one). */
const filePeers = new WeakMap<SegmentDesc, PeerAddress>();

/** A descriptor's shared-memory regions, computed once per descriptor object. */
const shmRegionCache = new WeakMap<SegmentDesc, ShmPeerRegion[]>();
function shmRegionsOf(desc: SegmentDesc): ShmPeerRegion[] {
  let regions = shmRegionCache.get(desc);
  if (!regions) {
    regions = desc.buffers.flatMap((b) =>
      b.shmName ? [{ shmName: b.shmName, size: b.length, addr: b.addr, ...(b.access === 'read' ? { readOnly: true } : {}) }] : [],
    );
    shmRegionCache.set(desc, regions);
  }
  return regions;
}
