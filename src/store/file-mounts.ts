/**
 * Files this client provides as segments (Python's mount_file_segment,
 * Mooncake PR #793): each mapped (file-segment.ts), registered with the
 * engine and mounted to the master, and kept here by the path given until it
 * is unmounted or the store is torn down (Lifecycle's teardown, through
 * HeldFiles).
 */
import type { TransferEngine as CoreEngine } from '../engine/engine.js';
import { ErrorCode, TransferEngineError } from '../errors.js';
import type { CallRecorder } from './calls.js';
import { MappedFile } from './file-segment.js';
import { overRpc, type HeldFiles, type Lifecycle } from './lifecycle.js';
import { StoreErrorCode, type Segment } from './master-protocol.js';
import { StoreError } from './store-errors.js';

export class FileMounts implements HeldFiles {
  /** Files mounted as segments, by the path given: the mapping, its address, its segment. */
  private readonly files = new Map<string, { file: MappedFile; base: number; segment: Segment }>();

  constructor(
    private readonly life: Lifecycle,
    private readonly calls: CallRecorder,
  ) {}

  /** mountFileSegment: 0, or a negative code. */
  async mount(path: string): Promise<number> {
    let mapped: MappedFile | null = null;
    let base = 0;
    try {
      const { engine, membership } = this.life.ready();
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
      const segment: Segment = { id: mapped.id, name: this.life.hostname, base: BigInt(base), size: BigInt(mapped.size), teEndpoint: engine.segmentName, protocol: 'tcp', hostId: '' };
      await overRpc(this.life.rpc!, 'MountSegment', () => membership.mount(segment));
      this.files.set(path, { file: mapped, base, segment });
      return StoreErrorCode.OK;
    } catch (e) {
      if (base) this.life.engine?.unregisterLocalMemory(base);
      mapped?.close();
      return this.calls.fail('mountFileSegment', e);
    }
  }

  /** unmountFileSegment: 0, or a negative code. */
  async unmount(path: string): Promise<number> {
    try {
      const { engine, membership } = this.life.ready();
      const f = this.files.get(path);
      if (!f) throw new StoreError(StoreErrorCode.SEGMENT_NOT_FOUND, `file ${path} is not mounted`);
      this.files.delete(path);
      try {
        await overRpc(this.life.rpc!, 'UnmountSegment', () => membership.unmount(f.segment.id));
      } finally {
        engine.unregisterLocalMemory(f.base);
        f.file.close();
      }
      return StoreErrorCode.OK;
    } catch (e) {
      return this.calls.fail('unmountFileSegment', e);
    }
  }

  /** At teardown, the engine stopped: unregistered (from an engine not ours), flushed, unmapped, unlocked. */
  release(engine: CoreEngine | null, ownsEngine: boolean): void {
    for (const f of this.files.values()) {
      try {
        if (!ownsEngine) engine?.unregisterLocalMemory(f.base);
      } catch {
        /* the engine was closed by its owner meanwhile */
      }
      f.file.close();
    }
    this.files.clear();
  }
}
