/** Small socket helpers shared by the RPC and data listeners. */
import net from 'node:net';
import tls from 'node:tls';
import dns from 'node:dns/promises';
import { teError, ErrorCode } from './errors.js';

/** Listen on `port`, or on a random free port in [min, max] when port is 0. */
export async function listenInRange(server: net.Server, host: string, port: number, min: number, max: number): Promise<number> {
  if (port > 0) {
    await listenOnce(server, host, port).catch((e: NodeJS.ErrnoException) => {
      throw listenError(e, host, port);
    });
    return port;
  }
  const span = max - min + 1;
  const start = Math.floor(Math.random() * span);
  const tries = Math.min(span, 256);
  let last: unknown;
  for (let k = 0; k < tries; k++) {
    const p = min + ((start + k * 7919) % span); // stride through the range, not only neighbours
    try {
      await listenOnce(server, host, p);
      return p;
    } catch (e) {
      last = e;
      if ((e as NodeJS.ErrnoException).code !== 'EADDRINUSE' && (e as NodeJS.ErrnoException).code !== 'EACCES') {
        throw listenError(e as NodeJS.ErrnoException, host, p);
      }
    }
  }
  throw teError(ErrorCode.PORT_IN_USE, `no free port in [${min}, ${max}] on ${host}`, last);
}

function listenError(e: NodeJS.ErrnoException, host: string, port: number): Error {
  if (e.code === 'EADDRINUSE') return teError(ErrorCode.PORT_IN_USE, `port ${port} on ${host} is already in use`, e);
  return teError(ErrorCode.INVALID_ARGUMENT, `cannot listen on ${host}:${port}: ${e.message}`, e);
}

function listenOnce(server: net.Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void => {
      server.off('listening', onListening);
      reject(e);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen({ port, host, exclusive: true });
  });
}

/** Split "host:port", "[v6]:port" or a bare host. Mooncake splits at the last ':'. */
export function splitHostPort(name: string): { host: string; port: number | undefined } {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(name);
  if (m) {
    const port = m[2] === undefined ? NaN : Number(m[2]);
    return { host: m[1]!, port: Number.isInteger(port) && port > 0 && port <= 65535 ? port : undefined };
  }
  const colons = name.split(':').length - 1;
  if (colons > 1) return { host: name, port: undefined }; // bare IPv6
  const i = name.lastIndexOf(':');
  if (i < 0) return { host: name, port: undefined };
  const port = Number(name.slice(i + 1));
  if (!Number.isInteger(port) || port <= 0 || port > 65535) return { host: name.slice(0, i), port: undefined };
  return { host: name.slice(0, i), port };
}

/**
 * Split a name that must be dialable: like splitHostPort, but a port part
 * that is there and not in [1, 65535] ("host:0", "host:99999", "host:x") is
 * TE_INVALID_ARGUMENT naming `what`, where Mooncake would silently use 12001.
 */
export function parseHostPort(name: string, what: string): { host: string; port: number | undefined } {
  const r = splitHostPort(name);
  const bad = (port: string): never => {
    throw teError(ErrorCode.INVALID_ARGUMENT, `${what} "${name}": "${port}" is not a port (1-65535)`);
  };
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(name);
  if (v6) {
    if (!net.isIPv6(v6[1]!)) throw teError(ErrorCode.INVALID_ARGUMENT, `${what} "${name}": "${v6[1]}" in brackets is not an IPv6 address`);
    if (v6[2] !== undefined && r.port === undefined) bad(v6[2]);
  } else if (name.includes('[') || name.includes(']')) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `${what} "${name}": brackets must enclose the whole IPv6 address, as in "[::1]:12345"`);
  } else if (name.split(':').length === 2 && r.port === undefined) {
    bad(name.slice(name.lastIndexOf(':') + 1));
  }
  if (r.host.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, `${what} "${name}" has no host`);
  return r;
}

/** 0.0.0.0 or :: (any interface): an address to listen on, never one to dial. */
export function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]';
}

export function joinHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Resolve a host name to one IPv4 address, as Mooncake does unless MC_USE_IPV6. */
export async function resolveIPv4(host: string): Promise<string> {
  if (net.isIPv4(host)) return host;
  if (net.isIPv6(host)) return host;
  try {
    const r = await dns.lookup(host, { family: 4 });
    return r.address;
  } catch (e) {
    throw teError(ErrorCode.PEER_UNREACHABLE, `cannot resolve host "${host}": ${(e as Error).message}`, e);
  }
}

export function closeServer(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

/**
 * Close at once with a reset where the socket is plain TCP (the kernel drops
 * unsent data and the peer learns). A TLS socket cannot be reset (Node throws
 * for a handle that is not TCP): it is destroyed.
 */
export function resetSocket(sock: net.Socket): void {
  if (sock instanceof tls.TLSSocket) sock.destroy();
  else sock.resetAndDestroy();
}

/**
 * Payloads at least this large go to a TLS socket outside any cork: Node's TLS
 * copies the buffers of a corked writev into one before encrypting them
 * (TLSWrap::DoWrite), while a lone buffer is encrypted from where it is.
 */
export const TLS_WRITE_ALONE_MIN = 64 * 1024;

/** Run `write` with `sock` uncorked, then cork it as often as it was. */
export function uncorked(sock: net.Socket, write: () => boolean): boolean {
  const corks = sock.writableCorked;
  for (let i = 0; i < corks; i++) sock.uncork();
  try {
    return write();
  } finally {
    for (let i = 0; i < corks; i++) sock.cork();
  }
}
