/**
 * Mutual TLS for the RPC and data ports and the Store master's port (ours;
 * Mooncake has no TLS): the settings, read once from TE_TLS_CERT, TE_TLS_KEY,
 * TE_TLS_CA and TE_TLS_PEER_NAME, and the options both ends of a connection
 * are made with.
 *
 * Every connection is TLS 1.3 with a certificate on both ends, each checked
 * against TE_TLS_CA. Host names are not checked: peers are dialled by the
 * addresses their descriptors publish (often bare IPs), so the CA is the
 * trust; TE_TLS_PEER_NAME narrows it to certificates made out to one name
 * (a DNS subjectAltName, or the CN when there is none), on both ends.
 */
import { createSecureContext, checkServerIdentity, type PeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { readFileSync, statSync } from 'node:fs';
import { X509Certificate as Cert } from 'node:crypto';
import { teError, ErrorCode, type TransferEngineError } from './errors.js';
import { readSecretFile } from './secret-file.js';
import { envError, envVar, type Env } from './env.js';

/** What a descriptor's `tls` field says (src/codec/descriptor.ts): both ports take only mutual TLS 1.3. */
export const TLS_SCHEME = 'mtls-1.3';

export interface TlsSettings {
  /** Certificate, key and CA, made once: every connection shares it. */
  readonly context: SecureContext;
  /** TE_TLS_PEER_NAME: the name a peer's certificate must carry; undefined: any certificate the CA signed. */
  readonly peerName: string | undefined;
  /** Our certificate's last valid moment (for messages and /status). */
  readonly validTo: Date;
}

/** The PEM files, as paths. */
export interface TlsFiles {
  cert: string;
  key: string;
  ca: string;
  peerName?: string | undefined;
}

/** TE_TLS_*: undefined when none is set; TE_BAD_ENV when some are set and not all, or a file is wrong. */
export function tlsSettingsFromEnv(env: Env): TlsSettings | undefined {
  const cert = envVar('TE_TLS_CERT', env);
  const key = envVar('TE_TLS_KEY', env);
  const ca = envVar('TE_TLS_CA', env);
  const peerName = envVar('TE_TLS_PEER_NAME', env);
  if (cert === undefined && key === undefined && ca === undefined) {
    if (peerName !== undefined) throw envError('TE_TLS_PEER_NAME is set without TE_TLS_CERT, TE_TLS_KEY and TE_TLS_CA');
    return undefined;
  }
  const missing = [cert === undefined && 'TE_TLS_CERT', key === undefined && 'TE_TLS_KEY', ca === undefined && 'TE_TLS_CA'].filter(Boolean);
  if (missing.length > 0) throw envError(`mutual TLS needs TE_TLS_CERT, TE_TLS_KEY and TE_TLS_CA together: ${missing.join(' and ')} unset`);
  return loadTlsSettings({ cert: cert!, key: key!, ca: ca!, peerName }, envError);
}

/**
 * Read and check the files. The key must be readable by its owner only (as
 * ssh does with private keys); our certificate must be valid now and match the
 * key. `fail` makes the error (TE_BAD_ENV from the environment).
 */
export function loadTlsSettings(files: TlsFiles, fail: (message: string, cause?: unknown) => TransferEngineError = envError): TlsSettings {
  const read = (what: string, path: string, secret: boolean): Buffer => {
    try {
      if (secret) return readSecretFile(path);
      if (!statSync(path).isFile()) throw new Error('not a regular file');
      return readFileSync(path);
    } catch (e) {
      throw fail(`${what}="${path}": ${e instanceof Error ? e.message : String(e)}`, e);
    }
  };
  const cert = read('TE_TLS_CERT', files.cert, false);
  const key = read('TE_TLS_KEY', files.key, true);
  const ca = read('TE_TLS_CA', files.ca, false);
  let own: Cert;
  try {
    own = new Cert(cert);
    new Cert(ca); // the first certificate of the CA file parses; OpenSSL reads the rest
  } catch (e) {
    throw fail(`TE_TLS_CERT or TE_TLS_CA="${files.ca}" holds no PEM certificate: ${e instanceof Error ? e.message : String(e)}`, e);
  }
  const now = Date.now();
  const validTo = new Date(own.validTo);
  if (Date.parse(own.validFrom) > now) throw fail(`TE_TLS_CERT="${files.cert}" is not valid before ${own.validFrom}`);
  if (validTo.getTime() <= now) throw fail(`TE_TLS_CERT="${files.cert}" expired on ${own.validTo}`);
  const peerName = files.peerName;
  if (peerName !== undefined && !/^[A-Za-z0-9*]([A-Za-z0-9.*-]{0,252})$/.test(peerName)) {
    throw fail(`TE_TLS_PEER_NAME="${peerName}" is not a DNS name`);
  }
  let context: SecureContext;
  try {
    // TLS 1.3 only. AES-128-GCM first: with AES-NI it is the cheapest suite per byte.
    context = createSecureContext({ cert, key, ca, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256' });
  } catch (e) {
    throw fail(`TE_TLS_CERT="${files.cert}" and TE_TLS_KEY="${files.key}": ${e instanceof Error ? e.message : String(e)}`, e);
  }
  return { context, peerName, validTo };
}

/** Options of an accepted connection's TLSSocket: our certificate, and the peer's required and checked. */
export function tlsServerOptions(s: TlsSettings): { isServer: true; secureContext: SecureContext; requestCert: true; rejectUnauthorized: true } {
  return { isServer: true, secureContext: s.context, requestCert: true, rejectUnauthorized: true };
}

/** Options of tls.connect to a peer. */
export function tlsClientOptions(s: TlsSettings): {
  secureContext: SecureContext;
  rejectUnauthorized: true;
  servername?: string;
  checkServerIdentity: (host: string, cert: PeerCertificate) => Error | undefined;
} {
  const name = s.peerName;
  return {
    secureContext: s.context,
    rejectUnauthorized: true,
    ...(name !== undefined && !name.includes('*') ? { servername: name } : {}),
    checkServerIdentity: (_host, cert) => (name === undefined ? undefined : checkServerIdentity(name, cert)),
  };
}

/** After an accepted connection's handshake: the client's certificate carries TE_TLS_PEER_NAME (the CA was checked by OpenSSL). */
export function clientNameError(s: TlsSettings, sock: TLSSocket): Error | undefined {
  if (s.peerName === undefined) return undefined;
  return checkServerIdentity(s.peerName, sock.getPeerCertificate());
}

/** OpenSSL's certificate verification codes (X509_V_ERR_*) as Node names them, said plainly. */
const VERIFY_REASONS: Readonly<Record<string, string>> = {
  CERT_HAS_EXPIRED: 'its certificate has expired',
  CERT_NOT_YET_VALID: 'its certificate is not valid yet',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'its certificate is self-signed, not signed by TE_TLS_CA',
  SELF_SIGNED_CERT_IN_CHAIN: "its certificate chain ends in a CA that is not TE_TLS_CA",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'its certificate is not signed by TE_TLS_CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'its certificate is not signed by TE_TLS_CA',
  UNABLE_TO_GET_ISSUER_CERT: 'its certificate is not signed by TE_TLS_CA',
  CERT_SIGNATURE_FAILURE: "its certificate's signature does not verify",
  ERR_TLS_CERT_ALTNAME_INVALID: 'its certificate is not made out to TE_TLS_PEER_NAME',
};

/** Alerts the other end sends when it refuses our certificate or our protocol. */
const ALERT_REASONS: ReadonlyArray<readonly [RegExp, string]> = [
  [/CERTIFICATE_REQUIRED/, 'it requires a client certificate (its TLS setup differs from ours)'],
  [/UNKNOWN_CA|BAD_CERTIFICATE|DECRYPT_ERROR/, 'it refused our certificate (not signed by its CA, or not made out to its TE_TLS_PEER_NAME)'],
  [/CERTIFICATE_EXPIRED/, 'it refused our certificate as expired'],
  [/PROTOCOL_VERSION|WRONG_VERSION_NUMBER|UNSUPPORTED_PROTOCOL|VERSION_TOO_LOW/, 'it does not speak TLS 1.3 (no TLS: a Mooncake peer, or one of ours without TE_TLS_*)'],
  [/PACKET_LENGTH_TOO_LONG|RECORD_LAYER_FAILURE|HTTP_REQUEST/, 'it answered in clear text (a peer without TLS)'],
];

/**
 * The typed error for a TLS failure `e` on a connection to `label`, or null
 * when `e` is not one (a plain socket error such as ECONNREFUSED).
 */
export function tlsError(label: string, e: NodeJS.ErrnoException): TransferEngineError | null {
  const code = e.code ?? '';
  const verify = VERIFY_REASONS[code];
  if (verify !== undefined) return teError(ErrorCode.TLS_FAILED, `TLS with ${label} refused: ${verify} (${code})`, e);
  if (!code.startsWith('ERR_SSL_') && !code.startsWith('ERR_TLS_')) return null;
  const reason = ALERT_REASONS.find(([re]) => re.test(code))?.[1] ?? 'the TLS handshake failed';
  return teError(ErrorCode.TLS_FAILED, `TLS with ${label} failed: ${reason} (${code})`, e);
}

/** A connection closed, reset or silent before its TLS handshake finished. */
export function tlsHandshakeEndedError(label: string, how: string): TransferEngineError {
  return teError(
    ErrorCode.TLS_FAILED,
    `${label} ${how} before the TLS handshake finished: it does not speak TLS (a Mooncake peer, or one of ours without TE_TLS_*), or it refused our certificate; this engine has TLS and never falls back to clear text`,
  );
}
