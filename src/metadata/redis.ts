/**
 * Redis metadata store through ioredis, with Mooncake's GET/SET/DEL
 * (RedisStoragePlugin, transfer_metadata_plugin.cpp). Credentials and database
 * come from MC_REDIS_USERNAME,
 * MC_REDIS_PASSWORD (AUTH only when a password is set, as Mooncake does) and
 * MC_REDIS_DB_INDEX. Commands never queue while the connection is down: they
 * fail at once (TE_METADATA_UNAVAILABLE) and the client reconnects in the
 * background, so a Redis restart is survived without hanging anyone.
 */
import { Redis } from 'ioredis';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { envVar } from '../env.js';
import { redisDbIndex, withTimeout, type MetadataStore, type StoreOptions } from './store.js';

const DEFAULT_TIMEOUT_MS = 5000;
const CONNECT_TIMEOUT_MS = 1500;

function isAuthError(message: string): boolean {
  return /^(WRONGPASS|NOAUTH|NOPERM)\b/.test(message) || /invalid password|invalid username-password/i.test(message);
}

export class RedisMetadataStore implements MetadataStore {
  readonly newlineValues = true;
  readonly label: string;
  private lastError = '';
  private closed = false;

  private constructor(
    private readonly client: Redis,
    host: string,
    port: number,
    private readonly timeoutMs: number,
  ) {
    this.label = `redis://${host.includes(':') ? `[${host}]` : host}:${port}`;
    // ioredis reports connection problems as events; without a listener they would crash the process.
    client.on('error', (e: Error) => {
      this.lastError = e.message;
    });
    client.on('ready', () => {
      if (this.wasReady) for (const l of this.reconnectListeners) l();
      this.wasReady = true;
    });
  }

  private wasReady = false;
  private readonly reconnectListeners: Array<() => void> = [];

  onReconnect(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  /** Connect (bounded), authenticate and select the database; fails fast with a typed error. */
  static async connect(host: string, port: number, options: Pick<StoreOptions, 'timeoutMs' | 'env'>): Promise<RedisMetadataStore> {
    const env = options.env;
    const password = envVar('MC_REDIS_PASSWORD', env);
    const username = envVar('MC_REDIS_USERNAME', env);
    const db = redisDbIndex(env);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const client = new Redis({
      host,
      port,
      ...(password ? { password, ...(username ? { username } : {}) } : {}),
      db,
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: Math.min(CONNECT_TIMEOUT_MS, timeoutMs),
      commandTimeout: timeoutMs,
      retryStrategy: (times: number) => Math.min(times * 200, 2000),
    });
    const store = new RedisMetadataStore(client, host, port, timeoutMs);
    try {
      await withTimeout(client.connect(), timeoutMs, `connecting to ${store.label}`);
    } catch (e) {
      client.disconnect(); // stop the reconnect loop
      const why = store.lastError || (e instanceof Error ? e.message : String(e));
      if (isAuthError(why)) {
        throw teError(ErrorCode.METADATA_REJECTED, `${store.label} refused the credentials (MC_REDIS_USERNAME/MC_REDIS_PASSWORD): ${why}`, e);
      }
      if (/DB index/i.test(why)) throw teError(ErrorCode.METADATA_REJECTED, `${store.label} refused MC_REDIS_DB_INDEX=${db}: ${why}`, e);
      throw teError(ErrorCode.METADATA_UNAVAILABLE, `cannot connect to ${store.label}: ${why}`, e);
    }
    return store;
  }

  get(key: string): Promise<string | null> {
    return this.call(`GET ${key}`, () => this.client.get(key));
  }

  async put(key: string, value: string): Promise<void> {
    await this.call(`SET ${key}`, () => this.client.set(key, value));
  }

  async delete(key: string): Promise<void> {
    await this.call(`DEL ${key}`, () => this.client.del(key));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.client.disconnect();
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw teError(ErrorCode.CLOSED, 'the Redis metadata client is closed');
    const label = `${what} at ${this.label}`;
    try {
      return await withTimeout(fn(), this.timeoutMs + 100, label);
    } catch (e) {
      if (e instanceof TransferEngineError) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      if (/timed out/i.test(msg)) throw teError(ErrorCode.TIMEOUT, `${label}: no answer within ${this.timeoutMs} ms`, e);
      if (isAuthError(msg)) throw teError(ErrorCode.METADATA_REJECTED, `${label}: ${msg}`, e);
      const cause = /writeable|closed/i.test(msg) && this.lastError ? ` (${this.lastError})` : '';
      throw teError(ErrorCode.METADATA_UNAVAILABLE, `${label}: ${msg}${cause}`, e);
    }
  }
}
