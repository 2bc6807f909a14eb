/**
 * The Store master's settings, parsed once (from flags by the CLI, or given
 * by an embedding program) and passed down. Defaults are mooncake_master's
 * (0.3.13.post1, `mooncake_master --helpfull`), so a deployment that sets
 * nothing behaves as it would with Mooncake's master.
 */
import type { TlsSettings } from '../tls.js';

export interface MasterConfig {
  /** RPC listen address (`--rpc_address`). */
  rpcAddress: string;
  /** RPC port (`--rpc_port`, else `--port`); 0 picks a free one. */
  rpcPort: number;
  /** Read lease granted by GetReplicaList/ExistKey (`--default_kv_lease_ttl`). */
  leaseTtlMs: number;
  /** Soft pin TTL when a put asks for one without a TTL (`--default_kv_soft_pin_ttl`). */
  softPinTtlMs: number;
  /** Largest soft pin TTL a put may ask for (`--max_kv_soft_pin_ttl`). */
  maxSoftPinTtlMs: number;
  /** Evict soft-pinned objects when nothing else can go (`--allow_evict_soft_pinned_objects`). */
  allowEvictSoftPinned: boolean;
  /** Used/capacity above which eviction starts (`--eviction_high_watermark_ratio`). */
  evictionHighWatermark: number;
  /** Share of the capacity one eviction round frees (`--eviction_ratio`). */
  evictionRatio: number;
  /** A client silent this long is gone: its segments are unmounted (`--client_ttl`, seconds on the command line). */
  clientTtlMs: number;
  /** A put started and not ended this long ago no longer blocks its key (`--put_start_discard_timeout_sec`). */
  putStartDiscardMs: number;
  /** ...and its space is reused only this long after it started: the writer may still be writing (`--put_start_release_timeout_sec`). */
  putStartReleaseMs: number;
  /** Largest request frame accepted (body + attachment). */
  maxFrameBytes: number;
  /** Connections served at once; more are closed at accept. */
  maxConnections: number;
  /**
   * The busy-poll window: microseconds the master keeps polling its sockets
   * after a request instead of sleeping, while requests come closer together
   * than this (0: never). Clients call one request after another (a 1 MiB
   * get is a call, a copy, the next call); waking a sleeping process per
   * call costs more than the call on a VM (BENCHMARKS.md, "Store master").
   */
  busyPollUs: number;
  /** Mutual TLS on the RPC port (TE_TLS_CERT, TE_TLS_KEY, TE_TLS_CA, TE_TLS_PEER_NAME); undefined: clear text, as Mooncake's. */
  tls: TlsSettings | undefined;
}

export const DEFAULT_MASTER_CONFIG: Readonly<MasterConfig> = Object.freeze({
  rpcAddress: '0.0.0.0',
  rpcPort: 50051,
  leaseTtlMs: 10_000,
  softPinTtlMs: 1_800_000,
  maxSoftPinTtlMs: 86_400_000,
  allowEvictSoftPinned: true,
  evictionHighWatermark: 0.9,
  evictionRatio: 0.05,
  clientTtlMs: 10_000,
  putStartDiscardMs: 30_000,
  putStartReleaseMs: 600_000,
  // A batch of 100k keys is a few MB; 64 MiB bounds what one connection can make us hold.
  maxFrameBytes: 64 * 1024 * 1024,
  maxConnections: 4096,
  busyPollUs: 1000,
  tls: undefined,
});
