/**
 * Mooncake's environment variables, read and validated once at initialize()
 * through src/env.ts. The core's variables (MC_TRANSFER_TIMEOUT, MC_TCP_BIND_ADDRESS,
 * MC_LEGACY_RPC_PORT_BINDING, ports, lanes...) go through the core's
 * loadConfig, so both layers agree on one parse; this module adds the ones the
 * high-level API owns, and the checks that need this host (bind address,
 * topology file). A malformed value is one TE_BAD_ENV error naming the
 * variable, never a silent default.
 */
import net from 'node:net';
import os from 'node:os';
import { loadConfig, type EngineConfig } from '../config.js';
import { envError, envVar, type Env } from '../env.js';
import type { LogLevelName } from './log.js';
import { loadTopologyFile, type Topology } from './topology.js';

export type { Env };

export interface ApiSettings {
  core: EngineConfig;
  logLevel: LogLevelName;
  /** MC_TE_METRIC: print a throughput line every metricIntervalSeconds. */
  metric: boolean;
  metricIntervalSeconds: number;
  /** MC_CUSTOM_TOPO_JSON, parsed; undefined when unset. */
  topology: Topology | undefined;
}

/** MC_TCP_BIND_ADDRESS must be an address this host can listen on: said at initialize, not as a failed listen. */
function checkBindAddress(v: string | undefined): void {
  if (v === undefined || v === '') return; // whitespace only: the core's blank address (src/env.ts)
  if (net.isIP(v) === 0) throw envError(`MC_TCP_BIND_ADDRESS="${v}" is not an IP address`);
  if (v === '0.0.0.0' || v === '::' || v === '::1' || v.startsWith('127.')) return;
  const local = Object.values(os.networkInterfaces()).some((l) => l?.some((a) => a.address === v));
  if (!local) throw envError(`MC_TCP_BIND_ADDRESS="${v}" is not an address of this host`);
}

export async function loadApiSettings(env: Env): Promise<ApiSettings> {
  const core = loadConfig(env);
  checkBindAddress(core.bindAddress);
  const logLevel = envVar('MC_LOG_LEVEL', env);
  const metric = envVar('MC_TE_METRIC', env);
  // Validated even when metrics are off: a typo should not wait for the day they are turned on.
  const metricIntervalSeconds = envVar('MC_TE_METRIC_INTERVAL_SECONDS', env);
  const topoPath = envVar('MC_CUSTOM_TOPO_JSON', env);
  const topology = topoPath === undefined ? undefined : await loadTopologyFile(topoPath);
  return { core, logLevel, metric, metricIntervalSeconds, topology };
}

/**
 * Deadline of a sync call, as Mooncake's Python binding computes it:
 * MC_TRANSFER_TIMEOUT plus 1 ns per byte (a floor of 1 GB/s).
 */
export function syncDeadlineMs(timeoutMs: number, bytes: number): number {
  return timeoutMs + bytes / 1e6;
}
