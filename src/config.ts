/**
 * Runtime settings from environment variables (Mooncake's names), validated
 * once at init: a malformed value is one clear error naming the variable,
 * never a silent default.
 */
import { readFileSync, statSync } from 'node:fs';
import { teError, ErrorCode } from './errors.js';
import { secretBytes } from './codec/auth.js';
import { DEFAULT_LIMITS, type ListenerLimits } from './limits.js';
import { ADDRESS_BASE, ADDRESS_BASE_LIMIT, PAGE_SIZE } from './memory.js';

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
  /** TE_AUTH_SECRET or TE_AUTH_SECRET_FILE (ours): the shared secret both ports require; undefined: no authentication (Mooncake-compatible). */
  authSecret: Buffer | undefined;
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

type Env = Record<string, string | undefined>;

function intVar(env: Env, names: string[], dflt: number, min: number, max: number): number {
  for (const name of names) {
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    // Decimal digits only: Number() would also take "0x1e", "1e3" or "30.0".
    const v = /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
    if (!Number.isInteger(v) || v < min || v > max) {
      throw teError(ErrorCode.BAD_ENV, `${name}="${raw}" is not an integer in [${min}, ${max}]`);
    }
    return v;
  }
  return dflt;
}

function boolVar(env: Env, name: string): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '') return false;
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off'].includes(v)) return false;
  throw teError(ErrorCode.BAD_ENV, `${name}="${raw}" is not a boolean (1/0, true/false, yes/no, on/off)`);
}

/**
 * TE_AUTH_SECRET, or TE_AUTH_SECRET_FILE naming a file that holds it (one trailing newline dropped),
 * which keeps the secret out of the environment (`/proc/<pid>/environ`, child processes, `ps e`).
 * Like ssh with private keys, a file that group or others can access is refused.
 */
function authSecretVar(env: Env): Buffer | undefined {
  const inline = env['TE_AUTH_SECRET'];
  const file = env['TE_AUTH_SECRET_FILE'];
  const hasInline = inline !== undefined && inline !== '';
  const hasFile = file !== undefined && file !== '';
  if (hasInline && hasFile) throw teError(ErrorCode.BAD_ENV, 'TE_AUTH_SECRET and TE_AUTH_SECRET_FILE are both set: give one');
  if (hasInline) return secretBytes(inline, 'TE_AUTH_SECRET', ErrorCode.BAD_ENV);
  if (!hasFile) return undefined;
  let bytes: Buffer;
  try {
    const st = statSync(file);
    if (!st.isFile()) throw new Error('not a regular file');
    if ((st.mode & 0o077) !== 0) {
      throw new Error(`group or others have access to it (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}); chmod 600 it`);
    }
    bytes = readFileSync(file);
  } catch (e) {
    throw teError(ErrorCode.BAD_ENV, `TE_AUTH_SECRET_FILE="${file}": ${e instanceof Error ? e.message : String(e)}`, e);
  }
  let end = bytes.length;
  if (end > 0 && bytes[end - 1] === 0x0a) end--;
  if (end > 0 && bytes[end - 1] === 0x0d) end--;
  return secretBytes(bytes.subarray(0, end), 'the secret in TE_AUTH_SECRET_FILE', ErrorCode.BAD_ENV);
}

/** TE_ADDRESS_BASE: decimal or 0x-hex, page-aligned, in [ADDRESS_BASE, ADDRESS_BASE_LIMIT). */
function addressBaseVar(env: Env): number | undefined {
  const raw = env['TE_ADDRESS_BASE'];
  if (raw === undefined || raw === '') return undefined;
  const t = raw.trim();
  const v = /^0x[0-9a-f]+$/i.test(t) || /^\d+$/.test(t) ? Number(t) : NaN;
  if (!Number.isSafeInteger(v) || v % PAGE_SIZE !== 0 || v < ADDRESS_BASE || v >= ADDRESS_BASE_LIMIT) {
    throw teError(ErrorCode.BAD_ENV, `TE_ADDRESS_BASE="${raw}" is not a multiple of ${PAGE_SIZE} in [0x${ADDRESS_BASE.toString(16)}, 0x${ADDRESS_BASE_LIMIT.toString(16)})`);
  }
  return v;
}

export function loadConfig(env: Env = process.env): EngineConfig {
  const minPort = intVar(env, ['MC_MIN_RPC_PORT', 'MC_MIN_PRC_PORT'], 15000, 1024, 65535);
  const maxPort = intVar(env, ['MC_MAX_RPC_PORT', 'MC_MAX_PRC_PORT'], 17000, 1024, 65535);
  if (minPort > maxPort) throw teError(ErrorCode.BAD_ENV, `MC_MIN_RPC_PORT (${minPort}) is above MC_MAX_RPC_PORT (${maxPort})`);
  const proto = env['MC_TCP_PROTO'];
  if (proto !== undefined && proto !== '' && proto !== '1' && proto !== '2') {
    throw teError(ErrorCode.BAD_ENV, `MC_TCP_PROTO="${proto}" must be 1 or 2`);
  }
  const bind = env['MC_TCP_BIND_ADDRESS'];
  return {
    transferTimeoutMs: intVar(env, ['MC_TRANSFER_TIMEOUT'], 30, 1, 86400) * 1000,
    handshakeConnectTimeoutMs: intVar(env, ['MC_HANDSHAKE_CONNECT_TIMEOUT'], 5, 1, 3599) * 1000,
    handshakeMaxLength: intVar(env, ['MC_HANDSHAKE_MAX_LENGTH'], 1 << 20, 1, 128 << 20),
    minPort,
    maxPort,
    forceTcpV1: proto === '1',
    bindAddress: bind === undefined || bind === '' ? undefined : bind.trim(),
    legacyRpcPortBinding: boolVar(env, 'MC_LEGACY_RPC_PORT_BINDING'),
    lanesPerPeer: intVar(env, ['MC_TCP_LANES_PER_PEER', 'MC_TCP_MAX_CONNECTIONS_PER_PEER'], 2, 1, 16),
    splitSize: intVar(env, ['TE_TCP_SPLIT_SIZE'], 1 << 20, 4096, 1 << 30),
    retryCount: intVar(env, ['MC_RETRY_CNT'], 5, 0, 100),
    peerPauseMs: intVar(env, ['TE_PEER_PAUSE_MS'], 1000, 0, 3600_000),
    authSecret: authSecretVar(env),
    maxDescriptorSize: intVar(env, ['TE_MAX_DESCRIPTOR_SIZE'], 64 << 20, 1024, 1 << 30),
    addressBase: addressBaseVar(env),
    maxDataConnectionsPerPeer: intVar(env, ['TE_MAX_DATA_CONNECTIONS_PER_PEER'], DEFAULT_LIMITS.maxDataConnectionsPerPeer, 1, 1 << 20),
    maxRpcConnectionsPerPeer: intVar(env, ['TE_MAX_RPC_CONNECTIONS_PER_PEER'], DEFAULT_LIMITS.maxRpcConnectionsPerPeer, 1, 1 << 20),
    maxRequestsInFlight: intVar(env, ['TE_MAX_REQUESTS_IN_FLIGHT'], DEFAULT_LIMITS.maxRequestsInFlight, 1, 1 << 20),
    handshakeRate: intVar(env, ['TE_HANDSHAKE_RATE'], DEFAULT_LIMITS.handshakeRate, 1, 1 << 20),
    handshakeBurst: intVar(env, ['TE_HANDSHAKE_BURST'], DEFAULT_LIMITS.handshakeBurst, 1, 1 << 20),
    keepAliveMs: intVar(env, ['TE_TCP_KEEPALIVE_MS'], DEFAULT_LIMITS.keepAliveMs, 0, 86400_000),
    // Default: MC_TRANSFER_TIMEOUT, the time an initiator waits for progress before giving up itself.
    stallTimeoutMs: intVar(env, ['TE_STALL_TIMEOUT_MS'], intVar(env, ['MC_TRANSFER_TIMEOUT'], 30, 1, 86400) * 1000, 10, 86400_000),
  };
}
