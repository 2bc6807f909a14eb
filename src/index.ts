/**
 * The package root: the high-level TransferEngine (Mooncake's Python API in
 * TypeScript). The core engine, in the vocabulary of Mooncake's C++ API, is at
 * 'transfer-engine/core'.
 */
export { TransferEngine, TransferNotify, TransferOpcode, type TransferEngineOptions, type MemoryRef, type SyncOptions } from './api/transfer-engine.js';
export {
  OK,
  ERR_FAILED,
  ERR_TIMEOUT,
  ERR_ADDRESS_NOT_REGISTERED,
  ERR_INVALID_ARGUMENT,
  ERR_NOT_INITIALIZED,
  ERR_CLOSED,
  ERR_ADDRESS_OVERLAPPED,
  ERR_ALREADY_INITIALIZED,
  ERR_INVALID_BATCH,
  ERR_INVALID_MANAGED_BUFFER,
  ERR_REGION_BUSY,
  ERR_BAD_ENV,
  ERR_CANCELED,
  ERR_PEER_UNREACHABLE,
  ERR_PROTOCOL,
  ERR_NOTIFY_FAILED,
  ERR_PORT_IN_USE,
  ERR_METADATA,
  ERR_OUT_OF_MEMORY,
  ERR_NOT_SUPPORTED,
  ReturnCode,
  returnCodeName,
  CallError,
  type ReturnCodeName,
} from './api/codes.js';
export { type TransferMetrics } from './api/metrics.js';
export { type LogSink } from './api/log.js';
export { TransferEngineError, ErrorCode, isTransferEngineError } from './errors.js';
