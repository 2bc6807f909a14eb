/**
 * Mooncake Store's master RPC interface, as the wheel 0.3.13.post1 serves it
 * (docs/store-wire.md §3): the types, in C++ declaration order (struct_pack
 * follows it), and one table of the methods we call or serve: name, function
 * id, argument and result codecs. Pure data; no I/O.
 */
import {
  bool,
  expected,
  i32,
  i64,
  monostate,
  optional,
  string,
  struct,
  tuple,
  u32,
  u64,
  u8,
  variant,
  vector,
  type Codec,
  type Expected,
  type Infer,
} from './codec/struct-pack.js';
import { functionId } from './codec/coro-rpc.js';

/** The store version the master reports from ServiceReady; the client refuses any other (Mooncake: INVALID_VERSION). */
export const STORE_PROTOCOL_VERSION = '2.0.0';

/** The C++ class whose methods are registered: function ids hash `${SERVICE}::${method}`. */
export const SERVICE = 'mooncake::WrappedMasterService';

/**
 * Mooncake's ErrorCode (MS/include/types.h), i32 on the wire. The values the
 * store returns to callers, as Python's binding returns them.
 */
export const StoreErrorCode = {
  OK: 0,
  INTERNAL_ERROR: -1,
  BUFFER_OVERFLOW: -10,
  SHARD_INDEX_OUT_OF_RANGE: -100,
  SEGMENT_NOT_FOUND: -101,
  SEGMENT_ALREADY_EXISTS: -102,
  CLIENT_NOT_FOUND: -103,
  NO_AVAILABLE_HANDLE: -200,
  INVALID_VERSION: -300,
  INVALID_KEY: -400,
  WRITE_FAIL: -500,
  INVALID_PARAMS: -600,
  ILLEGAL_CLIENT: -601,
  INVALID_WRITE: -700,
  INVALID_READ: -701,
  INVALID_REPLICA: -702,
  REPLICA_IS_NOT_READY: -703,
  OBJECT_NOT_FOUND: -704,
  OBJECT_ALREADY_EXISTS: -705,
  OBJECT_HAS_LEASE: -706,
  LEASE_EXPIRED: -707,
  OBJECT_HAS_REPLICATION_TASK: -708,
  OBJECT_NO_REPLICATION_TASK: -709,
  REPLICA_NOT_FOUND: -710,
  REPLICA_ALREADY_EXISTS: -711,
  REPLICA_IS_GONE: -712,
  REPLICA_NOT_IN_LOCAL_MEMORY: -713,
  OBJECT_REPLICA_BUSY: -714,
  TRANSFER_FAIL: -800,
  CHECKSUM_MISMATCH: -801,
  RPC_FAIL: -900,
  RPC_TIMEOUT: -901,
  UNAVAILABLE_IN_CURRENT_STATUS: -1010,
  UNAVAILABLE_IN_CURRENT_MODE: -1011,
  NOT_SUPPORTED: -1012,
  TASK_NOT_FOUND: -1400,
  TASK_PENDING_LIMIT_EXCEEDED: -1401,
} as const;

/** The name of a store error code, or undefined. */
export function storeErrorName(code: number): string | undefined {
  for (const [k, v] of Object.entries(StoreErrorCode)) if (v === code) return k;
  return undefined;
}

export const ReplicaType = { MEMORY: 0, DISK: 1, LOCAL_DISK: 2, NOF_SSD: 3, ALL: 4, DFS: 100 } as const;
export const ReplicaStatus = { UNDEFINED: 0, INITIALIZED: 1, PROCESSING: 2, COMPLETE: 3, REMOVED: 4, FAILED: 5 } as const;
export const ClientStatus = { UNDEFINED: 0, OK: 1, NEED_REMOUNT: 2 } as const;
export const SoftPinAction = { PRESERVE: 0, ENABLE: 1, DISABLE: 2 } as const;

/** ErrorCode as the error side of every tl::expected. */
const errorCode: Codec<number> = i32;

/** std::pair<uint64_t, uint64_t>: trivially copyable, 16 raw bytes. */
export const UUID = struct({ first: u64, second: u64 }, { packAlign: 8, align: 8 });
export type UUID = Infer<typeof UUID>;

/**
 * Ours, not Mooncake's: the second half of the id of every segment that is a
 * mounted file ("TEFILESG" in ASCII; src/store/file-segment.ts). Our master
 * keeps the objects of such a segment when its provider leaves (they are in
 * the file) and drops those of any other. A random 128-bit id of a Mooncake
 * client carries it with odds of 2^-64.
 */
export const FILE_SEGMENT_TAG = 0x5445_4649_4c45_5347n;

export function isFileSegmentId(id: UUID): boolean {
  return id.second === FILE_SEGMENT_TAG;
}

export const Segment = struct({
  id: UUID,
  /** Logical name (what preferred_segment names): the client's local hostname `host:port`. */
  name: string,
  /** Address of the buffer in the owner's segment. */
  base: u64,
  size: u64,
  /** Transfer Engine segment name peers open to reach the buffer. */
  teEndpoint: string,
  protocol: string,
  hostId: string,
});
export type Segment = Infer<typeof Segment>;

export const ReplicateConfig = struct({
  replicaNum: u64,
  nofReplicaNum: u64,
  dfsReplicaNum: u64,
  softPinAction: u8,
  softPinTtlMs: optional(u64),
  withHardPin: bool,
  preferredSegments: vector(string),
  /** Deprecated single preferred segment. */
  preferredSegment: string,
  preferredNofSegments: vector(string),
  preferAllocInSameNode: bool,
  dataType: u8,
  hostId: string,
  groupIds: optional(vector(string)),
});
export type ReplicateConfigWire = Infer<typeof ReplicateConfig>;

export const ObjectMeta = struct({ key: string, objectChecksum: optional(u64) });

export const BufferDescriptor = struct({ size: u64, bufferAddress: u64, protocol: string, transportEndpoint: string });
export const MemoryDescriptor = struct({ bufferDescriptor: BufferDescriptor });
export const NoFDescriptor = struct({ bufferDescriptor: BufferDescriptor });
export const DiskDescriptor = struct({ filePath: string, objectSize: u64 });
export const LocalDiskDescriptor = struct({ clientId: UUID, objectSize: u64, transportEndpoint: string });
export const DistributedFSDescriptor = struct({ filePath: string, offset: u64, objectSize: u64, alignedSize: u64, shardIdx: i32 });

/** Replica::Descriptor: `descriptor.index` 0 memory, 1 NoF, 2 disk, 3 local disk, 4 DFS. */
export const ReplicaDescriptor = struct({
  id: u64,
  descriptor: variant([MemoryDescriptor, NoFDescriptor, DiskDescriptor, LocalDiskDescriptor, DistributedFSDescriptor]),
  status: i32,
});
export type ReplicaDescriptor = Infer<typeof ReplicaDescriptor>;

export const GetReplicaListResponse = struct({ replicas: vector(ReplicaDescriptor), leaseTtlMs: u64, objectChecksum: optional(u64) });
export type GetReplicaListResponse = Infer<typeof GetReplicaListResponse>;

export const PingResponse = struct({ viewVersionId: i64, clientStatus: i32 });
export const GetStorageConfigResponse = struct({ fsdir: string, enableDiskEviction: bool, quotaBytes: u64 });
export const TaskAssignment = struct({ id: UUID, type: i32, payload: string, createdAtMsEpoch: i64, maxRetryAttempts: u32 });

const voidResult = expected(monostate, errorCode);
const replicas = vector(ReplicaDescriptor);

/** No arguments: an empty body. */
export const NO_ARGS: Codec<null> = monostate;

/** A method: its id, and how its arguments and its result are encoded. */
export interface Method<A, R> {
  readonly name: string;
  readonly id: number;
  /** NO_ARGS for none; the parameter's codec for one; a tuple for several (docs/store-wire.md §1.3). */
  readonly args: Codec<A>;
  readonly result: Codec<R>;
}

function method<A, R>(name: string, args: Codec<A>, result: Codec<R>): Method<A, R> {
  return { name, id: functionId(`${SERVICE}::${name}`), args, result };
}

const putStartArgs = tuple([UUID, string, u64, ReplicateConfig, string]);
const batchPutStartArgs = tuple([UUID, vector(string), vector(u64), ReplicateConfig, string]);
const keysTenant = tuple([vector(string), string]);
const keyTenant = tuple([string, string]);

/** The master's methods we speak (the names are Mooncake's; the function id hashes them). */
export const Master = {
  ServiceReady: method('ServiceReady', NO_ARGS, expected(string, errorCode)),
  GetStorageConfig: method('GetStorageConfig', NO_ARGS, expected(GetStorageConfigResponse, errorCode)),
  MountSegment: method('MountSegment', tuple([Segment, UUID]), voidResult),
  ReMountSegment: method('ReMountSegment', tuple([vector(Segment), UUID]), voidResult),
  UnmountSegment: method('UnmountSegment', tuple([UUID, UUID]), voidResult),
  Ping: method('Ping', UUID, expected(PingResponse, errorCode)),
  FetchTasks: method('FetchTasks', tuple([UUID, u64]), expected(vector(TaskAssignment), errorCode)),
  PutStart: method('PutStart', putStartArgs, expected(replicas, errorCode)),
  PutEnd: method('PutEnd', tuple([UUID, ObjectMeta, i32, string]), voidResult),
  PutRevoke: method('PutRevoke', tuple([UUID, string, i32, string]), voidResult),
  UpsertStart: method('UpsertStart', putStartArgs, expected(replicas, errorCode)),
  UpsertEnd: method('UpsertEnd', tuple([UUID, ObjectMeta, i32, string]), voidResult),
  UpsertRevoke: method('UpsertRevoke', tuple([UUID, string, i32, string]), voidResult),
  BatchPutStart: method('BatchPutStart', batchPutStartArgs, vector(expected(replicas, errorCode))),
  BatchPutEnd: method('BatchPutEnd', tuple([UUID, vector(ObjectMeta), i32, string]), vector(voidResult)),
  BatchPutRevoke: method('BatchPutRevoke', tuple([UUID, vector(string), i32, string]), vector(voidResult)),
  BatchUpsertStart: method('BatchUpsertStart', batchPutStartArgs, vector(expected(replicas, errorCode))),
  BatchUpsertEnd: method('BatchUpsertEnd', tuple([UUID, vector(ObjectMeta), string]), vector(voidResult)),
  BatchUpsertRevoke: method('BatchUpsertRevoke', tuple([UUID, vector(string), string]), vector(voidResult)),
  GetReplicaList: method('GetReplicaList', keyTenant, expected(GetReplicaListResponse, errorCode)),
  BatchGetReplicaList: method('BatchGetReplicaList', keysTenant, vector(expected(GetReplicaListResponse, errorCode))),
  ExistKey: method('ExistKey', keyTenant, expected(bool, errorCode)),
  BatchExistKey: method('BatchExistKey', keysTenant, vector(expected(bool, errorCode))),
  Remove: method('Remove', tuple([string, bool, string]), voidResult),
  RemoveByRegex: method('RemoveByRegex', tuple([string, bool, string]), expected(i64, errorCode)),
  RemoveAll: method('RemoveAll', tuple([bool, string]), i64),
  BatchRemove: method('BatchRemove', tuple([vector(string), bool, string]), vector(voidResult)),
} as const;

export type MasterMethod = (typeof Master)[keyof typeof Master];

/** Methods by function id (a server's dispatch, and decoding captures). */
export const METHODS_BY_ID: ReadonlyMap<number, MasterMethod> = new Map(Object.values(Master).map((m) => [m.id, m]));

export type { Expected };
