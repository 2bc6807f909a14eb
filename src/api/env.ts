/**
 * The seed's environment variables, read and validated once at initialize().
 * The core's variables (MC_TRANSFER_TIMEOUT, MC_TCP_BIND_ADDRESS,
 * MC_LEGACY_RPC_PORT_BINDING, ports, lanes...) go through the core's
 * loadConfig, so both layers agree on one parse; this module adds the ones the
 * high-level API owns. A malformed value is one TE_BAD_ENV error naming the
 * variable, never a silent default.
 */
import net from 'node:net';
import os from 'node:os';
import { loadConfig, type EngineConfig } from '../config.js';
import { teError, ErrorCode } from '../errors.js';
import { parseLogLevel, type LogLevelName } from './log.js';
import { loadTopologyFile, type Topology } from './topology.js';

export type Env = Record<string, string | undefined>;

export interface ApiSettings {
  core: EngineConfig;
  logLevel: LogLevelName;
  /** MC_TE_METRIC: print a throughput line every metricIntervalSeconds. */
  metric: boolean;
  metricIntervalSeconds: number;
  /** MC_CUSTOM_TOPO_JSON, parsed; undefined when unset. */
  topology: Topology | undefined;
}

/** Mooncake's spelling of true for MC_TE_METRIC ("1", "true", "yes", "on"), and the matching falses. */
function boolVar(env: Env, name: string): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return false;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw teError(ErrorCode.BAD_ENV, `${name}="${raw}" is not a boolean (1/0, true/false, yes/no, on/off)`);
}

function positiveIntVar(env: Env, name: string, dflt: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return dflt;
  const v = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(v) || v < 1 || v > max) throw teError(ErrorCode.BAD_ENV, `${name}="${raw}" is not an integer in [1, ${max}]`);
  return v;
}

/** MC_TCP_BIND_ADDRESS must be an address this host can listen on: said at initialize, not as a failed listen. */
function checkBindAddress(raw: string | undefined): void {
  if (raw === undefined || raw.trim() === '') return;
  const v = raw.trim();
  if (net.isIP(v) === 0) throw teError(ErrorCode.BAD_ENV, `MC_TCP_BIND_ADDRESS="${raw}" is not an IP address`);
  if (v === '0.0.0.0' || v === '::' || v === '::1' || v.startsWith('127.')) return;
  const local = Object.values(os.networkInterfaces()).some((l) => l?.some((a) => a.address === v));
  if (!local) throw teError(ErrorCode.BAD_ENV, `MC_TCP_BIND_ADDRESS="${raw}" is not an address of this host`);
}

export async function loadApiSettings(env: Env): Promise<ApiSettings> {
  const core = loadConfig(env);
  checkBindAddress(env['MC_TCP_BIND_ADDRESS']);
  const logLevel = parseLogLevel(env['MC_LOG_LEVEL']);
  const metric = boolVar(env, 'MC_TE_METRIC');
  // Validated even when metrics are off: a typo should not wait for the day they are turned on.
  const metricIntervalSeconds = positiveIntVar(env, 'MC_TE_METRIC_INTERVAL_SECONDS', 5, 86400);
  const topoPath = env['MC_CUSTOM_TOPO_JSON'];
  const topology = topoPath === undefined || topoPath.trim() === '' ? undefined : await loadTopologyFile(topoPath.trim());
  return { core, logLevel, metric, metricIntervalSeconds, topology };
}

/**
 * Deadline of a sync call, as Mooncake's Python binding computes it:
 * MC_TRANSFER_TIMEOUT plus 1 ns per byte (a floor of 1 GB/s).
 */
export function syncDeadlineMs(timeoutMs: number, bytes: number): number {
  return timeoutMs + bytes / 1e6;
}
