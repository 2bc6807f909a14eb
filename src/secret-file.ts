/**
 * Files that hold secrets (TE_AUTH_SECRET_FILE, TE_TLS_KEY): like ssh with
 * private keys, a file that group or others can access is refused.
 */
import { readFileSync, statSync } from 'node:fs';

/** The bytes of `path`; throws a plain Error saying what is wrong (not a regular file, too open, unreadable). */
export function readSecretFile(path: string): Buffer {
  const st = statSync(path);
  if (!st.isFile()) throw new Error('not a regular file');
  if ((st.mode & 0o077) !== 0) {
    throw new Error(`group or others have access to it (mode ${(st.mode & 0o777).toString(8).padStart(3, '0')}); chmod 600 it`);
  }
  return readFileSync(path);
}
