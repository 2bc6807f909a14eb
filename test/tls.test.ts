/**
 * Mutual TLS (issue 21): both ports of our engines, the Store master's port
 * and its client. Certificates are made for each run by the openssl command
 * (src/cli/pki.ts): a CA, good certificates, and the bad ones (expired,
 * another CA's, self-signed, made out to another name).
 *
 * What is checked: bytes move byte-exact inside TLS; every refusal is a typed
 * error (TE_TLS_FAILED, TE_TLS_REQUIRED, TE_BAD_ENV) naming the reason, on the
 * side that dials and, in the counters, on the side that listens; a refused,
 * clear-text or stalled connection never stops a port from serving the next
 * good one; an engine with TLS never talks in clear text, to our engines or to
 * Mooncake's.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { TransferEngine, TransferOpcode, TaskStatus, ErrorCode, TransferEngineError } from '../src/core.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { loadConfig } from '../src/config.js';
import { makeCa, makeCert, tlsEnv, type CertFiles, type Pki } from '../src/cli/pki.js';
import { encodeHandshakeFrame, HandshakeType } from '../src/codec/handshake.js';
import { StoreMaster, MooncakeDistributedStore } from '../src/store.js';
import { RpcClient } from '../src/store/rpc-client.js';
import { Master } from '../src/store/master-protocol.js';
import { loadTlsSettings } from '../src/tls.js';
import { ensureInteropEnv, MooncakePeer } from './interop/mooncake.js';
import { roundTrip } from './helpers.js';
import { patternBuffer } from './pattern.js';

const MiB = 1 << 20;

/** The typed error `p` rejects with; fails when it resolves or throws anything else. */
async function typedError(p: Promise<unknown>): Promise<TransferEngineError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected a rejection');
}

/** Resolves when `sock` closes (for whatever reason), with what it received. */
function closed(sock: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('error', () => {});
  return new Promise((resolve) => sock.once('close', () => resolve(Buffer.concat(chunks))));
}

/** A TLS client presenting `cert` to `port`: resolves with what it got before the server closed. */
function tlsClient(port: number, pki: Pki, cert: CertFiles, send: Buffer): Promise<Buffer> {
  const sock = tls.connect({
    host: '127.0.0.1',
    port,
    cert: fs.readFileSync(cert.cert),
    key: fs.readFileSync(cert.key),
    ca: fs.readFileSync(pki.ca),
    checkServerIdentity: () => undefined,
    minVersion: 'TLSv1.3',
  });
  sock.once('secureConnect', () => sock.write(send));
  return closed(sock);
}

const METADATA_FRAME = encodeHandshakeFrame(HandshakeType.METADATA, '{}\n');

describe('mutual TLS', () => {
  let dir = '';
  let pki: Pki;
  let other: Pki;
  const certs: Record<string, CertFiles> = {};

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-tls-'));
    pki = makeCa(dir);
    other = makeCa(fs.mkdtempSync(path.join(dir, 'other-')), 'another-ca');
    for (const n of ['peer-a', 'peer-b', 'peer-c']) certs[n] = makeCert(pki, n);
    certs['expired'] = makeCert(pki, 'expired', { days: -1 });
    certs['self-signed'] = makeCert(pki, 'self-signed', { selfSigned: true });
    certs['wrong-ca'] = makeCert(other, 'wrong-ca');
    certs['other-name'] = makeCert(pki, 'other-name');
  });

  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  const env = (name: string, extra: Record<string, string> = {}): Record<string, string> => ({ ...tlsEnv(pki, certs[name]!), ...extra });

  describe('settings', () => {
    it('TE_TLS_* are read once: all three or none, the key private, our certificate valid and matching the key', () => {
      const ok = env('peer-a');
      assert.equal(loadConfig({}).tls, undefined, 'none set: clear text');
      const s = loadConfig(ok).tls;
      assert.ok(s, 'all set: TLS');
      assert.ok(s.validTo.getTime() > Date.now());
      const bad = (e: Record<string, string>, re: RegExp): void =>
        assert.throws(() => loadConfig(e), (err: unknown) => err instanceof TransferEngineError && err.code === ErrorCode.BAD_ENV && re.test(err.message));
      bad({ TE_TLS_CERT: ok['TE_TLS_CERT']! }, /TE_TLS_KEY and TE_TLS_CA unset/);
      bad({ ...ok, TE_TLS_CA: '' }, /TE_TLS_CA unset/);
      bad({ TE_TLS_PEER_NAME: 'x' }, /TE_TLS_PEER_NAME is set without/);
      bad({ ...ok, TE_TLS_CERT: path.join(dir, 'missing.pem') }, /TE_TLS_CERT=.*missing\.pem/);
      bad({ ...ok, TE_TLS_CA: ok['TE_TLS_KEY']! }, /holds no PEM certificate|TE_TLS_CA/);
      bad(env('expired'), /expired on/);
      bad({ ...ok, TE_TLS_KEY: certs['peer-b']!.key }, /TE_TLS_KEY/); // another certificate's key
      bad({ ...ok, TE_TLS_PEER_NAME: 'bad name!' }, /not a DNS name/);
      const open = path.join(dir, 'open.key');
      fs.copyFileSync(ok['TE_TLS_KEY']!, open);
      fs.chmodSync(open, 0o644);
      bad({ ...ok, TE_TLS_KEY: open }, /group or others have access.*chmod 600/);
    });
  });

  describe('between our engines', () => {
    it('P2P: both ports in TLS, bytes exact both ways, the descriptor says so; TLS and authentication together', async () => {
      const a = new TransferEngine({ env: env('peer-a') });
      const b = new TransferEngine({ env: env('peer-b') });
      const sa = new TransferEngine({ env: env('peer-a', { TE_AUTH_SECRET: 'sixteen bytes and more' }) });
      const sb = new TransferEngine({ env: env('peer-b', { TE_AUTH_SECRET: 'sixteen bytes and more' }) });
      try {
        for (const e of [a, b, sa, sb]) await e.init('127.0.0.1');
        await roundTrip(a, b, b.segmentName, 4 * MiB + 3);
        await roundTrip(sa, sb, sb.segmentName, MiB, 9);
          assert.equal(a.getSegmentDescriptor(await a.openSegment(b.segmentName)).tls, 'mtls-1.3');
        assert.ok(b.stats().requestsServed > 0, 'the data went over the data port');
        assert.equal(b.stats().tlsRejected, 0);
      } finally {
        for (const e of [a, b, sa, sb]) await e.close();
      }
    });

    it('a batch of mixed sizes both ways over TLS lanes: small requests staged and corked, large ones written alone, all byte-exact and in place', async () => {
      const a = new TransferEngine({ env: env('peer-a') });
      const b = new TransferEngine({ env: env('peer-b') });
      try {
        await a.init('127.0.0.1');
        await b.init('127.0.0.1');
        const sizes = Array.from({ length: 48 }, (_, i) => [1, 100, 4096, 16 * 1024, 64 * 1024, 200_000, MiB + 17][i % 7]!);
        const total = sizes.reduce((x, y) => x + y, 0);
        const src = patternBuffer(total, 31);
        const remote = new Uint8Array(total);
        const back = new Uint8Array(total);
        const ls = a.registerLocalMemory(src);
        const lb = a.registerLocalMemory(back);
        const rr = b.registerLocalMemory(remote);
        const seg = await a.openSegment(b.segmentName);
        for (const [opcode, base] of [[TransferOpcode.WRITE, ls], [TransferOpcode.READ, lb]] as const) {
          let off = 0;
          const reqs = sizes.map((length) => {
            const r = { opcode, source: base + off, targetId: seg, targetOffset: rr + off, length };
            off += length;
            return r;
          });
          const id = a.allocateBatchID(reqs.length);
          a.submitTransfer(id, reqs);
          for (const st of await a.waitBatch(id)) assert.equal(st.status, TaskStatus.COMPLETED, st.error?.message);
          a.freeBatchID(id);
        }
        assert.ok(Buffer.from(remote).equals(Buffer.from(src)), 'every WRITE landed in place');
        assert.ok(Buffer.from(back).equals(Buffer.from(src)), 'every READ came back in place');
      } finally {
        await a.close();
        await b.close();
      }
    });

    it('central mode: TLS to TLS works; an engine without TLS gets TE_TLS_REQUIRED, one with TLS refuses a clear segment (TE_TLS_FAILED)', async () => {
      const server = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
      const base = { MC_TCP_BIND_ADDRESS: '127.0.0.1' };
      const a = new TransferEngine({ metadataServer: server.url, env: env('peer-a', base) });
      const b = new TransferEngine({ metadataServer: server.url, env: env('peer-b', base) });
      const clear = new TransferEngine({ metadataServer: server.url, env: base });
      try {
        await a.init('tls-a');
        await b.init('tls-b');
        await clear.init('clear-c');
        await roundTrip(a, b, 'tls-b');
        const before = b.stats();
        const e1 = await typedError(clear.openSegment('tls-b'));
        assert.equal(e1.code, ErrorCode.TLS_REQUIRED, e1.message);
        assert.match(e1.message, /TE_TLS_CERT/);
        const e2 = await typedError(a.openSegment('clear-c'));
        assert.equal(e2.code, ErrorCode.TLS_FAILED, e2.message);
        assert.match(e2.message, /does not offer TLS.*never falls back/);
        assert.equal(b.stats().rpcConnections, before.rpcConnections, 'refused from the descriptor: nothing was dialled');
      } finally {
        await a.close();
        await b.close();
        await clear.close();
        await server.close();
      }
    });

    it('P2P across the divide: TLS dialling clear is TE_TLS_FAILED, clear dialling TLS is refused with a hint; both ports go on serving', async () => {
      const b = new TransferEngine({ env: env('peer-b') });
      const clear = new TransferEngine();
      const a = new TransferEngine({ env: env('peer-a') });
      try {
        for (const e of [a, b, clear]) await e.init('127.0.0.1');
        const e1 = await typedError(a.openSegment(clear.segmentName));
        assert.equal(e1.code, ErrorCode.TLS_FAILED, e1.message);
        assert.match(e1.message, /before the TLS handshake finished.*never falls back to clear text/);
        const e2 = await typedError(clear.openSegment(b.segmentName));
        assert.equal(e2.code, ErrorCode.PEER_UNREACHABLE, e2.message);
        assert.match(e2.message, /takes only mutual TLS.*TE_TLS_CERT/);
        assert.ok(b.stats().tlsRejected >= 1, 'the TLS port counted the clear-text client');
        await roundTrip(a, b, b.segmentName);
      } finally {
        for (const e of [a, b, clear]) await e.close();
      }
    });

    it('TE_TLS_PEER_NAME pins the name on both ends', async () => {
      const b = new TransferEngine({ env: env('peer-b') });
      const pinsB = new TransferEngine({ env: env('peer-a', { TE_TLS_PEER_NAME: 'peer-b' }) });
      const pinsX = new TransferEngine({ env: env('peer-a', { TE_TLS_PEER_NAME: 'peer-x' }) });
      const strict = new TransferEngine({ env: env('peer-c', { TE_TLS_PEER_NAME: 'peer-b' }) }); // takes only clients named peer-b
      const plain = new TransferEngine({ env: env('peer-a') });
      try {
        for (const e of [b, pinsB, pinsX, strict, plain]) await e.init('127.0.0.1');
        await roundTrip(pinsB, b, b.segmentName);
        const e1 = await typedError(pinsX.openSegment(b.segmentName));
        assert.equal(e1.code, ErrorCode.TLS_FAILED, e1.message);
        assert.match(e1.message, /not made out to TE_TLS_PEER_NAME/);
        // peer-a's certificate dialling an engine that takes only peer-b: refused by the listener.
        const e2 = await typedError(plain.openSegment(strict.segmentName));
        assert.ok(e2.code === ErrorCode.TLS_FAILED || e2.code === ErrorCode.PEER_UNREACHABLE, `${e2.code}: ${e2.message}`);
        assert.match(e2.message, /refused our certificate|how a peer refuses our certificate/);
        assert.ok(strict.stats().tlsRejected >= 1, 'the listener counted the refusal');
        // strict pins peer-b for the peers it dials too: b is peer-b (and takes any client of the CA).
        await roundTrip(strict, b, b.segmentName, 65536, 2);
      } finally {
        for (const e of [b, pinsB, pinsX, strict, plain]) await e.close();
      }
    });
  });

  describe('bad certificates and clients at our ports', () => {
    let b: TransferEngine;
    let a: TransferEngine;
    let rpcPort = 0;
    let dataPort = 0;

    before(async () => {
      b = new TransferEngine({ env: env('peer-b', { TE_TLS_PEER_NAME: 'peer-a', TE_STALL_TIMEOUT_MS: '400' }) });
      a = new TransferEngine({ env: env('peer-a') });
      await b.init('127.0.0.1');
      await a.init('127.0.0.1');
      rpcPort = Number(b.segmentName.split(':')[1]);
      dataPort = a.getSegmentDescriptor(await a.openSegment(b.segmentName)).tcpDataPort;
    });

    after(async () => {
      await a?.close();
      await b?.close();
    });

    for (const bad of ['expired', 'wrong-ca', 'self-signed', 'other-name'] as const) {
      it(`a client certificate that is ${bad}: refused at both ports, counted, and the ports serve the next good client`, async () => {
        const before = b.stats().tlsRejected;
        const atRpc = await tlsClient(rpcPort, pki, certs[bad]!, METADATA_FRAME);
        assert.equal(atRpc.length, 0, 'no reply to a refused client');
        const atData = await tlsClient(dataPort, pki, certs[bad]!, Buffer.alloc(64));
        assert.equal(atData.length, 0);
        assert.equal(b.stats().tlsRejected, before + 2);
        const good = await tlsClient(rpcPort, pki, certs['peer-a']!, METADATA_FRAME);
        assert.ok(good.length > 16, 'a good client still gets its descriptor');
        await roundTrip(a, b, b.segmentName, 256 * 1024, before);
      });
    }

    it('clear-text clients at both TLS ports: closed unanswered, counted; the ports go on', async () => {
      const before = b.stats().tlsRejected;
      for (const port of [rpcPort, dataPort]) {
        const s = net.connect(port, '127.0.0.1', () => s.write(METADATA_FRAME));
        assert.equal((await closed(s)).length, 0);
      }
      assert.equal(b.stats().tlsRejected, before + 2);
      await roundTrip(a, b, b.segmentName, 4096, 3);
    });

    it('stalled handshakes (nothing sent, half a ClientHello) are closed within the stall timeout, counted as stalls', async () => {
      const before = b.stats().connectionsStalled;
      const started = performance.now();
      const waits: Promise<Buffer>[] = [];
      for (const port of [rpcPort, dataPort]) {
        waits.push(closed(net.connect(port, '127.0.0.1')));
        const half = net.connect(port, '127.0.0.1', () => half.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])));
        waits.push(closed(half));
      }
      // Meanwhile the ports serve others.
      await roundTrip(a, b, b.segmentName, 4096, 5);
      for (const w of waits) assert.equal((await w).length, 0);
      assert.equal(b.stats().connectionsStalled, before + 4);
      // Closed by the server's deadline (400 ms), not by the test's timeout: a bound, not a timing claim.
      assert.ok(performance.now() - started < 30_000);
    });
  });

  describe('our engine dialling servers with bad certificates', () => {
    const servers: net.Server[] = [];
    after(() => {
      for (const s of servers) s.close();
    });

    /** A TLS server presenting `cert` (signed by `ca`), requiring a client certificate of our CA. */
    async function badServer(cert: CertFiles): Promise<number> {
      const s = tls.createServer({ cert: fs.readFileSync(cert.cert), key: fs.readFileSync(cert.key), ca: fs.readFileSync(pki.ca), requestCert: true, minVersion: 'TLSv1.3' });
      s.on('tlsClientError', () => {});
      servers.push(s);
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
      return (s.address() as net.AddressInfo).port;
    }

    const cases = [
      ['expired', /certificate has expired/],
      ['wrong-ca', /not signed by TE_TLS_CA/],
      ['self-signed', /self-signed/],
      ['other-name', /not made out to TE_TLS_PEER_NAME/],
    ] as const;
    for (const [name, re] of cases) {
      it(`a peer whose certificate is ${name}: TE_TLS_FAILED saying why`, async () => {
        const a = new TransferEngine({ env: env('peer-a', { TE_TLS_PEER_NAME: name === 'other-name' ? 'peer-b' : name }) });
        try {
          await a.init('127.0.0.1');
          const port = await badServer(certs[name]!);
          const e = await typedError(a.openSegment(`127.0.0.1:${port}`));
          assert.equal(e.code, ErrorCode.TLS_FAILED, e.message);
          assert.match(e.message, re);
        } finally {
          await a.close();
        }
      });
    }

    it('a peer that accepts and never answers the ClientHello: TE_TLS_FAILED within the connect timeout', async () => {
      const silent = net.createServer(() => {});
      servers.push(silent);
      await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
      const a = new TransferEngine({ env: env('peer-a', { MC_HANDSHAKE_CONNECT_TIMEOUT: '1' }) });
      try {
        await a.init('127.0.0.1');
        const started = performance.now();
        const e = await typedError(a.openSegment(`127.0.0.1:${(silent.address() as net.AddressInfo).port}`));
        assert.equal(e.code, ErrorCode.TLS_FAILED, e.message);
        assert.match(e.message, /silent for 1000 ms/);
        assert.ok(performance.now() - started < 30_000);
      } finally {
        await a.close();
      }
    });

    it('a data port with a bad certificate behind a good descriptor: the transfer fails TE_TLS_FAILED, not retried', async () => {
      const server = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
      const a = new TransferEngine({ metadataServer: server.url, env: env('peer-a', { MC_TCP_BIND_ADDRESS: '127.0.0.1' }) });
      try {
        await a.init('dialler');
        const port = await badServer(certs['expired']!);
        const desc = { name: 'evil', protocol: 'tcp', tcp_data_port: port, tls: 'mtls-1.3', buffers: [{ name: 'cpu:0', addr: 0x10000000, length: 1 << 20 }], devices: [], priority_matrix: {} };
        await fetch(`${server.url}?key=${encodeURIComponent('mooncake/ram/evil')}`, { method: 'PUT', body: JSON.stringify(desc) });
        await fetch(`${server.url}?key=${encodeURIComponent('mooncake/rpc_meta/evil')}`, { method: 'PUT', body: JSON.stringify({ ip_or_host_name: '127.0.0.1', rpc_port: port }) });
        const seg = await a.openSegment('evil');
        const mem = new Uint8Array(4096);
        const l = a.registerLocalMemory(mem);
        const id = a.allocateBatchID(1);
        a.submitTransfer(id, [{ opcode: TransferOpcode.READ, source: l, targetId: seg, targetOffset: 0x10000000n, length: 4096 }]);
        const [s] = await a.waitBatch(id);
        assert.equal(s!.status, TaskStatus.FAILED);
        assert.equal(s!.error?.code, ErrorCode.TLS_FAILED, s!.error?.message);
        assert.match(s!.error!.message, /certificate has expired/);
        assert.equal(a.stats().retries, 0, 'a refused certificate is not retried');
        a.freeBatchID(id);
      } finally {
        await a.close();
        await server.close();
      }
    });
  });

  describe('Store master', () => {
    it('TLS master and clients: put and get byte-exact; a clear client is refused; a TLS client of a clear master gets TE_TLS_FAILED', async () => {
      const settings = loadTlsSettings({ cert: certs['peer-c']!.cert, key: certs['peer-c']!.key, ca: pki.ca });
      const master = await StoreMaster.start({ rpcAddress: '127.0.0.1', rpcPort: 0, tls: settings, httpMetadata: { host: '127.0.0.1', port: 0 } });
      const clearMaster = await StoreMaster.start({ rpcAddress: '127.0.0.1', rpcPort: 0 });
      const base = { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1' };
      const n1 = new MooncakeDistributedStore({ env: { ...base, ...env('peer-a') } });
      const n2 = new MooncakeDistributedStore({ env: { ...base, ...env('peer-b') } });
      try {
        const addr = `127.0.0.1:${master.rpcPort}`;
        assert.equal(await n1.setup('127.0.0.1', master.metadataUrl!, '16MB', '16MB', 'tcp', '', addr), 0, n1.getLastError()?.message);
        assert.equal(await n2.setup('127.0.0.1', master.metadataUrl!, '16MB', '16MB', 'tcp', '', addr), 0, n2.getLastError()?.message);
        const data = patternBuffer(3 * MiB + 5, 21);
        assert.equal(await n1.put('tls-object', data), 0, n1.getLastError()?.message);
        assert.deepEqual(Buffer.from((await n2.get('tls-object'))!), Buffer.from(data));

        const clear = new RpcClient({ host: '127.0.0.1', port: master.rpcPort, connectTimeoutMs: 2000, callTimeoutMs: 2000 });
        const e1 = await typedError(clear.call(Master.ServiceReady, null));
        assert.equal(e1.code, ErrorCode.PEER_UNREACHABLE, e1.message);
        clear.close();
        const tlsToClear = new RpcClient({ host: '127.0.0.1', port: clearMaster.rpcPort, connectTimeoutMs: 2000, callTimeoutMs: 2000, tls: settings });
        const e2 = await typedError(tlsToClear.call(Master.ServiceReady, null));
        assert.equal(e2.code, ErrorCode.TLS_FAILED, e2.message);
        tlsToClear.close();
        const wrong = loadTlsSettings({ cert: certs['wrong-ca']!.cert, key: certs['wrong-ca']!.key, ca: other.ca });
        const refused = new RpcClient({ host: '127.0.0.1', port: master.rpcPort, connectTimeoutMs: 2000, callTimeoutMs: 2000, tls: wrong });
        const e3 = await typedError(refused.call(Master.ServiceReady, null));
        assert.equal(e3.code, ErrorCode.TLS_FAILED, e3.message);
        refused.close();
        // The port still serves its clients.
        assert.deepEqual(Buffer.from((await n1.get('tls-object'))!), Buffer.from(data));
      } finally {
        await n1.close();
        await n2.close();
        await master.close();
        await clearMaster.close();
      }
    });
  });

  describe('Mooncake peers (no TLS)', () => {
    const skip = ensureInteropEnv(); // under CI a missing environment throws: the file fails, never skips
    it('our TLS engine refuses to talk to a Mooncake engine, and Mooncake cannot reach ours; neither process is harmed', { skip: skip ?? false }, async () => {
      const mc = await MooncakePeer.start();
      const ours = new TransferEngine({ env: env('peer-a', { MC_HANDSHAKE_CONNECT_TIMEOUT: '2' }) });
      const peer = new TransferEngine({ env: env('peer-b') });
      try {
        await ours.init('127.0.0.1');
        await peer.init('127.0.0.1');
        const e = await typedError(ours.openSegment(mc.segment));
        assert.equal(e.code, ErrorCode.TLS_FAILED, e.message);
        assert.match(e.message, /Mooncake/);
        const buf = await mc.alloc(4096);
        const mem = new Uint8Array(4096);
        const l = ours.registerLocalMemory(mem);
        const rejectedBefore = ours.stats().tlsRejected + ours.stats().connectionsStalled;
        const r = await mc.call('write', { target: ours.segmentName, local: buf.addr, remote: Number(l), len: 4096 });
        assert.ok(typeof r.rc === 'number' && r.rc < 0, `Mooncake's write to a TLS engine must fail, got ${String(r.rc)}`);
        assert.ok(ours.stats().tlsRejected + ours.stats().connectionsStalled > rejectedBefore, 'our port refused the clear-text handshake');
        assert.deepEqual(Buffer.from(mem), Buffer.alloc(4096), 'nothing was written');
        await roundTrip(peer, ours, ours.segmentName, 65536, 17);
        assert.equal(mc.child.exitCode, null, 'the Mooncake process is alive');
      } finally {
        await ours.close();
        await peer.close();
        await mc.stop();
      }
    });
  });
});
