/**
 * Finding the master: `host:port`, or Mooncake's HA form `etcd://h1:2379;h2:2379`
 * (`,` works too), where the leading master publishes its RPC address under
 * `mooncake-store/<cluster>/master_view` (the cluster from MC_STORE_CLUSTER_ID,
 * else `mooncake_cluster`, as Mooncake's client resolves it). Our master's HA
 * (src/master/ha.ts) writes that key, so Mooncake's clients and ours follow it.
 */
import { Etcd3 } from 'etcd3';
import { teError, ErrorCode } from '../errors.js';
import { splitHostPort } from '../net.js';
import { ENV_VARS, envVar, type Env } from '../env.js';

/** Mooncake's default cluster id (`--cluster_id`). */
export const DEFAULT_CLUSTER_ID: string = ENV_VARS.MC_STORE_CLUSTER_ID.default;

/** The key Mooncake's HA clients read the leader's address from. */
export function masterViewKey(cluster: string): string {
  return `mooncake-store/${cluster.replace(/\/$/, '')}/master_view`;
}

const LOOKUP_TIMEOUT_MS = 5000;

export interface MasterLocator {
  /** The address to connect to now (an etcd lookup for HA). */
  resolve(): Promise<{ host: string; port: number }>;
  /** What the user gave, for messages. */
  readonly label: string;
  /** HA: the address moves with the leader, so it is looked up at every reconnect. */
  readonly follows: boolean;
  close(): void;
}

/** A locator for `masterServerAddr`; TE_INVALID_ARGUMENT when it is neither host:port nor etcd://... */
export function masterLocator(address: string, env: Env = process.env): MasterLocator {
  if (address.startsWith('etcd://')) {
    const endpoints = address
      .slice('etcd://'.length)
      .split(/[;,]/)
      .map((e) => e.trim())
      .filter((e) => e.length > 0)
      .map((e) => (/^https?:\/\//.test(e) ? e : `http://${e}`));
    if (endpoints.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, `masterServerAddr "${address}" names no etcd endpoint`);
    const cluster = envVar('MC_STORE_CLUSTER_ID', env);
    const key = masterViewKey(cluster);
    let client: Etcd3 | null = null;
    return {
      label: address,
      follows: true,
      async resolve() {
        client ??= new Etcd3({ hosts: endpoints, dialTimeout: LOOKUP_TIMEOUT_MS, defaultCallOptions: () => ({ deadline: Date.now() + LOOKUP_TIMEOUT_MS }) });
        let view: string | null;
        try {
          view = await client.get(key).string();
        } catch (e) {
          throw teError(ErrorCode.PEER_UNREACHABLE, `cannot read the master's address from ${address} (${key}): ${(e as Error).message}`, e);
        }
        if (!view) throw teError(ErrorCode.PEER_UNREACHABLE, `no master leads cluster "${cluster}" in ${address} (${key} is absent)`);
        const hp = splitHostPort(view);
        if (!hp.port) throw teError(ErrorCode.MALFORMED, `${key} in ${address} holds "${view}", not host:port`);
        return { host: hp.host, port: hp.port };
      },
      close() {
        client?.close();
        client = null;
      },
    };
  }
  const hp = splitHostPort(address);
  if (!hp.port) throw teError(ErrorCode.INVALID_ARGUMENT, `masterServerAddr "${address}" must be host:port or etcd://host:port[;host:port...]`);
  const target = { host: hp.host, port: hp.port };
  return { label: address, follows: false, resolve: () => Promise.resolve(target), close() {} };
}
