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
 *
 * The class holds the public API and hands each call to the part that does
 * it, each holding its own state: lifecycle.ts (setup and close; the master
 * connection, the engine, the local buffer, our memory segment), buffers.ts
 * (registerBuffer), file-mounts.ts (files mounted as segments), writes.ts (put
 * and upsert), reads.ts (get), queries.ts (existence, size, removal); args.ts
 * checks arguments, calls.ts keeps getLastError().
 */
import type { TransferEngine as CoreEngine } from '../engine/engine.js';
import { RegisteredBuffers } from './buffers.js';
import { CallRecorder, type StoreCallError } from './calls.js';
import { FileMounts } from './file-mounts.js';
import { DEFAULT_MASTER, DEFAULT_SEGMENT, Lifecycle, type StoreConfig, type StoreOptions } from './lifecycle.js';
import { StoreErrorCode } from './master-protocol.js';
import { Queries } from './queries.js';
import { Reads } from './reads.js';
import { ReplicateConfig } from './replicate-config.js';
import { Writes } from './writes.js';

export { ReplicateConfig };
export { MAX_KEY_BYTES } from './args.js';
export { StoreCallError } from './calls.js';
export type { StoreConfig, StoreOptions } from './lifecycle.js';

export class MooncakeDistributedStore {
  /** Failed calls: their codes and getLastError(), one record for every part. */
  private readonly calls = new CallRecorder();
  private readonly life: Lifecycle;
  private readonly buffers: RegisteredBuffers;
  private readonly files: FileMounts;
  private readonly writes: Writes;
  private readonly reads: Reads;
  private readonly queries: Queries;

  constructor(options: StoreOptions = {}) {
    this.life = new Lifecycle(options);
    this.buffers = new RegisteredBuffers(this.life, this.calls);
    this.files = new FileMounts(this.life, this.calls);
    this.writes = new Writes(this.life, this.calls);
    this.reads = new Reads(this.life, this.calls);
    this.queries = new Queries(this.life, this.calls);
  }

  /** The detail of the last failed call (what it returned, the message, the cause), or null. */
  getLastError(): StoreCallError | null {
    return this.calls.last;
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
      await this.life.open(config, this.buffers, this.files);
      return StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail('setup', e);
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
        await this.life.abort(this.buffers, this.files);
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
  mountFileSegment(path: string): Promise<number> {
    return this.files.mount(path);
  }

  /**
   * Unmount a file mounted with mountFileSegment: no new replicas go there,
   * and the file is flushed and released. Our master keeps its objects for a
   * later mount of the same file; Mooncake's drops them. 0, or a negative code.
   */
  unmountFileSegment(path: string): Promise<number> {
    return this.files.unmount(path);
  }

  /** The segment name this client mounted under (`host:port`), as Python's get_hostname. */
  getHostname(): string {
    return this.life.hostname;
  }

  /** The core engine moving the objects (Python's get_engine); null before setup. */
  getEngine(): CoreEngine | null {
    return this.life.engine;
  }

  // ------------------------------------------------------------ memory

  /**
   * Register memory for putFrom/getInto (zero copy): the memory itself, or an
   * address inside memory the engine owns. Returns 0 or a negative code;
   * getBufferAddress(memory) gives the address to use.
   */
  registerBuffer(memory: Uint8Array | ArrayBuffer, size?: number): number {
    return this.buffers.register(memory, size);
  }

  /** The address of registered memory's first byte (what putFrom/getInto take), or 0. */
  getBufferAddress(memory: Uint8Array | ArrayBuffer): number {
    return this.buffers.addressOf(memory);
  }

  /** Unregister memory registered with registerBuffer (by its address or the memory). */
  unregisterBuffer(memory: number | Uint8Array | ArrayBuffer): number {
    return this.buffers.unregister(memory);
  }

  // ------------------------------------------------------------ put and upsert

  /** Store `value` under `key`. 0, or a negative code. A key that exists already is left as it is (0, as Mooncake). */
  put(key: string, value: Uint8Array | ArrayBuffer | string, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writes.writeOne('put', key, value, config);
  }

  /** Store `value` under `key`, replacing an existing object (Mooncake's upsert). 0, or a negative code. */
  upsert(key: string, value: Uint8Array | ArrayBuffer | string, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writes.writeOne('upsert', key, value, config);
  }

  /** put() from registered memory (registerBuffer), without a copy. */
  putFrom(key: string, bufferAddr: number, size: number, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writes.writeOneFrom('put', key, bufferAddr, size, config);
  }

  /** upsert() from registered memory, without a copy. */
  upsertFrom(key: string, bufferAddr: number, size: number, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writes.writeOneFrom('upsert', key, bufferAddr, size, config);
  }

  /** Several puts; 0 when all succeeded, else the first failure's code. */
  putBatch(keys: string[], values: Array<Uint8Array | ArrayBuffer | string>, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writes.writeBatch('put', keys, values, config);
  }

  /** Several upserts; 0 when all succeeded, else the first failure's code. */
  upsertBatch(keys: string[], values: Array<Uint8Array | ArrayBuffer | string>, config: ReplicateConfig = new ReplicateConfig()): Promise<number> {
    return this.writes.writeBatch('upsert', keys, values, config);
  }

  /** Several putFrom; a code per key. */
  batchPutFrom(keys: string[], bufferAddrs: number[], sizes: number[], config: ReplicateConfig = new ReplicateConfig()): Promise<number[]> {
    return this.writes.writeBatchFrom('put', keys, bufferAddrs, sizes, config);
  }

  /** Several upsertFrom; a code per key. */
  batchUpsertFrom(keys: string[], bufferAddrs: number[], sizes: number[], config: ReplicateConfig = new ReplicateConfig()): Promise<number[]> {
    return this.writes.writeBatchFrom('upsert', keys, bufferAddrs, sizes, config);
  }

  // ------------------------------------------------------------ get

  /** The value under `key`, or an empty Buffer on failure (getLastError() says why). */
  get(key: string): Promise<Buffer> {
    return this.reads.get(key);
  }

  /** Read the object into registered memory at `bufferAddr` (at most `size` bytes): the bytes read, or a negative code. */
  getInto(key: string, bufferAddr: number, size: number): Promise<number> {
    return this.reads.getInto(key, bufferAddr, size);
  }

  /** Several gets: a Buffer per key (empty where it failed). */
  getBatch(keys: string[]): Promise<Buffer[]> {
    return this.reads.getBatch(keys);
  }

  /** Several getInto: the bytes read, or a negative code, per key. */
  batchGetInto(keys: string[], bufferAddrs: number[], sizes: number[]): Promise<number[]> {
    return this.reads.batchGetInto(keys, bufferAddrs, sizes);
  }

  // ------------------------------------------------------------ queries and removal

  /** 1 if `key` exists, 0 if not, or a negative code. */
  isExist(key: string): Promise<number> {
    return this.queries.isExist(key);
  }

  /** isExist per key. */
  batchIsExist(keys: string[]): Promise<number[]> {
    return this.queries.batchIsExist(keys);
  }

  /** The size of the object under `key`, or a negative code. (It takes a read lease, as Mooncake's does.) */
  getSize(key: string): Promise<number> {
    return this.queries.getSize(key);
  }

  /** Remove an object: 0 or a negative code (OBJECT_HAS_LEASE while a read lease runs, unless `force`). */
  remove(key: string, force = false): Promise<number> {
    return this.queries.remove(key, force);
  }

  /** remove() per key: 0 or a negative code each. */
  batchRemove(keys: string[], force = false): Promise<number[]> {
    return this.queries.batchRemove(keys, force);
  }

  /** Remove the objects whose keys match `regex` (the master's ECMAScript-like regex): how many, or a negative code. */
  removeByRegex(regex: string, force = false): Promise<number> {
    return this.queries.removeByRegex(regex, force);
  }

  /** Remove every object (of this tenant): how many, or a negative code. */
  removeAll(force = false): Promise<number> {
    return this.queries.removeAll(force);
  }

  // ------------------------------------------------------------ close

  /** Unmount our segment, stop pinging, close the connection and (if ours) the engine. Idempotent. */
  async close(): Promise<number> {
    await this.life.close(this.buffers, this.files);
    return StoreErrorCode.OK;
  }
}
