/**
 * The high-level TransferEngine: Mooncake's Python binding (`mooncake.engine`)
 * in TypeScript, over the core engine. Same method names in camelCase, same
 * parameters in the same order, same return contracts (0 or a negative code;
 * batch ids; addresses; transferCheckStatus's 1/0/-1/-2), so code written from
 * the seed ports line by line, adding `await` where the call does I/O.
 *
 * Conventions:
 * - A failure returns its code (src/api/codes.ts) and leaves the detail for
 *   getLastError(). A wrong argument count or type is a programmer error and
 *   throws (or, from an async method, rejects with) a TypeError.
 * - Addresses are the core's synthetic addresses (Node has no raw pointers):
 *   registerMemory takes the memory itself (or an address inside a managed
 *   buffer) and getBufferAddress(memory) gives its address, which is what
 *   numpy's `.ctypes.data` gives in the seed.
 */
import { TransferEngine as CoreEngine } from '../engine/engine.js';
import { TransferOpcode, TaskStatus, type SegmentHandle, type TransferRequest, type TransferStatus } from '../engine/types.js';
import { envVar } from '../env.js';
import { ErrorCode, TransferEngineError, teError } from '../errors.js';
import { fmtAddr } from '../memory.js';
import { metadataConnString } from '../metadata/connection.js';
import {
  arity,
  bytesArg,
  intLike,
  intList,
  list,
  memoryArg,
  str,
  toLength,
  toLocalAddress,
  toRemoteAddress,
  type MemoryArg,
  type MemoryRef,
} from './args.js';
import {
  ApiFailure,
  CallError,
  ERR_FAILED,
  ERR_NOTIFY_FAILED,
  OK,
  returnCodeFor,
  returnCodeName,
} from './codes.js';
import { BatchTable, MAX_FINISHED, type BatchOutcome, type BatchRecord } from './batches.js';
import { loadApiSettings, syncDeadlineMs, type Env } from './env.js';
import { Logger, stderrSink, type LogLevelName, type LogSink } from './log.js';
import { ManagedBuffers, MOONCAKE_BUDDY, SHM_BUDDY } from './managed-buffers.js';
import { MetricsReporter, ZERO_METRICS, type TransferMetrics } from './metrics.js';
import { discoverTopology, topologyJson, type Topology } from './topology.js';

export { TransferOpcode };
export type { MemoryRef };

/** A Notify message: sent after a transfer (transferSync's notify), received with getNotifies(). */
export class TransferNotify {
  constructor(
    public name = '',
    public msg = '',
  ) {}
}

export interface TransferEngineOptions {
  /** Where MC_* variables are read at initialize (default process.env). */
  env?: Env;
  /** Where log lines go (MC_LOG_LEVEL, MC_TE_METRIC); default stderr. */
  log?: LogSink;
  /** Managed buffers in named shared memory, so engines on this host copy directly (the core's `shm` option). */
  shm?: boolean;
  /** Shared secret both ports require (the core's `authSecret`; default TE_AUTH_SECRET). README, Security. */
  authSecret?: string | Uint8Array;
}

type State = 'new' | 'initializing' | 'ready' | 'closed';

/** A transfer validated and ready to submit. */
interface Prepared {
  core: CoreEngine;
  handle: SegmentHandle;
  requests: TransferRequest[];
  /** Managed buffers the requests read or write. */
  pins: number[];
  bytes: number;
}

/** A transfer checked completely; its target segment comes apart (it may not be open yet). */
interface Validated {
  core: CoreEngine;
  opcode: TransferOpcode;
  ranges: Array<{ source: number; target: bigint; length: number }>;
  pins: number[];
  bytes: number;
}

/** Memory registered from a buffer the caller passed. */
interface UserRegion {
  addr: number;
  buffer: ArrayBufferLike;
  start: number;
  end: number;
}

const TRANSPORT_HINTS_OK = new Set(['', 'tcp', 'unspec']);
const TRANSPORT_HINTS_UNSUPPORTED = new Set(['rdma', 'mnnvl', 'shm', 'nvlink', 'gds', 'io_uring', 'ascend', 'sunrise_link']);
const GPU_LOCATION = /^(cuda|musa|hip|maca|npu|gpu)[:]/i;

const TIMED_OUT = Symbol('timed out');

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => resolve(TIMED_OUT), Math.max(0, ms));
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/** The error of a finished batch, or null when every task completed. */
function batchError(statuses: TransferStatus[], what: string): TransferEngineError | null {
  const failed = statuses.findIndex((s) => s.status === TaskStatus.FAILED);
  const timedOut = statuses.findIndex((s) => s.status === TaskStatus.TIMEOUT);
  // A failure is reported before a timeout: it is the more specific news.
  const i = failed >= 0 ? failed : timedOut;
  if (i < 0) return null;
  const s = statuses[i]!;
  const detail = s.error?.message ?? TaskStatus[s.status];
  if (s.status === TaskStatus.TIMEOUT) return teError(ErrorCode.TIMEOUT, `${what}: task ${i} timed out: ${detail}`, s.error);
  return new ApiFailure(ERR_FAILED, s.error?.code ?? ErrorCode.PROTOCOL_ERROR, `${what}: task ${i} failed: ${detail}`, s.error);
}

export class TransferEngine {
  /** The opcode enum as a class attribute, like Python's `TransferEngine.TransferOpcode`. */
  static readonly TransferOpcode = TransferOpcode;

  private state: State = 'new';
  private core: CoreEngine | null = null;
  private managed: ManagedBuffers | null = null;
  private metrics: MetricsReporter | null = null;
  private topology: Topology | undefined;
  private timeoutMs = 30_000;
  private lastError: CallError | null = null;
  private readonly logger: Logger;
  private readonly env: Env;
  private readonly batches = new BatchTable(MAX_FINISHED, (n) =>
    this.logger.warning(`${n} finished batch(es) dropped uncollected: more than ${MAX_FINISHED} finished batches were never checked (transferCheckStatus / getBatchTransferStatus)`),
  );
  private readonly regionsByAddr = new Map<number, UserRegion>();
  private readonly regionsByMemory = new WeakMap<ArrayBufferLike, UserRegion[]>();
  /** registerMemory(address) inside managed buffers: address -> length. The memory itself is registered with its chunk. */
  private readonly managedRegistrations = new Map<number, number>();

  /** Managed buffers in shared memory (the core's shm option). */
  private readonly shmMemory: boolean;
  private readonly authSecret: string | Uint8Array | undefined;

  constructor(options: TransferEngineOptions = {}) {
    this.env = options.env ?? process.env;
    this.shmMemory = options.shm === true;
    this.authSecret = options.authSecret;
    // The level applies from the start; a malformed value is reported by initialize().
    let level: LogLevelName = 'INFO';
    try {
      level = envVar('MC_LOG_LEVEL', this.env);
    } catch {
      /* initialize() returns ERR_BAD_ENV for it */
    }
    this.logger = new Logger(level, options.log ?? stderrSink);
  }

  // ------------------------------------------------------------ plumbing

  /** Record a failure and return its code. Only TransferEngineErrors are failures; anything else (TypeError, a bug) propagates. */
  private fail(method: string, e: unknown): number {
    if (!(e instanceof TransferEngineError)) throw e;
    const code = returnCodeFor(e);
    this.lastError = new CallError(method, code, e.code, e.message, e);
    this.logger.warning(`${this.lastError.message} [${returnCodeName(code) ?? code}, ${e.code}]`);
    return code;
  }

  private ready(): CoreEngine {
    if (this.state === 'ready') return this.core!;
    if (this.state === 'closed') throw teError(ErrorCode.CLOSED, 'the engine is closed');
    throw teError(ErrorCode.NOT_INITIALIZED, 'call initialize() first');
  }

  /**
   * Resolve a local range for a transfer or a copy: inside registered memory,
   * and, when it is managed memory, inside one live managed buffer (whose start
   * is returned for pinning).
   */
  private local(addr: number | bigint, length: number, what: string): { addr: number; bytes: Uint8Array; owner: number | undefined } {
    const core = this.ready();
    const a = toLocalAddress(addr, what);
    const owner = this.managed!.owner(a, length);
    return { addr: a, bytes: core.localView(a, length), owner };
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
    arity(m, arguments.length, 4, 4);
    str(m, 'localHostname', localHostname);
    str(m, 'metadataServer', metadataServer);
    str(m, 'protocol', protocol);
    str(m, 'deviceName', deviceName);
    return this.start(m, localHostname, metadataServer, protocol);
  }

  /**
   * initialize() with the metadata type given apart, composed as Mooncake does
   * (the core's metadataConnString): `metadataType + "://" + metadataServer`,
   * unless the server already holds "://" or is "P2PHANDSHAKE"; type "p2p" means
   * P2PHANDSHAKE. An unknown type is ERR_INVALID_ARGUMENT.
   */
  async initializeExt(localHostname: string, metadataServer: string, protocol: string, deviceName: string, metadataType: string): Promise<number> {
    const m = 'initializeExt';
    arity(m, arguments.length, 5, 5);
    str(m, 'localHostname', localHostname);
    str(m, 'metadataServer', metadataServer);
    str(m, 'protocol', protocol);
    str(m, 'deviceName', deviceName);
    str(m, 'metadataType', metadataType);
    let conn = ''; // empty: MC_METADATA_SERVER, then P2PHANDSHAKE
    if (metadataServer !== '') {
      try {
        conn = metadataConnString(metadataType, metadataServer);
      } catch (e) {
        return this.fail(m, e);
      }
    }
    return this.start(m, localHostname, conn, protocol);
  }

  private async start(method: string, localHostname: string, metadata: string, protocol: string): Promise<number> {
    try {
      if (this.state === 'closed') throw teError(ErrorCode.CLOSED, 'the engine is closed');
      if (this.state !== 'new') throw teError(ErrorCode.ALREADY_INITIALIZED, 'the engine is already initialized');
      this.state = 'initializing';
      let core: CoreEngine | null = null;
      try {
        const settings = await loadApiSettings(this.env);
        this.logger.level = settings.logLevel;
        const topology = settings.topology;
        core = new CoreEngine({
          env: this.env,
          ...(this.shmMemory ? { shm: true } : {}),
          ...(this.authSecret !== undefined ? { authSecret: this.authSecret } : {}),
          ...(metadata !== '' ? { metadataServer: metadata } : {}),
          ...(topology ? { sourceAddress: (location: string) => topology.sourceAddress(location) } : {}),
        });
        try {
          await core.init(localHostname);
        } catch (e) {
          // Name the variable when the metadata service came from the environment.
          const fromEnv = metadata === '' ? envVar('MC_METADATA_SERVER', this.env) : undefined;
          if (fromEnv && e instanceof TransferEngineError && e.message.includes(fromEnv)) {
            throw teError(e.code, `MC_METADATA_SERVER="${fromEnv}": ${e.message}`, e);
          }
          throw e;
        }
        // tcp is installed by init; any other name is a transport this host cannot run (or an unknown one).
        if (protocol !== '' && protocol !== 'tcp') await core.installTransport(protocol);
        if (this.state !== 'initializing') throw teError(ErrorCode.CLOSED, 'close() was called during initialize()');
        const c = core;
        this.core = c;
        this.topology = topology;
        this.timeoutMs = settings.core.transferTimeoutMs;
        this.managed = new ManagedBuffers(
          {
            allocate: (size) => c.allocateLocalMemory(size, '*'),
            unregister: (addr) => c.unregisterLocalMemory(addr),
          },
          // /dev/shm pages are reserved up front: smaller chunks than Mooncake's 2 GiB.
          this.shmMemory ? SHM_BUDDY : MOONCAKE_BUDDY,
        );
        if (settings.metric) {
          this.metrics = new MetricsReporter(() => c.stats(), settings.metricIntervalSeconds, (line) => this.logger.info(line));
          this.metrics.start();
        }
        this.state = 'ready';
        this.logger.info(
          `initialized segment ${c.segmentName} (rpc port ${c.rpcPort}, data port ${c.dataPort}, protocol tcp, metadata ${metadata || envVar('MC_METADATA_SERVER', this.env) || 'P2PHANDSHAKE'})`,
        );
        return OK;
      } catch (e) {
        await core?.close();
        if (this.state === 'initializing') this.state = 'new';
        throw e;
      }
    } catch (e) {
      return this.fail(method, e);
    }
  }

  /** The RPC (handshake) port; the P2P segment name is `${host}:${getRpcPort()}`. Negative code before initialize. */
  getRpcPort(): number {
    arity('getRpcPort', arguments.length, 0, 0);
    try {
      return this.ready().rpcPort;
    } catch (e) {
      return this.fail('getRpcPort', e);
    }
  }

  /** The core engine under this one (Python's get_engine), or null before initialize. */
  getEngine(): CoreEngine | null {
    return this.core;
  }

  /** The detail of the last failed call (message, code, cause), or null. Not cleared by later successes. */
  getLastError(): CallError | null {
    return this.lastError;
  }

  /** Cumulative transfer counters (the ones MC_TE_METRIC reports per interval); zeros before initialize, the final ones after close. */
  getMetrics(): TransferMetrics {
    if (!this.core) return { ...ZERO_METRICS };
    const s = this.core.stats();
    return { bytesWritten: s.bytesWritten, bytesRead: s.bytesRead, tasksCompleted: s.tasksCompleted, tasksFailed: s.tasksFailed };
  }

  /** Release ports, connections and memory. In-flight transfers fail. Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.metrics?.stop();
    this.metrics = null;
    const core = this.core;
    await core?.close();
    this.batches.clear();
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
    arity(m, arguments.length, 2, 3);
    const mem = memoryArg(m, 'bufferAddr', bufferAddr);
    intLike(m, 'capacity', capacity);
    str(m, 'location', location);
    try {
      this.registerOne(mem, capacity, location);
      return OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** Register one piece of memory; returns how to undo it (for batches). */
  private registerOne(mem: MemoryArg, capacity: number | bigint, location: string): () => void {
    const core = this.ready();
    const cap = toLength(capacity, 'capacity');
    if (mem.kind === 'bytes') {
      if (cap > mem.byteLength) {
        throw teError(ErrorCode.INVALID_ARGUMENT, `capacity ${cap} is larger than the buffer (${mem.byteLength} bytes)`);
      }
      const start = mem.start;
      const end = start + cap;
      const regions = this.regionsByMemory.get(mem.buffer) ?? [];
      // The core refuses memory that overlaps registered memory (ERR_ADDRESS_OVERLAPPED).
      const addr = core.registerLocalMemory(new Uint8Array(mem.buffer, start, cap), location);
      const region: UserRegion = { addr, buffer: mem.buffer, start, end };
      regions.push(region);
      this.regionsByMemory.set(mem.buffer, regions);
      this.regionsByAddr.set(addr, region);
      return () => this.unregisterAddress(addr);
    }
    // An address: only memory this engine owns can be named by address.
    if (location.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'location must be a non-empty string such as "cpu:0" or "*"');
    if (GPU_LOCATION.test(location)) throw teError(ErrorCode.NOT_SUPPORTED, `location "${location}" is GPU memory, which is not supported on this host`);
    const addr = toLocalAddress(mem.value, 'bufferAddr');
    if (this.managed!.owner(addr, cap) === undefined) {
      let inRegistered = false;
      try {
        core.localView(addr, 1);
        inRegistered = true;
      } catch {
        /* not registered */
      }
      if (inRegistered) throw teError(ErrorCode.ADDRESS_OVERLAPPED, `${fmtAddr(addr)} is inside memory that is already registered`);
      throw teError(
        ErrorCode.ADDRESS_NOT_REGISTERED,
        `${fmtAddr(addr)} is not memory this engine owns: Node cannot register a raw address; pass the Uint8Array/ArrayBuffer itself, or an address from allocateManagedBuffer()`,
      );
    }
    for (const [a, len] of this.managedRegistrations) {
      if (a < addr + cap && addr < a + len) {
        throw teError(ErrorCode.ADDRESS_OVERLAPPED, `[${fmtAddr(addr)}, +${cap}) overlaps the registration at ${fmtAddr(a)}`);
      }
    }
    this.managedRegistrations.set(addr, cap);
    return () => this.managedRegistrations.delete(addr);
  }

  /**
   * The address of registered memory: the address of the view's first byte
   * (numpy's `.ctypes.data` in the seed). 0 if that byte is not in memory
   * registered with registerMemory().
   */
  getBufferAddress(buffer: ArrayBufferView | ArrayBuffer | SharedArrayBuffer): number {
    const m = 'getBufferAddress';
    arity(m, arguments.length, 1, 1);
    const mem = memoryArg(m, 'buffer', buffer);
    if (mem.kind !== 'bytes') throw new TypeError(`${m}(): buffer must be a Uint8Array, Buffer, TypedArray or ArrayBuffer`);
    if (mem.buffer.byteLength === 0) return 0; // detached (or shrunk to nothing): no usable address
    const r = (this.regionsByMemory.get(mem.buffer) ?? []).find((x) => mem.start >= x.start && mem.start < x.end);
    return r ? r.addr + (mem.start - r.start) : 0;
  }

  /** Unregister memory by its address (or by the buffer itself). Refused (ERR_REGION_BUSY) while transfers use it. */
  unregisterMemory(bufferAddr: MemoryRef): number {
    const m = 'unregisterMemory';
    arity(m, arguments.length, 1, 1);
    const mem = memoryArg(m, 'bufferAddr', bufferAddr);
    try {
      this.ready();
      this.unregisterAddress(this.registrationAddress(mem));
      return OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** The address a registration is known by. */
  private registrationAddress(mem: MemoryArg): number {
    if (mem.kind === 'address') return toLocalAddress(mem.value, 'bufferAddr');
    const regions = this.regionsByMemory.get(mem.buffer) ?? [];
    if (mem.buffer.byteLength === 0 && regions.length > 0) {
      // Detached (transferred) memory: its views read offset 0, so the registration is found by its buffer alone.
      if (regions.length === 1) return regions[0]!.addr;
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `this buffer's memory was detached and ${regions.length} registrations used it (at ${regions.map((r) => fmtAddr(r.addr)).join(', ')}): unregister them by address`,
      );
    }
    const r = regions.find((x) => x.start === mem.start);
    if (!r) throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, 'this buffer is not registered (no registration starts at its first byte)');
    return r.addr;
  }

  private unregisterAddress(addr: number): void {
    const region = this.regionsByAddr.get(addr);
    if (region) {
      this.ready().unregisterLocalMemory(addr); // REGION_BUSY while in use: nothing changes
      this.forgetRegion(region);
      return;
    }
    if (this.managedRegistrations.delete(addr)) return;
    const inManaged = this.managed?.buddy.chunkOf(addr) !== undefined;
    throw teError(
      ErrorCode.ADDRESS_NOT_REGISTERED,
      inManaged
        ? `no registration starts at ${fmtAddr(addr)}: managed buffers are registered by the engine; free them with freeManagedBuffer()`
        : `no registration starts at ${fmtAddr(addr)}`,
    );
  }

  private forgetRegion(region: UserRegion): void {
    this.regionsByAddr.delete(region.addr);
    const rs = this.regionsByMemory.get(region.buffer);
    if (rs) rs.splice(rs.indexOf(region), 1);
  }

  /** registerMemory for several regions: all or none. */
  batchRegisterMemory(bufferAddresses: MemoryRef[], capacities: Array<number | bigint>, location = '*'): number {
    const m = 'batchRegisterMemory';
    arity(m, arguments.length, 2, 3);
    const mems = list(m, 'bufferAddresses', bufferAddresses).map((v, i) => memoryArg(m, `bufferAddresses[${i}]`, v));
    const caps = intList(m, 'capacities', capacities);
    str(m, 'location', location);
    try {
      this.ready();
      if (mems.length !== caps.length) {
        throw teError(ErrorCode.INVALID_ARGUMENT, `${mems.length} buffers but ${caps.length} capacities: the lists must have the same length`);
      }
      const undo: Array<() => void> = [];
      try {
        mems.forEach((mem, i) => undo.push(this.registerOne(mem, caps[i]!, location)));
      } catch (e) {
        for (const u of undo.reverse()) u();
        throw e;
      }
      return OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** unregisterMemory for several regions: checks all first, so an unknown or busy one changes nothing. */
  batchUnregisterMemory(bufferAddresses: MemoryRef[]): number {
    const m = 'batchUnregisterMemory';
    arity(m, arguments.length, 1, 1);
    const mems = list(m, 'bufferAddresses', bufferAddresses).map((v, i) => memoryArg(m, `bufferAddresses[${i}]`, v));
    try {
      const core = this.ready();
      const addrs = mems.map((mem) => this.registrationAddress(mem));
      if (new Set(addrs).size !== addrs.length) throw teError(ErrorCode.INVALID_ARGUMENT, 'the same registration is listed twice');
      for (const a of addrs) {
        if (!this.regionsByAddr.has(a) && !this.managedRegistrations.has(a)) throw teError(ErrorCode.ADDRESS_NOT_REGISTERED, `no registration starts at ${fmtAddr(a)}`);
      }
      const user = addrs.filter((a) => this.regionsByAddr.has(a));
      core.unregisterLocalMemoryBatch(user); // all or nothing (REGION_BUSY)
      for (const a of user) this.forgetRegion(this.regionsByAddr.get(a)!);
      for (const a of addrs) this.managedRegistrations.delete(a);
      return OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /**
   * A buffer from the managed pool (buddy allocator over registered chunks).
   * @returns its address, or 0 on failure (detail in getLastError())
   */
  allocateManagedBuffer(length: number | bigint): number {
    const m = 'allocateManagedBuffer';
    arity(m, arguments.length, 1, 1);
    intLike(m, 'length', length);
    try {
      this.ready();
      return this.managed!.allocate(toLength(length));
    } catch (e) {
      this.fail(m, e);
      return 0;
    }
  }

  /**
   * Return a managed buffer. `length` must be the length it was allocated with.
   * @returns 0; ERR_INVALID_MANAGED_BUFFER for a double free, a wrong length or
   *   a foreign address (the pool is unchanged); ERR_REGION_BUSY while a transfer uses it
   */
  freeManagedBuffer(bufferAddr: number | bigint, length: number | bigint): number {
    const m = 'freeManagedBuffer';
    arity(m, arguments.length, 2, 2);
    intLike(m, 'bufferAddr', bufferAddr);
    intLike(m, 'length', length);
    try {
      this.ready();
      const addr = toLocalAddress(bufferAddr, 'bufferAddr');
      const len = toLength(length);
      this.managed!.free(addr, len);
      // Registrations of the freed range end with it.
      for (const [a, l] of this.managedRegistrations) if (a < addr + len && addr < a + l) this.managedRegistrations.delete(a);
      return OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** Copy `length` bytes of `srcPtr` to registered memory at `destAddress`. */
  writeBytesToBuffer(destAddress: number | bigint, srcPtr: ArrayBufferView | ArrayBuffer, length: number | bigint): number {
    const m = 'writeBytesToBuffer';
    arity(m, arguments.length, 3, 3);
    intLike(m, 'destAddress', destAddress);
    const src = bytesArg(m, 'srcPtr', srcPtr);
    intLike(m, 'length', length);
    try {
      const len = toLength(length);
      if (len > src.length) throw teError(ErrorCode.INVALID_ARGUMENT, `length ${len} is larger than the source (${src.length} bytes)`);
      this.local(destAddress, len, 'destAddress').bytes.set(src.subarray(0, len));
      return OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** A copy of `length` bytes of registered memory at `sourceAddress`; null on failure (detail in getLastError()). */
  readBytesFromBuffer(sourceAddress: number | bigint, length: number | bigint): Buffer | null {
    const m = 'readBytesFromBuffer';
    arity(m, arguments.length, 2, 2);
    intLike(m, 'sourceAddress', sourceAddress);
    intLike(m, 'length', length);
    try {
      return Buffer.from(this.local(sourceAddress, toLength(length), 'sourceAddress').bytes);
    } catch (e) {
      this.fail(m, e);
      return null;
    }
  }

  // ----------------------------------------------------------- transfers

  /** Validate a transfer completely (bad input never reaches the peer); the target segment is opened by the caller. */
  private validate(
    buffers: Array<number | bigint>,
    peers: Array<number | bigint>,
    lengths: Array<number | bigint>,
    opcode: number,
    transportHint: string,
  ): Validated {
    const core = this.ready();
    if (buffers.length !== peers.length || buffers.length !== lengths.length) {
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `buffers (${buffers.length}), peerBufferAddresses (${peers.length}) and lengths (${lengths.length}) must have the same length`,
      );
    }
    if (buffers.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'nothing to transfer: the lists are empty');
    if (opcode !== TransferOpcode.READ && opcode !== TransferOpcode.WRITE) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `unknown opcode ${opcode} (TransferOpcode.READ = 0, TransferOpcode.WRITE = 1)`);
    }
    if (!TRANSPORT_HINTS_OK.has(transportHint)) {
      if (TRANSPORT_HINTS_UNSUPPORTED.has(transportHint)) {
        throw teError(ErrorCode.NOT_SUPPORTED, `transport hint "${transportHint}" is not supported on this host (TCP only)`);
      }
      throw teError(ErrorCode.INVALID_ARGUMENT, `unknown transport hint "${transportHint}"`);
    }
    const one = buffers.length === 1;
    const ranges: Validated['ranges'] = [];
    const pins: number[] = [];
    let bytes = 0;
    for (let i = 0; i < buffers.length; i++) {
      const at = one ? '' : `[${i}]`;
      const length = toLength(lengths[i]!, `length${at}`);
      const target = toRemoteAddress(peers[i]!, `peer buffer address${at}`);
      const { addr, owner } = this.local(buffers[i]!, length, `buffer${at}`);
      if (owner !== undefined) pins.push(owner);
      ranges.push({ source: addr, target, length });
      bytes += length;
    }
    return { core, ranges, pins, bytes, opcode };
  }

  private withTarget(v: Validated, handle: SegmentHandle): Prepared {
    const requests = v.ranges.map((p) => ({ opcode: v.opcode, source: p.source, targetId: handle, targetOffset: p.target, length: p.length }));
    return { core: v.core, handle, requests, pins: v.pins, bytes: v.bytes };
  }

  /**
   * Submit prepared requests as one core batch. The managed buffers they use
   * stay pinned until the last task ends; then the core batch is freed and
   * `done` resolves with the outcome (`what` names the transfer in its error).
   */
  private submitBatch(p: Prepared, what: string): BatchRecord {
    const core = this.ready(); // closed while the segment opened?
    const id = core.allocateBatchID(p.requests.length);
    try {
      core.submitTransfer(id, p.requests);
    } catch (e) {
      core.freeBatchID(id);
      throw e;
    }
    for (const pin of p.pins) this.managed!.pin(pin);
    const record: BatchRecord = {
      bytes: p.bytes,
      startedAt: performance.now(),
      outcome: undefined,
      // Never rejects: a failure to wait (not expected: the batch was just submitted) is the batch's outcome.
      done: core.waitBatch(id).then(
        (statuses) => finish(batchError(statuses, what)),
        (e: unknown) => finish(e instanceof TransferEngineError ? e : teError(ErrorCode.PROTOCOL_ERROR, `${what}: ${String(e)}`, e)),
      ),
    };
    const finish = (outcome: BatchOutcome): BatchOutcome => {
      record.outcome = outcome;
      for (const pin of p.pins) this.managed?.unpin(pin);
      try {
        core.freeBatchID(id);
      } catch {
        /* the engine closed meanwhile: nothing left to free */
      }
      return outcome;
    };
    return record;
  }

  /** The common body of every sync transfer. */
  private async sync(
    method: string,
    targetHostname: string,
    buffers: Array<number | bigint>,
    peers: Array<number | bigint>,
    lengths: Array<number | bigint>,
    opcode: number,
    notify: TransferNotify | null,
    transportHint: string,
  ): Promise<number> {
    try {
      const started = performance.now();
      const v = this.validate(buffers, peers, lengths, opcode, transportHint);
      if (notify) v.core.notifyFrame({ name: notify.name, msg: notify.msg }); // too large: refused before any byte moves
      const op = opcode === TransferOpcode.WRITE ? 'write' : 'read';
      // One deadline for the whole call, the segment's opening included.
      const deadline = syncDeadlineMs(this.timeoutMs, v.bytes);
      const late = (): TransferEngineError =>
        teError(ErrorCode.TIMEOUT, `${op} of ${v.bytes} B with ${targetHostname} not done within ${deadline.toFixed(0)} ms (MC_TRANSFER_TIMEOUT + 1 ns/byte)`);
      let p: Prepared;
      let outcome;
      try {
        const handle = await withDeadline(v.core.openSegment(targetHostname), deadline);
        if (handle === TIMED_OUT) throw late();
        p = this.withTarget(v, handle);
        const b = this.submitBatch(p, `${op} with ${targetHostname}`);
        this.logger.trace(`${method}: ${op} ${p.bytes} B in ${p.requests.length} request(s) with ${targetHostname}`);
        outcome = await withDeadline(b.done, deadline - (performance.now() - started));
      } catch (e) {
        // close() during the call: the transfer ran and failed (-1); ERR_CLOSED is for calls made after close().
        if (e instanceof TransferEngineError && e.code === ErrorCode.CLOSED) {
          throw new ApiFailure(ERR_FAILED, e.code, `${op} with ${targetHostname} failed: ${e.message}`, e);
        }
        throw e;
      }
      if (outcome === TIMED_OUT) throw late(); // the batch releases itself when its tasks end
      if (outcome) throw outcome; // (a peer that moved was already looked up again by the core)
      if (notify) {
        try {
          await p.core.sendNotify(targetHostname, { name: notify.name, msg: notify.msg });
        } catch (e) {
          if (!(e instanceof TransferEngineError)) throw e;
          throw new ApiFailure(ERR_NOTIFY_FAILED, e.code, `the data was transferred, but the notification was not delivered: ${e.message}`, e);
        }
      }
      return OK;
    } catch (e) {
      return this.fail(method, e);
    }
  }

  /**
   * The common body of the async calls: validated, submitted and numbered at
   * once. A segment not open yet opens inside the batch's tasks (shared with
   * concurrent calls), so a hung or dead peer never blocks the call itself.
   */
  private async submitAsync(
    method: string,
    targetHostname: string,
    buffers: Array<number | bigint>,
    peers: Array<number | bigint>,
    lengths: Array<number | bigint>,
    opcode: number,
    transportHint: string,
  ): Promise<number> {
    try {
      const v = this.validate(buffers, peers, lengths, opcode, transportHint);
      const p = this.withTarget(v, v.core.segmentHandle(targetHostname));
      const id = this.batches.add(this.submitBatch(p, `batch ${this.batches.peekId()}`));
      this.logger.trace(`${method}: batch ${id}, ${p.bytes} B in ${p.requests.length} request(s) with ${targetHostname}`);
      return id;
    } catch (e) {
      return this.fail(method, e);
    }
  }

  /** Write `length` bytes from local `buffer` to `peerBufferAddress` in the target segment; waits. 0 or a negative code. */
  async transferSyncWrite(targetHostname: string, buffer: number | bigint, peerBufferAddress: number | bigint, length: number | bigint, transportHint = ''): Promise<number> {
    const m = 'transferSyncWrite';
    this.checkSingle(m, arguments.length, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.sync(m, targetHostname, [buffer], [peerBufferAddress], [length], TransferOpcode.WRITE, null, transportHint);
  }

  /** Read `length` bytes at `peerBufferAddress` in the target segment into local `buffer`; waits. */
  async transferSyncRead(targetHostname: string, buffer: number | bigint, peerBufferAddress: number | bigint, length: number | bigint, transportHint = ''): Promise<number> {
    const m = 'transferSyncRead';
    this.checkSingle(m, arguments.length, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.sync(m, targetHostname, [buffer], [peerBufferAddress], [length], TransferOpcode.READ, null, transportHint);
  }

  /**
   * A sync transfer with the opcode given; with `notify`, a Notify message goes
   * to the target after the transfer completed (ERR_NOTIFY_FAILED if the target
   * does not accept it: the data did arrive).
   */
  async transferSync(
    targetHostname: string,
    buffer: number | bigint,
    peerBufferAddress: number | bigint,
    length: number | bigint,
    opcode: TransferOpcode,
    notify: TransferNotify | null = null,
    transportHint = '',
  ): Promise<number> {
    const m = 'transferSync';
    arity(m, arguments.length, 5, 7);
    this.checkSingle(m, 5, targetHostname, buffer, peerBufferAddress, length, transportHint);
    this.checkOpcode(m, opcode);
    this.checkNotify(m, notify);
    return this.sync(m, targetHostname, [buffer], [peerBufferAddress], [length], opcode, notify, transportHint);
  }

  /** Submit a write and return at once: a batch id (>= 1) for transferCheckStatus, or a negative code. */
  async transferSubmitWrite(targetHostname: string, buffer: number | bigint, peerBufferAddress: number | bigint, length: number | bigint, transportHint = ''): Promise<number> {
    const m = 'transferSubmitWrite';
    this.checkSingle(m, arguments.length, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.submitAsync(m, targetHostname, [buffer], [peerBufferAddress], [length], TransferOpcode.WRITE, transportHint);
  }

  /** The read twin of transferSubmitWrite (not in the Python binding). */
  async transferSubmitRead(targetHostname: string, buffer: number | bigint, peerBufferAddress: number | bigint, length: number | bigint, transportHint = ''): Promise<number> {
    const m = 'transferSubmitRead';
    this.checkSingle(m, arguments.length, targetHostname, buffer, peerBufferAddress, length, transportHint);
    return this.submitAsync(m, targetHostname, [buffer], [peerBufferAddress], [length], TransferOpcode.READ, transportHint);
  }

  /**
   * Poll a batch from transferSubmit* or batchTransferAsync*: 1 completed, 0
   * still running, -1 failed, -2 timed out. A final status (1, -1, -2) frees
   * the id; polling it again gives ERR_INVALID_BATCH.
   */
  transferCheckStatus(batchId: number | bigint): number {
    const m = 'transferCheckStatus';
    arity(m, arguments.length, 1, 1);
    intLike(m, 'batchId', batchId);
    try {
      this.ready();
      const id = Number(batchId);
      const b = this.asyncBatch(id);
      if (b.outcome === undefined) return 0;
      this.batches.delete(id);
      if (!b.outcome) return 1;
      return this.fail(m, b.outcome); // -1 (ERR_FAILED) or -2 (ERR_TIMEOUT)
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** Sync transfer of several ranges with one target, all in one batch. */
  async batchTransferSyncWrite(targetHostname: string, buffers: Array<number | bigint>, peerBufferAddresses: Array<number | bigint>, lengths: Array<number | bigint>, transportHint = ''): Promise<number> {
    const m = 'batchTransferSyncWrite';
    const a = this.checkBatch(m, arguments.length, 4, 5, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.sync(m, targetHostname, a.buffers, a.peers, a.lengths, TransferOpcode.WRITE, null, transportHint);
  }

  async batchTransferSyncRead(targetHostname: string, buffers: Array<number | bigint>, peerBufferAddresses: Array<number | bigint>, lengths: Array<number | bigint>, transportHint = ''): Promise<number> {
    const m = 'batchTransferSyncRead';
    const a = this.checkBatch(m, arguments.length, 4, 5, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.sync(m, targetHostname, a.buffers, a.peers, a.lengths, TransferOpcode.READ, null, transportHint);
  }

  async batchTransferSync(
    targetHostname: string,
    buffers: Array<number | bigint>,
    peerBufferAddresses: Array<number | bigint>,
    lengths: Array<number | bigint>,
    opcode: TransferOpcode,
    notify: TransferNotify | null = null,
    transportHint = '',
  ): Promise<number> {
    const m = 'batchTransferSync';
    const a = this.checkBatch(m, arguments.length, 5, 7, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    this.checkOpcode(m, opcode);
    this.checkNotify(m, notify);
    return this.sync(m, targetHostname, a.buffers, a.peers, a.lengths, opcode, notify, transportHint);
  }

  /** Submit several ranges as one batch and return at once: a batch id (>= 1) or a negative code. */
  async batchTransferAsyncWrite(targetHostname: string, buffers: Array<number | bigint>, peerBufferAddresses: Array<number | bigint>, lengths: Array<number | bigint>, transportHint = ''): Promise<number> {
    const m = 'batchTransferAsyncWrite';
    const a = this.checkBatch(m, arguments.length, 4, 5, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.submitAsync(m, targetHostname, a.buffers, a.peers, a.lengths, TransferOpcode.WRITE, transportHint);
  }

  async batchTransferAsyncRead(targetHostname: string, buffers: Array<number | bigint>, peerBufferAddresses: Array<number | bigint>, lengths: Array<number | bigint>, transportHint = ''): Promise<number> {
    const m = 'batchTransferAsyncRead';
    const a = this.checkBatch(m, arguments.length, 4, 5, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    return this.submitAsync(m, targetHostname, a.buffers, a.peers, a.lengths, TransferOpcode.READ, transportHint);
  }

  async batchTransferAsync(
    targetHostname: string,
    buffers: Array<number | bigint>,
    peerBufferAddresses: Array<number | bigint>,
    lengths: Array<number | bigint>,
    opcode: TransferOpcode,
    transportHint = '',
  ): Promise<number> {
    const m = 'batchTransferAsync';
    const a = this.checkBatch(m, arguments.length, 5, 6, targetHostname, buffers, peerBufferAddresses, lengths, transportHint);
    this.checkOpcode(m, opcode);
    return this.submitAsync(m, targetHostname, a.buffers, a.peers, a.lengths, opcode, transportHint);
  }

  /**
   * Wait for batches from batchTransferAsync* / transferSubmit*: 0 when all
   * completed, -1 when one failed, -2 when one timed out (each batch has
   * MC_TRANSFER_TIMEOUT + 1 ns/byte from its submission). Returns at the first
   * failure. Every listed id is freed either way.
   */
  async getBatchTransferStatus(batchIds: Array<number | bigint>): Promise<number> {
    const m = 'getBatchTransferStatus';
    arity(m, arguments.length, 1, 1);
    const ids = intList(m, 'batchIds', batchIds).map(Number);
    try {
      this.ready();
      if (new Set(ids).size !== ids.length) throw teError(ErrorCode.INVALID_ARGUMENT, 'a batch id is listed twice');
      const bs = ids.map((id) => this.asyncBatch(id));
      const timers: NodeJS.Timeout[] = [];
      try {
        const first = await new Promise<TransferEngineError | null>((resolve) => {
          let left = bs.length;
          if (left === 0) resolve(null);
          bs.forEach((b, k) => {
            const budget = syncDeadlineMs(this.timeoutMs, b.bytes);
            const ms = b.startedAt + budget - performance.now();
            timers.push(
              setTimeout(() => resolve(teError(ErrorCode.TIMEOUT, `batch ${ids[k]} not done within ${budget.toFixed(0)} ms (MC_TRANSFER_TIMEOUT + 1 ns/byte)`)), Math.max(0, ms)),
            );
            void b.done.then((err) => {
              if (err) resolve(err);
              else if (--left === 0) resolve(null);
            });
          });
        });
        if (first) throw first;
        return OK;
      } finally {
        for (const t of timers) clearTimeout(t);
        for (const id of ids) this.batches.delete(id); // unfinished ones release themselves when their tasks end
      }
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** A batch of the async calls by id, or ERR_INVALID_BATCH saying why there is none. */
  private asyncBatch(id: number): BatchRecord {
    const b = this.batches.get(id);
    if (b) return b;
    const why = this.batches.issued(id)
      ? `already freed by a final status${this.batches.dropped > 0 ? `, or dropped uncollected (more than ${MAX_FINISHED} finished batches were never checked)` : ''}`
      : 'never returned by this engine';
    throw teError(ErrorCode.INVALID_BATCH, `batch ${id} is unknown: ${why}`);
  }

  // ----------------------------------------------------- argument checks

  private checkSingle(m: string, given: number, target: unknown, buffer: unknown, peer: unknown, length: unknown, hint: unknown): void {
    arity(m, given, 4, 5);
    str(m, 'targetHostname', target);
    intLike(m, 'buffer', buffer);
    intLike(m, 'peerBufferAddress', peer);
    intLike(m, 'length', length);
    str(m, 'transportHint', hint);
  }

  private checkBatch(
    m: string,
    given: number,
    min: number,
    max: number,
    target: unknown,
    buffers: unknown,
    peers: unknown,
    lengths: unknown,
    hint: unknown,
  ): { buffers: Array<number | bigint>; peers: Array<number | bigint>; lengths: Array<number | bigint> } {
    arity(m, given, min, max);
    str(m, 'targetHostname', target);
    const r = { buffers: intList(m, 'buffers', buffers), peers: intList(m, 'peerBufferAddresses', peers), lengths: intList(m, 'lengths', lengths) };
    str(m, 'transportHint', hint);
    return r;
  }

  private checkOpcode(m: string, opcode: unknown): void {
    // A number outside the enum is data (ERR_INVALID_ARGUMENT, like a bad length); a non-number is a TypeError.
    if (typeof opcode !== 'number') throw new TypeError(`${m}(): opcode must be a TransferOpcode (number), got ${typeof opcode}`);
  }

  private checkNotify(m: string, notify: unknown): void {
    if (notify === null || notify === undefined) return;
    const n = notify as { name?: unknown; msg?: unknown };
    if (typeof notify !== 'object' || typeof n.name !== 'string' || typeof n.msg !== 'string') {
      throw new TypeError(`${m}(): notify must be a TransferNotify { name: string, msg: string } or null`);
    }
  }

  // ------------------------------------------------------------ messages

  /** Drain the Notify messages received from peers. Empty before initialize. */
  getNotifies(): TransferNotify[] {
    const m = 'getNotifies';
    arity(m, arguments.length, 0, 0);
    try {
      return this.ready()
        .getNotifies()
        .map((n) => new TransferNotify(n.name, n.msg));
    } catch (e) {
      this.fail(m, e);
      return [];
    }
  }

  /** Check that a peer's RPC port answers (Mooncake's Probe message). 0 or a negative code. */
  async sendProbe(peerServerName: string): Promise<number> {
    const m = 'sendProbe';
    arity(m, arguments.length, 1, 1);
    str(m, 'peerServerName', peerServerName);
    try {
      await this.ready().sendProbe(peerServerName);
      return OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /**
   * The address of the first buffer a segment publishes (opening the segment,
   * once, like Mooncake). 0 on failure or when the segment has no buffers.
   */
  async getFirstBufferAddress(segmentName: string): Promise<number> {
    const m = 'getFirstBufferAddress';
    arity(m, arguments.length, 1, 1);
    str(m, 'segmentName', segmentName);
    try {
      const core = this.ready();
      const handle = await core.openSegment(segmentName);
      const first = core.getSegmentDescriptor(handle).buffers[0];
      if (!first) throw teError(ErrorCode.INVALID_SEGMENT, `segment "${segmentName}" publishes no buffers`);
      if (first.addr > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw teError(ErrorCode.NOT_SUPPORTED, `segment "${segmentName}": first buffer address ${fmtAddr(first.addr)} is above 2^53 and cannot be a number`);
      }
      return Number(first.addr);
    } catch (e) {
      this.fail(m, e);
      return 0;
    }
  }

  /**
   * The topology as Mooncake's JSON ({"cpu:0": [[preferred], [available]]}):
   * MC_CUSTOM_TOPO_JSON's after initialize, else discovered (network
   * interfaces per NUMA node). Needs no initialize and opens no port.
   * @param deviceName comma-separated interfaces to keep (all when empty or null)
   */
  async getLocalTopology(deviceName: string | null = null): Promise<string> {
    const m = 'getLocalTopology';
    arity(m, arguments.length, 0, 1);
    if (deviceName !== null && deviceName !== undefined) str(m, 'deviceName', deviceName);
    const filter = deviceName
      ? deviceName
          .split(',')
          .map((d) => d.trim())
          .filter((d) => d.length > 0)
      : undefined;
    if (this.topology) return this.topology.toJSON(filter);
    return topologyJson(await discoverTopology(), filter);
  }
}
