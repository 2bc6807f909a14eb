/**
 * Settings of file segments: the environment variables of Mooncake's generic
 * NVMe-oF transport (Mooncake PR #793, doc/en/nvmeof_generic_transport.md)
 * and the `nvmeof_generic` transport argument (an NVMe-oF transport id string).
 * A malformed value is one clear error naming it, never a silent default.
 */
import net from 'node:net';
import { teError, ErrorCode } from '../errors.js';
import { ENV_VARS, envVar, type Env } from '../env.js';

export interface FileConfig {
  /** MC_NVMEOF_GENERIC_NUM_WORKERS: file operations in flight at once (default 8). */
  workers: number;
  /** MC_NVMEOF_GENERIC_DIRECT_IO: open registered files with O_DIRECT by default (default off). */
  directIO: boolean;
  /**
   * TE_FILE_SAME_HOST (ours, default on): read and write the files of a peer
   * on this host directly (src/transport/file-same-host.ts); off forces TCP.
   */
  sameHost: boolean;
}

export const MAX_FILE_WORKERS = ENV_VARS.MC_NVMEOF_GENERIC_NUM_WORKERS.max;

export function loadFileConfig(env: Env = process.env): FileConfig {
  return {
    workers: envVar('MC_NVMEOF_GENERIC_NUM_WORKERS', env),
    directIO: envVar('MC_NVMEOF_GENERIC_DIRECT_IO', env),
    sameHost: envVar('TE_FILE_SAME_HOST', env),
  };
}

/** Where the nvmeof_generic transport listens: traddr and trsvcid of its transport id. */
export interface FileListenAddress {
  host: string;
  port: number;
}

/**
 * Parse the generic NVMe-oF transport's id, "trtype=tcp adrfam=ipv4 traddr=127.0.0.1 trsvcid=4420"
 * (options separated by spaces, `key=value` or `key:value`, as Mooncake's parseTrid).
 * Only trtype=tcp can be honoured: the wire is our TCP protocol, not NVMe/TCP.
 */
export function parseTrid(text: string): FileListenAddress {
  if (typeof text !== 'string' || text.trim() === '') {
    throw teError(ErrorCode.INVALID_ARGUMENT, 'the nvmeof_generic argument must be "trtype=tcp adrfam=ipv4 traddr=<address> trsvcid=<port>"');
  }
  const opts = new Map<string, string>();
  for (const option of text.trim().split(/\s+/)) {
    let sep = option.indexOf('=');
    if (sep < 0) sep = option.indexOf(':');
    const key = sep < 0 ? '' : option.slice(0, sep);
    const value = sep < 0 ? '' : option.slice(sep + 1);
    if (key === '' || value === '') throw teError(ErrorCode.INVALID_ARGUMENT, `trid option "${option}" is not key=value`);
    if (!['trtype', 'adrfam', 'traddr', 'trsvcid', 'subnqn'].includes(key)) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `unknown trid option "${key}" (expected trtype, adrfam, traddr, trsvcid)`);
    }
    opts.set(key, value);
  }
  const trtype = (opts.get('trtype') ?? '').toLowerCase();
  if (trtype !== 'tcp') {
    throw teError(
      ErrorCode.NOT_SUPPORTED,
      `trtype "${opts.get('trtype') ?? ''}" is not supported: files are served over this engine's own TCP protocol, so only trtype=tcp works`,
    );
  }
  const host = opts.get('traddr');
  if (host === undefined || net.isIP(host) === 0) throw teError(ErrorCode.INVALID_ARGUMENT, `trid needs traddr=<IP address>, got "${host ?? ''}"`);
  const adrfam = opts.get('adrfam')?.toLowerCase();
  if (adrfam !== undefined && adrfam !== (net.isIPv6(host) ? 'ipv6' : 'ipv4')) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `adrfam=${adrfam} does not match traddr=${host}`);
  }
  const svc = opts.get('trsvcid') ?? '';
  const port = /^\d+$/.test(svc) ? Number(svc) : NaN;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw teError(ErrorCode.INVALID_ARGUMENT, `trid needs trsvcid=<port 1-65535>, got "${svc}"`);
  return { host, port };
}
