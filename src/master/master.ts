/**
 * A Mooncake Store master in one object: the service (state and rules), its
 * coro_rpc server, the sweep timer, and its HTTP side: `/metrics` and
 * `/health` on the metrics port, and optionally our HTTP metadata server
 * (which serves them too), so one process is a whole store's control plane.
 */
import { performance } from 'node:perf_hooks';
import { MetadataHttpServer, type HttpPage } from '../metadata/http-server.js';
import { STORE_PROTOCOL_VERSION } from '../store/master-protocol.js';
import { DEFAULT_MASTER_CONFIG, type MasterConfig } from './config.js';
import { masterHandlers } from './handlers.js';
import { MasterMetrics, PROMETHEUS_CONTENT_TYPE } from './metrics.js';
import { RpcServer } from './rpc-server.js';
import { MasterService } from './service.js';

/** How often time-driven work runs (client expiry, quarantined space, eviction). */
const SWEEP_INTERVAL_MS = 100;

export interface HttpEndpoint {
  host: string;
  /** 0 picks a free one. */
  port: number;
}

export interface StoreMasterOptions extends Partial<MasterConfig> {
  /** Serve `/metrics` and `/health` here (mooncake_master's `--metrics_host/--metrics_port`); null: not at all. */
  metrics?: HttpEndpoint | null;
  /** Embed our HTTP metadata server here (`--enable_http_metadata_server`); it serves /metrics and /health too. */
  httpMetadata?: (HttpEndpoint & { dataDir?: string }) | null;
}

export class StoreMaster {
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    readonly config: Readonly<MasterConfig>,
    readonly service: MasterService,
    private readonly rpc: RpcServer,
    readonly metrics: MasterMetrics,
    private readonly metricsServer: MetadataHttpServer | null,
    private readonly metadataServer: MetadataHttpServer | null,
  ) {
    this.timer = setInterval(() => service.sweep(), SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  static async start(options: StoreMasterOptions = {}): Promise<StoreMaster> {
    const { metrics: metricsAt = null, httpMetadata = null, ...overrides } = options;
    const config: MasterConfig = { ...DEFAULT_MASTER_CONFIG, ...stripUndefined(overrides) };
    const service = new MasterService(config, () => performance.now());
    let rpcRef: RpcServer | null = null;
    const metrics = new MasterMetrics(service, () => rpcRef?.connections ?? 0);
    const rpc = await RpcServer.start(
      masterHandlers(service, STORE_PROTOCOL_VERSION),
      { host: config.rpcAddress, port: config.rpcPort, maxFrameBytes: config.maxFrameBytes, maxConnections: config.maxConnections },
      metrics.observe,
    );
    rpcRef = rpc;
    const pages: Record<string, () => HttpPage> = {
      '/metrics': () => ({ status: 200, body: metrics.render(), type: PROMETHEUS_CONTENT_TYPE }),
      '/health': () => ({ status: 200, body: JSON.stringify({ status: 'ok', ...service.stats }), type: 'application/json' }),
    };
    const opened: MetadataHttpServer[] = [];
    try {
      const metadataServer = httpMetadata
        ? await MetadataHttpServer.start({ host: httpMetadata.host, port: httpMetadata.port, pages, ...(httpMetadata.dataDir ? { dataDir: httpMetadata.dataDir } : {}) })
        : null;
      if (metadataServer) opened.push(metadataServer);
      // The metrics server is the metadata server's HTTP code with nothing stored: /metadata answers 404.
      const metricsServer = metricsAt ? await MetadataHttpServer.start({ host: metricsAt.host, port: metricsAt.port, pages }) : null;
      return new StoreMaster(config, service, rpc, metrics, metricsServer, metadataServer);
    } catch (e) {
      await rpc.close();
      for (const s of opened) await s.close();
      throw e;
    }
  }

  /** The RPC port clients use as `master_server_addr` (host:port). */
  get rpcPort(): number {
    return this.rpc.port;
  }

  get metricsPort(): number | null {
    return this.metricsServer?.port ?? null;
  }

  /** The URL clients use as their metadata server, when embedded. */
  get metadataUrl(): string | null {
    return this.metadataServer?.url ?? null;
  }

  get rpcServer(): RpcServer {
    return this.rpc;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.rpc.close();
    await this.metricsServer?.close();
    await this.metadataServer?.close();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
