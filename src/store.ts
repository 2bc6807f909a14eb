/**
 * `transfer-engine/store`: a Mooncake Store client (Python's
 * `mooncake.store.MooncakeDistributedStore`, in camelCase) that shares one
 * store with Mooncake's own clients, on the master's wire (coro_rpc +
 * struct_pack, docs/store-wire.md), and `StoreMaster`, a master on the same
 * wire (docs/master.md). README, Store.
 */
export { MooncakeDistributedStore, ReplicateConfig, StoreCallError, type StoreConfig, type StoreOptions } from './store/distributed-store.js';
export { StoreErrorCode, storeErrorName } from './store/master-protocol.js';
export { StoreError } from './store/store-errors.js';
export { StoreMaster, type StoreMasterOptions, type HttpEndpoint } from './master/master.js';
export { DEFAULT_MASTER_CONFIG, type MasterConfig } from './master/config.js';
