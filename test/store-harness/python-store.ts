/**
 * A real Mooncake Store client for store tests: `MooncakeDistributedStore` from the pinned wheel,
 * in a child Python process (test/store-harness/store_driver.py) driven by JSON lines.
 *
 * Values never cross the pipe. A value is named by (seed, length); both sides generate its bytes
 * with `pattern(seed, length)` = SHAKE-256 over the ASCII decimal of the seed, `length` bytes of
 * output. What comes back from a read is `{ length, sha }` (SHA-256, hex) of the bytes the store
 * returned, to compare with `sha256(pattern(seed, length))` on the TypeScript side.
 *
 * Results are the binding's own return values, untouched (see docs/store-wire.md §4.7), so a test
 * can compare them with what our client returns.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { PYTHON, ROOT, mooncakeEnv } from '../interop/mooncake.js';
import { isAlive, killOnExit, stopChild } from './master.js';

const DRIVER = path.join(ROOT, 'test', 'store-harness', 'store_driver.py');
const MIB = 1024 * 1024;
const STDERR_TAIL = 20_000;
/** One call never takes this long unless the driver is stuck; then it is killed. */
const CALL_TIMEOUT_MS = 60_000;
/** close() joins the client's 1 s background loops (CAPTURES.md: 1.15 to 2.25 s). */
const STOP_GRACE_MS = 10_000;

/** The test data: SHAKE-256(ASCII decimal of `seed`), `length` bytes. Same bytes as the driver's. */
export function pattern(seed: number, length: number): Buffer {
  if (!Number.isSafeInteger(seed)) throw new RangeError(`seed must be a safe integer, got ${seed}`);
  return createHash('shake256', { outputLength: length }).update(String(seed)).digest();
}

/** `{ length, sha }` of `pattern(seed, length)`: what a read of that value must return. */
export function patternDigest(seed: number, length: number): ValueDigest {
  return { length, sha: createHash('sha256').update(pattern(seed, length)).digest('hex') };
}

/** What a read returned: its length and SHA-256 (hex). An empty value is `get`'s error result. */
export interface ValueDigest {
  length: number;
  sha: string;
}

export type SoftPinAction = 'PRESERVE' | 'ENABLE' | 'DISABLE';
export type ObjectDataType =
  | 'UNKNOWN' | 'KVCACHE' | 'TENSOR' | 'WEIGHT' | 'SAMPLE' | 'ACTIVATION' | 'GRADIENT' | 'OPTIMIZER_STATE' | 'METADATA' | 'GENERAL';

/**
 * The fields of the wheel's `mooncake.store.ReplicateConfig` (0.3.13.post1), by their Python
 * names. Absent fields keep the binding's defaults (replica_num 1, everything else empty/off).
 * Enum fields also take their int values. The driver rejects names the binding does not have.
 */
export interface ReplicateConfigInit {
  replica_num?: number;
  /** Deprecated in the binding (not in its repr) but still sent in PutStart. */
  preferred_segment?: string;
  preferred_segments?: string[];
  with_hard_pin?: boolean;
  soft_pin_action?: SoftPinAction | number;
  /** null: the master's default soft-pin TTL. */
  soft_pin_ttl_ms?: number | null;
  data_type?: ObjectDataType | number;
  /** The client refuses it with -600 ("not supported") without calling the master. */
  prefer_alloc_in_same_node?: boolean;
  nof_replica_num?: number;
  dfs_replica_num?: number;
  preferred_nof_segments?: string[];
  group_ids?: string[] | null;
}

/** One replica as `get_replica_desc` describes it (endpoint/address/size: memory replicas only). */
export interface ReplicaInfo {
  /** The ReplicaStatus name, e.g. `COMPLETE`. */
  status: string;
  memory: boolean;
  /** The Transfer Engine endpoint of the segment holding it. */
  endpoint?: string;
  address?: number;
  size?: number;
}

/** One reply line of the driver. `rc`: a scalar result; `rcs`: a list result. */
export type Reply = Record<string, unknown> & { rc?: number; rcs?: number[]; error?: string };

export interface StoreInit {
  /** The master's `127.0.0.1:<port>` (MooncakeMaster.address). */
  master: string;
  /** The metadata server URL (MooncakeMaster.metadataUrl). */
  metadata: string;
  /** Bytes this client mounts on the master for everybody's replicas (default 16 MiB). */
  globalSegmentSize?: number;
  /** Bytes of the client's registered staging buffer for put/get (default 16 MiB). */
  localBufferSize?: number;
  /** Default `127.0.0.1`: the client adds a free port in 12300-14300 and that is its segment name. */
  localHostname?: string;
  env?: Record<string, string>;
}

export class PythonStore {
  readonly kind = 'python' as const;
  private readonly lines: AsyncIterableIterator<string>;
  private queue: Promise<unknown> = Promise.resolve();
  private stderrTail = '';
  /** The store's segment name, `host:port` (what preferred_segments refers to). */
  hostname = '';

  private constructor(readonly child: ChildProcess) {
    killOnExit(child);
    this.lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    child.stderr!.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString()).slice(-STDERR_TAIL);
    });
  }

  /** Start a driver and `setup()` its store; throws (with the client's log) unless setup returns 0. */
  static async start(init: StoreInit): Promise<PythonStore> {
    const child = spawn(PYTHON, [DRIVER], {
      // TCP only; MC_TCP_BIND_ADDRESS keeps the Transfer Engine's listener and the address it
      // publishes on loopback (without it: the first non-loopback interface).
      env: mooncakeEnv({ MC_TCP_BIND_ADDRESS: '127.0.0.1', ...init.env }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const s = new PythonStore(child);
    try {
      const ready = await s.withTimeout(s.next(), 'start');
      if (!ready['ready']) throw new Error(`store driver did not start: ${s.stderr}`);
      const r = await s.call('setup', {
        local_hostname: init.localHostname ?? '127.0.0.1',
        metadata: init.metadata,
        master: init.master,
        global_segment_size: init.globalSegmentSize ?? 16 * MIB,
        local_buffer_size: init.localBufferSize ?? 16 * MIB,
      });
      if (r.rc !== 0) throw new Error(`MooncakeDistributedStore.setup returned ${String(r.rc)}:\n${s.stderr.slice(-4000)}`);
      s.hostname = String(r['hostname']);
      return s;
    } catch (e) {
      await stopChild(child, 'SIGKILL');
      throw e;
    }
  }

  /** The last ~20 KB of the client's log (glog, warnings and errors: GLOG_minloglevel=1). */
  get stderr(): string {
    return this.stderrTail;
  }

  get alive(): boolean {
    return isAlive(this.child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /**
   * Send one command and wait for its reply. Calls are queued, so concurrent callers are fine.
   * A Python exception in the driver rejects with its message; a driver stuck for 60 s is killed.
   */
  call(cmd: string, args: Record<string, unknown> = {}): Promise<Reply> {
    const run = async (): Promise<Reply> => {
      if (!this.alive || !this.child.stdin!.writable) throw new Error(`store driver is gone (call "${cmd}"):\n${this.stderr.slice(-2000)}`);
      this.child.stdin!.write(`${JSON.stringify({ cmd, ...args })}\n`);
      const r = await this.withTimeout(this.next(), cmd);
      if (r.error) throw new Error(`store driver, ${cmd}: ${r.error}`);
      return r;
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  // --- typed helpers: one per binding method; results exactly as Python returned them ---------

  /** `put(key, pattern(seed, length), config)` → 0 or a negative code (0 also for an existing key). */
  async put(key: string, seed: number, length: number, config?: ReplicateConfigInit): Promise<number> {
    return rc(await this.call('put', { key, seed, length, config }));
  }

  /** `upsert(key, pattern(seed, length), config)` → 0 or a negative code. */
  async upsert(key: string, seed: number, length: number, config?: ReplicateConfigInit): Promise<number> {
    return rc(await this.call('upsert', { key, seed, length, config }));
  }

  /** `get(key)`: the binding returns b"" on any error, so a missing key is `{ length: 0 }`. */
  async get(key: string): Promise<ValueDigest> {
    return (await this.call('get', { key }))['value'] as ValueDigest;
  }

  /** `put_from(key, ptr, length, config)` from the driver's registered buffer. */
  async putFrom(key: string, seed: number, length: number, config?: ReplicateConfigInit): Promise<number> {
    return rc(await this.call('put_from', { key, seed, length, config }));
  }

  /** `get_into(key, ptr, size)` into the registered buffer: rc is the byte count or a negative code. */
  async getInto(key: string, size = 4 * MIB): Promise<{ rc: number; value: ValueDigest | null }> {
    const r = await this.call('get_into', { key, size });
    return { rc: rc(r), value: r['value'] as ValueDigest | null };
  }

  /** `put_batch(keys, values, config)`: **one** int for the whole batch. */
  async putBatch(keys: string[], seeds: number[], lengths: number[], config?: ReplicateConfigInit): Promise<number> {
    return rc(await this.call('put_batch', { keys, seeds, lengths, config }));
  }

  /** `upsert_batch(keys, values, config)`: **one** int for the whole batch, as put_batch. */
  async upsertBatch(keys: string[], seeds: number[], lengths: number[], config?: ReplicateConfigInit): Promise<number> {
    return rc(await this.call('upsert_batch', { keys, seeds, lengths, config }));
  }

  /** `get_batch(keys)`: one value per key, `{ length: 0 }` for a missing one. */
  async getBatch(keys: string[]): Promise<ValueDigest[]> {
    return (await this.call('get_batch', { keys }))['values'] as ValueDigest[];
  }

  /** `batch_put_from(keys, ptrs, sizes, config)`: one code per key. */
  async batchPutFrom(keys: string[], seeds: number[], lengths: number[], config?: ReplicateConfigInit): Promise<number[]> {
    return rcs(await this.call('batch_put_from', { keys, seeds, lengths, config }));
  }

  /** `batch_get_into(keys, ptrs, sizes)`: per key the byte count or a negative code. */
  async batchGetInto(keys: string[], sizes: number[]): Promise<{ rcs: number[]; values: Array<ValueDigest | null> }> {
    const r = await this.call('batch_get_into', { keys, sizes });
    return { rcs: rcs(r), values: r['values'] as Array<ValueDigest | null> };
  }

  /** Replace the driver's zero-copy buffer with a fresh one of `size` bytes: `register_buffer`'s rc. */
  async registerBuffer(size: number): Promise<number> {
    return rc(await this.call('register_buffer', { size }));
  }

  /** `is_exist(key)` → 1, 0, or a negative code. */
  async isExist(key: string): Promise<number> {
    return rc(await this.call('is_exist', { key }));
  }

  /** `batch_is_exist(keys)` → per key 1, 0, or a negative code. */
  async batchIsExist(keys: string[]): Promise<number[]> {
    return rcs(await this.call('batch_is_exist', { keys }));
  }

  /** `get_size(key)` → the size or a negative code (-704 for a missing key). Takes a lease. */
  async getSize(key: string): Promise<number> {
    return rc(await this.call('get_size', { key }));
  }

  /** `remove(key, force)` → 0 or a negative code (-706 while a read lease is held). */
  async remove(key: string, force = false): Promise<number> {
    return rc(await this.call('remove', { key, force }));
  }

  /** `batch_remove(keys, force)` → one code per key. */
  async batchRemove(keys: string[], force = false): Promise<number[]> {
    return rcs(await this.call('batch_remove', { keys, force }));
  }

  /** `remove_by_regex(regex, force)` → the number removed or a negative code. */
  async removeByRegex(regex: string, force = false): Promise<number> {
    return rc(await this.call('remove_by_regex', { regex, force }));
  }

  /** `remove_all(force)` → the number removed. */
  async removeAll(force = false): Promise<number> {
    return rc(await this.call('remove_all', { force }));
  }

  /**
   * `get_replica_desc(key)`: the replicas the master lists (GetReplicaList, so it takes a read
   * lease), each with its status name and, for a memory replica, endpoint, address and size.
   * A missing key is an empty list.
   */
  async getReplicaDesc(key: string): Promise<ReplicaInfo[]> {
    return (await this.call('get_replica_desc', { key }))['replicas'] as ReplicaInfo[];
  }

  /** `get_hostname()`: the segment name, `host:port`. */
  async getHostname(): Promise<string> {
    return String((await this.call('get_hostname'))['hostname']);
  }

  /** `health_check()`: local state only, nothing is sent to the master. */
  async healthCheck(): Promise<number> {
    return rc(await this.call('health_check'));
  }

  /** `close()`: unmounts the segment (takes 1-2 s). The driver stays up until stop(). */
  async close(): Promise<number> {
    return rc(await this.call('close'));
  }

  /** Close the store (if still open) and end the driver; SIGKILL if it takes over 10 s. */
  async stop(): Promise<void> {
    if (!this.alive) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.stdin!.end(`${JSON.stringify({ cmd: 'exit' })}\n`);
    const t = setTimeout(() => this.child.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(t);
  }

  /** SIGKILL: the client vanishes without unmounting; the master notices after client_ttl. */
  async kill(): Promise<void> {
    await stopChild(this.child, 'SIGKILL');
  }

  private async next(): Promise<Reply> {
    const r = await this.lines.next();
    if (r.done) throw new Error(`store driver exited:\n${this.stderr.slice(-2000)}`);
    return JSON.parse(r.value) as Reply;
  }

  /** A stuck driver would leave the queue waiting forever: kill it, so this and later calls fail. */
  private withTimeout<T>(p: Promise<T>, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.child.kill('SIGKILL');
        reject(new Error(`store driver: "${what}" got no reply within ${CALL_TIMEOUT_MS} ms (driver killed):\n${this.stderr.slice(-2000)}`));
      }, CALL_TIMEOUT_MS);
    });
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }
}

function rc(r: Reply): number {
  if (typeof r.rc !== 'number') throw new Error(`store driver: no rc in ${JSON.stringify(r)}`);
  return r.rc;
}

function rcs(r: Reply): number[] {
  if (!Array.isArray(r.rcs)) throw new Error(`store driver: no rcs in ${JSON.stringify(r)}`);
  return r.rcs;
}
