// @ts-check
/** Waits for the receiver's buffer info (what the zmq PULL socket of Mooncake's quick-start sender receives). */
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const DEFAULT_INFO_FILE = join(tmpdir(), 'transfer-engine-quickstart.json');

/**
 * @param {string} file
 * @param {number} timeoutMs
 * @returns {Promise<{ session_id: string, ptr: number, len: number }>}
 */
export async function recvBufferInfo(file, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      if (/** @type {NodeJS.ErrnoException} */ (e).code !== 'ENOENT') throw e;
      if (Date.now() > deadline) throw new Error(`no buffer info in ${file} after ${timeoutMs} ms: is the receiver running?`);
      await sleep(100);
    }
  }
}
