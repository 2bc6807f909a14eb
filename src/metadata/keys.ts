/**
 * Key layout of the central store, identical to Mooncake's (getFullMetadataKey
 * and rpc_meta_prefix_ in its transfer_metadata.cpp):
 *
 *   mooncake/[<cluster>/]ram/<segment>       segment descriptor (names without '/')
 *   mooncake/[<cluster>/]<segment>           names with '/', e.g. nvmeof/<name>
 *   mooncake/[<cluster>/]rpc_meta/<server>   {"ip_or_host_name", "rpc_port"}
 *
 * <cluster> is MC_METADATA_CLUSTER_ID; Mooncake appends the '/' when missing.
 */
import { envVar, type Env } from '../env.js';

export interface MetadataKeys {
  /** "mooncake/" or "mooncake/<cluster>/". */
  readonly prefix: string;
  segment(name: string): string;
  rpcMeta(name: string): string;
}

export function metadataKeys(env: Env = process.env): MetadataKeys {
  let cluster = envVar('MC_METADATA_CLUSTER_ID', env);
  if (cluster.length > 0 && !cluster.endsWith('/')) cluster += '/';
  const prefix = `mooncake/${cluster}`;
  return {
    prefix,
    segment: (name) => (name.includes('/') ? `${prefix}${name}` : `${prefix}ram/${name}`),
    rpcMeta: (name) => `${prefix}rpc_meta/${name}`,
  };
}
