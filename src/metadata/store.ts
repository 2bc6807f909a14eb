/**
 * One key-value interface over the central metadata services. Every call is
 * bounded by a timeout and fails with a TransferEngineError:
 * TE_METADATA_UNAVAILABLE (unreachable, 5xx, connection lost),
 * TE_METADATA_REJECTED (credentials, 4xx), TE_TIMEOUT (no answer in time).
 */
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { envVar, type Env } from '../env.js';

export interface MetadataStore {
  /** What the store talks to, for messages: "http://h:8080/metadata", "etcd://h:2379", ... */
  readonly label: string;
  /** Values end in "\n" (etcd and Redis, as Mooncake's FastWriter writes them). */
  readonly newlineValues: boolean;
  /** The value, or null when the key does not exist. */
  get(key: string): Promise<string | null>;
  put(key: string, value: string): Promise<void>;
  /** Deleting a missing key succeeds. */
  delete(key: string): Promise<void>;
  /**
   * Called after the connection to the service was lost and came back (Redis:
   * a restarted server without persistence has forgotten our keys).
   */
  onReconnect?(listener: () => void): void;
  /** Release connections; later calls fail with TE_CLOSED. Idempotent. */
  close(): Promise<void>;
}

export interface StoreOptions {
  /** Bound on each call; undefined: the backend's Mooncake default (HTTP 3 s, etcd and Redis 5 s). */
  timeoutMs?: number;
  /** etcd only: attach puts to a lease of this many seconds, kept alive while the store is open (0: no lease). */
  leaseTtlS: number;
  /** Environment for MC_REDIS_* (default process.env). */
  env: Env;
}

export type { Env };

/**
 * Store settings from the environment (ours, not Mooncake's):
 * TE_METADATA_TIMEOUT_MS bounds each call (default: Mooncake's, 3 s for HTTP,
 * 5 s for etcd and Redis), TE_METADATA_LEASE_TTL (seconds, etcd, 0 = off).
 */
export function storeOptionsFromEnv(env: Env): StoreOptions {
  const timeoutMs = envVar('TE_METADATA_TIMEOUT_MS', env);
  return {
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    leaseTtlS: envVar('TE_METADATA_LEASE_TTL', env),
    env,
  };
}

/** MC_REDIS_DB_INDEX: 0-255 like Mooncake; a malformed value is an error, not a silent 0. */
export function redisDbIndex(env: Env): number {
  return envVar('MC_REDIS_DB_INDEX', env);
}

/** Reject with TE_TIMEOUT after `ms`, whatever the operation does. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(teError(ErrorCode.TIMEOUT, `${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

export function isTeError(e: unknown): e is TransferEngineError {
  return e instanceof TransferEngineError;
}
