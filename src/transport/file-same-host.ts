/**
 * Same-host file access: an engine on the same host as a file's owner (same
 * machine id, decided as for shared memory) reads and writes the owner's
 * registered file itself, on its own worker pool, instead of sending file
 * requests over TCP. Over loopback TCP every byte is copied three times
 * (file -> owner's staging -> socket -> our memory); this way once, as for a
 * local file.
 *
 * The file is not opened by its published path but as the owner's own open
 * descriptor, /proc/<pid>/fd/<fd> (`owner` in file_buffers), and accepted only if
 *  - it is the inode the descriptor names (dev, ino), a regular file or a block device;
 *  - the owner holds it open for reading and writing (/proc/<pid>/fdinfo/<fd>),
 *    so a peer can never make us write a file it could not write itself (a
 *    path alone could name any file we may write: /etc/passwd when we are root);
 *    a file published read-only (`access: 'read'`) is opened read-only, is never
 *    written, and needs the owner to hold it open for reading;
 *  - we may open it: /proc/<pid>/fd needs the owner's uid (or root), and the
 *    open checks the file's permissions against ours.
 * Anything else (another host's or namespace's pid, a closed descriptor, a
 * mismatch, EACCES) means TCP, silently; the engine counts it. The path being
 * renamed or replaced does not matter: like the owner, we use the inode it
 * registered.
 *
 * Bounds and alignment are the owner's, from the descriptor, checked by the
 * engine before anything starts (the same checks and errors as the TCP path);
 * the file is opened with O_DIRECT when the owner's is (align > 0).
 *
 * Unregistering: the owner cannot see our operations, so unlike TCP it cannot
 * refuse to unregister while we use the file. We notice instead: before each
 * submission (once per event-loop turn) and before each operation starts (at
 * most RECHECK_MS apart) we check that the owner's descriptor still is this
 * inode; once it is not, queued operations fail with ADDRESS_REJECTED (as the
 * owner would refuse them) and later requests go over TCP, where the owner
 * refuses the stale id. Operations already handed to the OS complete. The
 * owner never reuses a descriptor number for the same inode
 * (src/file/registry.ts), so a re-registration (a new id, perhaps a smaller
 * size) is never mistaken for the old one.
 */
import fs from 'node:fs';
import type { FileBufferDesc, FileOwnerHandle } from '../codec/file-buffers.js';
import { teError, ErrorCode } from '../errors.js';
import type { LocalFiles } from '../file/local-files.js';
import { RegisteredFile } from '../file/registry.js';
import { nativeAvailable } from '../native/addon.js';
import { fileTransfer } from './file.js';
import type { Job, TaskSink, Transport, TransportHost } from './transport.js';

/** Longest an operation may start without re-checking that the owner still holds the file. */
export const RECHECK_MS = 1;
/** Peer files kept open (least recently used ones without transfers in flight are closed). */
const MAX_OPEN = 256;
/** How long a refused file stays refused before the open is tried again (a transient EMFILE, say). */
const RETRY_REFUSED_MS = 1000;

/** Linux's access-mode bits of open flags (node's fs.constants lacks it). */
const O_ACCMODE = 3;

const procFd = (h: FileOwnerHandle): string => `/proc/${h.pid}/fd/${h.fd}`;

/** Whether the owner's descriptor (`link`: procFd(h)) still refers to this inode. */
function ownerHolds(link: string, h: FileOwnerHandle): boolean {
  try {
    const st = fs.statSync(link, { bigint: true, throwIfNoEntry: false });
    return st !== undefined && st.dev === h.dev && st.ino === h.ino;
  } catch {
    return false;
  }
}

/** A peer's registered file, opened here through its owner's descriptor. */
export class PeerFile extends RegisteredFile {
  private checkedAt = performance.now();

  constructor(
    readonly segment: string,
    desc: FileBufferDesc,
    readonly handle: FileOwnerHandle,
    fd: number,
    blockDevice: boolean,
  ) {
    super(desc.id, desc.path, procFd(handle), desc.size, desc.align, desc.align > 0, blockDevice, fd, handle.dev, handle.ino);
    if (desc.access === 'read') this.access = 'read';
  }

  /** Check now that the owner still holds the file; release it for good when not. */
  check(): boolean {
    this.checkedAt = performance.now();
    if (this.released) return false;
    if (ownerHolds(this.realPath, this.handle)) return true;
    this.release(
      teError(
        ErrorCode.ADDRESS_REJECTED,
        `file id ${this.id} of segment "${this.segment}" was unregistered (its owner, pid ${this.handle.pid}, no longer holds it open)`,
      ),
    );
    return false;
  }

  override usable(): boolean {
    if (this.released) return false;
    return performance.now() - this.checkedAt < RECHECK_MS || this.check();
  }
}

/** Open the owner's file, or say why not. */
function openOwned(segment: string, desc: FileBufferDesc, h: FileOwnerHandle): PeerFile | string {
  const directIO = desc.align > 0;
  if (directIO && !nativeAvailable()) return 'direct I/O needs the native addon';
  const p = procFd(h);
  let st: fs.BigIntStats | undefined;
  try {
    // stat first: opening a FIFO would block, and only files and block devices are served.
    st = fs.statSync(p, { bigint: true, throwIfNoEntry: false });
  } catch (e) {
    return `cannot stat ${p}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
  if (st === undefined) return `${p} does not exist (another host, pid namespace, or the owner closed it)`;
  if (!st.isFile() && !st.isBlockDevice()) return `${p} is not a regular file or a block device`;
  if (st.dev !== h.dev || st.ino !== h.ino) return `${p} is another file than the descriptor names`;
  // A read-only file (the engine never plans a WRITE to one) is opened read-only: we may then read a file
  // that the owner, and we, may only read.
  const readOnly = desc.access === 'read';
  let fd: number;
  try {
    // O_RDWR does not block even if the number was swapped to a FIFO since the stat (Linux), nor does
    // O_RDONLY|O_NONBLOCK; fstat below catches a swap. (O_NONBLOCK has no effect on regular files.)
    const { O_RDWR, O_RDONLY, O_NONBLOCK, O_NOCTTY, O_DIRECT } = fs.constants;
    fd = fs.openSync(p, (readOnly ? O_RDONLY | O_NONBLOCK : O_RDWR) | O_NOCTTY | (directIO ? O_DIRECT : 0));
  } catch (e) {
    return `cannot open ${p}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`;
  }
  try {
    const fst = fs.fstatSync(fd, { bigint: true });
    if (fst.dev !== h.dev || fst.ino !== h.ino) throw new Error(`${p} changed while it was opened`);
    // Checked while we hold the file: the owner has this inode open for writing (for reading, if read-only),
    // so we touch nothing it could not.
    const info = fs.readFileSync(`/proc/${h.pid}/fdinfo/${h.fd}`, 'utf8');
    const flags = /^flags:\s*([0-7]+)\s*$/m.exec(info);
    const mode = flags ? parseInt(flags[1]!, 8) & O_ACCMODE : -1;
    if (readOnly ? mode !== fs.constants.O_RDONLY && mode !== fs.constants.O_RDWR : mode !== fs.constants.O_RDWR) {
      throw new Error(`the owner does not hold ${p} open for ${readOnly ? 'reading' : 'reading and writing'}`);
    }
    const ino = /^ino:\s*(\d+)\s*$/m.exec(info); // Linux >= 5.14
    if (ino && BigInt(ino[1]!) !== h.ino) throw new Error(`${p} changed while it was opened`);
    return new PeerFile(segment, desc, h, fd, fst.isBlockDevice());
  } catch (e) {
    fs.closeSync(fd);
    return (e as Error).message;
  }
}

interface Entry {
  key: string;
  /** The descriptor's identity of the file: a different one is a different registration. */
  identity: string;
  file: PeerFile | null;
  /** file null: when to try opening again. */
  retryAt: number;
  /** The event-loop turn of the last check. */
  turn: number;
  /** file null: why it was refused (for tests and debugging). */
  reason: string;
  /** Still in the cache (not replaced by another registration, not evicted). */
  live: boolean;
}

export class SameHostFiles implements Transport {
  readonly name = 'file-same-host';
  /** `${segment}\0${file id}` -> entry; Map order is recency (oldest first). */
  private readonly cache = new Map<string, Entry>();
  /** The entry of each descriptor entry object seen: requests skip the key and identity strings. */
  private readonly byDesc = new WeakMap<FileBufferDesc, Entry>();
  private turn = 0;
  private turnScheduled = false;
  private closed = false;
  /** The file canServe resolved, for the submit of the same job that follows it. */
  private resolvedJob: Job | null = null;
  private resolvedFile: PeerFile | null = null;
  /** Requests served here / to a same-host peer's file that went over TCP instead (refused, see the module comment). */
  private served = 0;
  private fallbacks = 0;

  /**
   * @param machineId this engine's machine id (the shm transport's); undefined: never same host.
   * @param files the I/O pool that carries the operations; null: files are only resolved (unit tests).
   */
  constructor(
    private readonly machineId: string | undefined,
    private readonly files: LocalFiles | null = null,
  ) {}

  /** A same-host peer's file that opens here; a refused one goes to TCP (counted as a fallback). */
  canServe(job: Job): boolean {
    const to = job.to;
    if (to.kind !== 'peer-file' || this.files === null || !this.sameHost(to.peer.machineId)) return false;
    const file = this.resolve(to.peer.name, to.file);
    if (!file) {
      this.fallbacks++;
      return false;
    }
    this.resolvedJob = job;
    this.resolvedFile = file;
    return true;
  }

  submit(task: TaskSink, job: Job, host: TransportHost): void {
    const to = job.to;
    const file = job === this.resolvedJob ? this.resolvedFile : to.kind === 'peer-file' ? this.resolve(to.peer.name, to.file) : null;
    this.resolvedJob = this.resolvedFile = null;
    if (!file || !this.files) {
      host.reroute(this, task, job); // canServe said no
      return;
    }
    this.served++;
    fileTransfer(this.files, task, job, file);
  }

  stats(): { served: number; fallbacks: number; open: number } {
    return { served: this.served, fallbacks: this.fallbacks, open: this.openCount };
  }

  /** Whether a peer publishing this machine id is on this host (the shm transport's rule). */
  sameHost(peerMachineId: string | undefined): boolean {
    return !this.closed && this.machineId !== undefined && peerMachineId === this.machineId;
  }

  /**
   * The file to use for a request to a same-host peer's file `desc`, or null
   * when the request must go over TCP (see the module comment). Never throws.
   */
  resolve(segment: string, desc: FileBufferDesc): PeerFile | null {
    if (this.closed) return null;
    const hit = this.byDesc.get(desc);
    if (hit && hit.live && (hit.file !== null || performance.now() < hit.retryAt)) {
      // The hot path, once per request: one check of the owner per turn.
      if (hit.file && hit.turn !== this.currentTurn()) {
        hit.turn = this.turn;
        hit.file.check();
        this.cache.delete(hit.key); // most recently used last
        this.cache.set(hit.key, hit);
      }
      return hit.file && !hit.file.released ? hit.file : null;
    }
    const h = desc.owner;
    if (!h) return null;
    const key = `${segment}\0${desc.id}`;
    const identity = `${h.pid}:${h.fd}:${h.dev}:${h.ino}:${desc.size}:${desc.align}:${desc.access ?? 'readwrite'}`;
    let e = this.cache.get(key);
    if (e) this.cache.delete(key); // re-inserted below: most recent last
    if (e && e.identity !== identity) {
      // Another registration under this id's name: the old one is gone.
      e.live = false;
      e.file?.release(teError(ErrorCode.ADDRESS_REJECTED, `file id ${desc.id} of segment "${segment}" was re-registered`));
      e = undefined;
    }
    const now = performance.now();
    if (!e || (e.file === null && now >= e.retryAt)) {
      const opened = openOwned(segment, desc, h);
      const turn = this.currentTurn();
      e = typeof opened === 'string'
        ? { key, identity, file: null, retryAt: now + RETRY_REFUSED_MS, turn, reason: opened, live: true }
        : { key, identity, file: opened, retryAt: 0, turn, reason: '', live: true };
    } else if (e.file && e.turn !== this.currentTurn()) {
      e.turn = this.turn;
      e.file.check();
    }
    this.cache.set(key, e);
    this.byDesc.set(desc, e);
    if (this.cache.size > MAX_OPEN) this.evict();
    return e.file && !e.file.released ? e.file : null;
  }

  /** Why the last resolve() of this file went to TCP ('' if it did not), for tests. */
  refusal(segment: string, fileId: number): string {
    const e = this.cache.get(`${segment}\0${fileId}`);
    if (!e) return '';
    return e.file ? (e.file.released ? 'released' : '') : e.reason;
  }

  /** Files open here now. */
  get openCount(): number {
    let n = 0;
    for (const e of this.cache.values()) if (e.file && !e.file.released) n++;
    return n;
  }

  close(): void {
    this.closed = true;
    this.resolvedJob = this.resolvedFile = null;
    for (const e of this.cache.values()) {
      e.live = false;
      e.file?.release();
    }
    this.cache.clear();
  }

  /** Drop the least recently used entries without transfers in flight, down to MAX_OPEN. */
  private evict(): void {
    for (const [key, e] of this.cache) {
      if (this.cache.size <= MAX_OPEN) return;
      if (e.file && e.file.pins > 0) continue;
      e.live = false;
      e.file?.release();
      this.cache.delete(key);
    }
  }

  /** A number that changes between event-loop turns: one check per file per turn, however many requests. */
  private currentTurn(): number {
    if (!this.turnScheduled) {
      this.turnScheduled = true;
      setImmediate(() => {
        this.turn++;
        this.turnScheduled = false;
      });
    }
    return this.turn;
  }
}
