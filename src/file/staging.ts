/**
 * Reusable staging buffers for file data that has no registered memory to
 * live in: a peer's WRITE body before it reaches the file, a READ's data
 * before it goes on the socket, bounce buffers for direct I/O. Sizes are
 * rounded up to a power of two and freed buffers are kept (up to a byte cap),
 * so the steady state allocates nothing; aligned ones come from the native
 * addon (posix_memalign), as O_DIRECT needs.
 */
import { allocateAligned } from '../shm/region.js';
import { DIRECT_IO_ALIGN } from './registry.js';

export interface Staging {
  /** The requested bytes. */
  readonly view: Uint8Array;
  /** The whole pooled buffer. */
  readonly backing: Uint8Array;
  readonly aligned: boolean;
}

const MIN_CLASS = 64 * 1024;
/**
 * Aligned buffers are cut from arenas of this many bytes: neighbouring pages of
 * one allocation are more often physically contiguous, so a direct read needs
 * fewer scatter-gather segments (a virtio disk takes 254: a 1 MiB read into
 * scattered 4 KiB pages is split in two). Measured: BENCHMARKS.md, "File
 * segments", what each change to the remote file path gained.
 */
const ARENA_BYTES = 16 * 1024 * 1024;

function sizeClass(n: number): number {
  let c = MIN_CLASS;
  while (c < n) c *= 2;
  return c;
}

export class StagingPool {
  private readonly free = new Map<string, Uint8Array[]>();
  private pooled = 0;

  constructor(private readonly maxPooledBytes = 64 * 1024 * 1024) {}

  /**
   * A buffer of at least `size` bytes. Plain ones are not zeroed: callers fill
   * every byte (a complete read or a complete body) before anything is sent.
   */
  take(size: number, aligned: boolean): Staging {
    const cls = sizeClass(size);
    const list = this.free.get(`${aligned ? 'a' : 'p'}${cls}`);
    let backing = list?.pop();
    if (backing) this.pooled -= backing.length;
    else if (aligned) backing = this.carve(cls);
    else backing = Buffer.allocUnsafeSlow(cls);
    return { view: backing.subarray(0, size), backing, aligned };
  }

  /** One aligned arena cut into `cls`-byte pieces: one returned, the rest pooled. */
  private carve(cls: number): Uint8Array {
    const count = Math.max(1, Math.floor(ARENA_BYTES / cls));
    const arena = allocateAligned(cls * count, DIRECT_IO_ALIGN);
    for (let i = 1; i < count; i++) this.give({ view: arena, backing: arena.subarray(i * cls, (i + 1) * cls), aligned: true });
    return arena.subarray(0, cls);
  }

  give(s: Staging): void {
    if (this.pooled + s.backing.length > this.maxPooledBytes) return; // the GC frees it
    const key = `${s.aligned ? 'a' : 'p'}${s.backing.length}`;
    let list = this.free.get(key);
    if (!list) {
      list = [];
      this.free.set(key, list);
    }
    list.push(s.backing);
    this.pooled += s.backing.length;
  }

  clear(): void {
    this.free.clear();
    this.pooled = 0;
  }
}
