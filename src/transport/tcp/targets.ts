/**
 * What a request to the data server reads or writes: one lookup for memory
 * and file requests alike, so that a server connection (connection.ts) asks
 * one question and gets a range of a region, a file, or a refusal with the
 * status frame to answer. The registries behind it are injected (the engine's
 * MemoryRegistry and FileRegistry; tests pass their own).
 *
 * A refusal never tells the peer which check failed: every refused memory
 * request gets the same v2 rejection frame (v1 has none: the server just
 * closes), and every refused file request the same file rejection frame
 * (src/codec/wire.ts). The reason is kept for tests and diagnostics.
 */
import {
  decodeFileHeader,
  isFileOpcode,
  STATUS_REJECTED_FRAME,
  STATUS_FILE_REJECTED_FRAME,
  type FileRequestHeader,
  type RequestHeader,
} from '../../codec/wire.js';
import { TransferEngineError } from '../../errors.js';
import type { FileRegistry, RegisteredFile } from '../../file/registry.js';
import type { MemoryRegistry, ResolvedRange } from '../../memory.js';

/** Largest file request served; the engine cuts file transfers below it. */
export const MAX_FILE_REQUEST = 64 * 1024 * 1024;

/** A memory request's range: its region and the range's offset in it (the registry's own answer, not a copy). */
export type MemoryTarget = ResolvedRange;

/** A file request that may be served: its decoded header and the file. */
export interface FileTarget {
  readonly region: null;
  readonly file: RegisteredFile;
  readonly header: FileRequestHeader;
}

/** A request the server refuses: it sends `frame` (null: none, for v1) after the responses before it, then closes. */
export interface Refusal {
  readonly region: null;
  readonly file: null;
  readonly frame: Buffer | null;
  /** Why; never sent. */
  readonly why: string;
}

export type Target = MemoryTarget | FileTarget | Refusal;

/** Where the data server looks its requests up. */
export interface Targets {
  /** What request `h` (its 24 bytes: `raw`) reads or writes. Identity checks (OPCODE_HELLO) are not requests and never come here. */
  lookup(h: RequestHeader, raw: Uint8Array): Target;
}

/** Why a file request is refused, or null if it may be served. */
export function checkFileRequest(h: FileRequestHeader, file: RegisteredFile | undefined): string | null {
  // A 'none' file answers exactly like an unknown id: a peer learns nothing about it.
  if (!file || file.access === 'none') return `no file is registered with id ${h.fileId}`;
  if (h.write && file.access === 'read') return `file id ${h.fileId} is registered read-only`;
  if (h.size === 0) return 'a file request must move at least one byte';
  if (h.size > MAX_FILE_REQUEST) return `${h.size} bytes is more than one file request may move (${MAX_FILE_REQUEST})`;
  // Values >= 2^53 decode inexactly; they are far above any size, so the comparison still refuses them.
  if (!Number.isSafeInteger(h.offset) || h.offset + h.size > file.size) return `[${h.offset}, +${h.size}) is outside [0, ${file.size})`;
  if (file.align > 1 && (h.offset % file.align !== 0 || h.size % file.align !== 0)) {
    return `direct I/O needs offset and length aligned to ${file.align}`;
  }
  return null;
}

function refuse(frame: Buffer | null, why: string): Refusal {
  return { region: null, file: null, frame, why };
}

/** The targets of an engine: its registered memory, and its registered files (null: it serves none). */
export class RegistryTargets implements Targets {
  constructor(
    private readonly memory: Pick<MemoryRegistry, 'resolve'>,
    private readonly files: Pick<FileRegistry, 'byId'> | null,
  ) {}

  lookup(h: RequestHeader, raw: Uint8Array): Target {
    return isFileOpcode(h.opcode) ? this.fileTarget(raw) : this.memoryTarget(h);
  }

  private memoryTarget(h: RequestHeader): Target {
    const range = h.size > 0 ? this.memory.resolve(h.addr, h.size) : null;
    // A region closed to peers, a WRITE into a read-only one, or memory detached since it was
    // registered (README, Addresses) is refused exactly like an unknown range.
    if (range && (h.write ? range.region.remoteWritable : range.region.remoteReadable) && !range.region.detached) return range;
    const frame = h.v2 ? STATUS_REJECTED_FRAME : null;
    if (!range) return refuse(frame, h.size > 0 ? 'outside the registered memory' : 'a request must move at least one byte');
    if (range.region.detached) return refuse(frame, 'the region was detached');
    return refuse(frame, h.write ? 'the region is not writable by peers' : 'the region is closed to peers');
  }

  private fileTarget(raw: Uint8Array): Target {
    if (!this.files) return refuse(STATUS_FILE_REJECTED_FRAME, 'this engine serves no files');
    let header: FileRequestHeader;
    try {
      header = decodeFileHeader(raw);
    } catch (e) {
      if (!(e instanceof TransferEngineError)) throw e;
      return refuse(STATUS_FILE_REJECTED_FRAME, e.message);
    }
    const file = this.files.byId(header.fileId);
    const why = checkFileRequest(header, file);
    return why === null ? { region: null, file: file!, header } : refuse(STATUS_FILE_REJECTED_FRAME, why);
  }
}
