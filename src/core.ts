/** The core engine (Mooncake's C++ API vocabulary): `import { TransferEngine } from 'transfer-engine/core'`. */
export { TransferEngine } from './engine/engine.js';
export {
  TransferOpcode,
  TaskStatus,
  LOCAL_SEGMENT,
  type TransferRequest,
  type RequestRanges,
  type TransferStatus,
  type WaitOptions,
  type EngineLifecycle,
  type LocalRegistration,
  type EngineOptions,
  type SegmentHandle,
  type BatchID,
  type TransferCounters,
  type RetryCounters,
  type SecurityCounters,
} from './engine/types.js';
export { type RegionAccess } from './memory.js';
export { TransferEngineError, ErrorCode, isTransferEngineError } from './errors.js';
export { type EngineConfig, loadConfig } from './config.js';
export { type SegmentDesc, type BufferDesc, encodeSegmentDesc, decodeSegmentDesc } from './codec/descriptor.js';
export { type FileBufferDesc, type FileEndpoint } from './codec/file-buffers.js';
export { type RegisterFileOptions } from './file/registry.js';
export { type Notification } from './rpc/handshake.js';
export {
  metadataConnString,
  parseMetadataConnString,
  P2PHANDSHAKE,
  type MetadataType,
  type MetadataTarget,
} from './metadata/connection.js';
export { MetadataHttpServer, type MetadataHttpServerOptions } from './metadata/http-server.js';
