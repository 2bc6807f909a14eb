/**
 * MooncakeDistributedStore: a Mooncake Store client, the Python binding's
 * (`from mooncake.store import MooncakeDistributedStore`) in TypeScript. Same
 * method names in camelCase, same parameters in the same order, same results
 * (0 or Mooncake's negative ErrorCode; isExist 1/0; getSize the size; get an
 * empty Buffer on failure), with `await` where the call does I/O.
 *
 * It is also a segment provider: setup mounts `globalSegmentSize` bytes of
 * this process's memory to the master, whose other clients (Python's
 * included) then write object replicas into it and read them from it over the
 * transfer engine. Objects move over our core engine (TCP, or a plain copy
 * when the replica is in our own segment).
 *
 * Flow of a put (docs/store-wire.md §4.3): PutStart (the master places the
 * replicas and answers where), a WRITE of the value into each replica, PutEnd;
 * PutRevoke if a write failed. A get: GetReplicaList (which grants a read
 * lease), a READ from a complete replica within the lease. The transfers
 * themselves: src/store/replica-io.ts.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { TransferEngine as CoreEngine } from '../engine/engine.js';
import { ErrorCode, TransferEngineError, teError } from '../errors.js';
import { splitHostPort } from '../net.js';
import { Membership } from './membership.js';
import {
  Master,
  ReplicaType,
  StoreErrorCode,
  type GetReplicaListResponse,
  type Method,
  type Segment,
  type UUID,
} from './master-protocol.js';
import { ReplicateConfig } from './replicate-config.js';
import { RpcClient } from './rpc-client.js';
import { parseSize } from './sizes.js';
import { StagingBuffer } from './staging.js';
import { StoreError, checkVersion, storeError } from './store-errors.js';
import { MappedFile } from './file-segment.js';
import { masterLocator, type MasterLocator } from './master-view.js';
import { ReplicaIO, objectSize } from './replica-io.js';

export { ReplicateConfig };

/** The dictionary form of setup (Python's keys, in camelCase). */
export interface StoreConfig {
  localHostname: string;
  metadataServer: string;
  /** Bytes this client contributes to the store (a number, or "512MB"); 0: none. Default 16 MiB, as Python's. */
  globalSegmentSize?: number | bigint | string;
  /** Bytes of the local buffer values are copied through. Default 16 MiB, as Python's. */
  localBufferSize?: number | bigint | string;
  protocol?: string;
  rdmaDevices?: string;
  /** `host:port` of mooncake_master (default 127.0.0.1:50051). */
  masterServerAddr?: string;
  tenantId?: string;
}

export interface StoreOptions {
  /**
   * An engine to move objects with (Python's `engine=`): a core engine, or
   * the high-level TransferEngine (its getEngine()), initialized, and left
   * open by close(). Default: the store makes and owns one.
   */
  engine?: CoreEngine | { getEngine(): CoreEngine | null };
  /** Where MC_* variables are read (default process.env). */
  env?: Record<string, string | undefined>;
  /**
   * Put this client's segment in shared memory (/dev/shm, its pages committed
   * at setup), so that other engines of ours on this host copy objects into
   * and out of it directly instead of through TCP (README, Shared memory).
   * Needs the native addon; only with a store-made engine. Default false.
   */
  shm?: boolean;
}

/** The detail of the last failed call. */
export class StoreCallError extends Error {
  override readonly name = 'StoreCallError';
  constructor(
    readonly method: string,
    /** What the call returned (Mooncake's ErrorCode). */
    readonly returnCode: number,
    message: string,
    cause: unknown,
  ) {
    super(`${method}: ${message}`, { cause });
  }
}

const DEFAULT_SEGMENT = 16 << 20;
const DEFAULT_MASTER = '127.0.0.1:50051';
/** Mooncake's MC_STORE_CLIENT_MIN_PORT / MAX_PORT: a hostname without a port gets one of these, held for our life. */
const CLIENT_PORT_MIN = 12300;
const CLIENT_PORT_MAX = 14300;
const RPC_TIMEOUT_MS = 30_000;
/** Longest key accepted (UTF-8 bytes): ours, the master has none. */
export const MAX_KEY_BYTES = 64 * 1024;

type State = 'new' | 'setting-up' | 'ready' | 'closed';

/** put: a key that exists is left as it is; upsert: it is replaced (Mooncake's two write calls). */
type WriteMode = 'put' | 'upsert';

/** Our errors that mean "the call's arguments (or the store's state) cannot work": Mooncake's INVALID_PARAMS. */
const INVALID_PARAMS_CODES: ReadonlySet<ErrorCode> = new Set([
  ErrorCode.INVALID_ARGUMENT,
  ErrorCode.ADDRESS_NOT_REGISTERED,
  ErrorCode.MEMORY_DETACHED,
  ErrorCode.ADDRESS_OVERLAPPED,
  ErrorCode.CLOSED,
  ErrorCode.NOT_INITIALIZED,
  ErrorCode.ALREADY_INITIALIZED,
]);

/** Bytes of a value as a view (no copy). */
function viewOf(value: unknown, what: string): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) return new Uint8Array(value);
  if (typeof value === 'string') return Buffer.from(value, 'utf8');
  throw new TypeError(`${what} must be bytes (a Buffer, TypedArray, ArrayBuffer) or a string`);
}

function keyArg(method: string, key: unknown): string {
  if (typeof key !== 'string') throw new TypeError(`${method}(): key must be a string, got ${typeof key}`);
  return key;
}

export class MooncakeDistributedStore {
  private state: State = 'new';
  private engine: CoreEngine | null = null;
  private ownsEngine = false;
  private rpc: RpcClient | null = null;
  private membership: Membership | null = null;
  private io: ReplicaIO | null = null;
  private hostname = '';
  private tenant = 'default';
  private portHolder: net.Server | null = null;
  private locator: MasterLocator | null = null;
  private lastError: StoreCallError | null = null;
  /** User memory registered with registerBuffer: address -> length. */
  private readonly registered = new Map<number, number>();
  /** Memory the store registered itself (local buffer, segment): unregistered at close from an engine not ours. */
  private readonly ownMemory: number[] = [];
  /** Files mounted as segments, by the path given: the mapping, its address, its segment. */
  private readonly files = new Map<string, { file: MappedFile; base: number; segment: Segment }>();

  constructor(private readonly options: StoreOptions = {}) {}

  // ------------------------------------------------------------ plumbing

  /** Record a failure; return the code the call returns. Errors that are not ours (bugs) propagate. */
  private fail(method: string, e: unknown): number {
    if (!(e instanceof TransferEngineError)) throw e;
    let code: number;
    if (e instanceof StoreError) code = e.storeCode;
    else if (INVALID_PARAMS_CODES.has(e.code)) code = StoreErrorCode.INVALID_PARAMS;
    else code = StoreErrorCode.INTERNAL_ERROR;
    this.lastError = new StoreCallError(method, code, e.message, e);
    return code;
  }

  /** The detail of the last failed call (what it returned, the message, the cause), or null. */
  getLastError(): StoreCallError | null {
    return this.lastError;
  }

  private ready(): { engine: CoreEngine; rpc: RpcClient; membership: Membership; io: ReplicaIO } {
    if (this.state === 'ready') return { engine: this.engine!, rpc: this.rpc!, membership: this.membership!, io: this.io! };
    throw teError(this.state === 'closed' ? ErrorCode.CLOSED : ErrorCode.NOT_INITIALIZED, this.state === 'closed' ? 'the store is closed' : 'call setup() first');
  }

  /** A master call once the store is ready. */
  private master<A, R>(method: Method<A, R>, args: A): Promise<R> {
    const { rpc } = this.ready();
    return this.overRpc(rpc, method.name, () => rpc.call(method, args));
  }

  /** Talk to the master: transport failures become Mooncake's RPC_FAIL / RPC_TIMEOUT. */
  private async overRpc<T>(rpc: RpcClient, what: string, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (e) {
      if (!(e instanceof TransferEngineError) || e instanceof StoreError) throw e;
      const code = e.code === ErrorCode.TIMEOUT ? StoreErrorCode.RPC_TIMEOUT : StoreErrorCode.RPC_FAIL;
      throw new StoreError(code, `${what} to the master at ${rpc.label} failed: ${e.message}`, e);
    }
  }

  // ------------------------------------------------------------ setup

  /**
   * Connect to the master, start (or adopt) the transfer engine, register the
   * local buffer, and mount `globalSegmentSize` bytes as this client's segment.
   * Returns 0, or Mooncake's negative ErrorCode (detail in getLastError()).
   */
  async setup(
    localHostname: string | StoreConfig,
    metadataServer?: string,
    globalSegmentSize: number | bigint | string = DEFAULT_SEGMENT,
    localBufferSize: number | bigint | string = DEFAULT_SEGMENT,
    protocol = 'tcp',
    rdmaDevices = '',
    masterServerAddr = DEFAULT_MASTER,
  ): Promise<number> {
    const config: StoreConfig =
      typeof localHostname === 'object' && localHostname !== null
        ? localHostname
        : { localHostname, metadataServer: metadataServer ?? '', globalSegmentSize, localBufferSize, protocol, rdmaDevices, masterServerAddr };
    if (typeof config.localHostname !== 'string' || typeof config.metadataServer !== 'string') {
      throw new TypeError('setup(): localHostname and metadataServer must be strings (or pass one config object)');
    }
    try {
      if (this.state !== 'new') throw teError(ErrorCode.ALREADY_INITIALIZED, this.state === 'closed' ? 'the store is closed' : 'setup() may be called once');
      this.state = 'setting-up';
      try {
        await this.start(config);
        this.state = 'ready';
        return StoreErrorCode.OK;
      } catch (e) {
        await this.teardown(false);
        this.state = 'new';
        throw e;
      }
    } catch (e) {
      return this.fail('setup', e);
    }
  }

  /**
   * Python's `setup_with_files` (Mooncake PR #793): setup with no memory segment, then
   * every file in `files` mounted as a segment (mountFileSegment). Any file
   * that cannot be mounted fails the whole setup.
   */
  async setupWithFiles(
    localHostname: string,
    metadataServer: string,
    files: readonly string[],
    localBufferSize: number | bigint | string = DEFAULT_SEGMENT,
    protocol = 'tcp',
    protocolArg = '',
    masterServerAddr = DEFAULT_MASTER,
  ): Promise<number> {
    if (!Array.isArray(files) || files.some((f) => typeof f !== 'string')) throw new TypeError('setupWithFiles(): files must be an array of paths');
    const rc = await this.setup(localHostname, metadataServer, 0, localBufferSize, protocol, protocolArg, masterServerAddr);
    if (rc !== StoreErrorCode.OK) return rc;
    for (const f of files) {
      const m = await this.mountFileSegment(f);
      if (m !== StoreErrorCode.OK) {
        // As a failed setup: everything undone (what was mounted unmounted), and setup may be tried again.
        await this.teardown(true);
        this.state = 'new';
        return m;
      }
    }
    return StoreErrorCode.OK;
  }

  /**
   * Mount the file at `path` (existing, non-empty, regular, writable) as a
   * segment of the store: the master places replicas in it, and any client
   * reads and writes them through our data port. Its objects outlive this
   * process: mounting the same file again (here or after a restart) gives them
   * back, as far as the master (ours) still holds them. 0, or a negative code.
   */
  async mountFileSegment(path: string): Promise<number> {
    let mapped: MappedFile | null = null;
    let base = 0;
    try {
      const { engine, membership } = this.ready();
      if (this.files.has(path)) throw new StoreError(StoreErrorCode.SEGMENT_ALREADY_EXISTS, `file ${path} is mounted already`);
      try {
        mapped = MappedFile.open(path);
      } catch (e) {
        // Another process (a provider still alive) serves the file: the segment exists already.
        if (e instanceof TransferEngineError && e.code === ErrorCode.REGION_BUSY) throw new StoreError(StoreErrorCode.SEGMENT_ALREADY_EXISTS, e.message, e);
        throw e;
      }
      base = engine.registerLocalMemory(mapped.memory, '*');
      await engine.flushMetadata(); // peers must find the segment before the master hands it out
      const segment: Segment = { id: mapped.id, name: this.hostname, base: BigInt(base), size: BigInt(mapped.size), teEndpoint: engine.segmentName, protocol: 'tcp', hostId: '' };
      await this.overRpc(this.rpc!, 'MountSegment', () => membership.mount(segment));
      this.files.set(path, { file: mapped, base, segment });
      return StoreErrorCode.OK;
    } catch (e) {
      if (base) this.engine?.unregisterLocalMemory(base);
      mapped?.close();
      return this.fail('mountFileSegment', e);
    }
  }

  /**
   * Unmount a file mounted with mountFileSegment: no new replicas go there,
   * and the file is flushed and released. Our master keeps its objects for a
   * later mount of the same file; Mooncake's drops them. 0, or a negative code.
   */
  async unmountFileSegment(path: string): Promise<number> {
    try {
      const { engine, membership } = this.ready();
      const f = this.files.get(path);
      if (!f) throw new StoreError(StoreErrorCode.SEGMENT_NOT_FOUND, `file ${path} is not mounted`);
      this.files.delete(path);
      try {
        await this.overRpc(this.rpc!, 'UnmountSegment', () => membership.unmount(f.segment.id));
      } finally {
        engine.unregisterLocalMemory(f.base);
        f.file.close();
      }
      return StoreErrorCode.OK;
    } catch (e) {
      return this.fail('unmountFileSegment', e);
    }
  }

  private async start(config: StoreConfig): Promise<void> {
    const protocol = (config.protocol ?? 'tcp').toLowerCase();
    if (protocol !== 'tcp') throw teError(ErrorCode.NOT_SUPPORTED, `protocol "${protocol}" is not supported on this host (no RDMA or GPU transports): use "tcp"`);
    if (config.localHostname.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'localHostname is empty');
    if (config.metadataServer.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'metadataServer is empty (a URL such as http://host:port/metadata, or P2PHANDSHAKE)');
    const segmentSize = parseSize(config.globalSegmentSize ?? DEFAULT_SEGMENT, 'globalSegmentSize');
    const bufferSize = parseSize(config.localBufferSize ?? DEFAULT_SEGMENT, 'localBufferSize');
    this.tenant = config.tenantId ?? 'default';
    // host:port, or etcd://... (HA: the leader's address is looked up at every reconnect, so we follow failovers).
    const locator = masterLocator(config.masterServerAddr ?? DEFAULT_MASTER, this.options.env ?? process.env);
    this.locator = locator;
    const first = locator.follows ? { host: locator.label, port: 0 } : await locator.resolve();

    // The master first: a wrong address or version fails before anything is bound.
    const rpc = new RpcClient({
      host: first.host,
      port: first.port,
      connectTimeoutMs: RPC_TIMEOUT_MS,
      callTimeoutMs: RPC_TIMEOUT_MS,
      ...(locator.follows ? { resolve: () => locator.resolve() } : {}),
    });
    this.rpc = rpc;
    await this.overRpc(rpc, 'ServiceReady', () => checkVersion(rpc));

    // The segment's name (what preferredSegment names): host:port, a port held for our life when none is given.
    this.hostname = splitHostPort(config.localHostname).port !== undefined ? config.localHostname : await this.holdPort(config.localHostname);
    if (this.options.engine) {
      const given = this.options.engine;
      const core = given instanceof CoreEngine ? given : given.getEngine();
      if (!core) throw teError(ErrorCode.NOT_INITIALIZED, 'the engine passed in options.engine is not initialized');
      this.engine = core;
    } else {
      const env = this.options.env ?? process.env;
      this.engine = new CoreEngine({ metadataServer: config.metadataServer, env, ...(this.options.shm ? { shm: true } : {}) });
      this.ownsEngine = true;
      await this.engine.init(this.hostname, splitHostPort(this.hostname).host);
    }
    const engine = this.engine;
    // Peers never address the local buffer: it is not published (nor worth shared memory).
    const stagingBase = bufferSize > 0 ? engine.registerLocalMemory(new ArrayBuffer(bufferSize), '*', 'none') : 0;
    if (stagingBase) this.ownMemory.push(stagingBase);
    this.io = new ReplicaIO(engine, bufferSize > 0 ? new StagingBuffer(bufferSize) : null, stagingBase);
    const clientId = randomUuid();
    this.membership = new Membership(rpc, clientId, {
      // A restarted master forgot us; with it, its embedded metadata server may have forgotten our segment.
      remounted: () => {
        try {
          engine.republishMetadata();
        } catch {
          /* closed meanwhile */
        }
      },
      failed: () => {},
    });
    if (segmentSize > 0) {
      const base = engine.allocateLocalMemory(segmentSize);
      this.ownMemory.push(base);
      await engine.flushMetadata(); // peers must find the segment before the master hands it out
      const segment: Segment = {
        id: randomUuid(),
        name: this.hostname,
        base: BigInt(base),
        size: BigInt(segmentSize),
        teEndpoint: engine.segmentName,
        protocol,
        hostId: '',
      };
      const membership = this.membership;
      await this.overRpc(rpc, 'MountSegment', () => membership.mount(segment));
    }
  }

  /**
   * A hostname without a port gets a free one in Mooncake's client range,
   * held by a listener for the store's life, so that two clients on one host
   * never take the same segment name.
   */
  private async holdPort(host: string): Promise<string> {
    const span = CLIENT_PORT_MAX - CLIENT_PORT_MIN + 1;
    const start = Math.floor(Math.random() * span);
    for (let k = 0; k < Math.min(span, 200); k++) {
      const port = CLIENT_PORT_MIN + ((start + k * 7919) % span);
      const server = net.createServer();
      const ok = await new Promise<boolean>((resolve) => {
        server.once('error', () => resolve(false));
        server.listen({ host: '127.0.0.1', port, exclusive: true }, () => resolve(true));
      });
      if (ok) {
        server.unref();
        this.portHolder = server;
        return `${host}:${port}`;
      }
    }
    throw teError(ErrorCode.PORT_IN_USE, `no free port in [${CLIENT_PORT_MIN}, ${CLIENT_PORT_MAX}] to name this client's segment: give localHostname as host:port`);
  }

  /** The segment name this client mounted under (`host:port`), as Python's get_hostname. */
  getHostname(): string {
    return this.hostname;
  }

  /** The core engine moving the objects (Python's get_engine); null before setup. */
  getEngine(): CoreEngine | null {
    return this.engine;
  }

  // ------------------------------------------------------------ memory

  /**
   * Register memory for putFrom/getInto (zero copy): the memory itself, or an
   * address inside memory the engine owns. Returns 0 or a negative code;
   * getBufferAddress(memory) gives the address to use.
   */
  registerBuffer(memory: Uint8Array | ArrayBuffer, size?: number): number {
    try {
      const { engine } = this.ready();
      const view = viewOf(memory, 'registerBuffer(): memory');
      const n = size === undefined ? view.length : parseSize(size, 'size');
      if (n <= 0 || n > view.length) throw teError(ErrorCode.INVALID_ARGUMENT, `size ${n} is not in [1, ${view.length}]`);
      const addr = engine.registerLocalMemory(view.subarray(0, n), '*', 'none');
      this.registered.set(addr, n);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.fail('registerBuffer', e);
    }
  }

  /** The address of registered memory's first byte (what putFrom/getInto take), or 0. */
  getBufferAddress(memory: Uint8Array | ArrayBuffer): number {
    const view = viewOf(memory, 'getBufferAddress(): memory');
    return this.state === 'ready' ? this.engine!.addressOf(view) : 0;
  }

  /** Unregister memory registered with registerBuffer (by its address or the memory). */
  unregisterBuffer(memory: number | Uint8Array | ArrayBuffer): number {
    try {
      const { engine } = this.ready();
      const addr = typeof memory === 'number' ? memory : this.getBufferAddress(memory);
      if (!this.registered.has(addr)) throw teError(ErrorCode.INVALID_ARGUMENT, `no buffer registered with registerBuffer starts at ${addr}`);
      engine.unregisterLocalMemory(addr);
      this.registered.delete(addr);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.fail('unregisterBuffer', e);
    }
  }

  // ------------------------------------------------------------ put and upsert

  /** Store `value` under `key`. 0, or a negative code. A key that exists already is left as it is (0, as Mooncake). */
  put(key: string, value: Uint8Array | ArrayBuffer | string, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writeOne('put', key, value, config);
  }

  /** Store `value` under `key`, replacing an existing object (Mooncake's upsert). 0, or a negative code. */
  upsert(key: string, value: Uint8Array | ArrayBuffer | string, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writeOne('upsert', key, value, config);
  }

  /** put() from registered memory (registerBuffer), without a copy. */
  putFrom(key: string, bufferAddr: number, size: number, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writeOneFrom('put', key, bufferAddr, size, config);
  }

  /** upsert() from registered memory, without a copy. */
  upsertFrom(key: string, bufferAddr: number, size: number, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writeOneFrom('upsert', key, bufferAddr, size, config);
  }

  /** Several puts; 0 when all succeeded, else the first failure's code. */
  putBatch(keys: string[], values: Array<Uint8Array | ArrayBuffer | string>, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writeBatch('put', keys, values, config);
  }

  /** Several upserts; 0 when all succeeded, else the first failure's code. */
  upsertBatch(keys: string[], values: Array<Uint8Array | ArrayBuffer | string>, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writeBatch('upsert', keys, values, config);
  }

  /** Several putFrom; a code per key. */
  batchPutFrom(keys: string[], bufferAddrs: number[], sizes: number[], config: ReplicateConfig = new ReplicateConfig()): Promise<number[]> {
    return this.writeBatchFrom('put', keys, bufferAddrs, sizes, config);
  }

  /** Several upsertFrom; a code per key. */
  batchUpsertFrom(keys: string[], bufferAddrs: number[], sizes: number[], config: ReplicateConfig = new ReplicateConfig()): Promise<number[]> {
    return this.writeBatchFrom('upsert', keys, bufferAddrs, sizes, config);
  }

  private async writeOne(mode: WriteMode, key: string, value: Uint8Array | ArrayBuffer | string, config: ReplicateConfig): Promise<number> {
    keyArg(mode, key);
    try {
      const bytes = viewOf(value, `${mode}(): value`);
      await this.ready().io.staged(bytes.length, async (addr, view) => {
        view.set(bytes);
        await this.writeRange(mode, key, addr, bytes.length, config);
      });
      return StoreErrorCode.OK;
    } catch (e) {
      return this.fail(mode, e);
    }
  }

  private async writeOneFrom(mode: WriteMode, key: string, bufferAddr: number, size: number, config: ReplicateConfig): Promise<number> {
    const m = `${mode}From`;
    keyArg(m, key);
    try {
      this.ready().engine.localView(bufferAddr, size); // inside registered memory
      await this.writeRange(mode, key, bufferAddr, size, config);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  private async writeBatch(mode: WriteMode, keys: string[], values: Array<Uint8Array | ArrayBuffer | string>, config: ReplicateConfig): Promise<number> {
    const m = `${mode}Batch`;
    try {
      if (!Array.isArray(keys) || !Array.isArray(values) || keys.length !== values.length) {
        throw teError(ErrorCode.INVALID_ARGUMENT, 'keys and values must be arrays of the same length');
      }
      const views = values.map((v, i) => viewOf(v, `${m}(): values[${i}]`));
      const total = views.reduce((sum, v) => sum + v.length, 0);
      let results: number[] = [];
      await this.ready().io.staged(total, async (addr, view) => {
        const addrs: number[] = [];
        let at = 0;
        for (const v of views) {
          view.set(v, at);
          addrs.push(addr + at);
          at += v.length;
        }
        results = await this.writeRanges(mode, keys, addrs, views.map((v) => v.length), config);
      });
      return results.find((r) => r !== StoreErrorCode.OK) ?? StoreErrorCode.OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  private async writeBatchFrom(mode: WriteMode, keys: string[], bufferAddrs: number[], sizes: number[], config: ReplicateConfig): Promise<number[]> {
    const m = mode === 'put' ? 'batchPutFrom' : 'batchUpsertFrom';
    try {
      if (!Array.isArray(keys) || !Array.isArray(bufferAddrs) || !Array.isArray(sizes) || keys.length !== bufferAddrs.length || keys.length !== sizes.length) {
        throw teError(ErrorCode.INVALID_ARGUMENT, 'keys, bufferAddrs and sizes must be arrays of the same length');
      }
      const { engine } = this.ready();
      for (let i = 0; i < keys.length; i++) engine.localView(bufferAddrs[i]!, sizes[i]!);
      return await this.writeRanges(mode, keys, bufferAddrs, sizes, config);
    } catch (e) {
      const code = this.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }

  /** (Batch)PutStart or (Batch)UpsertStart, one batch of WRITEs for every key that started, the End or Revoke. */
  private async writeRanges(mode: WriteMode, keys: string[], addrs: number[], sizes: number[], config: ReplicateConfig): Promise<number[]> {
    const { membership } = this.ready();
    const id = membership.clientId;
    keys.forEach((k) => this.checkKey(k));
    sizes.forEach((n) => this.checkLength(n));
    this.checkConfig(config);
    const start = mode === 'put' ? Master.BatchPutStart : Master.BatchUpsertStart;
    const started = await this.master(start, [id, keys, sizes.map(BigInt), config.toWire(), this.tenant]);
    if (started.length !== keys.length) throw new StoreError(StoreErrorCode.INTERNAL_ERROR, `${start.name} answered ${started.length} results for ${keys.length} keys`);
    // A put of a key that exists is a success that writes nothing (Mooncake's put).
    const results = started.map((r) => (r.ok || (mode === 'put' && r.error === StoreErrorCode.OBJECT_ALREADY_EXISTS) ? StoreErrorCode.OK : r.error));
    const writes: number[] = [];
    await Promise.all(
      started.map((r, i) => {
        if (!r.ok) return undefined;
        writes.push(i);
        return this.ready().io.write(addrs[i]!, sizes[i]!, r.value, keys[i]!).catch((e: unknown) => {
          results[i] = e instanceof StoreError ? e.storeCode : StoreErrorCode.TRANSFER_FAIL;
        });
      }),
    );
    const ended = writes.filter((i) => results[i] === StoreErrorCode.OK);
    const revoked = writes.filter((i) => results[i] !== StoreErrorCode.OK);
    if (ended.length > 0) {
      const metas = ended.map((i) => ({ key: keys[i]!, objectChecksum: null }));
      const r =
        mode === 'put'
          ? await this.master(Master.BatchPutEnd, [id, metas, ReplicaType.ALL, this.tenant])
          : await this.master(Master.BatchUpsertEnd, [id, metas, this.tenant]);
      r.forEach((x, j) => {
        if (!x.ok) results[ended[j]!] = x.error;
      });
    }
    if (revoked.length > 0) {
      const gone = revoked.map((i) => keys[i]!);
      const revoke =
        mode === 'put'
          ? this.master(Master.BatchPutRevoke, [id, gone, ReplicaType.ALL, this.tenant])
          : this.master(Master.BatchUpsertRevoke, [id, gone, this.tenant]);
      await revoke.catch(() => undefined); // the failure reported is the transfer's
    }
    return results;
  }

  /** PutStart or UpsertStart, the WRITEs, the End (or Revoke). */
  private async writeRange(mode: WriteMode, key: string, addr: number, size: number, config: ReplicateConfig): Promise<void> {
    const { membership } = this.ready();
    const id = membership.clientId;
    this.checkKey(key);
    this.checkLength(size);
    this.checkConfig(config);
    const [start, end, revoke] = mode === 'put' ? [Master.PutStart, Master.PutEnd, Master.PutRevoke] : [Master.UpsertStart, Master.UpsertEnd, Master.UpsertRevoke];
    const r = await this.master(start, [id, key, BigInt(size), config.toWire(), this.tenant]);
    if (!r.ok) {
      if (mode === 'put' && r.error === StoreErrorCode.OBJECT_ALREADY_EXISTS) return; // Mooncake's put: the object is there already
      throw storeError(r.error, `${start.name} of "${key}" (${size} bytes)`);
    }
    try {
      await this.ready().io.write(addr, size, r.value, key);
    } catch (e) {
      await this.master(revoke, [id, key, ReplicaType.ALL, this.tenant]).catch(() => undefined);
      throw e;
    }
    const done = await this.master(end, [id, { key, objectChecksum: null }, ReplicaType.ALL, this.tenant]);
    if (!done.ok) throw storeError(done.error, `${end.name} of "${key}"`);
  }

  // ------------------------------------------------------------ get

  /** The value under `key`, or an empty Buffer on failure (getLastError() says why). */
  async get(key: string): Promise<Buffer> {
    const m = 'get';
    keyArg(m, key);
    try {
      return await this.getOne(key);
    } catch (e) {
      this.fail(m, e);
      return Buffer.alloc(0);
    }
  }

  private async getOne(key: string): Promise<Buffer> {
    this.checkKey(key);
    const t0 = performance.now();
    const r = await this.master(Master.GetReplicaList, [key, this.tenant]);
    if (!r.ok) throw storeError(r.error, `GetReplicaList of "${key}"`);
    const size = objectSize(r.value, key);
    let out = Buffer.alloc(0);
    await this.ready().io.staged(size, async (addr, view) => {
      await this.ready().io.read(addr, size, r.value, key, t0);
      out = Buffer.from(view.subarray(0, size));
    });
    return out;
  }

  /** Read the object into registered memory at `bufferAddr` (at most `size` bytes): the bytes read, or a negative code. */
  async getInto(key: string, bufferAddr: number, size: number): Promise<number> {
    const m = 'getInto';
    keyArg(m, key);
    try {
      this.checkKey(key);
      this.ready().engine.localView(bufferAddr, size);
      const t0 = performance.now();
      const r = await this.master(Master.GetReplicaList, [key, this.tenant]);
      if (!r.ok) throw storeError(r.error, `GetReplicaList of "${key}"`);
      const n = objectSize(r.value, key);
      if (n > size) throw new StoreError(StoreErrorCode.INVALID_PARAMS, `"${key}" is ${n} bytes; the buffer holds ${size}`);
      await this.ready().io.read(bufferAddr, n, r.value, key, t0);
      return n;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** Several gets: a Buffer per key (empty where it failed). */
  async getBatch(keys: string[]): Promise<Buffer[]> {
    const m = 'getBatch';
    try {
      if (!Array.isArray(keys)) throw teError(ErrorCode.INVALID_ARGUMENT, 'keys must be an array');
      keys.forEach((k) => this.checkKey(k));
      const t0 = performance.now();
      const lists = await this.master(Master.BatchGetReplicaList, [keys, this.tenant]);
      const sizes = lists.map((l, i) => (l.ok ? sizeOrNone(l.value, keys[i]!) : -1));
      const total = sizes.reduce((s, n) => s + Math.max(0, n), 0);
      const out = keys.map(() => Buffer.alloc(0));
      await this.ready().io.staged(Math.max(1, total), async (addr, view) => {
        let at = 0;
        const offsets = sizes.map((n) => {
          const o = at;
          at += Math.max(0, n);
          return o;
        });
        await Promise.all(
          lists.map(async (l, i) => {
            if (!l.ok || sizes[i]! < 0) return;
            try {
              await this.ready().io.read(addr + offsets[i]!, sizes[i]!, l.value, keys[i]!, t0);
              out[i] = Buffer.from(view.subarray(offsets[i]!, offsets[i]! + sizes[i]!));
            } catch (e) {
              this.fail(m, e);
            }
          }),
        );
      });
      return out;
    } catch (e) {
      this.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => Buffer.alloc(0)) : [];
    }
  }

  /** Several getInto: the bytes read, or a negative code, per key. */
  async batchGetInto(keys: string[], bufferAddrs: number[], sizes: number[]): Promise<number[]> {
    const m = 'batchGetInto';
    try {
      if (!Array.isArray(keys) || !Array.isArray(bufferAddrs) || !Array.isArray(sizes) || keys.length !== bufferAddrs.length || keys.length !== sizes.length) {
        throw teError(ErrorCode.INVALID_ARGUMENT, 'keys, bufferAddrs and sizes must be arrays of the same length');
      }
      const { engine } = this.ready();
      keys.forEach((k) => this.checkKey(k));
      for (let i = 0; i < keys.length; i++) engine.localView(bufferAddrs[i]!, sizes[i]!);
      const t0 = performance.now();
      const lists = await this.master(Master.BatchGetReplicaList, [keys, this.tenant]);
      return await Promise.all(
        lists.map(async (l, i) => {
          try {
            if (!l.ok) throw storeError(l.error, `GetReplicaList of "${keys[i]!}"`);
            const n = objectSize(l.value, keys[i]!);
            if (n > sizes[i]!) throw new StoreError(StoreErrorCode.INVALID_PARAMS, `"${keys[i]!}" is ${n} bytes; its buffer holds ${sizes[i]!}`);
            await this.ready().io.read(bufferAddrs[i]!, n, l.value, keys[i]!, t0);
            return n;
          } catch (e) {
            return this.fail(m, e);
          }
        }),
      );
    } catch (e) {
      const code = this.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }

  // ------------------------------------------------------------ queries and removal

  /** 1 if `key` exists, 0 if not, or a negative code. */
  async isExist(key: string): Promise<number> {
    const m = 'isExist';
    keyArg(m, key);
    try {
      this.checkKey(key);
      const r = await this.master(Master.ExistKey, [key, this.tenant]);
      if (!r.ok) throw storeError(r.error, `ExistKey of "${key}"`);
      return r.value ? 1 : 0;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** isExist per key. */
  async batchIsExist(keys: string[]): Promise<number[]> {
    const m = 'batchIsExist';
    try {
      if (!Array.isArray(keys)) throw teError(ErrorCode.INVALID_ARGUMENT, 'keys must be an array');
      keys.forEach((k) => this.checkKey(k));
      const r = await this.master(Master.BatchExistKey, [keys, this.tenant]);
      return r.map((x) => (x.ok ? (x.value ? 1 : 0) : x.error));
    } catch (e) {
      const code = this.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }

  /** The size of the object under `key`, or a negative code. (It takes a read lease, as Mooncake's does.) */
  async getSize(key: string): Promise<number> {
    const m = 'getSize';
    keyArg(m, key);
    try {
      this.checkKey(key);
      const r = await this.master(Master.GetReplicaList, [key, this.tenant]);
      if (!r.ok) throw storeError(r.error, `GetReplicaList of "${key}"`);
      return objectSize(r.value, key);
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** Remove an object: 0 or a negative code (OBJECT_HAS_LEASE while a read lease runs, unless `force`). */
  async remove(key: string, force = false): Promise<number> {
    const m = 'remove';
    keyArg(m, key);
    try {
      this.checkKey(key);
      const r = await this.master(Master.Remove, [key, force === true, this.tenant]);
      if (!r.ok) throw storeError(r.error, `Remove of "${key}"`);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** remove() per key: 0 or a negative code each. */
  async batchRemove(keys: string[], force = false): Promise<number[]> {
    const m = 'batchRemove';
    try {
      if (!Array.isArray(keys)) throw teError(ErrorCode.INVALID_ARGUMENT, 'keys must be an array');
      keys.forEach((k) => this.checkKey(k));
      const r = await this.master(Master.BatchRemove, [keys, force === true, this.tenant]);
      return r.map((x) => (x.ok ? StoreErrorCode.OK : x.error));
    } catch (e) {
      const code = this.fail(m, e);
      return Array.isArray(keys) ? keys.map(() => code) : [];
    }
  }

  /** Remove the objects whose keys match `regex` (the master's ECMAScript-like regex): how many, or a negative code. */
  async removeByRegex(regex: string, force = false): Promise<number> {
    const m = 'removeByRegex';
    try {
      if (typeof regex !== 'string') throw teError(ErrorCode.INVALID_ARGUMENT, 'regex must be a string');
      const r = await this.master(Master.RemoveByRegex, [regex, force === true, this.tenant]);
      if (!r.ok) throw storeError(r.error, `RemoveByRegex of /${regex}/`);
      return Number(r.value);
    } catch (e) {
      return this.fail(m, e);
    }
  }

  /** Remove every object (of this tenant): how many, or a negative code. */
  async removeAll(force = false): Promise<number> {
    const m = 'removeAll';
    try {
      return Number(await this.master(Master.RemoveAll, [force === true, this.tenant]));
    } catch (e) {
      return this.fail(m, e);
    }
  }

  // ------------------------------------------------------------ close

  /** Unmount our segment, stop pinging, close the connection and (if ours) the engine. Idempotent. */
  async close(): Promise<number> {
    if (this.state === 'closed') return StoreErrorCode.OK;
    const wasReady = this.state === 'ready';
    this.state = 'closed';
    await this.teardown(wasReady);
    return StoreErrorCode.OK;
  }

  private async teardown(unmount: boolean): Promise<void> {
    await this.membership?.stop(unmount);
    this.membership = null;
    this.rpc?.close();
    this.rpc = null;
    this.locator?.close();
    this.locator = null;
    this.io?.close();
    this.io = null;
    if (this.ownsEngine) await this.engine?.close();
    else if (this.engine) {
      // Someone else's engine: leave it as we found it (transfers of ours have ended: every call awaits its own).
      for (const addr of [...this.registered.keys(), ...this.ownMemory]) {
        try {
          this.engine.unregisterLocalMemory(addr);
        } catch {
          /* the engine was closed by its owner meanwhile */
        }
      }
    }
    this.ownMemory.length = 0;
    // After the engine stopped serving them: flushed, unmapped, unlocked.
    for (const f of this.files.values()) {
      try {
        if (!this.ownsEngine) this.engine?.unregisterLocalMemory(f.base);
      } catch {
        /* the engine was closed by its owner meanwhile */
      }
      f.file.close();
    }
    this.files.clear();
    this.engine = null;
    this.registered.clear();
    this.portHolder?.close();
    this.portHolder = null;
  }

  private checkKey(key: string): void {
    if (key.length === 0) throw new StoreError(StoreErrorCode.INVALID_KEY, 'the key is empty');
    // The master sets no limit; a key this long is a bug in the caller, and every call would carry it.
    const n = Buffer.byteLength(key);
    if (n > MAX_KEY_BYTES) throw new StoreError(StoreErrorCode.INVALID_KEY, `the key is ${n} bytes; keys are at most ${MAX_KEY_BYTES}`);
  }

  private checkLength(n: number): void {
    if (!Number.isSafeInteger(n) || n <= 0) throw new StoreError(StoreErrorCode.INVALID_PARAMS, `a value of ${String(n)} bytes: values are 1 byte or more`);
  }

  private checkConfig(config: ReplicateConfig): void {
    if (!(config instanceof ReplicateConfig)) throw new TypeError('config must be a ReplicateConfig');
    // As the wheel's client: this placement needs the host id of a same-node allocator this client does not run.
    if (config.preferAllocInSameNode) throw new StoreError(StoreErrorCode.INVALID_PARAMS, 'preferAllocInSameNode is not supported by this client (as by the Python client over TCP)');
  }
}

/** The object's size, or -1 when it has no memory replica (a batch's other keys go on). */
function sizeOrNone(list: GetReplicaListResponse, key: string): number {
  try {
    return objectSize(list, key);
  } catch {
    return -1;
  }
}

function randomUuid(): UUID {
  const b = randomBytes(16);
  return { first: b.readBigUInt64LE(0), second: b.readBigUInt64LE(8) };
}
