/**
 * What a running engine is made of, built by init() in one place: its
 * configuration, registered memory and files, the RPC port, the TCP
 * transports, the segment table, the planner and dispatcher with their
 * transports, and (central modes) its entry in the metadata store. Also the
 * descriptor built from them, their counters, and their release in order.
 * The engine (engine.ts) keeps the lifecycle, batches and the public API.
 */
import { loadConfig, type EngineConfig } from '../config.js';
import { AUTH_SCHEME, secretBytes } from '../codec/auth.js';
import { TLS_SCHEME } from '../tls.js';
import { encodeSegmentDesc, type SegmentDesc } from '../codec/descriptor.js';
import { envVar } from '../env.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { loadFileConfig } from '../file/config.js';
import { LocalFiles } from '../file/local-files.js';
import { parseMetadataConnString } from '../metadata/connection.js';
import { SegmentDirectory } from '../metadata/directory.js';
import { MetadataHttpServer } from '../metadata/http-server.js';
import { metadataKeys } from '../metadata/keys.js';
import { openMetadataStore } from '../metadata/open-store.js';
import { storeOptionsFromEnv } from '../metadata/store.js';
import { joinHostPort, parseHostPort, splitHostPort } from '../net.js';
import { HandshakeServer, type Notification } from '../rpc/handshake.js';
import { nativeAvailable, reapStaleShmFiles } from '../shm/index.js';
import { SameHostFiles } from '../transport/file-same-host.js';
import { FileTransport } from '../transport/file.js';
import { MemoryCopy } from '../transport/memory-copy.js';
import { ShmTransport } from '../transport/shm.js';
import type { Transport } from '../transport/transport.js';
import { listenHostFor, publishedHost } from './addresses.js';
import { Dispatcher } from './dispatch.js';
import { LocalMemory } from './local-memory.js';
import { PeerRpc } from './peer-rpc.js';
import type { PlannerContext } from './planner.js';
import { SegmentTable } from './segments.js';
import { TcpTransports } from './tcp-transports.js';
import { metricsPages } from './metrics.js';
import { statusPage, type StatusSource } from './status.js';
import type { Telemetry } from './telemetry.js';
import type { EngineLifecycle, EngineOptions, EngineStats, TransferCounters } from './types.js';

export interface StartArgs {
  /** init()'s arguments, checked by the engine. */
  readonly serverName: string;
  readonly connectableName: string | undefined;
  readonly rpcPort: number;
  readonly options: EngineOptions;
  /** This engine instance's identity (published as engine_id). */
  readonly engineId: number;
  /** What tasks report when they end (counters, metrics, diagnostics events). */
  readonly telemetry: Telemetry;
  /** True while the engine is ready (init done, not closed). */
  ready(): boolean;
  lifecycle(): EngineLifecycle;
  /** A Notify message arrived at the RPC port. */
  notify(n: Notification): void;
}

export class EngineParts {
  /** This engine's segment name (`host:rpcPort` in P2P mode); set once the RPC port is bound. */
  name = '';
  /** Central metadata store (http/etcd/redis); null in P2P mode, and once unpublished. */
  directory: SegmentDirectory | null = null;
  readonly peers: PeerRpc;
  readonly segments: SegmentTable;
  // Made by start(), in this order; null until then (or after release): a failed start releases what exists.
  shm: ShmTransport | null = null;
  handshake: HandshakeServer | null = null;
  /** The metrics port (TE_METRICS_PORT); null when not served. */
  metrics: MetadataHttpServer | null = null;
  files: LocalFiles | null = null;
  tcp: TcpTransports | null = null;
  sameHostFiles: SameHostFiles | null = null;
  planner: PlannerContext | null = null;
  dispatch: Dispatcher | null = null;

  private constructor(
    readonly config: EngineConfig,
    /** Registered memory: kept after close (registrationsIn answers then). */
    readonly memory: LocalMemory,
    private readonly args: StartArgs,
  ) {
    this.peers = new PeerRpc({ config, engineId: args.engineId, directory: () => this.directory, ownDescriptor: () => this.descriptor() });
    this.segments = new SegmentTable({
      lookup: (name) => this.peers.lookup(name),
      ready: () => {
        if (!args.ready()) throw teError(ErrorCode.CLOSED, 'the engine is closed');
      },
      forceTcpV1: config.forceTcpV1,
    });
  }

  /**
   * Parse the settings, bind the RPC and data ports, and (central modes)
   * publish this engine. Settings that are wrong fail before any port is
   * bound; a later failure releases whatever was made.
   * @param onParsed called once the settings are parsed, before anything is bound
   */
  static async start(args: StartArgs, onParsed: (parts: EngineParts) => void): Promise<EngineParts> {
    const { options } = args;
    const env = options.env ?? process.env;
    const config = { ...loadConfig(env), ...options.config };
    if (options.authSecret !== undefined) config.authSecret = secretBytes(options.authSecret, 'authSecret', ErrorCode.INVALID_ARGUMENT);
    const memory: LocalMemory = new LocalMemory({ config, shm: options.shm === true, name: () => parts.name, directory: () => parts.directory });
    const target = parseMetadataConnString(options.metadataServer || envVar('MC_METADATA_SERVER', env) || 'P2PHANDSHAKE');
    const storeOptions = storeOptionsFromEnv(env); // malformed TE_METADATA_* / MC_REDIS_* fail before any port is bound
    const fileConfig = loadFileConfig(env); // MC_NVMEOF_GENERIC_*, checked as early
    const metricsPort = options.metricsPort ?? config.metricsPort;
    if (!Number.isInteger(metricsPort) || metricsPort < 0 || metricsPort > 65535) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `metricsPort ${String(metricsPort)} is not a port number (0: off)`);
    }
    if (options.shm && !nativeAvailable()) {
      throw teError(ErrorCode.NOT_SUPPORTED, 'shared memory was asked for (shm option) but the native addon is not built on this host');
    }
    const parts: EngineParts = new EngineParts(config, memory, args);
    onParsed(parts);
    try {
      const shm = new ShmTransport(options.machineId === undefined ? {} : { machineId: options.machineId });
      parts.shm = shm;
      if (shm.available) reapStaleShmFiles(); // files of crashed engines on this host
      const central = target.type !== 'p2p';
      const { serverName, connectableName } = args;
      // P2P names are addresses (and so are central ones whose port is bound, MC_LEGACY_RPC_PORT_BINDING): a bad port is an error.
      const { host, port: namePort } = !central || config.legacyRpcPortBinding ? parseHostPort(serverName, 'serverName') : splitHostPort(serverName);
      // Central modes publish this host in rpc_meta (Mooncake: MC_TCP_BIND_ADDRESS, else the first interface).
      const connectHost = connectableName ?? (central ? publishedHost(config, options, host) : host);
      let port = args.rpcPort;
      if (port === 0 && config.legacyRpcPortBinding && namePort !== undefined) port = namePort;
      const { minPort, maxPort } = config;
      if (port === 0 && minPort === maxPort) {
        throw teError(ErrorCode.BAD_ENV, `MC_MIN_RPC_PORT = MC_MAX_RPC_PORT = ${minPort} leaves one port, and the engine binds two there (RPC and data): give a range of at least two ports, or an RPC port outside it`);
      }
      const listenHost = await listenHostFor(config, options, connectHost, central ? undefined : host);
      parts.handshake = new HandshakeServer(
        { metadata: () => (args.ready() ? encodeSegmentDesc(parts.descriptor()) : null), notify: (n) => args.notify(n) },
        config.handshakeMaxLength,
        { authSecret: config.authSecret, tls: config.tls, limits: config },
      );
      const boundRpc = await parts.handshake.listen(listenHost, port, minPort, maxPort);
      // Central modes keep the name as given (it is the key); P2P names are the dialable host:rpcPort.
      parts.name = central ? serverName : joinHostPort(connectHost, boundRpc);
      const files = new LocalFiles(fileConfig);
      parts.files = files;
      const tcp = new TcpTransports({ config, registry: memory.registry, files: files.context, engineId: args.engineId, listenHost, sourceAddress: options.sourceAddress });
      parts.tcp = tcp;
      await tcp.start(boundRpc);
      parts.planner = { registry: memory.registry, files, segments: parts.segments, tcpInstalled: () => tcp.client !== null };
      if (fileConfig.sameHost) parts.sameHostFiles = new SameHostFiles(shm.machineId, files);
      // Offered each job in this order: a same-host path, when one serves it, before TCP.
      const transports: Transport[] = [new MemoryCopy(), new FileTransport(files), ...(parts.sameHostFiles ? [parts.sameHostFiles] : []), shm, tcp.transport];
      parts.dispatch = new Dispatcher({ config, telemetry: args.telemetry, segments: parts.segments, ready: args.ready, transports, tcp: tcp.transport });
      if (metricsPort !== 0) parts.metrics = await parts.serveMetrics(listenHost, metricsPort, options.metricsPort !== undefined);
      if (central) {
        const store = await openMetadataStore(target, storeOptions);
        parts.directory = new SegmentDirectory(store, metadataKeys(env), (meta, name) => parts.peers.answersAs(meta, name), config.maxDescriptorSize);
        await parts.directory.publish(parts.name, { ipOrHostName: connectHost, rpcPort: boundRpc }, () => parts.descriptor());
      }
      return parts;
    } catch (e) {
      await parts.unpublish(); // removes whatever part of our entry was written
      await parts.release();
      throw e;
    }
  }

  /** This engine's descriptor as peers see it. */
  descriptor(): SegmentDesc {
    const fileEndpoint = this.tcp?.fileEndpoint();
    return {
      name: this.name,
      protocol: 'tcp',
      tcpDataPort: this.tcp?.dataPort ?? 0,
      tcpProtoVersion: 2,
      engineId: this.args.engineId,
      buffers: this.memory.buffers(),
      ...(this.shm?.machineId ? { machineId: this.shm.machineId } : {}),
      ...(this.config.authSecret ? { auth: AUTH_SCHEME } : {}),
      ...(this.config.tls ? { tls: TLS_SCHEME } : {}),
      ...(this.files && this.files.registry.size > 0 ? { fileBuffers: this.files.describe() } : {}),
      ...(fileEndpoint ? { fileEndpoint } : {}),
      ...(this.metrics ? { metricsPort: this.metrics.port } : {}),
    };
  }

  /** The metrics port: /metrics, /health and /status.json. A port in use is an error naming where it came from. */
  private async serveMetrics(host: string, port: number, fromOption: boolean): Promise<MetadataHttpServer> {
    const a = this.args;
    const source: StatusSource = {
      telemetry: a.telemetry,
      lifecycle: () => a.lifecycle(),
      stats: () => collectStats(a.telemetry.counters, this),
      transports: () => this.tcp?.names ?? [],
      segmentName: () => this.name,
      segments: () => this.segments.count,
      descriptor: () => this.descriptor(),
      peers: () => this.segments.list(),
      registered: () => {
        const regions = this.memory.registry.list();
        let bytes = 0;
        for (const r of regions) bytes += r.length;
        return { regions: regions.length, bytes, files: this.files?.registry.size ?? 0 };
      },
    };
    const pages = { ...metricsPages(source), '/status.json': () => statusPage(source) };
    try {
      return await MetadataHttpServer.start({ host, port, pages, metadata: false });
    } catch (e) {
      const what = fromOption ? 'the metricsPort option' : 'TE_METRICS_PORT';
      if (e instanceof TransferEngineError) throw teError(e.code, `${what}: ${e.message}`, e);
      throw e;
    }
  }

  /** Remove this engine's entry from the metadata store (bounded by the store's timeouts); nothing in P2P mode. */
  async unpublish(): Promise<void> {
    const dir = this.directory;
    this.directory = null;
    await dir?.close();
  }

  /** Ports, connections, peer mappings, and the shared memory we own (its files are removed). */
  async release(): Promise<void> {
    const closing = [this.tcp?.close(), this.handshake?.close(), this.metrics?.close()];
    this.tcp = null;
    this.handshake = null;
    this.metrics = null;
    await Promise.all(closing);
    this.sameHostFiles?.close();
    this.sameHostFiles = null;
    this.files?.close(); // descriptors close once the operations in the OS return
    this.files = null;
    this.shm?.close();
    this.shm = null;
    this.memory.close();
  }
}

/** The engine's counters with those of its parts (zero before init). */
export function collectStats(counters: TransferCounters, parts: EngineParts | null): EngineStats {
  const t = parts?.tcp?.stats();
  const d = t?.data;
  const h = parts?.handshake?.stats;
  const f = t?.file;
  const dispatch = parts?.dispatch;
  return {
    ...counters,
    dataConnections: t?.dataConnections ?? 0,
    lanes: t?.lanes ?? 0,
    requestsServed: d?.requests ?? 0,
    requestsRejected: d?.rejected ?? 0,
    rpcConnections: h?.connections ?? 0,
    shmCopies: dispatch?.stats('shm')?.['copies'] ?? 0,
    retries: dispatch?.retries ?? 0,
    peerPauses: t?.peerPauses ?? 0,
    fileSameHost: dispatch?.stats('file-same-host')?.['served'] ?? 0,
    fileSameHostFallbacks: dispatch?.stats('file-same-host')?.['fallbacks'] ?? 0,
    authRejected: (d?.authRejected ?? 0) + (h?.authRejected ?? 0) + (f?.authRejected ?? 0),
    tlsRejected: (d?.tlsRejected ?? 0) + (h?.tlsRejected ?? 0) + (f?.tlsRejected ?? 0),
    connectionsRefused: (d?.refused ?? 0) + (h?.refused ?? 0) + (f?.refused ?? 0),
    handshakesRateLimited: h?.rateLimited ?? 0,
    connectionsStalled: (d?.stalled ?? 0) + (h?.stalled ?? 0) + (f?.stalled ?? 0),
  };
}
