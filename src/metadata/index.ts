/** Central metadata services (HTTP, etcd, Redis) in Mooncake's layout. */
export { parseMetadataConnString, metadataConnString, P2PHANDSHAKE, METADATA_TYPES, type MetadataType, type MetadataTarget } from './connection.js';
export { metadataKeys, type MetadataKeys } from './keys.js';
export { storeOptionsFromEnv, type MetadataStore, type StoreOptions } from './store.js';
export { openMetadataStore } from './open-store.js';
export { encodeDescriptorValue, decodeDescriptorValue, encodeRpcMeta, decodeRpcMeta, sortedJson, type RpcMeta } from './values.js';
export { curlEscape } from './http.js';
export { MetadataHttpServer, type MetadataHttpServerOptions } from './http-server.js';
