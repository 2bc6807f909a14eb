/**
 * The high-level TransferEngine: Mooncake's Python binding (`mooncake.engine.TransferEngine`)
 * in TypeScript, over the core engine. Same method names in camelCase, same
 * parameters in the same order, same return contracts (0 or a negative code;
 * batch ids; addresses; transferCheckStatus's 1/0/-1/-2), so code written from
 * the Python API ports line by line, adding `await` where the call does I/O.
 *
 * Conventions:
 * - A failure returns its code (src/api/codes.ts) and leaves the detail for
 *   getLastError(). A wrong argument count or type is a programmer error and
 *   throws (or, from an async method, rejects with) a TypeError.
 * - Addresses are the core's synthetic addresses (Node has no raw pointers):
 *   registerMemory takes the memory itself (or an address inside a managed
 *   buffer) and getBufferAddress(memory) gives its address, which is what
 *   numpy's `.ctypes.data` gives in Python.
 *
 * The class holds the public methods: their argument checks, and the return
 * code of a failure. The work is in the modules behind it: lifecycle.ts (the
 * core's start and close), registrations.ts (memory and managed buffers),
 * transfers.ts (sync and async transfers, batch outcomes). State the core has
 * (lifecycle, batch ids, registrations) is asked of the core, not kept here.
 */
import type { TransferEngine as CoreEngine } from '../engine/engine.js';
import { TransferOpcode } from '../engine/types.js';
import { envVar } from '../env.js';
import { ErrorCode, teError } from '../errors.js';
import { metadataConnString } from '../metadata/connection.js';
import {
  arity,
  batchTransferArgs,
  bytesArg,
  intLike,
  intList,
  list,
  memoryArg,
  notifyArg,
  opcodeArg,
  singleTransferArgs,
  str,
  syncOptionsArg,
  toLength,
  type MemoryRef,
  type SyncOptions,
} from './args.js';
import { CallRecorder } from './calls.js';
import { OK, type CallError } from './codes.js';
import type { Env } from './env.js';
import { Lifecycle } from './lifecycle.js';
import { Logger, stderrSink, type LogLevelName, type LogSink } from './log.js';
import { ZERO_METRICS, type TransferMetrics } from './metrics.js';
import { drainNotifies, firstBufferAddress, TransferNotify } from './segments.js';
import { localTopologyJson } from './topology.js';
import type { TransferLists } from './transfers.js';

export { TransferOpcode, TransferNotify };
export type { MemoryRef, SyncOptions };

export interface TransferEngineOptions {
  /** Where MC_* variables are read at initialize (default process.env). */
  env?: Env;
  /** Where log lines go (MC_LOG_LEVEL, MC_TE_METRIC); default stderr. */
  log?: LogSink;
  /** Managed buffers in named shared memory, so engines on this host copy directly (the core's `shm` option). */
  shm?: boolean;
  /** Shared secret both ports require (the core's `authSecret`; default TE_AUTH_SECRET). README, Security. */
  authSecret?: string | Uint8Array;
  /** Serve /metrics and /health on this port (the core's `metricsPort`; default TE_METRICS_PORT, 0: off). docs/observability.md. */
  metricsPort?: number;
}

type Addr = number | bigint;

export class TransferEngine {
  /** The opcode enum as a class attribute, like Python's `TransferEngine.TransferOpcode`. */
  static readonly TransferOpcode = TransferOpcode;

  private readonly life: Lifecycle;
  /** Failed calls: their codes, getLastError(), log lines. */
  private readonly calls: CallRecorder;

  constructor(options: TransferEngineOptions = {}) {
    const env = options.env ?? process.env;
    // The level applies from the start; a malformed value is reported by initialize().
    let level: LogLevelName = 'INFO';
    try {
      level = envVar('MC_LOG_LEVEL', env);
    } catch {
      /* initialize() returns ERR_BAD_ENV for it */
    }
    const logger = new Logger(level, options.log ?? stderrSink);
    this.calls = new CallRecorder(logger);
    this.life = new Lifecycle({ env, logger, shm: options.shm === true, authSecret: options.authSecret, metricsPort: options.metricsPort });
  }

  // ------------------------------------------------------- initialization

  /**
   * Start the engine: bind the RPC (handshake) and TCP data ports.
   * @param localHostname this host's name or IP (`host` or `host:port`; the port is used with MC_LEGACY_RPC_PORT_BINDING)
   * @param metadataServer "P2PHANDSHAKE", or a metadata service URL; empty: MC_METADATA_SERVER, then P2PHANDSHAKE
   * @param protocol "tcp" (or empty). Hardware transports ("rdma", "efa", "nvlink"...) return ERR_NOT_SUPPORTED
   * @param deviceName RDMA device filter in Mooncake; TCP has no devices, so it is accepted and unused
   * @returns 0, or a negative code (ERR_BAD_ENV for a malformed MC_* variable, naming it in getLastError())
   */
  async initialize(localHostname: string, metadataServer: string, protocol: string, deviceName: string): Promise<number> {
    const m = 'initialize';
    arity(m, arguments, 4, 4);
    str(m, 'localHostname', localHostname);
    str(m, 'metadataServer', metadataServer);
    str(m, 'protocol', protocol);
    str(m, 'deviceName', deviceName);
    return this.calls.runAsync(m, async () => (await this.life.start(localHostname, metadataServer, protocol), OK));
  }

  /**
   * initialize() with the metadata type given apart, composed as Mooncake does
   * (the core's metadataConnString): `metadataType + "://" + metadataServer`,
   * unless the server already holds "://" or is "P2PHANDSHAKE"; type "p2p" means
   * P2PHANDSHAKE. An unknown type is ERR_INVALID_ARGUMENT.
   */
  async initializeExt(localHostname: string, metadataServer: string, protocol: string, deviceName: string, metadataType: string): Promise<number> {
    const m = 'initializeExt';
    arity(m, arguments, 5, 5);
    str(m, 'localHostname', localHostname);
    str(m, 'metadataServer', metadataServer);
    str(m, 'protocol', protocol);
    str(m, 'deviceName', deviceName);
    str(m, 'metadataType', metadataType);
    return this.calls.runAsync(m, async () => {
      // Empty: MC_METADATA_SERVER, then P2PHANDSHAKE.
      const conn = metadataServer === '' ? '' : metadataConnString(metadataType, metadataServer);
      await this.life.start(localHostname, conn, protocol);
      return OK;
    });
  }

  /** The RPC (handshake) port; the P2P segment name is `${host}:${getRpcPort()}`. Negative code before initialize. */
  getRpcPort(): number {
    arity('getRpcPort', arguments, 0, 0);
    return this.calls.run('getRpcPort', () => this.life.ready().core.rpcPort);
  }

  /** The core engine under this one (Python's get_engine), or null before initialize. */
  getEngine(): CoreEngine | null {
    return this.life.started?.core ?? null;
  }

  /** The detail of the last failed call (message, code, cause), or null. Not cleared by later successes. */
  getLastError(): CallError | null {
    return this.calls.last;
  }

  /** Cumulative transfer counters (the ones MC_TE_METRIC reports per interval); zeros before initialize, the final ones after close. */
  getMetrics(): TransferMetrics {
    const core = this.life.started?.core;
    if (!core) return { ...ZERO_METRICS };
    const s = core.stats();
    return { bytesWritten: s.bytesWritten, bytesRead: s.bytesRead, tasksCompleted: s.tasksCompleted, tasksFailed: s.tasksFailed };
  }

  /** Release ports, connections and memory. In-flight transfers fail. Idempotent. */
  async close(): Promise<void> {
    await this.life.close();
  }

  // ------------------------------------------------------------- memory

  /**
   * Register memory for transfers (and for peers to read and write).
   * @param bufferAddr the memory: a Uint8Array, Buffer, any TypedArray or DataView, or an ArrayBuffer
   *   (its first `capacity` bytes are registered; learn the address with getBufferAddress());
   *   or an address inside a managed buffer (already registered with its chunk: recorded only)
   * @param capacity bytes to register
   * @param location 'cpu:0', '*', ... (selects the source NIC through MC_CUSTOM_TOPO_JSON)
   * @returns 0; ERR_ADDRESS_OVERLAPPED if the memory is already registered
   */
  registerMemory(bufferAddr: MemoryRef, capacity: number | bigint, location = '*'): number {
    const m = 'registerMemory';
    arity(m, arguments, 2, 3);
    const mem = memoryArg(m, 'bufferAddr', bufferAddr);
    intLike(m, 'capacity', capacity);
    str(m, 'location', location);
    return this.calls.run(m, () => (this.life.ready().memory.register(mem, capacity, location), OK));
  }

  /**
   * The address of registered memory: the address of the view's first byte
   * (numpy's `.ctypes.data` in Python). 0 if that byte is not in memory
   * registered with registerMemory().
   */
  getBufferAddress(buffer: ArrayBufferView | ArrayBuffer | SharedArrayBuffer): number {
    const m = 'getBufferAddress';
    arity(m, arguments, 1, 1);
    const mem = memoryArg(m, 'buffer', buffer);
    if (mem.kind !== 'bytes') throw new TypeError(`${m}(): buffer must be a Uint8Array, Buffer, TypedArray or ArrayBuffer`);
    // Before initialize nothing is registered; after close the registrations are still known.
    return this.life.started?.memory.addressOf(mem) ?? 0;
  }

  /** Unregister memory by its address (or by the buffer itself). Refused (ERR_REGION_BUSY) while transfers use it. */
  unregisterMemory(bufferAddr: MemoryRef): number {
    const m = 'unregisterMemory';
    arity(m, arguments, 1, 1);
    const mem = memoryArg(m, 'bufferAddr', bufferAddr);
    return this.calls.run(m, () => (this.life.ready().memory.unregister(mem), OK));
  }

  /** registerMemory for several regions: all or none. */
  batchRegisterMemory(bufferAddresses: MemoryRef[], capacities: Array<number | bigint>, location = '*'): number {
    const m = 'batchRegisterMemory';
    arity(m, arguments, 2, 3);
    const mems = list(m, 'bufferAddresses', bufferAddresses).map((v, i) => memoryArg(m, `bufferAddresses[${i}]`, v));
    const caps = intList(m, 'capacities', capacities);
    str(m, 'location', location);
    return this.calls.run(m, () => (this.life.ready().memory.registerAll(mems, caps, location), OK));
  }

  /** unregisterMemory for several regions: checks all first, so an unknown or busy one changes nothing. */
  batchUnregisterMemory(bufferAddresses: MemoryRef[]): number {
    const m = 'batchUnregisterMemory';
    arity(m, arguments, 1, 1);
    const mems = list(m, 'bufferAddresses', bufferAddresses).map((v, i) => memoryArg(m, `bufferAddresses[${i}]`, v));
    return this.calls.run(m, () => (this.life.ready().memory.unregisterAll(mems), OK));
  }

  /**
   * A buffer from the managed pool (buddy allocator over registered chunks).
   * @returns its address, or 0 on failure (detail in getLastError())
   */
  allocateManagedBuffer(length: number | bigint): number {
    const m = 'allocateManagedBuffer';
    arity(m, arguments, 1, 1);
    intLike(m, 'length', length);
    const r = this.calls.run(m, () => ({ addr: this.life.ready().memory.allocate(length) }));
    return typeof r === 'number' ? 0 : r.addr;
  }

  /**
   * Return a managed buffer. `length` must be the length it was allocated with.
   * @returns 0; ERR_INVALID_MANAGED_BUFFER for a double free, a wrong length or
   *   a foreign address (the pool is unchanged); ERR_REGION_BUSY while a transfer uses it
   */
  freeManagedBuffer(bufferAddr: number | bigint, length: number | bigint): number {
    const m = 'freeManagedBuffer';
    arity(m, arguments, 2, 2);
    intLike(m, 'bufferAddr', bufferAddr);
    intLike(m, 'length', length);
    return this.calls.run(m, () => (this.life.ready().memory.free(bufferAddr, length), OK));
  }

  /** Copy `length` bytes of `srcPtr` to registered memory at `destAddress`. */
  writeBytesToBuffer(destAddress: number | bigint, srcPtr: ArrayBufferView | ArrayBuffer, length: number | bigint): number {
    const m = 'writeBytesToBuffer';
    arity(m, arguments, 3, 3);
    intLike(m, 'destAddress', destAddress);
    const src = bytesArg(m, 'srcPtr', srcPtr);
    intLike(m, 'length', length);
    return this.calls.run(m, () => {
      const len = toLength(length);
      if (len > src.length) throw teError(ErrorCode.INVALID_ARGUMENT, `length ${len} is larger than the source (${src.length} bytes)`);
      this.life.ready().memory.view(destAddress, len, 'destAddress').set(src.subarray(0, len));
      return OK;
    });
  }

  /** A copy of `length` bytes of registered memory at `sourceAddress`; null on failure (detail in getLastError()). */
  readBytesFromBuffer(sourceAddress: number | bigint, length: number | bigint): Buffer | null {
    const m = 'readBytesFromBuffer';
    arity(m, arguments, 2, 2);
    intLike(m, 'sourceAddress', sourceAddress);
    intLike(m, 'length', length);
    const r = this.calls.run(m, () => {
      const len = toLength(length);
      return Buffer.from(this.life.ready().memory.view(sourceAddress, len, 'sourceAddress'));
    });
    return typeof r === 'number' ? null : r;
  }

  // ----------------------------------------------------------- transfers

  /** The common body of the sync calls: 0 or the failure's code. */
  private sync(m: string, target: string, lists: TransferLists, opcode: TransferOpcode, notify: TransferNotify | null, hint: string, options: unknown): Promise<number> {
    const o = syncOptionsArg(m, options);
    return this.calls.runAsync(m, async () => (await this.life.ready().transfers.sync(m, target, lists, opcode, notify, hint, o), OK));
  }

  /** The common body of the async calls: a batch id (>= 1) or the failure's code. */
  private async submit(m: string, target: string, lists: TransferLists, opcode: TransferOpcode, hint: string, options: unknown): Promise<number> {
    const o = syncOptionsArg(m, options);
    return this.calls.run(m, () => this.life.ready().transfers.submitAsync(m, target, lists, opcode, hint, o));
  }

  /** Write `length` bytes from local `buffer` to `peerBufferAddress` in the target segment; waits. 0 or a negative code. */
  async transferSyncWrite(targetHostname: string, buffer: Addr, peerBufferAddress: Addr, length: Addr, transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'transferSyncWrite';
    arity(m, arguments, 4, 6);
    singleTransferArgs(m, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.sync(m, targetHostname, one(buffer, peerBufferAddress, length), TransferOpcode.WRITE, null, transportHint, options);
  }

  /** Read `length` bytes at `peerBufferAddress` in the target segment into local `buffer`; waits. */
  async transferSyncRead(targetHostname: string, buffer: Addr, peerBufferAddress: Addr, length: Addr, transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'transferSyncRead';
    arity(m, arguments, 4, 6);
    singleTransferArgs(m, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.sync(m, targetHostname, one(buffer, peerBufferAddress, length), TransferOpcode.READ, null, transportHint, options);
  }

  /**
   * A sync transfer with the opcode given; with `notify`, a Notify message goes
   * to the target after the transfer completed (ERR_NOTIFY_FAILED if the target
   * does not accept it: the data did arrive).
   */
  async transferSync(
    targetHostname: string,
    buffer: Addr,
    peerBufferAddress: Addr,
    length: Addr,
    opcode: TransferOpcode,
    notify: TransferNotify | null = null,
    transportHint = '',
    options: SyncOptions = {},
  ): Promise<number> {
    const m = 'transferSync';
    arity(m, arguments, 5, 8);
    singleTransferArgs(m, targetHostname, buffer, peerBufferAddress, length, transportHint);
    opcodeArg(m, opcode);
    notifyArg(m, notify);
    return this.sync(m, targetHostname, one(buffer, peerBufferAddress, length), opcode, notify, transportHint, options);
  }

  /**
   * Submit a write and return at once: a batch id (>= 1) for transferCheckStatus, or a negative code.
   * `options.signal` aborting cancels the batch (its status: ERR_CANCELED); `options.timeoutMs` cancels it on expiry (ERR_TIMEOUT).
   */
  async transferSubmitWrite(targetHostname: string, buffer: Addr, peerBufferAddress: Addr, length: Addr, transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'transferSubmitWrite';
    arity(m, arguments, 4, 6);
    singleTransferArgs(m, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.submit(m, targetHostname, one(buffer, peerBufferAddress, length), TransferOpcode.WRITE, transportHint, options);
  }

  /** The read twin of transferSubmitWrite (not in the Python binding). */
  async transferSubmitRead(targetHostname: string, buffer: Addr, peerBufferAddress: Addr, length: Addr, transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'transferSubmitRead';
    arity(m, arguments, 4, 6);
    singleTransferArgs(m, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.submit(m, targetHostname, one(buffer, peerBufferAddress, length), TransferOpcode.READ, transportHint, options);
  }

  /**
   * Poll a batch from transferSubmit* or batchTransferAsync*: 1 completed, 0
   * still running, -1 failed, -2 timed out, ERR_CANCELED (-13) canceled by its
   * options.signal. A final status frees the id; polling it again gives
   * ERR_INVALID_BATCH.
   */
  transferCheckStatus(batchId: number | bigint): number {
    const m = 'transferCheckStatus';
    arity(m, arguments, 1, 1);
    intLike(m, 'batchId', batchId);
    return this.calls.run(m, () => this.life.ready().transfers.checkStatus(Number(batchId))); // a failed batch: -1 (ERR_FAILED) or -2 (ERR_TIMEOUT)
  }

  /** Sync transfer of several ranges with one target, all in one batch. */
  async batchTransferSyncWrite(targetHostname: string, buffers: Addr[], peerBufferAddresses: Addr[], lengths: Addr[], transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'batchTransferSyncWrite';
    arity(m, arguments, 4, 6);
    const lists = batchTransferArgs(m, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.sync(m, targetHostname, lists, TransferOpcode.WRITE, null, transportHint, options);
  }

  async batchTransferSyncRead(targetHostname: string, buffers: Addr[], peerBufferAddresses: Addr[], lengths: Addr[], transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'batchTransferSyncRead';
    arity(m, arguments, 4, 6);
    const lists = batchTransferArgs(m, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.sync(m, targetHostname, lists, TransferOpcode.READ, null, transportHint, options);
  }

  async batchTransferSync(
    targetHostname: string,
    buffers: Addr[],
    peerBufferAddresses: Addr[],
    lengths: Addr[],
    opcode: TransferOpcode,
    notify: TransferNotify | null = null,
    transportHint = '',
    options: SyncOptions = {},
  ): Promise<number> {
    const m = 'batchTransferSync';
    arity(m, arguments, 5, 8);
    const lists = batchTransferArgs(m, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    opcodeArg(m, opcode);
    notifyArg(m, notify);
    return this.sync(m, targetHostname, lists, opcode, notify, transportHint, options);
  }

  /** Submit several ranges as one batch and return at once: a batch id (>= 1) or a negative code. Options as transferSubmitWrite's. */
  async batchTransferAsyncWrite(targetHostname: string, buffers: Addr[], peerBufferAddresses: Addr[], lengths: Addr[], transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'batchTransferAsyncWrite';
    arity(m, arguments, 4, 6);
    const lists = batchTransferArgs(m, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.submit(m, targetHostname, lists, TransferOpcode.WRITE, transportHint, options);
  }

  async batchTransferAsyncRead(targetHostname: string, buffers: Addr[], peerBufferAddresses: Addr[], lengths: Addr[], transportHint = '', options: SyncOptions = {}): Promise<number> {
    const m = 'batchTransferAsyncRead';
    arity(m, arguments, 4, 6);
    const lists = batchTransferArgs(m, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.submit(m, targetHostname, lists, TransferOpcode.READ, transportHint, options);
  }

  async batchTransferAsync(
    targetHostname: string,
    buffers: Addr[],
    peerBufferAddresses: Addr[],
    lengths: Addr[],
    opcode: TransferOpcode,
    transportHint = '',
    options: SyncOptions = {},
  ): Promise<number> {
    const m = 'batchTransferAsync';
    arity(m, arguments, 5, 7);
    const lists = batchTransferArgs(m, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    opcodeArg(m, opcode);
    return this.submit(m, targetHostname, lists, opcode, transportHint, options);
  }

  /**
   * Wait for batches from batchTransferAsync* / transferSubmit*: 0 when all
   * completed, -1 when one failed, -2 when one timed out (each batch has
   * MC_TRANSFER_TIMEOUT + 1 ns/byte from its submission, or its
   * options.timeoutMs), ERR_CANCELED (-13) when one was canceled by its
   * options.signal. Returns at the first failure. Every listed id is freed
   * either way.
   */
  async getBatchTransferStatus(batchIds: Addr[]): Promise<number> {
    const m = 'getBatchTransferStatus';
    arity(m, arguments, 1, 1);
    const ids = intList(m, 'batchIds', batchIds).map(Number);
    return this.calls.runAsync(m, async () => (await this.life.ready().transfers.waitAll(ids), OK));
  }

  // ------------------------------------------------------------ messages

  /** Drain the Notify messages received from peers. Empty before initialize. */
  getNotifies(): TransferNotify[] {
    const m = 'getNotifies';
    arity(m, arguments, 0, 0);
    const r = this.calls.run(m, () => drainNotifies(this.life.ready().core));
    return typeof r === 'number' ? [] : r;
  }

  /** Check that a peer's RPC port answers (Mooncake's Probe message). 0 or a negative code. */
  async sendProbe(peerServerName: string): Promise<number> {
    const m = 'sendProbe';
    arity(m, arguments, 1, 1);
    str(m, 'peerServerName', peerServerName);
    return this.calls.runAsync(m, async () => (await this.life.ready().core.sendProbe(peerServerName), OK));
  }

  /**
   * The address of the first buffer a segment publishes (opening the segment,
   * once, like Mooncake). 0 on failure or when the segment has no buffers.
   */
  async getFirstBufferAddress(segmentName: string): Promise<number> {
    const m = 'getFirstBufferAddress';
    arity(m, arguments, 1, 1);
    str(m, 'segmentName', segmentName);
    const r = await this.calls.runAsync(m, async () => ({ addr: await firstBufferAddress(this.life.ready().core, segmentName) }));
    return typeof r === 'number' ? 0 : r.addr;
  }

  /**
   * The topology as Mooncake's JSON ({"cpu:0": [[preferred], [available]]}):
   * MC_CUSTOM_TOPO_JSON's after initialize, else discovered (network
   * interfaces per NUMA node). Needs no initialize and opens no port.
   * @param deviceName comma-separated interfaces to keep (all when empty or null)
   */
  async getLocalTopology(deviceName: string | null = null): Promise<string> {
    const m = 'getLocalTopology';
    arity(m, arguments, 0, 1);
    if (deviceName !== null && deviceName !== undefined) str(m, 'deviceName', deviceName);
    return localTopologyJson(this.life.started?.topology, deviceName);
  }
}

/** A single-range call's arguments as the lists the transfers take. */
function one(buffer: Addr, peer: Addr, length: Addr): TransferLists {
  return { buffers: [buffer], peers: [peer], lengths: [length] };
}
