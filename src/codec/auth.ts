/**
 * Frames of our opt-in shared-secret authentication (ours, not Mooncake's),
 * run at the start of every connection to the RPC port and the data port
 * when the engine has a secret (src/auth.ts does the I/O):
 *
 *   server -> client  CHALLENGE  magic | 1 | server nonce (32)            40 bytes
 *   client -> server  RESPONSE   magic | 2 | client nonce (32) | mac (32)  72 bytes
 *   server -> client  ACCEPT     magic | 3 | mac (32)                      40 bytes
 *   server -> client  REJECT     magic | 4                                  8 bytes, then close
 *
 * magic = "TEAUTH" + version 1; the 8th byte is the kind. The client's mac is
 * HMAC-SHA256(secret, CLIENT_LABEL || server nonce || client nonce), the
 * server's the same with SERVER_LABEL, so neither proof can be reflected.
 *
 * The first 8 bytes read as a u64le are >= 2^56: a Mooncake client (or ours
 * without a secret) taking the challenge for a handshake frame length sees a
 * length far above any limit, so it fails instead of waiting.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { teError, ErrorCode } from '../errors.js';

export const AUTH_VERSION = 1;
/** "TEAUTH" + version. */
const MAGIC = Buffer.from([0x54, 0x45, 0x41, 0x55, 0x54, 0x48, 0x00, AUTH_VERSION]);
const MAGIC_LEN = 7;

export const AuthKind = {
  CHALLENGE: 1,
  RESPONSE: 2,
  ACCEPT: 3,
  REJECT: 4,
} as const;
export type AuthKind = (typeof AuthKind)[keyof typeof AuthKind];

export const NONCE_SIZE = 32;
export const MAC_SIZE = 32;
export const CHALLENGE_SIZE = 8 + NONCE_SIZE;
export const RESPONSE_SIZE = 8 + NONCE_SIZE + MAC_SIZE;
export const ACCEPT_SIZE = 8 + MAC_SIZE;
export const REJECT_SIZE = 8;

/** The descriptor's `auth` value when the segment requires authentication. */
export const AUTH_SCHEME = 'hmac-sha256-v1';
/** Shortest secret accepted: a guessable secret is no protection. */
export const MIN_SECRET_BYTES = 16;

const CLIENT_LABEL = Buffer.from('transfer-engine auth v1 client\0');
const SERVER_LABEL = Buffer.from('transfer-engine auth v1 server\0');

function header(kind: AuthKind, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  MAGIC.copy(b, 0, 0, MAGIC_LEN);
  b[MAGIC_LEN] = kind;
  return b;
}

export function encodeChallenge(serverNonce: Uint8Array): Buffer {
  const b = header(AuthKind.CHALLENGE, CHALLENGE_SIZE);
  b.set(serverNonce.subarray(0, NONCE_SIZE), 8);
  return b;
}

export function encodeResponse(clientNonce: Uint8Array, mac: Uint8Array): Buffer {
  const b = header(AuthKind.RESPONSE, RESPONSE_SIZE);
  b.set(clientNonce.subarray(0, NONCE_SIZE), 8);
  b.set(mac.subarray(0, MAC_SIZE), 8 + NONCE_SIZE);
  return b;
}

export function encodeAccept(mac: Uint8Array): Buffer {
  const b = header(AuthKind.ACCEPT, ACCEPT_SIZE);
  b.set(mac.subarray(0, MAC_SIZE), 8);
  return b;
}

export const REJECT_FRAME: Buffer = header(AuthKind.REJECT, REJECT_SIZE);

/** The kind of the auth frame starting at `off`, or null if the 8 bytes there are not our magic. */
export function authKindAt(buf: Uint8Array, off = 0): AuthKind | null {
  if (buf.length - off < 8) return null;
  for (let i = 0; i < MAGIC_LEN; i++) if (buf[off + i] !== MAGIC[i]) return null;
  const k = buf[off + MAGIC_LEN]!;
  return k >= AuthKind.CHALLENGE && k <= AuthKind.REJECT ? (k as AuthKind) : null;
}

/** Size of the frame of a kind. */
export function authFrameSize(kind: AuthKind): number {
  switch (kind) {
    case AuthKind.CHALLENGE:
      return CHALLENGE_SIZE;
    case AuthKind.RESPONSE:
      return RESPONSE_SIZE;
    case AuthKind.ACCEPT:
      return ACCEPT_SIZE;
    default:
      return REJECT_SIZE;
  }
}

export function clientMac(secret: Uint8Array, serverNonce: Uint8Array, clientNonce: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(CLIENT_LABEL).update(serverNonce).update(clientNonce).digest();
}

export function serverMac(secret: Uint8Array, serverNonce: Uint8Array, clientNonce: Uint8Array): Buffer {
  return createHmac('sha256', secret).update(SERVER_LABEL).update(serverNonce).update(clientNonce).digest();
}

/** Constant-time comparison of two MACs (false when the lengths differ). */
export function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * A secret as bytes: a non-empty string (UTF-8) or bytes, at least
 * MIN_SECRET_BYTES long. Throws `code` (INVALID_ARGUMENT for options, BAD_ENV
 * for the environment) naming `what`.
 */
export function secretBytes(v: unknown, what: string, code: typeof ErrorCode.INVALID_ARGUMENT | typeof ErrorCode.BAD_ENV): Buffer {
  let b: Buffer;
  if (typeof v === 'string') b = Buffer.from(v, 'utf8');
  else if (v instanceof Uint8Array) b = Buffer.from(v); // a copy: the caller may reuse its buffer
  else throw teError(code, `${what} must be a string or bytes`);
  if (b.length < MIN_SECRET_BYTES) throw teError(code, `${what} is ${b.length} byte(s); a shared secret needs at least ${MIN_SECRET_BYTES}`);
  return b;
}
