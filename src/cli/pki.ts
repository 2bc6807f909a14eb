/**
 * Throwaway certificates for trying mutual TLS (`bench --tls`, the tests): a
 * CA and certificates it signs, made by the `openssl` command (Node can check
 * certificates but not make them). EC P-256 keys; private keys mode 600, as
 * TE_TLS_KEY requires. Not for production: the CA's key sits next to its
 * certificate.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { teError, ErrorCode } from '../errors.js';

export interface Pki {
  readonly dir: string;
  /** The CA's certificate: TE_TLS_CA. */
  readonly ca: string;
  readonly caKey: string;
}

export interface CertFiles {
  /** TE_TLS_CERT */
  readonly cert: string;
  /** TE_TLS_KEY */
  readonly key: string;
}

export interface CertOptions {
  /** Days of validity from now; negative: expired that many days ago (default 2). */
  days?: number;
  /** The DNS name the certificate is made out to (CN and subjectAltName; default: the file name). */
  dnsName?: string;
  /** Signed by its own key instead of the CA's. */
  selfSigned?: boolean;
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { stderr?: Buffer };
    if (err.code === 'ENOENT') throw teError(ErrorCode.NOT_SUPPORTED, 'the openssl command is not installed: give certificates in TE_TLS_CERT, TE_TLS_KEY and TE_TLS_CA');
    throw teError(ErrorCode.INVALID_ARGUMENT, `openssl ${args[0] ?? ''} failed: ${err.stderr?.toString().trim() ?? String(e)}`, e);
  }
}

const KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];

/** A new CA in `dir` (named `name`, valid two days). */
export function makeCa(dir: string, name = 'transfer-engine-test-ca'): Pki {
  const ca = path.join(dir, `${name}.pem`);
  const caKey = path.join(dir, `${name}.key`);
  openssl(['req', '-x509', ...KEY, '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  chmodSync(caKey, 0o600);
  return { dir, ca, caKey };
}

/** A certificate and key `<file>.pem` / `<file>.key` in the CA's folder, for both ends of a connection. */
export function makeCert(pki: Pki, file: string, options: CertOptions = {}): CertFiles {
  const dns = options.dnsName ?? file;
  const cert = path.join(pki.dir, `${file}.pem`);
  const key = path.join(pki.dir, `${file}.key`);
  const csr = path.join(pki.dir, `${file}.csr`);
  const ext = path.join(pki.dir, `${file}.ext`);
  writeFileSync(ext, `subjectAltName=DNS:${dns}\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n`);
  const days = String(options.days ?? 2);
  if (options.selfSigned) {
    openssl(['req', '-x509', ...KEY, '-keyout', key, '-out', cert, '-days', days, '-subj', `/CN=${dns}`, '-addext', `subjectAltName=DNS:${dns}`]);
  } else {
    openssl(['req', '-new', ...KEY, '-keyout', key, '-out', csr, '-subj', `/CN=${dns}`]);
    openssl(['x509', '-req', '-in', csr, '-CA', pki.ca, '-CAkey', pki.caKey, '-CAcreateserial', '-out', cert, '-days', days, '-extfile', ext]);
  }
  chmodSync(key, 0o600);
  return { cert, key };
}

/** The TE_TLS_* variables of one engine. */
export function tlsEnv(pki: Pki, c: CertFiles, peerName?: string): Record<string, string> {
  return { TE_TLS_CERT: c.cert, TE_TLS_KEY: c.key, TE_TLS_CA: pki.ca, ...(peerName !== undefined ? { TE_TLS_PEER_NAME: peerName } : {}) };
}
