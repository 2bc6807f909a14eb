/**
 * The core's runtime settings from environment variables (Mooncake's names),
 * read through src/env.ts once at init: a malformed value is one clear error
 * naming the variable, never a silent default.
 */
import { ErrorCode } from './errors.js';
import { secretBytes } from './codec/auth.js';
import { readSecretFile } from './secret-file.js';
import { envError, envVar, type Env } from './env.js';
import type { ListenerLimits } from './limits.js';
import { tlsSettingsFromEnv, type TlsSettings } from './tls.js';

export interface EngineConfig extends ListenerLimits {
  /** MC_TRANSFER_TIMEOUT: seconds without progress before a transfer ends in TIMEOUT. */
  transferTimeoutMs: number;
  /** MC_HANDSHAKE_CONNECT_TIMEOUT: seconds to connect to a peer's RPC port. */
  handshakeConnectTimeoutMs: number;
  /** MC_HANDSHAKE_MAX_LENGTH: largest handshake frame accepted. */
  handshakeMaxLength: number;
  /** MC_MIN_RPC_PORT / MC_MAX_RPC_PORT: range for the RPC and data ports. */
  minPort: number;
  maxPort: number;
  /** MC_TCP_PROTO=1 forces the unacknowledged v1 initiator. */
  forceTcpV1: boolean;
  /** MC_TCP_BIND_ADDRESS: address to listen on (and publish, in central modes). */
  bindAddress: string | undefined;
  /** MC_LEGACY_RPC_PORT_BINDING: take the RPC port from the server name. */
  legacyRpcPortBinding: boolean;
  /** MC_TCP_LANES_PER_PEER: persistent data connections per peer (1-16). */
  lanesPerPeer: number;
  /**
   * TE_TCP_SPLIT_SIZE (ours): requests larger than this are split into several
   * wire requests spread over the lanes. (Mooncake's MC_TCP_SLICE_SIZE is only
   * an I/O chunk size with no wire meaning, so it is not reused here.)
   */
  splitSize: number;
  /**
   * MC_RETRY_CNT: times a task's failed slices are resent (connection lost,
   * refused or timed out), with backoff; 0: never. Mooncake's default (9) is
   * for RDMA work requests; over TCP each retry is a fresh connection and
   * TCP already retransmits packets, so fewer rounds are worth waiting for.
   */
  retryCount: number;
  /** TE_PEER_PAUSE_MS (ours): how long a peer that failed to connect 3 times in a row is left alone (0: never). */
  peerPauseMs: number;
  /** TE_METRICS_PORT (ours): port of /metrics and /health; 0: not served. */
  metricsPort: number;
  /** TE_AUTH_SECRET or TE_AUTH_SECRET_FILE (ours): the shared secret both ports require; undefined: no authentication (Mooncake-compatible). */
  authSecret: Buffer | undefined;
  /** TE_TLS_CERT, TE_TLS_KEY, TE_TLS_CA, TE_TLS_PEER_NAME (ours): mutual TLS on both ports; undefined: clear text (Mooncake-compatible). */
  tls: TlsSettings | undefined;
  /** TE_MAX_DESCRIPTOR_SIZE (ours): largest segment descriptor accepted from a peer or a metadata store, in bytes. */
  maxDescriptorSize: number;
  /**
   * TE_ADDRESS_BASE (ours): the first synthetic address, page-aligned in
   * [2^44, 2^52); undefined (default): a random one per engine. A fixed base
   * lets a process that restarts under the same name and registers the same
   * memory in the same order get the same addresses again (README, Engine identity).
   */
  addressBase: number | undefined;
}

/**
 * TE_AUTH_SECRET, or TE_AUTH_SECRET_FILE naming a file that holds it (one trailing newline dropped),
 * which keeps the secret out of the environment (`/proc/<pid>/environ`, child processes, `ps e`).
 * Like ssh with private keys, a file that group or others can access is refused.
 */
function authSecretVar(env: Env): Buffer | undefined {
  const inline = envVar('TE_AUTH_SECRET', env);
  const file = envVar('TE_AUTH_SECRET_FILE', env);
  if (inline !== undefined && file !== undefined) throw envError('TE_AUTH_SECRET and TE_AUTH_SECRET_FILE are both set: give one');
  if (inline !== undefined) return secretBytes(inline, 'TE_AUTH_SECRET', ErrorCode.BAD_ENV);
  if (file === undefined) return undefined;
  let bytes: Buffer;
  try {
    bytes = readSecretFile(file);
  } catch (e) {
    throw envError(`TE_AUTH_SECRET_FILE="${file}": ${e instanceof Error ? e.message : String(e)}`, e);
  }
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  return secretBytes(bytes.subarray(0, end), 'the secret in TE_AUTH_SECRET_FILE', ErrorCode.BAD_ENV);
}

/** The core's settings: the variables of ENV_VARS it reads, with the checks across them. */
export function loadConfig(env: Env = process.env): EngineConfig {
  const minPort = envVar('MC_MIN_RPC_PORT', env);
  const maxPort = envVar('MC_MAX_RPC_PORT', env);
  if (minPort > maxPort) throw envError(`MC_MIN_RPC_PORT (${minPort}) is above MC_MAX_RPC_PORT (${maxPort})`);
  const proto = envVar('MC_TCP_PROTO', env);
  const transferTimeoutMs = envVar('MC_TRANSFER_TIMEOUT', env) * 1000;
  return {
    transferTimeoutMs,
    handshakeConnectTimeoutMs: envVar('MC_HANDSHAKE_CONNECT_TIMEOUT', env) * 1000,
    handshakeMaxLength: envVar('MC_HANDSHAKE_MAX_LENGTH', env),
    minPort,
    maxPort,
    forceTcpV1: proto === '1',
    bindAddress: envVar('MC_TCP_BIND_ADDRESS', env),
    legacyRpcPortBinding: envVar('MC_LEGACY_RPC_PORT_BINDING', env),
    lanesPerPeer: envVar('MC_TCP_LANES_PER_PEER', env),
    splitSize: envVar('TE_TCP_SPLIT_SIZE', env),
    retryCount: envVar('MC_RETRY_CNT', env),
    peerPauseMs: envVar('TE_PEER_PAUSE_MS', env),
    metricsPort: envVar('TE_METRICS_PORT', env),
    authSecret: authSecretVar(env),
    tls: tlsSettingsFromEnv(env),
    maxDescriptorSize: envVar('TE_MAX_DESCRIPTOR_SIZE', env),
    addressBase: envVar('TE_ADDRESS_BASE', env),
    maxDataConnectionsPerPeer: envVar('TE_MAX_DATA_CONNECTIONS_PER_PEER', env),
    maxRpcConnectionsPerPeer: envVar('TE_MAX_RPC_CONNECTIONS_PER_PEER', env),
    maxRequestsInFlight: envVar('TE_MAX_REQUESTS_IN_FLIGHT', env),
    handshakeRate: envVar('TE_HANDSHAKE_RATE', env),
    handshakeBurst: envVar('TE_HANDSHAKE_BURST', env),
    keepAliveMs: envVar('TE_TCP_KEEPALIVE_MS', env),
    // Default: MC_TRANSFER_TIMEOUT, the time an initiator waits for progress before giving up itself.
    stallTimeoutMs: envVar('TE_STALL_TIMEOUT_MS', env) ?? transferTimeoutMs,
  };
}
