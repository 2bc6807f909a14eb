/**
 * Sizes as Mooncake's Python configuration takes them (mooncake_config.py
 * `_parse_segment_size`): a number of bytes, or a string with a binary suffix,
 * any case ("512MB", "1gb", "16 m", "1.5G", "4096", "100b").
 */
import { teError, ErrorCode } from '../errors.js';

const SUFFIXES: ReadonlyArray<readonly [string, number]> = [
  ['kb', 1024],
  ['mb', 1024 ** 2],
  ['gb', 1024 ** 3],
  ['tb', 1024 ** 4],
  ['k', 1024],
  ['m', 1024 ** 2],
  ['g', 1024 ** 3],
  ['t', 1024 ** 4],
  ['b', 1],
];

/** Bytes from a number, a bigint or a size string; TE_INVALID_ARGUMENT naming `what` otherwise. */
export function parseSize(value: unknown, what: string): number {
  const bad = (why: string): never => {
    throw teError(ErrorCode.INVALID_ARGUMENT, `${what}: ${JSON.stringify(typeof value === 'bigint' ? String(value) : value)} ${why}`);
  };
  if (typeof value === 'bigint') {
    if (value < 0n || value > BigInt(Number.MAX_SAFE_INTEGER)) bad('is not a size in bytes');
    return Number(value);
  }
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) bad('is not a size in bytes');
    return value;
  }
  if (typeof value !== 'string') return bad('is not a size (a number of bytes, or a string like "512MB")');
  const s = value.trim().toLowerCase();
  if (s.length === 0) return bad('is empty');
  let num = s;
  let unit = 1;
  for (const [suffix, mult] of SUFFIXES) {
    if (s.endsWith(suffix)) {
      num = s.slice(0, -suffix.length).trim();
      unit = mult;
      break;
    }
  }
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(num)) return bad('is not a size (a number of bytes, or a string like "512MB")');
  const bytes = Math.floor(Number(num) * unit);
  if (!Number.isSafeInteger(bytes)) return bad('is too large');
  return bytes;
}
