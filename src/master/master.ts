/**
 * A Mooncake Store master in one object: the service (state and rules), its
 * coro_rpc server, the sweep timer, and its HTTP side: `/metrics` and
 * `/health` on the metrics port, and optionally our HTTP metadata server
 * (which serves them too), so one process is a whole store's control plane.
 *
 * With `ha`, masters sharing an etcd cluster elect one leader (src/master/ha.ts):
 * a standby serves only its HTTP side until it leads; the leader restores the
 * committed state, then serves, and answers no request before what it changed
 * (and everything changed before it) is committed (GroupCommit below).
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { teError, ErrorCode } from '../errors.js';
import { encodeMetrics } from '../codec/prometheus.js';
import { MetadataHttpServer, type HttpPage } from '../metadata/http-server.js';
import type { StoreStatus } from '../status/types.js';
import { STORE_PROTOCOL_VERSION } from '../store/master-protocol.js';
import { DEFAULT_CLUSTER_ID } from '../store/master-view.js';
import { DEFAULT_MASTER_CONFIG, type MasterConfig } from './config.js';
import { FileJournal } from './file-journal.js';
import { EtcdHa } from './ha.js';
import { masterHandlers } from './handlers.js';
import { MasterMetrics, PROMETHEUS_CONTENT_TYPE, storeStatus } from './metrics.js';
import type { ChangeSet } from './records.js';
import { RpcServer } from './rpc-server.js';
import { MasterService } from './service.js';

/** How often time-driven work runs (client expiry, quarantined space, eviction). */
const SWEEP_INTERVAL_MS = 100;

export interface HttpEndpoint {
  host: string;
  /** 0 picks a free one. */
  port: number;
}

export interface HaSettings {
  /** etcd endpoints, `http://host:port`. */
  endpoints: string[];
  /** Masters of one store share it (default Mooncake's `mooncake_cluster`). */
  clusterId?: string;
  /** The host clients reach this master's RPC port at, published (with the port) when it leads. */
  advertiseHost: string;
  /** Seconds a dead leader keeps the leadership (default 5): the takeover delay. */
  leaseTtlS?: number;
}

export interface StoreMasterOptions extends Partial<MasterConfig> {
  /** Serve `/metrics` and `/health` here (mooncake_master's `--metrics_host/--metrics_port`); null: not at all. */
  metrics?: HttpEndpoint | null;
  /** Embed our HTTP metadata server here (`--enable_http_metadata_server`); it serves /metrics and /health too. */
  httpMetadata?: (HttpEndpoint & { dataDir?: string }) | null;
  /** One of several masters with their state in etcd. */
  ha?: HaSettings | null;
  /** Without HA: keep the state in this directory (journal + snapshot), committed before replies, reloaded on start. */
  dataDir?: string | null;
  /** HA: this process waits as a standby (called once, before start() resolves only on leadership). */
  onStandby?: () => void;
  /** This master stopped serving: HA leadership lost or fenced out, or a commit (etcd or --data_dir) failed. Its RPC port is closed. */
  onDeposed?: (why: string) => void;
}

/**
 * Commits change sets in order, merging those that arrive while one is in
 * flight into the next (group commit). gate() is what replies wait for.
 */
class GroupCommit {
  private inflight: Promise<void> | null = null;
  private pending: { changes: ChangeSet; done: Promise<void>; resolve: () => void; reject: (e: unknown) => void } | null = null;

  constructor(
    private readonly service: MasterService,
    private readonly commit: (c: ChangeSet) => Promise<void>,
    private readonly failed: (e: unknown) => void,
  ) {}

  /** Queue what the service changed; the promise of everything queued so far, or null when all of it is durable. */
  gate(): Promise<void> | null {
    const c = this.service.takeChanges();
    if (c) this.add(c);
    return this.pending?.done ?? this.inflight;
  }

  private add(c: ChangeSet): void {
    if (this.pending) {
      for (const [k, v] of c.segments) this.pending.changes.segments.set(k, v);
      for (const [k, v] of c.objects) this.pending.changes.objects.set(k, v);
    } else {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const done = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      done.catch(() => {}); // the failure is handled once, by `failed`
      this.pending = { changes: c, done, resolve, reject };
    }
    if (!this.inflight) this.flush();
  }

  /** Every queued commit done (or failed): before a journal closes. */
  async drain(): Promise<void> {
    while (this.inflight || this.pending) await (this.pending?.done ?? this.inflight)?.catch(() => undefined);
  }

  private flush(): void {
    const batch = this.pending;
    if (!batch) return;
    this.pending = null;
    const run = this.commit(batch.changes).then(batch.resolve, (e: unknown) => {
      batch.reject(e);
      this.failed(e);
    });
    this.inflight = batch.done;
    void run.finally(() => {
      this.inflight = null;
      if (this.pending) this.flush();
    });
  }
}

export class StoreMaster {
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private rpc: RpcServer | null = null;
  private ha: EtcdHa | null = null;
  private commits: GroupCommit | null = null;
  private journal: FileJournal | null = null;
  /** 'standby' until it leads (HA), then 'leader'; 'deposed' once it lost the leadership. */
  role: 'leader' | 'standby' | 'deposed' = 'standby';

  private constructor(
    readonly config: Readonly<MasterConfig>,
    readonly service: MasterService,
    readonly metrics: MasterMetrics,
    private readonly metricsServer: MetadataHttpServer | null,
    private readonly metadataServer: MetadataHttpServer | null,
  ) {}

  static async start(options: StoreMasterOptions = {}): Promise<StoreMaster> {
    const { metrics: metricsAt = null, httpMetadata = null, ha = null, dataDir = null, onStandby, onDeposed, ...overrides } = options;
    if (ha && dataDir) throw teError(ErrorCode.INVALID_ARGUMENT, 'a master keeps its state in etcd (HA) or in a data directory, not both');
    const config: MasterConfig = { ...DEFAULT_MASTER_CONFIG, ...stripUndefined(overrides) };
    const service = new MasterService(config, () => performance.now());
    let self: StoreMaster | null = null;
    const metrics = new MasterMetrics(service, () => self?.rpc?.connections ?? 0);
    let metadataServer: MetadataHttpServer | null = null;
    const pages: Record<string, () => HttpPage> = {
      // The embedded metadata server's own counters follow the master's (one port, one scrape).
      '/metrics': () => ({ status: 200, body: metrics.render() + (metadataServer ? encodeMetrics(metadataServer.metricFamilies()) : ''), type: PROMETHEUS_CONTENT_TYPE }),
      '/health': () => {
        const role = self?.role ?? 'standby';
        // A standby is healthy but does not serve: 503 tells a load balancer to send clients elsewhere.
        return { status: role === 'leader' ? 200 : 503, body: JSON.stringify({ status: role === 'leader' ? 'ok' : role, role, ...service.stats }), type: 'application/json' };
      },
    };
    const opened: MetadataHttpServer[] = [];
    try {
      // With a data directory the embedded metadata server keeps its keys there too (unless told otherwise):
      // clients the restarted master still knows do not remount, so they would not publish their segments again.
      const metadataDir = httpMetadata?.dataDir ?? (dataDir ? path.join(dataDir, 'metadata') : undefined);
      // The status page shows the master's store, and on the metadata port the segments published there.
      const status = { server: 'master', store: (): StoreStatus => storeStatus(self?.role ?? 'standby', service) };
      metadataServer = httpMetadata
        ? await MetadataHttpServer.start({ host: httpMetadata.host, port: httpMetadata.port, pages, status, ...(metadataDir ? { dataDir: metadataDir } : {}) })
        : null;
      if (metadataServer) opened.push(metadataServer);
      // The metrics server is the metadata server's HTTP code serving pages only: /metadata answers 404.
      const metricsServer = metricsAt ? await MetadataHttpServer.start({ host: metricsAt.host, port: metricsAt.port, pages, status, metadata: false }) : null;
      if (metricsServer) opened.push(metricsServer);
      const m = new StoreMaster(config, service, metrics, metricsServer, metadataServer);
      self = m;
      if (ha) await m.lead(ha, onStandby, onDeposed);
      else if (dataDir) await m.reload(dataDir, onDeposed);
      await m.serve();
      if (m.ha) await m.ha.publishView(`${ha!.advertiseHost}:${m.rpcPort}`); // clients following etcd come only once we serve
      return m;
    } catch (e) {
      await self?.close();
      for (const s of opened) await s.close();
      throw e;
    }
  }

  /** HA: wait for the leadership, then take over the committed state. */
  private async lead(settings: HaSettings, onStandby?: () => void, onDeposed?: (why: string) => void): Promise<void> {
    const ha = new EtcdHa({
      endpoints: settings.endpoints,
      clusterId: settings.clusterId ?? DEFAULT_CLUSTER_ID,
      advertise: `${settings.advertiseHost}:${this.config.rpcPort}`,
      leaseTtlS: settings.leaseTtlS ?? 5,
    });
    this.ha = ha;
    onStandby?.();
    await ha.acquire();
    ha.deposed((why) => this.depose(why, onDeposed));
    this.service.restore(await ha.load());
    this.service.trackChanges();
    this.commits = new GroupCommit(this.service, (c) => ha.commit(c), (e) => this.depose(`a commit to etcd failed: ${e instanceof Error ? e.message : String(e)}`, onDeposed));
  }

  /** --data_dir: restore what the journal holds, then commit every change there. */
  private async reload(dir: string, onDeposed?: (why: string) => void): Promise<void> {
    const { journal, state } = await FileJournal.open(dir);
    this.journal = journal;
    this.service.restore(state);
    this.service.trackChanges();
    this.commits = new GroupCommit(this.service, (c) => journal.commit(c), (e) => this.depose(`writing the state to ${dir} failed: ${e instanceof Error ? e.message : String(e)}`, onDeposed));
  }

  private async serve(): Promise<void> {
    const commits = this.commits;
    this.rpc = await RpcServer.start(
      masterHandlers(this.service, STORE_PROTOCOL_VERSION),
      {
        host: this.config.rpcAddress,
        port: this.config.rpcPort,
        maxFrameBytes: this.config.maxFrameBytes,
        maxConnections: this.config.maxConnections,
        busyPollUs: this.config.busyPollUs,
        tls: this.config.tls,
        ...(commits ? { gate: () => commits.gate() } : {}),
      },
      this.metrics.observe,
    );
    this.role = 'leader';
    this.timer = setInterval(() => {
      this.service.sweep();
      commits?.gate(); // what time changed (expired clients, eviction) is committed too
    }, SWEEP_INTERVAL_MS);
    this.timer.unref();
  }

  /** Stop serving at once: another master leads (or may), and our state is not the committed one. */
  private depose(why: string, onDeposed?: (why: string) => void): void {
    if (this.role === 'deposed' || this.closed) return;
    this.role = 'deposed';
    if (this.timer) clearInterval(this.timer);
    void this.rpc?.close();
    onDeposed?.(why);
  }

  /** The RPC port clients use as `master_server_addr` (host:port). */
  get rpcPort(): number {
    return this.rpc?.port ?? 0;
  }

  get metricsPort(): number | null {
    return this.metricsServer?.port ?? null;
  }

  /** The URL clients use as their metadata server, when embedded. */
  get metadataUrl(): string | null {
    return this.metadataServer?.url ?? null;
  }

  /** The RPC server (throws before this master serves: a standby). */
  get rpcServer(): RpcServer {
    if (!this.rpc) throw teError(ErrorCode.NOT_INITIALIZED, 'this master does not serve RPC (yet)');
    return this.rpc;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    await this.rpc?.close();
    await this.commits?.drain(); // what was changed is committed before the leadership or the file goes
    await this.ha?.close(); // revokes the lease: a standby takes over at once
    await this.journal?.close();
    await this.metricsServer?.close();
    await this.metadataServer?.close();
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
