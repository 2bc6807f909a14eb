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
import { PYTHON, ROOT, mooncakeEnv } from '../interop/mooncake.js';
import { DriverProcess, type Reply } from './driver-process.js';

const DRIVER = path.join(ROOT, 'test', 'store-harness', 'store_driver.py');
const MIB = 1024 * 1024;
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

export type { Reply } from './driver-process.js';

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

export class PythonStore extends DriverProcess {
  readonly kind = 'python' as const;

  private constructor(child: ChildProcess) {
    super(child, 'store driver', CALL_TIMEOUT_MS, STOP_GRACE_MS);
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
    await s.open(
      {
        local_hostname: init.localHostname ?? '127.0.0.1',
        metadata: init.metadata,
        master: init.master,
        global_segment_size: init.globalSegmentSize ?? 16 * MIB,
        local_buffer_size: init.localBufferSize ?? 16 * MIB,
      },
      (r) => `MooncakeDistributedStore.setup returned ${String(r.rc)}:`,
    );
    return s;
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
}

function rc(r: Reply): number {
  if (typeof r.rc !== 'number') throw new Error(`store driver: no rc in ${JSON.stringify(r)}`);
  return r.rc;
}

function rcs(r: Reply): number[] {
  if (!Array.isArray(r.rcs)) throw new Error(`store driver: no rcs in ${JSON.stringify(r)}`);
  return r.rcs;
}
