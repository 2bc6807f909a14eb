/**
 * Registered local files (registerLocalFile of Mooncake's generic NVMe-oF
 * transport, PR #793): each gets a u32 id
 * that peers put in their requests. Peers never send a path; the path is only
 * published for information. Every request is checked against [0, size), so
 * no byte outside that range is ever read or written for a peer.
 *
 * The file is opened once, at registration, and checked: it must be a
 * regular file (or a block device, with an explicit opt-in: writing to one
 * destroys whatever is on it) at least `size` bytes long. Ids are never
 * reused, so a stale id held by a peer can never reach a newer file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';
import { nativeAvailable } from '../native/addon.js';
import { toRegionAccess, type RegionAccess } from '../memory.js';

/** Offsets and lengths of direct I/O must be multiples of this (covers 512 and 4096-byte sectors). */
export const DIRECT_IO_ALIGN = 4096;

export interface RegisterFileOptions {
  /** Open with O_DIRECT: requests must then be aligned to 4096 bytes. Default: MC_NVMEOF_GENERIC_DIRECT_IO. */
  directIO?: boolean;
  /** Allow a block device. Writing to it destroys the data on it, so it is refused unless this is true. */
  allowBlockDevice?: boolean;
  /** A regular file shorter than `size` is extended (sparse) to `size` rather than refused. */
  grow?: boolean;
  /**
   * What peers may do: 'readwrite' (default), 'read', or 'none' (not published, every peer request
   * refused); a boolean as for memory (false: 'none'). A 'read' file is opened read-only, so it may be
   * a file this process can only read, and nobody, this engine included, writes it through the engine.
   */
  access?: RegionAccess | boolean;
}

export class RegisteredFile {
  /** Transfers (local or from peers) using the file; unregistering is refused while non-zero. */
  pins = 0;
  /** Operations handed to the OS; the descriptor is closed only once this is 0 after release. */
  inflight = 0;
  released = false;
  /** What peers may do (registerLocalFile's `access`; a same-host peer's file: the descriptor's). */
  access: RegionAccess = 'readwrite';
  /** Why operations not yet started when the file was released fail (default: CLOSED). */
  private releaseReason: TransferEngineError | null = null;
  private fdClosed = false;

  constructor(
    readonly id: number,
    /** The absolute path it was registered under. */
    readonly path: string,
    /** Symlinks and `..` resolved: what is actually opened. */
    readonly realPath: string,
    readonly size: number,
    /** 0, or DIRECT_IO_ALIGN with direct I/O. */
    readonly align: number,
    readonly directIO: boolean,
    readonly blockDevice: boolean,
    readonly fd: number,
    /** stat's st_dev and st_ino, exact (u64). */
    readonly dev: bigint,
    readonly ino: bigint,
  ) {}

  /**
   * Whether an operation may start now (the I/O pool asks before each one).
   * A peer's file (src/transport/file-same-host.ts) also checks that its
   * owner still has it registered, and releases itself when not.
   */
  usable(): boolean {
    return !this.released;
  }

  /** The error of an operation that found the file released. */
  releasedError(): TransferEngineError {
    return this.releaseReason ?? teError(ErrorCode.CLOSED, `file "${this.path}" (id ${this.id}) was released before the operation started`);
  }

  /** Stop using the descriptor; it is closed now, or when the last operation handed to the OS returns. */
  release(reason?: TransferEngineError): void {
    if (!this.released && reason) this.releaseReason = reason;
    this.released = true;
    this.maybeClose();
  }

  /** Called by the I/O pool after each operation returns. */
  maybeClose(): void {
    // Never close with an operation in the OS: its descriptor number could be reused by another open.
    if (!this.released || this.inflight > 0 || this.fdClosed) return;
    this.fdClosed = true;
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed: nothing to release */
    }
  }
}

function osError(e: unknown, what: string): TransferEngineError {
  const code = (e as NodeJS.ErrnoException)?.code ?? '';
  const detail = `${what}: ${(e as Error)?.message ?? String(e)}`;
  switch (code) {
    case 'ENOENT':
      return teError(ErrorCode.INVALID_ARGUMENT, `${what}: no such file`, e);
    case 'ENOTDIR':
    case 'EACCES':
    case 'EPERM':
    case 'ELOOP':
    case 'ENAMETOOLONG':
    case 'EISDIR':
    case 'EROFS':
    case 'ETXTBSY':
      return teError(ErrorCode.INVALID_ARGUMENT, detail, e);
    default:
      return teError(ErrorCode.IO_ERROR, detail, e);
  }
}

/** The size of a block device, from sysfs (fstat reports 0 for devices). */
function blockDeviceSize(rdev: number): number {
  // glibc's major()/minor() encoding of dev_t.
  const major = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
  const minor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
  const sectors = Number(fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim());
  if (!Number.isSafeInteger(sectors)) throw new Error(`cannot read the size of block device ${major}:${minor}`);
  return sectors * 512; // sysfs counts 512-byte sectors whatever the device's block size
}

/**
 * Bytes a path can hold today: a regular file's size, a block device's
 * capacity. For tools (the bench registers whole files); registration checks
 * this itself.
 */
export function fileCapacity(filePath: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(filePath);
  } catch (e) {
    throw osError(e, `cannot stat "${filePath}"`);
  }
  if (st.isBlockDevice()) return blockDeviceSize(st.rdev);
  if (!st.isFile()) throw teError(ErrorCode.INVALID_ARGUMENT, `"${filePath}" is not a regular file or a block device`);
  return st.size;
}

export class FileRegistry {
  private nextId = 1;
  private readonly byIdMap = new Map<number, RegisteredFile>();
  private closed = false;
  /**
   * Every (fd, dev, ino) a registration has used. Same-host peers know a file
   * by the owner's descriptor number and inode; never handing out the same
   * triple twice means a peer's stale descriptor can never match a later
   * registration of the same file (which may have another size).
   */
  private readonly usedHandles = new Set<string>();

  constructor(private readonly defaultDirectIO: boolean) {}

  /** Open, check and register a file. Throws INVALID_ARGUMENT / NOT_SUPPORTED / IO_ERROR with the reason. */
  register(filePath: string, size: number, options: RegisterFileOptions = {}): RegisteredFile {
    if (this.closed) throw teError(ErrorCode.CLOSED, 'the engine is closed');
    if (typeof filePath !== 'string' || filePath.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'file path must be a non-empty string');
    if (filePath.includes('\0')) throw teError(ErrorCode.INVALID_ARGUMENT, 'file path contains a NUL byte');
    if (!Number.isSafeInteger(size) || size <= 0) throw teError(ErrorCode.INVALID_ARGUMENT, `file size ${String(size)} must be a positive integer`);
    if (typeof options !== 'object' || options === null) throw teError(ErrorCode.INVALID_ARGUMENT, 'options must be an object');
    for (const k of ['directIO', 'allowBlockDevice', 'grow'] as const) {
      if (options[k] !== undefined && typeof options[k] !== 'boolean') throw teError(ErrorCode.INVALID_ARGUMENT, `options.${k} must be a boolean`);
    }
    const directIO = options.directIO ?? this.defaultDirectIO;
    const access = toRegionAccess(options.access ?? 'readwrite');
    const abs = path.resolve(filePath);
    // stat before open: opening a FIFO would block, and a device must not be opened for writing without the opt-in.
    let st: fs.BigIntStats;
    try {
      st = fs.statSync(abs, { bigint: true });
    } catch (e) {
      throw osError(e, `cannot register "${abs}"`);
    }
    const blockDevice = st.isBlockDevice();
    if (blockDevice && options.allowBlockDevice !== true) {
      throw teError(
        ErrorCode.INVALID_ARGUMENT,
        `"${abs}" is a block device: writing to it destroys the data on it; pass { allowBlockDevice: true } if that is intended`,
      );
    }
    if (!blockDevice && !st.isFile()) throw teError(ErrorCode.INVALID_ARGUMENT, `"${abs}" is not a regular file or a block device`);
    if (blockDevice && options.grow === true) throw teError(ErrorCode.INVALID_ARGUMENT, `"${abs}" is a block device, which cannot grow`);
    if (access === 'read' && options.grow === true) throw teError(ErrorCode.INVALID_ARGUMENT, `"${abs}" is registered read-only, so it cannot grow`);
    if (directIO) {
      if (size % DIRECT_IO_ALIGN !== 0) {
        throw teError(ErrorCode.INVALID_ARGUMENT, `with direct I/O the size must be a multiple of ${DIRECT_IO_ALIGN}; ${size} is not`);
      }
      if (!nativeAvailable()) {
        throw teError(ErrorCode.NOT_SUPPORTED, 'direct I/O needs aligned buffers from the native addon (build/Release/te_native.node), which is not built');
      }
    }
    for (const f of this.byIdMap.values()) {
      if (f.dev === st.dev && f.ino === st.ino) throw teError(ErrorCode.INVALID_ARGUMENT, `"${abs}" is already registered (file id ${f.id}, as "${f.path}")`);
    }
    const flags = (access === 'read' ? fs.constants.O_RDONLY : fs.constants.O_RDWR) | (directIO ? fs.constants.O_DIRECT : 0);
    let fd: number;
    // A descriptor number this inode had before: open again (holding the old number) to get a fresh one.
    const spare: number[] = [];
    try {
      fd = fs.openSync(abs, flags);
      while (this.usedHandles.has(`${fd}:${st.dev}:${st.ino}`) && spare.length < 64) {
        spare.push(fd);
        fd = fs.openSync(abs, flags);
      }
    } catch (e) {
      for (const s of spare) fs.closeSync(s);
      if ((e as NodeJS.ErrnoException).code === 'EINVAL' && directIO) {
        throw teError(ErrorCode.NOT_SUPPORTED, `the file system of "${abs}" does not support direct I/O (O_DIRECT)`, e);
      }
      throw osError(e, `cannot open "${abs}" for ${access === 'read' ? 'reading' : 'reading and writing'}`);
    }
    for (const s of spare) fs.closeSync(s);
    try {
      const fst = fs.fstatSync(fd, { bigint: true });
      // The path may have been swapped between stat and open.
      if (fst.dev !== st.dev || fst.ino !== st.ino) throw teError(ErrorCode.INVALID_ARGUMENT, `"${abs}" changed while it was being registered`);
      const actual = blockDevice ? blockDeviceSize(Number(fst.rdev)) : Number(fst.size);
      if (size > actual) {
        if (options.grow !== true) {
          throw teError(
            ErrorCode.INVALID_ARGUMENT,
            `"${abs}" holds ${actual} bytes, fewer than the size ${size}${blockDevice ? '' : ' (pass { grow: true } to extend it)'}`,
          );
        }
        fs.ftruncateSync(fd, size); // only ever extends: size > actual here
      }
      const realPath = fs.realpathSync(abs);
      const file = new RegisteredFile(this.nextId++, abs, realPath, size, directIO ? DIRECT_IO_ALIGN : 0, directIO, blockDevice, fd, fst.dev, fst.ino);
      file.access = access;
      this.byIdMap.set(file.id, file);
      this.usedHandles.add(`${fd}:${fst.dev}:${fst.ino}`);
      return file;
    } catch (e) {
      fs.closeSync(fd);
      if (e instanceof TransferEngineError) throw e;
      throw osError(e, `cannot register "${abs}"`);
    }
  }

  /** Unregister by the path used at registration (or another path to the same file). Refused (REGION_BUSY) while in use. */
  unregister(filePath: string): RegisteredFile {
    if (typeof filePath !== 'string' || filePath.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'file path must be a non-empty string');
    const file = this.find(filePath);
    if (!file) throw teError(ErrorCode.INVALID_ARGUMENT, `"${filePath}" is not a registered file`);
    if (file.pins > 0) {
      throw teError(ErrorCode.REGION_BUSY, `file "${file.path}" (id ${file.id}) has ${file.pins} transfer(s) in flight; unregister it after they finish`);
    }
    this.byIdMap.delete(file.id);
    file.release();
    return file;
  }

  private find(filePath: string): RegisteredFile | undefined {
    const abs = path.resolve(filePath);
    for (const f of this.byIdMap.values()) if (f.path === abs) return f;
    let st: fs.BigIntStats;
    try {
      st = fs.statSync(abs, { bigint: true });
    } catch {
      return undefined;
    }
    for (const f of this.byIdMap.values()) if (f.dev === st.dev && f.ino === st.ino) return f;
    return undefined;
  }

  byId(id: number): RegisteredFile | undefined {
    return this.byIdMap.get(id);
  }

  list(): RegisteredFile[] {
    return [...this.byIdMap.values()];
  }

  get size(): number {
    return this.byIdMap.size;
  }

  /** Engine close: every file is released (descriptors close once their last operation returns). */
  close(): void {
    this.closed = true;
    for (const f of this.byIdMap.values()) f.release();
    this.byIdMap.clear();
  }
}
