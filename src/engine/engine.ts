/**
 * The core engine, in the vocabulary of Mooncake's C++ API: segments,
 * registered memory, batches of READ/WRITE requests whose status is polled
 * (or awaited), pluggable transports. Errors are TransferEngineError with a
 * stable `code`; a request's own failure is reported on its task. This class
 * holds the lifecycle and the wiring; the parts are beside it: types.ts (the
 * vocabulary), batch.ts (tasks), retry.ts (the retry policy), segments.ts
 * (opened segments), peer-rpc.ts (peers' RPC ports), planner.ts (request ->
 * plan), dispatch.ts (plans carried out and retried), local-memory.ts
 * (registered memory), addresses.ts (listen and publish).
 */
import { randomBytes } from 'node:crypto';
import { loadConfig, type EngineConfig } from '../config.js';
import { encodeSegmentDesc, type SegmentDesc } from '../codec/descriptor.js';
import { HandshakeType } from '../codec/handshake.js';
import { envVar } from '../env.js';
import { teError, ErrorCode } from '../errors.js';
import { HandshakeServer, type Notification } from '../rpc/handshake.js';
import { notifyAccepted, notifyJson, probeSucceeded } from '../rpc/messages.js';
import type { RegionAccess } from '../memory.js';
import { AUTH_SCHEME, secretBytes } from '../codec/auth.js';
import { joinHostPort, parseHostPort, splitHostPort } from '../net.js';
import { parseMetadataConnString } from '../metadata/connection.js';
import { SegmentDirectory } from '../metadata/directory.js';
import { metadataKeys } from '../metadata/keys.js';
import { openMetadataStore } from '../metadata/open-store.js';
import { storeOptionsFromEnv } from '../metadata/store.js';
import { reapStaleShmFiles, nativeAvailable } from '../shm/index.js';
import { ShmTransport } from '../transport/shm.js';
import { SameHostFiles } from '../transport/file-same-host.js';
import { loadFileConfig } from '../file/config.js';
import { LocalFiles } from '../file/local-files.js';
import type { RegisterFileOptions } from '../file/registry.js';
import { listenHostFor, publishedHost } from './addresses.js';
import { BatchTable } from './batch.js';
import { Dispatcher } from './dispatch.js';
import { TcpTransports } from './tcp-transports.js';
import { LocalMemory } from './local-memory.js';
import { PeerRpc } from './peer-rpc.js';
import { checkRequest, planRequest, resolveLocal, type PlannerContext } from './planner.js';
import { SegmentTable } from './segments.js';
import {
  LOCAL_SEGMENT,
  type BatchID,
  type EngineLifecycle,
  type EngineOptions,
  type LocalRegistration,
  type RequestRanges,
  type RetryCounters,
  type SecurityCounters,
  type SegmentHandle,
  type TransferCounters,
  type TransferRequest,
  type TransferStatus,
} from './types.js';

/** A random engine id in [1, 2^53) (src/codec/wire.ts, engine identity). */
function newEngineId(): number {
  for (;;) {
    const id = Number(randomBytes(8).readBigUInt64LE() >> 11n);
    if (id > 0) return id;
  }
}

/** A region as registeredAt / registrationsIn report it. */
function registration(r: { addr: number; length: number; byteOffset: number }): LocalRegistration {
  return { addr: r.addr, length: r.length, byteOffset: r.byteOffset };
}

export class TransferEngine {
  private state: EngineLifecycle = 'new';
  private config!: EngineConfig;
  /** Registered memory and its descriptor entries; made by init (its base comes from the configuration). */
  private memory!: LocalMemory;
  private handshake: HandshakeServer | null = null;
  /** The data port, its client and the file listener (made by init). */
  private tcp: TcpTransports | null = null;
  private name = '';
  /** Segments opened (made by init). */
  private segments!: SegmentTable;
  /** Peers' RPC ports (made by init). */
  private peers: PeerRpc | null = null;
  /** What the planner reads (made by init). */
  private planner!: PlannerContext;
  private readonly batches = new BatchTable();
  private notifications: Notification[] = [];
  private readonly counters: TransferCounters = { bytesWritten: 0, bytesRead: 0, tasksCompleted: 0, tasksFailed: 0 };
  /** Central metadata store (http/etcd/redis); null in P2P mode. */
  private directory: SegmentDirectory | null = null;
  /** Registered files and their I/O pool (set by init). */
  private files: LocalFiles | null = null;
  /** Same-host copies into peers' shared memory (set by init). */
  private shm: ShmTransport | null = null;
  /** Starts tasks and runs their retry rounds (made by init). */
  private dispatch: Dispatcher | null = null;
  /** Same-host peers' files, read and written here directly (null: TE_FILE_SAME_HOST=0). */
  private sameHostFiles: SameHostFiles | null = null;

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
    this.memory = new LocalMemory({ config: this.config, shm: this.options.shm === true, name: () => this.name, directory: () => this.directory });
    const metadata = this.options.metadataServer || envVar('MC_METADATA_SERVER', env) || 'P2PHANDSHAKE';
    const target = parseMetadataConnString(metadata);
    const storeOptions = storeOptionsFromEnv(env); // malformed TE_METADATA_* / MC_REDIS_* fail before any port is bound
    const fileConfig = loadFileConfig(env); // MC_NVMEOF_GENERIC_*, checked as early
    if (this.options.shm && !nativeAvailable()) {
      throw teError(ErrorCode.NOT_SUPPORTED, 'shared memory was asked for (shm option) but the native addon is not built on this host');
    }
    this.state = 'initializing';
    this.peers = new PeerRpc({ config: this.config, directory: () => this.directory, ownDescriptor: () => this.buildDescriptor() });
    this.segments = new SegmentTable({ lookup: (name) => this.peers!.lookup(name), ready: () => this.ready(), forceTcpV1: this.config.forceTcpV1 });
    try {
      this.shm = new ShmTransport(this.options.machineId === undefined ? {} : { machineId: this.options.machineId });
      if (this.shm.available) reapStaleShmFiles(); // files of crashed engines on this host
      const central = target.type !== 'p2p';
      // P2P names are addresses (and so are central ones whose port is bound, MC_LEGACY_RPC_PORT_BINDING): a bad port is an error.
      const { host, port: namePort } =
        !central || this.config.legacyRpcPortBinding ? parseHostPort(serverName, 'serverName') : splitHostPort(serverName);
      // Central modes publish this host in rpc_meta (Mooncake: MC_TCP_BIND_ADDRESS, else the first interface).
      const connectHost = connectableName ?? (central ? publishedHost(this.config, this.options, host) : host);
      let port = rpcPort;
      if (port === 0 && this.config.legacyRpcPortBinding && namePort !== undefined) port = namePort;
      const { minPort, maxPort } = this.config;
      if (port === 0 && minPort === maxPort) {
        throw teError(ErrorCode.BAD_ENV, `MC_MIN_RPC_PORT = MC_MAX_RPC_PORT = ${minPort} leaves one port, and the engine binds two there (RPC and data): give a range of at least two ports, or an RPC port outside it`);
      }
      const listenHost = await listenHostFor(this.config, this.options, connectHost, central ? undefined : host);
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
      const tcp = new TcpTransports({ config: this.config, registry: this.memory.registry, files: this.files.context, engineId: this.engineId, listenHost });
      this.tcp = tcp;
      await tcp.start(boundRpc);
      this.planner = {
        registry: this.memory.registry,
        files: this.files,
        segments: this.segments,
        sameHostFiles: this.sameHostFiles,
        tcpInstalled: () => tcp.client !== null,
      };
      this.dispatch = new Dispatcher({
        config: this.config,
        counters: this.counters,
        segments: this.segments,
        ready: () => this.state === 'ready',
        tcpClient: () => this.tcp?.client ?? null,
        shm: () => this.shm,
        files: () => this.files,
        sourceAddress: this.options.sourceAddress,
      });
      if (target.type !== 'p2p') {
        const store = await openMetadataStore(target, storeOptions);
        this.directory = new SegmentDirectory(store, metadataKeys(env), (meta, name) => this.peers!.answersAs(meta, name), this.config.maxDescriptorSize);
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

  private ready(): void {
    if (this.state === 'ready') return;
    if (this.state === 'closed') throw teError(ErrorCode.CLOSED, 'the engine is closed');
    throw teError(ErrorCode.NOT_INITIALIZED, 'call init() first');
  }

  /** Where this engine is in its life: 'new', 'initializing' (init() runs), 'ready', or 'closed'. */
  get lifecycle(): EngineLifecycle {
    return this.state;
  }

  /** MC_TRANSFER_TIMEOUT in milliseconds, as this engine applies it (the environment, or the config option). */
  get transferTimeoutMs(): number {
    this.ready();
    return this.config.transferTimeoutMs;
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
    return this.tcp?.dataPort ?? 0;
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
    return this.memory.register(mem, location, access);
  }

  /**
   * Allocate `size` bytes (zeroed) and register them; returns the address.
   * With the `shm` option the memory lives in /dev/shm and same-host peers
   * copy into and out of it directly. Give it back with unregisterLocalMemory.
   */
  allocateLocalMemory(size: number, location = '*', access: RegionAccess | boolean = true): number {
    this.ready();
    return this.memory.allocate(size, location, access);
  }

  /** Register several regions; all or none (a failure unregisters the ones already done). */
  registerLocalMemoryBatch(mems: Array<Uint8Array | ArrayBuffer>, location = '*', access: RegionAccess | boolean = true): number[] {
    this.ready();
    return this.memory.registerAll(mems, location, access);
  }

  /** Unregister the region starting at `addr`. Refused (TE_REGION_BUSY) while transfers use it. */
  unregisterLocalMemory(addr: number): void {
    this.ready();
    this.memory.unregister(addr);
  }

  /** Unregister several regions; checks all first, so a busy or unknown one changes nothing. */
  unregisterLocalMemoryBatch(addrs: number[]): void {
    this.ready();
    this.memory.unregisterAll(addrs);
  }

  // ---------------------------------------------------------------- files

  /**
   * Register a local file (registerLocalFile of Mooncake's generic NVMe-oF
   * transport, PR #793): peers (and this engine) can then read and
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
    return this.memory.registry.addressOf(mem instanceof Uint8Array ? mem : new Uint8Array(mem));
  }

  /** The registration that starts at `addr` (not merely contains it), or undefined. */
  registeredAt(addr: number): LocalRegistration | undefined {
    this.ready();
    const r = this.memory.registry.resolve(addr, 1);
    return r && r.offset === 0 ? registration(r.region) : undefined;
  }

  /**
   * The registrations over `buffer` (views of it, or the ArrayBuffer itself),
   * in registration order. Detached memory keeps its registrations (they can
   * be unregistered by address). Registrations are not forgotten by close(),
   * so this answers after it too; before init() nothing is registered.
   */
  registrationsIn(buffer: ArrayBufferLike): LocalRegistration[] {
    if (this.state === 'new' || this.state === 'initializing') return [];
    return this.memory.registry.regionsOf(buffer).map(registration);
  }

  /** A view of registered memory: `[addr, addr+length)` must lie inside one region. */
  localView(addr: number, length: number): Uint8Array {
    this.ready();
    const r = resolveLocal(this.memory.registry, addr, length, 'address');
    return r.region.bytes.subarray(r.offset, r.offset + length);
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
      tcpDataPort: this.tcp?.dataPort ?? 0,
      tcpProtoVersion: 2,
      engineId: this.engineId,
      buffers: this.memory.buffers(),
      ...(this.shm?.machineId ? { machineId: this.shm.machineId } : {}),
      ...(this.config.authSecret ? { auth: AUTH_SCHEME } : {}),
      ...(this.files && this.files.registry.size > 0 ? { fileBuffers: this.files.describe() } : {}),
      ...(this.tcp?.fileEndpoint() ? { fileEndpoint: this.tcp.fileEndpoint()! } : {}),
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
    return this.segments.open(name);
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
    return this.segments.handleOf(name);
  }

  /** A segment name as given, checked: non-empty, and in P2P mode a dialable `host[:port]`. */
  private segmentKey(segmentName: unknown): string {
    if (typeof segmentName !== 'string') throw teError(ErrorCode.INVALID_ARGUMENT, 'segment name must be a string');
    const name = segmentName.replace(/^\/+/, '');
    if (name.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'segment name is empty');
    if (!this.directory) parseHostPort(name, 'segment name'); // P2P names are addresses: a bad port is an error, not 12001
    return name;
  }

  /** Forget a segment (requests already submitted to it go on). A segment still opening is not kept. */
  closeSegment(handle: SegmentHandle): void {
    this.ready();
    if (handle === LOCAL_SEGMENT) return;
    this.segments.close(handle);
  }

  /** The cached descriptor of an open segment. */
  getSegmentDescriptor(handle: SegmentHandle): SegmentDesc {
    this.ready();
    if (handle === LOCAL_SEGMENT) return this.buildDescriptor();
    return this.segments.descriptor(handle);
  }

  // -------------------------------------------------------------- batches

  allocateBatchID(batchSize: number): BatchID {
    this.ready();
    return this.batches.allocate(batchSize);
  }

  /** Was `id` returned by allocateBatchID (freed since or not)? Ids are never reused, so this tells a freed id from a made-up one. */
  batchIdIssued(id: BatchID): boolean {
    return this.batches.issued(id);
  }

  /**
   * Submit requests to a batch. All requests are validated first: on any
   * error nothing is submitted. Each request's outcome is then reported on its
   * task (getTransferStatus / waitBatch).
   */
  submitTransfer(batchId: BatchID, requests: readonly TransferRequest[]): void {
    this.ready();
    const batch = this.batches.get(batchId);
    if (!Array.isArray(requests)) throw teError(ErrorCode.INVALID_ARGUMENT, 'requests must be an array');
    if (batch.tasks.length + requests.length > batch.capacity) {
      throw teError(
        ErrorCode.BATCH_FULL,
        `batch ${batchId} holds ${batch.capacity} tasks; ${batch.tasks.length} submitted, ${requests.length} more requested`,
      );
    }
    const plans = requests.map((r, i) => planRequest(this.planner, r, i));
    for (const p of plans) this.dispatch!.start(batch, p);
  }

  /**
   * Check requests as submitTransfer checks them before it looks at their
   * target segment: known opcode, local range inside one registered region
   * (not detached), target address range inside 64 bits. Nothing is
   * submitted. For callers that refuse bad input before they open the target
   * segment (the high-level sync calls); submitTransfer checks again, as the
   * memory may change in between.
   */
  checkRequests(requests: readonly RequestRanges[]): void {
    this.ready();
    if (!Array.isArray(requests)) throw teError(ErrorCode.INVALID_ARGUMENT, 'requests must be an array');
    requests.forEach((r, i) => checkRequest(this.memory.registry, r, i));
  }

  getTransferStatus(batchId: BatchID, taskId: number): TransferStatus {
    this.ready();
    const batch = this.batches.get(batchId);
    const task = batch.tasks[taskId];
    if (!task) throw teError(ErrorCode.INVALID_ARGUMENT, `batch ${batchId} has no task ${String(taskId)}`);
    return task.statusReport;
  }

  /** Resolves once every task submitted so far has finished; returns their statuses in order. */
  async waitBatch(batchId: BatchID): Promise<TransferStatus[]> {
    this.ready();
    const batch = this.batches.get(batchId);
    await batch.whenDone();
    return batch.tasks.map((t) => t.statusReport);
  }

  /** Free a batch. Refused (TE_BATCH_BUSY) while any of its tasks is unfinished. */
  freeBatchID(batchId: BatchID): void {
    this.ready();
    this.batches.free(batchId);
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
    if (await this.tcp!.install(proto, args)) this.directory?.descriptorChanged(); // a data port or file_data_port
  }

  /** Uninstall a transport: its port closes and its in-flight transfers fail. */
  async uninstallTransport(proto: string): Promise<void> {
    this.ready();
    await this.tcp!.uninstall(proto);
    this.directory?.descriptorChanged();
  }

  /** Installed transport names. */
  get transports(): string[] {
    return this.tcp?.names ?? [];
  }

  // ------------------------------------------------------------ messages

  /**
   * Send a Notify message to a segment's RPC port; the peer queues it for its
   * getNotifies(). Rejects if the peer does not acknowledge it.
   */
  async sendNotify(segmentName: string, notify: Notification): Promise<void> {
    const json = this.notifyFrame(notify);
    const reply = await this.peers!.exchange(this.segmentKey(segmentName), HandshakeType.NOTIFY, json);
    if (!notifyAccepted(reply)) throw teError(ErrorCode.PROTOCOL_ERROR, `${segmentName} did not accept the notification`);
  }

  /**
   * A Notify message's frame JSON, refused (TE_INVALID_ARGUMENT) when it is larger than a
   * handshake frame may be: the peer would close on it without a word.
   */
  notifyFrame(notify: Notification): string {
    this.ready();
    return notifyJson(notify, this.config.handshakeMaxLength);
  }

  /** Check that a segment's RPC port answers (Mooncake's Probe message). */
  async sendProbe(segmentName: string): Promise<void> {
    this.ready();
    const reply = await this.peers!.exchange(this.segmentKey(segmentName), HandshakeType.PROBE, '{}\n');
    if (!probeSucceeded(reply)) throw teError(ErrorCode.PROTOCOL_ERROR, `${segmentName} answered the probe with ${reply.trim().slice(0, 80)}`);
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
    const t = this.tcp?.stats();
    const d = t?.data;
    const h = this.handshake?.stats;
    const f = t?.file;
    return {
      ...this.counters,
      dataConnections: t?.dataConnections ?? 0,
      lanes: t?.lanes ?? 0,
      requestsServed: d?.requests ?? 0,
      requestsRejected: d?.rejected ?? 0,
      rpcConnections: h?.connections ?? 0,
      shmCopies: this.dispatch?.shmCopies ?? 0,
      retries: this.dispatch?.retries ?? 0,
      peerPauses: t?.peerPauses ?? 0,
      fileSameHost: this.dispatch?.fileSameHost ?? 0,
      fileSameHostFallbacks: this.dispatch?.fileSameHostFallbacks ?? 0,
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
    this.peers?.close();
    this.dispatch?.abandonRetries(teError(ErrorCode.CLOSED, 'the engine was closed while the transfer waited to be retried'));
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
    const closing = [this.tcp?.close(), this.handshake?.close()];
    this.tcp = null;
    this.handshake = null;
    await Promise.all(closing);
    this.sameHostFiles?.close();
    this.sameHostFiles = null;
    this.files?.close(); // descriptors close once the operations in the OS return
    this.files = null;
    this.shm?.close();
    this.shm = null;
    this.memory?.close();
  }
}
