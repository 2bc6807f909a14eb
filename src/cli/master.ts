/**
 * `transfer-engine master`: a Mooncake Store master on the wire of the
 * wheel's `mooncake_master` (src/master/), with its flags under their
 * Mooncake names (either `_` or `-` spelling). Serves until SIGINT/SIGTERM.
 */
import { tlsSettingsFromEnv } from '../tls.js';
import { DEFAULT_MASTER_CONFIG, type MasterConfig } from '../master/config.js';
import { StoreMaster, type HaSettings } from '../master/master.js';
import { parseMetadataConnString } from '../metadata/connection.js';
import { formatFlagHelp, parseFlags, UsageError, type FlagSpecs } from './args.js';
import { untilStopSignal } from './signals.js';

export const MASTER_FLAGS = {
  rpc_port: { type: 'integer', description: 'port of the master RPC service; 0 picks a free one (with --port unset)', defaultText: '50051 (--port)' },
  port: { type: 'integer', description: 'deprecated spelling of --rpc_port (Mooncake keeps it)', defaultText: '50051' },
  rpc_address: { type: 'string', description: 'address the RPC service listens on', defaultText: '0.0.0.0' },
  default_kv_lease_ttl: { type: 'string', description: 'read lease granted with each replica list: ms, or a duration (500ms, 10s, 1m, 1h)', defaultText: '10000' },
  default_kv_soft_pin_ttl: { type: 'string', description: 'soft pin TTL when a put enables one without a TTL (ms or duration)', defaultText: '1800000' },
  max_kv_soft_pin_ttl: { type: 'string', description: 'largest soft pin TTL a put may ask for (ms or duration)', defaultText: '86400000' },
  allow_evict_soft_pinned_objects: { type: 'boolean', description: 'evict soft-pinned objects when nothing else can go', defaultText: 'true' },
  eviction_high_watermark_ratio: { type: 'number', description: 'used/capacity above which eviction starts (0 < r <= 1)', defaultText: '0.9' },
  eviction_ratio: { type: 'number', description: 'share of the capacity one eviction round frees (0 <= r < 1)', defaultText: '0.05' },
  client_ttl: { type: 'integer', description: 'seconds a client may go without a ping before its segments are unmounted', defaultText: '10' },
  put_start_discard_timeout_sec: { type: 'integer', description: 'seconds after which an unfinished put no longer blocks its key', defaultText: '30' },
  put_start_release_timeout_sec: { type: 'integer', description: 'seconds after which the space of an unfinished put is reused', defaultText: '600' },
  enable_http_metadata_server: { type: 'boolean', description: 'also serve the HTTP metadata server (engines use http://HOST:PORT/metadata)', defaultText: 'false' },
  http_metadata_server_port: { type: 'integer', description: 'port of the HTTP metadata server', defaultText: '8080' },
  http_metadata_server_host: { type: 'string', description: 'address of the HTTP metadata server', defaultText: '0.0.0.0' },
  metadata_data_dir: { type: 'string', description: 'persist the HTTP metadata server in this directory (as metadata-server --data_dir)', defaultText: 'none: memory only' },
  metrics_port: { type: 'integer', description: 'port serving /metrics (Prometheus) and /health; -1: none', defaultText: '9003' },
  metrics_host: { type: 'string', description: 'address serving /metrics and /health', defaultText: '0.0.0.0' },
  max_connections: { type: 'integer', description: 'RPC connections served at once; more are closed at accept', defaultText: String(DEFAULT_MASTER_CONFIG.maxConnections) },
  busy_poll_us: { type: 'integer', description: 'busy-poll window: while requests come closer together than this many microseconds, poll instead of sleeping (lower latency for back-to-back calls, at the cost of a core; 0: off)', defaultText: String(DEFAULT_MASTER_CONFIG.busyPollUs) },
  ha: { type: 'string', description: 'high availability: etcd://h1:2379,h2:2379; masters sharing it elect a leader, state committed there; needs a concrete --rpc_address' },
  enable_ha: { type: 'boolean', description: "Mooncake's spelling: HA with --etcd_endpoints", defaultText: 'false' },
  etcd_endpoints: { type: 'string', description: "Mooncake's spelling of the etcd endpoints for --enable_ha (h1:2379;h2:2379)" },
  cluster_id: { type: 'string', description: 'HA: masters of one store share it; clients find the leader under mooncake-store/<cluster_id>/master_view', defaultText: 'mooncake_cluster' },
  ha_lease_ttl: { type: 'integer', description: 'HA: seconds a dead leader keeps the leadership (the takeover delay)', defaultText: '5' },
  data_dir: { type: 'string', description: 'without HA: keep the master\'s state here (a journal, fsynced before each reply, and snapshots) and reload it on start', defaultText: 'none: memory only, as Mooncake' },
  json: { type: 'boolean', description: 'print the ready line as one JSON object' },
  // Accepted so mooncake_master command lines keep working; they change nothing here.
  enable_metric_reporting: { type: 'boolean', description: "accepted for mooncake_master command lines (our metrics are served, not logged)" },
  logtostderr: { type: 'boolean', description: 'accepted for mooncake_master command lines (we log to stderr always)' },
} as const satisfies FlagSpecs;

export const MASTER_HELP = `Usage: transfer-engine master [flags]

A Mooncake Store master: Mooncake's Python and C++ store clients (the
mooncake-transfer-engine wheel, 0.3.13.post1) and transfer-engine/store use
it as they use mooncake_master (master_server_addr HOST:PORT). Flags take
mooncake_master's names, with _ or -.

Flags:
${formatFlagHelp(MASTER_FLAGS)}
`;

const DURATION_UNITS: Readonly<Record<string, number>> = { '': 1, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds from "10000", "500ms", "10s", "1m" or "1h" (mooncake_master's duration flags). */
export function parseDurationMs(flag: string, text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/i.exec(text);
  const unit = DURATION_UNITS[(m?.[2] ?? '').toLowerCase()];
  const v = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isFinite(v) || !Number.isSafeInteger(Math.round(v))) throw new UsageError(`--${flag}=${text}: not a duration (examples: 10000, 500ms, 10s, 1m, 1h)`);
  return Math.round(v);
}

function port(flag: string, v: number, allowNone = false): number {
  if ((allowNone && v === -1) || (v >= 0 && v <= 65535)) return v;
  throw new UsageError(`--${flag}=${v}: not a port number`);
}

/** The master's settings from its flags; every mistake a UsageError. */
export function masterConfigFromFlags(argv: readonly string[]): {
  config: Partial<MasterConfig>;
  help: boolean;
  json: boolean;
  metrics: { host: string; port: number } | null;
  http: { host: string; port: number; dataDir?: string } | null;
  ha: HaSettings | null;
  dataDir: string | null;
} {
  const { flags: f, positionals, help } = parseFlags(argv, MASTER_FLAGS);
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const ratio = (flag: string, v: number | undefined, lo: number, hi: number, loOpen: boolean): number | undefined => {
    if (v === undefined) return undefined;
    if (v > hi || v < lo || (loOpen && v === lo)) throw new UsageError(`--${flag}=${v}: must be in ${loOpen ? '(' : '['}${lo}, ${hi}]`);
    return v;
  };
  const seconds = (flag: string, v: number | undefined): number | undefined => {
    if (v === undefined) return undefined;
    if (v < 0) throw new UsageError(`--${flag}=${v}: must not be negative`);
    return v * 1000;
  };
  const duration = (flag: string, v: string | undefined): number | undefined => (v === undefined ? undefined : parseDurationMs(flag, v));
  // mooncake_master: --rpc_port wins unless it is 0, then --port.
  const rpcPort = f.rpc_port !== undefined && f.rpc_port !== 0 ? port('rpc_port', f.rpc_port) : f.port !== undefined ? port('port', f.port) : f.rpc_port ?? DEFAULT_MASTER_CONFIG.rpcPort;
  const config: Partial<MasterConfig> = {
    rpcPort,
    rpcAddress: f.rpc_address,
    leaseTtlMs: duration('default_kv_lease_ttl', f.default_kv_lease_ttl),
    softPinTtlMs: duration('default_kv_soft_pin_ttl', f.default_kv_soft_pin_ttl),
    maxSoftPinTtlMs: duration('max_kv_soft_pin_ttl', f.max_kv_soft_pin_ttl),
    allowEvictSoftPinned: f.allow_evict_soft_pinned_objects,
    evictionHighWatermark: ratio('eviction_high_watermark_ratio', f.eviction_high_watermark_ratio, 0, 1, true),
    evictionRatio: ratio('eviction_ratio', f.eviction_ratio, 0, 0.999999, false),
    clientTtlMs: seconds('client_ttl', f.client_ttl),
    putStartDiscardMs: seconds('put_start_discard_timeout_sec', f.put_start_discard_timeout_sec),
    putStartReleaseMs: seconds('put_start_release_timeout_sec', f.put_start_release_timeout_sec),
    maxConnections: f.max_connections,
    busyPollUs: f.busy_poll_us,
  };
  if (config.rpcAddress !== undefined && config.rpcAddress.length === 0) throw new UsageError('--rpc_address must not be empty');
  if (config.clientTtlMs === 0) throw new UsageError('--client_ttl=0: every client would expire at once');
  if (config.maxConnections !== undefined && config.maxConnections < 1) throw new UsageError(`--max_connections=${config.maxConnections}: must be at least 1`);
  if (config.busyPollUs !== undefined && (config.busyPollUs < 0 || config.busyPollUs > 100_000)) throw new UsageError(`--busy_poll_us=${config.busyPollUs}: must be 0 to 100000`);
  const metricsPort = port('metrics_port', f.metrics_port ?? 9003, true);
  const metrics = metricsPort === -1 ? null : { host: f.metrics_host ?? '0.0.0.0', port: metricsPort };
  if (f.metadata_data_dir !== undefined && !f.enable_http_metadata_server) throw new UsageError('--metadata_data_dir needs --enable_http_metadata_server');
  const http = f.enable_http_metadata_server
    ? {
        host: f.http_metadata_server_host ?? '0.0.0.0',
        port: port('http_metadata_server_port', f.http_metadata_server_port ?? 8080),
        ...(f.metadata_data_dir ? { dataDir: f.metadata_data_dir } : {}),
      }
    : null;
  let ha: HaSettings | null = null;
  if (f.ha === undefined && !f.enable_ha) {
    // HA settings without HA would be silently ignored: refuse them instead.
    for (const k of ['cluster_id', 'ha_lease_ttl', 'etcd_endpoints'] as const) {
      if (f[k] !== undefined) throw new UsageError(`--${k} is an HA setting: give --ha etcd://... (or --enable_ha --etcd_endpoints=...) too`);
    }
  } else {
    const conn = f.ha ?? (f.etcd_endpoints !== undefined ? `etcd://${f.etcd_endpoints}` : undefined);
    if (conn === undefined) throw new UsageError('--enable_ha needs --etcd_endpoints (or give --ha etcd://h1:2379,h2:2379)');
    let parsed: ReturnType<typeof parseMetadataConnString>;
    try {
      parsed = parseMetadataConnString(conn);
    } catch (e) {
      throw new UsageError(`--ha=${conn}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (parsed.type !== 'etcd') throw new UsageError(`--ha=${conn}: HA runs on etcd (etcd://h1:2379,h2:2379)`);
    const host = config.rpcAddress ?? '0.0.0.0';
    if (host === '0.0.0.0' || host === '::' || host === '') {
      throw new UsageError('HA publishes the leader\'s address to clients: give --rpc_address an address they reach (not 0.0.0.0)');
    }
    const ttl = f.ha_lease_ttl ?? 5;
    if (ttl < 2 || ttl > 600) throw new UsageError(`--ha_lease_ttl=${ttl}: must be 2 to 600 seconds`);
    ha = { endpoints: parsed.endpoints, clusterId: f.cluster_id || 'mooncake_cluster', advertiseHost: host, leaseTtlS: ttl };
  }
  if (f.data_dir !== undefined && f.data_dir.length === 0) throw new UsageError('--data_dir must not be empty');
  if (f.data_dir !== undefined && ha) throw new UsageError('--data_dir and --ha: the state lives in etcd with HA; give one of them');
  return { config, help, json: f.json ?? false, metrics, http, ha, dataDir: f.data_dir ?? null };
}

export async function runMaster(argv: readonly string[]): Promise<number> {
  const parsed = masterConfigFromFlags(argv);
  if (parsed.help) {
    process.stdout.write(MASTER_HELP);
    return 0;
  }
  let deposed: ((why: string) => void) | null = null;
  const lost = new Promise<string>((resolve) => {
    deposed = resolve;
  });
  const master = await StoreMaster.start({
    ...parsed.config,
    tls: tlsSettingsFromEnv(process.env), // TE_TLS_*, as for an engine: a bad file fails before the port is bound
    metrics: parsed.metrics,
    httpMetadata: parsed.http,
    ha: parsed.ha,
    dataDir: parsed.dataDir,
    onStandby: () => {
      const line = { event: 'master_standby', cluster: parsed.ha?.clusterId, pid: process.pid };
      process.stdout.write(parsed.json ? `${JSON.stringify(line)}\n` : `Standby: waiting to lead cluster "${line.cluster}" (etcd). Stop with Ctrl-C or SIGTERM.\n`);
    },
    onDeposed: (why) => deposed?.(why),
  });
  const ready = {
    event: 'master_ready',
    rpc: `${master.config.rpcAddress}:${master.rpcPort}`,
    rpcPort: master.rpcPort,
    metricsPort: master.metricsPort,
    metadataUrl: master.metadataUrl,
    pid: process.pid,
  };
  if (parsed.json) process.stdout.write(`${JSON.stringify(ready)}\n`);
  else {
    const extra = [master.metadataUrl ? `metadata server ${master.metadataUrl}` : '', master.metricsPort !== null ? `metrics on port ${master.metricsPort}` : ''].filter(Boolean).join(', ');
    process.stdout.write(`Store master listening on ${ready.rpc}${extra ? ` (${extra})` : ''}. Stop with Ctrl-C or SIGTERM.\n`);
  }
  // Deposed (HA): another master leads or may; this one must not serve on. Exit 1 so a supervisor restarts it as a standby.
  const why = await Promise.race([untilStopSignal().then(() => null), lost]);
  await master.close();
  if (why !== null) {
    process.stderr.write(`transfer-engine master: stopped serving: ${why}\n`);
    return 1;
  }
  return 0;
}
