/**
 * Names of our shared-memory files: /dev/shm/transfer-engine-<pid>-<16 hex>.
 * The pid says who made a file (for people and tools; liveness itself is
 * judged by the owner's flock, see reaper.ts); the random part makes names
 * unguessable and never reused, so a stale descriptor cannot hit a newer
 * region. Peers' names come from descriptors and are checked against the
 * same pattern before any path is built: no '/', no '..', nothing outside
 * /dev/shm, nothing that is not ours.
 */
import { randomBytes } from 'node:crypto';
import { teError, ErrorCode } from '../errors.js';

export const SHM_DIR = '/dev/shm';
export const SHM_PREFIX = 'transfer-engine-';
const NAME_RE = /^transfer-engine-([1-9][0-9]{0,9})-([0-9a-f]{16})$/;

export function makeShmName(pid: number = process.pid): string {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0xffff_ffff) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `pid ${String(pid)} is not a process id`);
  }
  return `${SHM_PREFIX}${pid}-${randomBytes(8).toString('hex')}`;
}

export interface ParsedShmName {
  /** Pid of the process that created the file. */
  pid: number;
  /** The random part. */
  tag: string;
}

/** The parts of one of our names, or null for anything else. */
export function parseShmName(name: string): ParsedShmName | null {
  const m = NAME_RE.exec(name);
  if (!m) return null;
  const pid = Number(m[1]);
  return pid <= 0xffff_ffff ? { pid, tag: m[2]! } : null;
}

/** Check a name taken from a peer's descriptor; TE_MALFORMED unless it is one of ours. */
export function validateShmName(name: unknown, what = 'shm name'): string {
  if (typeof name !== 'string') throw teError(ErrorCode.MALFORMED, `${what} must be a string`);
  if (parseShmName(name) === null) {
    const shown = JSON.stringify(name.length > 80 ? `${name.slice(0, 80)}...` : name);
    throw teError(
      ErrorCode.MALFORMED,
      `${what} ${shown} is not a transfer-engine shared-memory name (${SHM_PREFIX}<pid>-<16 hex digits>, inside ${SHM_DIR})`,
    );
  }
  return name;
}

/** Full path of a (validated) name. */
export function shmPath(name: string): string {
  return `${SHM_DIR}/${validateShmName(name)}`;
}
