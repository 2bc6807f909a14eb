/**
 * Removes shared-memory files left by engines that died without cleaning up
 * (SIGKILL, a crash, power-cycled containers with a persistent /dev/shm).
 *
 * "Owner alive" is the owner's shared flock on its file, not a pid check:
 * the kernel drops the lock exactly when the owning process dies, however it
 * dies, while a pid can be reused (containers restart engines with the same
 * small pid) and is shared by engines in worker threads of one process. A
 * file is removed when it has our name pattern, is a regular file of our uid,
 * and an exclusive flock on it succeeds. A zero-length file younger than
 * `graceMs` is skipped: its creator may be between open(O_EXCL) and flock.
 */
import { closeSync, fstatSync, lstatSync, readdirSync, unlinkSync } from 'node:fs';
import { loadNative, type NativeAddon } from '../native/addon.js';
import { parseShmName, SHM_DIR } from './names.js';

export interface ReapOptions {
  /** Zero-length files younger than this are left alone (default 10 s). */
  graceMs?: number;
}

export interface ReapResult {
  /** Names of the files removed. */
  removed: string[];
  /** Our files whose owner is alive. */
  live: number;
}

/**
 * Remove dead engines' files from /dev/shm. Never throws: an engine must
 * start even when /dev/shm is unreadable or the addon is missing (then there
 * is nothing of ours to reap).
 */
export function reapStaleShmFiles(options: ReapOptions = {}): ReapResult {
  const graceMs = options.graceMs ?? 10_000;
  const result: ReapResult = { removed: [], live: 0 };
  let native: NativeAddon;
  let names: string[];
  try {
    native = loadNative();
    names = readdirSync(SHM_DIR);
  } catch {
    return result;
  }
  const uid = process.getuid?.() ?? -1;
  for (const name of names) {
    if (parseShmName(name) === null) continue;
    const path = `${SHM_DIR}/${name}`;
    try {
      const st = lstatSync(path);
      if (!st.isFile() || st.uid !== uid) continue;
      const fd = native.tryLockExclusive(path);
      if (fd < 0) {
        result.live++;
        continue;
      }
      try {
        const held = fstatSync(fd);
        if (held.ino !== st.ino) continue; // replaced under us; look again next start
        if (held.size === 0 && Date.now() - held.mtimeMs < graceMs) {
          result.live++;
          continue;
        }
        unlinkSync(path);
        result.removed.push(name);
      } finally {
        closeSync(fd);
      }
    } catch {
      // vanished meanwhile, or not ours to touch
    }
  }
  return result;
}
