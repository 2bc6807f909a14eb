/**
 * The two sides of our shared-secret handshake (frames: src/codec/auth.ts).
 * Both are plain state machines over received bytes, so the data server and
 * lanes (which read through `onread` into their own scratch) and the RPC port
 * (which reads 'data' chunks) drive them the same way. Nothing here touches a
 * socket.
 */
import { randomBytes } from 'node:crypto';
import {
  AuthKind,
  ACCEPT_SIZE,
  CHALLENGE_SIZE,
  NONCE_SIZE,
  RESPONSE_SIZE,
  authKindAt,
  clientMac,
  encodeAccept,
  encodeChallenge,
  encodeResponse,
  macEqual,
  serverMac,
} from './codec/auth.js';
import { teError, ErrorCode, type TransferEngineError } from './errors.js';

/** The server's side: send challenge(), then verify() the client's RESPONSE_SIZE bytes. */
export class AuthServerSide {
  private readonly nonce = randomBytes(NONCE_SIZE);

  constructor(private readonly secret: Uint8Array) {}

  /** Bytes the client must send before anything else. */
  static readonly responseSize = RESPONSE_SIZE;

  challenge(): Buffer {
    return encodeChallenge(this.nonce);
  }

  /** `buf[off, off + RESPONSE_SIZE)` is the client's answer: the ACCEPT frame to send, or null to refuse. */
  verify(buf: Uint8Array, off = 0): Buffer | null {
    if (buf.length - off < RESPONSE_SIZE || authKindAt(buf, off) !== AuthKind.RESPONSE) return null;
    const clientNonce = buf.subarray(off + 8, off + 8 + NONCE_SIZE);
    const mac = buf.subarray(off + 8 + NONCE_SIZE, off + RESPONSE_SIZE);
    if (!macEqual(clientMac(this.secret, this.nonce, clientNonce), mac)) return null;
    return encodeAccept(serverMac(this.secret, this.nonce, clientNonce));
  }
}

export type ClientStep =
  /** Not enough bytes yet: call again with more. */
  | { kind: 'more' }
  /** `consumed` bytes were the challenge: send `reply`, then wait for the server's proof. */
  | { kind: 'reply'; consumed: number; reply: Buffer }
  /** `consumed` bytes were the server's valid proof: authenticated. */
  | { kind: 'done'; consumed: number };

/** The client's side: feed the server's bytes to step() until it says 'done'. It throws TE_AUTH_FAILED. */
export class AuthClientSide {
  private readonly nonce = randomBytes(NONCE_SIZE);
  private serverNonce: Buffer | null = null;

  constructor(
    private readonly secret: Uint8Array,
    /** "10.0.0.5:16001", for messages. */
    private readonly label: string,
  ) {}

  /** Whether the challenge has arrived (a peer that closes before it does not authenticate at all). */
  get challenged(): boolean {
    return this.serverNonce !== null;
  }

  step(buf: Uint8Array, off: number, end: number): ClientStep {
    const avail = end - off;
    if (avail < 8) return { kind: 'more' };
    const kind = authKindAt(buf, off);
    if (this.serverNonce === null) {
      if (kind !== AuthKind.CHALLENGE) throw this.notAuthenticating();
      if (avail < CHALLENGE_SIZE) return { kind: 'more' };
      this.serverNonce = Buffer.from(buf.subarray(off + 8, off + CHALLENGE_SIZE));
      const reply = encodeResponse(this.nonce, clientMac(this.secret, this.serverNonce, this.nonce));
      return { kind: 'reply', consumed: CHALLENGE_SIZE, reply };
    }
    if (kind === AuthKind.REJECT) {
      throw teError(ErrorCode.AUTH_FAILED, `${this.label} refused our authentication: the shared secrets differ`);
    }
    if (kind !== AuthKind.ACCEPT) throw teError(ErrorCode.AUTH_FAILED, `${this.label} broke the authentication exchange`);
    if (avail < ACCEPT_SIZE) return { kind: 'more' };
    const want = serverMac(this.secret, this.serverNonce, this.nonce);
    if (!macEqual(want, buf.subarray(off + 8, off + ACCEPT_SIZE))) {
      throw teError(ErrorCode.AUTH_FAILED, `${this.label} answered with a wrong proof: it does not hold our shared secret`);
    }
    return { kind: 'done', consumed: ACCEPT_SIZE };
  }

  /** The error for a peer that closed or went silent before authenticating. */
  notAuthenticating(): TransferEngineError {
    return this.serverNonce === null
      ? teError(
          ErrorCode.AUTH_FAILED,
          `${this.label} did not start authentication: it has no shared secret (or is not a transfer-engine), and this engine talks only to peers with one`,
        )
      : teError(ErrorCode.AUTH_FAILED, `${this.label} closed the connection during authentication`);
  }
}

/** The error for a client without a secret that meets a peer's challenge. */
export function authRequiredError(label: string): TransferEngineError {
  return teError(
    ErrorCode.AUTH_REQUIRED,
    `${label} requires authentication: give this engine the same shared secret (authSecret option or TE_AUTH_SECRET)`,
  );
}
