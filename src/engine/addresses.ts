/**
 * Where this engine listens and what address it publishes: checked so that
 * peers can dial what we publish (no wildcard, the same address family).
 */
import net from 'node:net';
import os from 'node:os';
import type { EngineConfig } from '../config.js';
import { teError, ErrorCode } from '../errors.js';
import { isWildcard, resolveIPv4 } from '../net.js';
import type { EngineOptions } from './types.js';

/**
 * Where to listen, checked against where peers will dial (`connectHost`):
 * a wildcard is no address to publish, and a listener of one address family
 * cannot be reached at an address of the other. (Another address of the
 * same family is allowed: proxies and NAT publish one address and listen on
 * another.)
 */
export async function listenHostFor(config: EngineConfig, options: EngineOptions, connectHost: string, p2pNameHost: string | undefined): Promise<string> {
  if (isWildcard(connectHost)) {
    const what = p2pNameHost === connectHost ? `the segment name's host "${connectHost}"` : `connectableName "${connectHost}"`;
    throw teError(
      ErrorCode.INVALID_ARGUMENT,
      `${what} is a wildcard address, which peers cannot dial: give this host's name or address (MC_TCP_BIND_ADDRESS=0.0.0.0 listens on every interface)`,
    );
  }
  const explicit = options.listenHost ?? config.bindAddress;
  if (explicit === undefined) return resolveIPv4(connectHost);
  const what = options.listenHost !== undefined ? `listenHost "${explicit}"` : `MC_TCP_BIND_ADDRESS="${explicit}"`;
  const code = options.listenHost !== undefined ? ErrorCode.INVALID_ARGUMENT : ErrorCode.BAD_ENV;
  if (explicit === '::') return explicit; // dual stack: reachable at either family
  let dialed: string;
  try {
    dialed = await resolveIPv4(connectHost);
  } catch {
    return explicit; // peers may resolve it where we cannot (split DNS): nothing to compare
  }
  const listenFamily = net.isIP(explicit);
  if (listenFamily !== 0 && listenFamily !== net.isIP(dialed)) {
    throw teError(code, `${what} listens on IPv${listenFamily}, but peers will dial ${connectHost} (${dialed}), an IPv${net.isIP(dialed)} address: they could not reach this engine`);
  }
  return explicit;
}

/** The host published in rpc_meta when no connectable name is given (Mooncake's rule, then loopback). */
export function publishedHost(config: EngineConfig, options: EngineOptions, nameHost: string): string {
  // A wildcard listen address (0.0.0.0, ::) is where we listen, not an address peers can dial.
  const wildcard = (a: string | undefined): boolean => a === '0.0.0.0' || a === '::';
  if (config.bindAddress && !wildcard(config.bindAddress)) return config.bindAddress;
  if (options.listenHost && !wildcard(options.listenHost)) return options.listenHost;
  if (config.legacyRpcPortBinding || net.isIP(nameHost) !== 0) return nameHost;
  for (const addrs of Object.values(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}
