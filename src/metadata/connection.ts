/**
 * Metadata connection strings, parsed as Mooncake does (transfer_engine.cpp's
 * parseConnectionStringInternal, MetadataStoragePlugin::Create):
 *
 *   P2PHANDSHAKE                      no store: peers are asked over their RPC port
 *   http://h:8080/metadata            the URL is used verbatim (https too)
 *   etcd://h1:2379,h2:2379            endpoints split on ',' or ';'
 *   h1:2379                           no scheme means etcd
 *   redis://h[:port]                  port 12001 when absent (parseHostNameWithPort)
 *
 * Mooncake accepts more than it can use (a bad port silently becomes 12001, an
 * unknown scheme aborts the process); here those are TE_INVALID_ARGUMENT.
 */
import { teError, ErrorCode } from '../errors.js';

export const P2PHANDSHAKE = 'P2PHANDSHAKE';
/** Mooncake's default port for a name without one (MC_HANDSHAKE_PORT's default). */
export const DEFAULT_NAME_PORT = 12001;

export type MetadataType = 'p2p' | 'http' | 'etcd' | 'redis';
export const METADATA_TYPES: readonly MetadataType[] = ['p2p', 'http', 'etcd', 'redis'];

export type MetadataTarget =
  | { type: 'p2p' }
  | { type: 'http'; url: string }
  | { type: 'etcd'; endpoints: string[] }
  | { type: 'redis'; host: string; port: number };

function invalid(conn: string, why: string): never {
  throw teError(ErrorCode.INVALID_ARGUMENT, `metadata server "${conn}": ${why}`);
}

/** Split "host:port", "[v6]:port" or "host" (no port: `dflt`). A port that is not 1-65535 is an error. */
function hostPort(conn: string, text: string, dflt: number | undefined): { host: string; port: number } {
  let host = text;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
  if (v6) {
    host = v6[1]!;
    portText = v6[2];
  } else if ((text.match(/:/g) ?? []).length === 1) {
    const i = text.indexOf(':');
    host = text.slice(0, i);
    portText = text.slice(i + 1);
  }
  if (host.length === 0) invalid(conn, `"${text}" has no host`);
  if (portText === undefined) {
    if (dflt === undefined) invalid(conn, `"${text}" has no port`);
    return { host, port: dflt };
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) invalid(conn, `"${portText}" is not a port number`);
  return { host, port };
}

/** Parse a connection string (the `metadataServer` option / MC_METADATA_SERVER). */
export function parseMetadataConnString(conn: string): MetadataTarget {
  if (typeof conn !== 'string' || conn.trim().length === 0) {
    throw teError(ErrorCode.INVALID_ARGUMENT, 'the metadata server must be a non-empty string (P2PHANDSHAKE, http://..., etcd://..., redis://...)');
  }
  if (conn === P2PHANDSHAKE) return { type: 'p2p' };
  const sep = conn.indexOf('://');
  const scheme = sep < 0 ? 'etcd' : conn.slice(0, sep);
  const rest = sep < 0 ? conn : conn.slice(sep + 3);
  switch (scheme) {
    case 'http':
    case 'https': {
      let url: URL;
      try {
        url = new URL(conn);
      } catch {
        return invalid(conn, 'not a valid URL');
      }
      if (url.hostname === '') invalid(conn, 'the URL has no host');
      if (url.search !== '' || url.hash !== '') invalid(conn, 'the URL must not have a query or fragment (the client appends ?key=...)');
      return { type: 'http', url: conn };
    }
    case 'etcd': {
      // Go clientv3 takes "h:2379" or "http://h:2379"; both are accepted per endpoint.
      const endpoints = rest
        .split(/[,;]/)
        .map((e) => e.trim())
        .filter((e) => e.length > 0)
        .map((e) => {
          const m = /^(https?):\/\/(.*)$/.exec(e);
          const hp = hostPort(conn, (m ? m[2]! : e).replace(/\/+$/, ''), undefined);
          const host = hp.host.includes(':') ? `[${hp.host}]` : hp.host;
          return `${m ? m[1] : 'http'}://${host}:${hp.port}`;
        });
      if (endpoints.length === 0) invalid(conn, 'no etcd endpoints');
      return { type: 'etcd', endpoints };
    }
    case 'redis': {
      if (/[/@?#]/.test(rest)) invalid(conn, 'expected redis://host[:port] (credentials come from MC_REDIS_USERNAME/MC_REDIS_PASSWORD, the database from MC_REDIS_DB_INDEX)');
      return { type: 'redis', ...hostPort(conn, rest, DEFAULT_NAME_PORT) };
    }
    default:
      return invalid(conn, `unknown scheme "${scheme}" (expected P2PHANDSHAKE, http://, https://, etcd://, redis://, or host:port for etcd)`);
  }
}

/**
 * Mooncake's initializeExt: a server address plus a separate metadata type.
 * `metadataServer` is used as is when it is P2PHANDSHAKE or already has a
 * scheme; otherwise it becomes `<type>://<server>`. Type 'p2p' always means
 * P2PHANDSHAKE (as the bench's --metadata_type=p2p does).
 */
export function metadataConnString(metadataType: string, metadataServer: string): string {
  if (typeof metadataType !== 'string' || typeof metadataServer !== 'string') {
    throw teError(ErrorCode.INVALID_ARGUMENT, 'metadata type and server must be strings');
  }
  if (metadataServer === P2PHANDSHAKE || metadataType === 'p2p') return P2PHANDSHAKE;
  if (!(METADATA_TYPES as readonly string[]).includes(metadataType)) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `unknown metadata type "${metadataType}" (expected ${METADATA_TYPES.join(', ')})`);
  }
  if (metadataServer.trim().length === 0) {
    throw teError(ErrorCode.INVALID_ARGUMENT, `metadata type "${metadataType}" needs a server address`);
  }
  return metadataServer.includes('://') ? metadataServer : `${metadataType}://${metadataServer}`;
}
