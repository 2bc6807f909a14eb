/**
 * The lazy factory of metadata stores: a parsed connection string to its
 * backend, loaded on first use. Kept apart from store.ts (the interface the
 * backends implement), so backends and the factory never import each other.
 */
import type { MetadataTarget } from './connection.js';
import type { MetadataStore, StoreOptions } from './store.js';

/** Open a store for a parsed connection string. Backends load lazily so P2P users never load etcd or Redis clients. */
export async function openMetadataStore(target: Exclude<MetadataTarget, { type: 'p2p' }>, options: StoreOptions): Promise<MetadataStore> {
  switch (target.type) {
    case 'http': {
      const { HttpMetadataStore } = await import('./http.js');
      return new HttpMetadataStore(target.url, options);
    }
    case 'etcd': {
      const { EtcdMetadataStore } = await import('./etcd.js');
      return new EtcdMetadataStore(target.endpoints, options);
    }
    case 'redis': {
      const { RedisMetadataStore } = await import('./redis.js');
      return RedisMetadataStore.connect(target.host, target.port, options);
    }
  }
}
