/**
 * Our store client (`transfer-engine/store`) in a child process (node-store-driver.ts), driven by
 * JSON lines like PythonStore, so that tests can SIGKILL it in the middle of a call. The same
 * helpers as PythonStore's for what both do (put, get, remove, isExist, kill, stop), so a
 * workload can drive either kind of client through StoreClientProcess.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { DriverProcess } from './driver-process.js';
import type { ValueDigest } from './python-store.js';

const DRIVER = fileURLToPath(new URL('./node-store-driver.js', import.meta.url));
const MIB = 1024 * 1024;
const CALL_TIMEOUT_MS = 90_000;
/** Close the store (unmounting its segment) and end the driver; SIGKILL after this. */
const STOP_GRACE_MS = 10_000;

/** What NodeStore and PythonStore both offer (values named by seed and length, reads as digests). */
export interface StoreClientProcess {
  readonly kind: 'node' | 'python';
  readonly hostname: string;
  readonly alive: boolean;
  readonly pid: number | undefined;
  put(key: string, seed: number, length: number, config?: { replica_num?: number; preferred_segments?: string[] }): Promise<number>;
  get(key: string): Promise<ValueDigest>;
  remove(key: string, force?: boolean): Promise<number>;
  isExist(key: string): Promise<number>;
  kill(): Promise<void>;
  stop(): Promise<void>;
}

export interface NodeStoreInit {
  master: string;
  metadata: string;
  /** Bytes mounted for everybody's replicas (default 16 MiB; 0: none, a pure client). */
  globalSegmentSize?: number;
  localBufferSize?: number;
  env?: Record<string, string>;
}

/** A partial put's replicas, as put_partial reports them. */
export interface PartialPut {
  rc: number;
  written?: number;
  replicas?: Array<{ endpoint: string; address: number; size: number }>;
}

export class NodeStore extends DriverProcess implements StoreClientProcess {
  readonly kind = 'node' as const;

  private constructor(child: ChildProcess) {
    super(child, 'node store driver', CALL_TIMEOUT_MS, STOP_GRACE_MS);
  }

  static async start(init: NodeStoreInit): Promise<NodeStore> {
    const child = spawn(process.execPath, [DRIVER], { env: { ...process.env, ...init.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const s = new NodeStore(child);
    await s.open(
      {
        master: init.master,
        metadata: init.metadata,
        global_segment_size: init.globalSegmentSize ?? 16 * MIB,
        local_buffer_size: init.localBufferSize ?? 16 * MIB,
      },
      (r) => `setup returned ${String(r.rc)}: ${String(r['message'])}`,
    );
    return s;
  }

  async put(key: string, seed: number, length: number, config?: { replica_num?: number; preferred_segments?: string[] }): Promise<number> {
    return num((await this.call('put', { key, seed, length, config })).rc);
  }

  /** The value read ({length: 0} on failure), as PythonStore's get. */
  async get(key: string): Promise<ValueDigest> {
    return (await this.getWithCode(key)).value;
  }

  /** The value read and, when it failed, the code getLastError() gave (0 on success). */
  async getWithCode(key: string): Promise<{ value: ValueDigest; rc: number; message?: string }> {
    const r = await this.call('get', { key });
    return { value: r['value'] as ValueDigest, rc: num(r.rc), ...(r['message'] ? { message: String(r['message']) } : {}) };
  }

  async remove(key: string, force = false): Promise<number> {
    return num((await this.call('remove', { key, force })).rc);
  }

  async isExist(key: string): Promise<number> {
    return num((await this.call('is_exist', { key })).rc);
  }

  /** A PutStart and the first `fraction` of the value written into every replica; no PutEnd. */
  async putPartial(key: string, seed: number, length: number, fraction: number, config?: { replica_num?: number; preferred_segments?: string[] }): Promise<PartialPut> {
    return (await this.call('put_partial', { key, seed, length, fraction, config })) as unknown as PartialPut;
  }
}

function num(v: unknown): number {
  if (typeof v !== 'number') throw new Error(`node store driver: no rc (${JSON.stringify(v)})`);
  return v;
}
