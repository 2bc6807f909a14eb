/**
 * Shared-secret mode: both ports of an engine with a secret demand our
 * challenge-response (src/auth.ts) before anything else. Raw clients that
 * skip it (as a Mooncake peer does) get the challenge and a rejection, never a
 * byte of memory or metadata, and write nothing; engines without the secret or
 * with another one get TE_AUTH_REQUIRED / TE_AUTH_FAILED; engines with it
 * transfer data as usual.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { encodeFileHeader } from '../src/codec/wire.js';
import { TransferEngine, TransferOpcode, TaskStatus, ErrorCode, TransferEngineError } from '../src/core.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { TransferEngine as HighLevelEngine } from '../src/index.js';
import { HandshakeType, encodeHandshakeFrame, decodeHandshakeFrame } from '../src/codec/handshake.js';
import { AuthKind, CHALLENGE_SIZE, REJECT_FRAME, authKindAt, AUTH_SCHEME, encodeResponse, encodeChallenge, encodeAccept } from '../src/codec/auth.js';
import { AuthClientSide, AuthServerSide } from '../src/auth.js';
import { decodeSegmentDesc } from '../src/codec/descriptor.js';
import { patternBuffer } from './pattern.js';
import { RawConn, header, READ, WRITE, V2, waitFor } from './security-helpers.js';

const SECRET = 'correct horse battery staple';
const OTHER = 'incorrect donkey battery staple';
const SIZE = 1 << 20;
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

function teCode(code: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  };
}

/** What an unauthenticated client receives: exactly the challenge, then the rejection, then the close. */
async function assertRefused(c: RawConn): Promise<void> {
  assert.equal(await c.waitClosed(5000), true, 'the server kept an unauthenticated connection open');
  const got = c.bytes;
  assert.equal(got.length, CHALLENGE_SIZE + REJECT_FRAME.length, `received ${got.length} bytes`);
  assert.equal(authKindAt(got, 0), AuthKind.CHALLENGE);
  assert.deepEqual(got.subarray(CHALLENGE_SIZE), REJECT_FRAME);
}

describe('shared-secret authentication', () => {
  const target = new TransferEngine({ env: {}, authSecret: SECRET, config: { handshakeConnectTimeoutMs: 1000 } });
  let region = 0;
  let regionCopy: Buffer;
  let rw = 0;

  before(async () => {
    await target.init('127.0.0.1');
    regionCopy = patternBuffer(SIZE, 7);
    region = target.registerLocalMemory(Buffer.from(regionCopy));
    rw = target.registerLocalMemory(Buffer.alloc(SIZE));
  });

  after(async () => {
    await target.close();
  });

  it('the descriptor advertises the scheme (a field Mooncake ignores)', () => {
    assert.equal(target.getLocalSegmentDescriptor().auth, AUTH_SCHEME);
  });

  it('a raw READ on the data port is refused before a byte of memory is sent', async () => {
    const before = target.stats();
    const c = await RawConn.open(target.dataPort);
    c.write(header(4096, region, READ | V2));
    c.write(header(4096, region, READ)); // v1 too
    await assertRefused(c);
    const after = target.stats();
    assert.equal(after.requestsServed, before.requestsServed, 'a request was served');
    assert.equal(after.authRejected, before.authRejected + 1);
  });

  it('a raw WRITE on the data port writes nothing', async () => {
    const c = await RawConn.open(target.dataPort);
    c.write(Buffer.concat([header(4096, region, WRITE | V2), Buffer.alloc(4096, 0xee), header(4096, region, WRITE), Buffer.alloc(4096, 0xee)]));
    await assertRefused(c);
    assert.equal(sha(target.localView(region, SIZE)), sha(regionCopy), 'memory changed');
  });

  it('a well-formed answer with a wrong MAC is refused, and the request behind it is not served', async () => {
    const c = await RawConn.open(target.dataPort);
    await c.waitBytes(CHALLENGE_SIZE);
    c.write(encodeResponse(Buffer.alloc(32, 1), Buffer.alloc(32, 2))); // well-formed, wrong MAC
    c.write(header(4096, region, READ | V2));
    await assertRefused(c);
  });

  it("the file transport's own listener demands the same authentication", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'te-sec-'));
    const file = path.join(dir, 'f');
    writeFileSync(file, Buffer.alloc(8192, 0x33));
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    try {
      const id = target.registerLocalFile(file, 8192);
      await target.installTransport('nvmeof_generic', `trtype=tcp adrfam=ipv4 traddr=127.0.0.1 trsvcid=${port}`);
      const h = Buffer.alloc(24);
      encodeFileHeader(h, 0, 4096, 0, false, id);
      const c = await RawConn.open(port);
      c.write(h);
      await assertRefused(c);
      await target.uninstallTransport('nvmeof_generic');
      target.unregisterLocalFile(file);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a valid handshake frame on the RPC port gets no metadata', async () => {
    for (const type of [HandshakeType.METADATA, HandshakeType.PROBE, HandshakeType.NOTIFY]) {
      const c = await RawConn.open(target.rpcPort);
      c.write(encodeHandshakeFrame(type, type === HandshakeType.NOTIFY ? '{"name":"x","notify_msg":"y"}\n' : '{}\n'));
      await assertRefused(c);
      assert.ok(!c.bytes.toString('latin1').includes('tcp_data_port'));
    }
    assert.deepEqual(target.getNotifies(), [], 'an unauthenticated Notify was queued');
  });

  it('a Mooncake client reading the challenge as a frame sees a length above any limit', () => {
    const challenge = encodeChallenge(Buffer.alloc(32));
    assert.equal(authKindAt(challenge), AuthKind.CHALLENGE);
    assert.ok(challenge.readBigUInt64LE(0) > 128n << 20n);
    assert.throws(() => decodeHandshakeFrame(challenge, 128 << 20), teCode(ErrorCode.FRAME_TOO_LARGE));
  });

  it('an engine without the secret: TE_AUTH_REQUIRED at openSegment', async () => {
    const e = new TransferEngine({ env: {} });
    await e.init('127.0.0.1');
    try {
      await assert.rejects(e.openSegment(target.segmentName), teCode(ErrorCode.AUTH_REQUIRED));
      await assert.rejects(e.sendProbe(target.segmentName), teCode(ErrorCode.AUTH_REQUIRED));
    } finally {
      await e.close();
    }
  });

  it('an engine with another secret: TE_AUTH_FAILED, counted by the target', async () => {
    const before = target.stats().authRejected;
    const e = new TransferEngine({ env: {}, authSecret: OTHER });
    await e.init('127.0.0.1');
    try {
      await assert.rejects(e.openSegment(target.segmentName), teCode(ErrorCode.AUTH_FAILED));
    } finally {
      await e.close();
    }
    // >=: the connections of the previous case may be counted late (their clients left before being refused).
    assert.ok(await waitFor(() => target.stats().authRejected >= before + 1), 'the failed authentication was not counted');
  });

  it('an engine with the secret reads, writes (verified), notifies and probes', async () => {
    const e = new TransferEngine({ env: { TE_AUTH_SECRET: SECRET } }); // the variable works as the option does
    await e.init('127.0.0.1');
    try {
      const seg = await e.openSegment(target.segmentName);
      const local = e.registerLocalMemory(Buffer.alloc(SIZE));
      const src = e.registerLocalMemory(patternBuffer(SIZE, 9));
      const b = e.allocateBatchID(2);
      e.submitTransfer(b, [
        { opcode: TransferOpcode.READ, source: local, targetId: seg, targetOffset: region, length: SIZE },
        { opcode: TransferOpcode.WRITE, source: src, targetId: seg, targetOffset: rw, length: SIZE },
      ]);
      const st = await e.waitBatch(b);
      assert.deepEqual(st.map((s) => s.status), [TaskStatus.COMPLETED, TaskStatus.COMPLETED], String(st.map((s) => s.error?.message)));
      assert.equal(sha(e.localView(local, SIZE)), sha(regionCopy));
      assert.equal(sha(target.localView(rw, SIZE)), sha(patternBuffer(SIZE, 9)));
      await e.sendNotify(target.segmentName, { name: 'n', msg: 'm' });
      assert.deepEqual(target.getNotifies(), [{ name: 'n', msg: 'm' }]);
      await e.sendProbe(target.segmentName);
    } finally {
      await e.close();
    }
  });

  it('the high-level API takes the secret as an option (and reports TE_AUTH_REQUIRED without it)', async () => {
    const withSecret = new HighLevelEngine({ env: {}, authSecret: SECRET });
    const without = new HighLevelEngine({ env: {} });
    try {
      assert.equal(await withSecret.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      assert.equal(await without.initialize('127.0.0.1', 'P2PHANDSHAKE', 'tcp', ''), 0);
      assert.equal(await withSecret.getFirstBufferAddress(target.segmentName), region);
      const buf = Buffer.alloc(4096, 0x5a);
      assert.equal(withSecret.registerMemory(buf, buf.length), 0);
      assert.equal(await withSecret.transferSyncWrite(target.segmentName, withSecret.getBufferAddress(buf), rw, 4096), 0);
      assert.deepEqual(Buffer.from(target.localView(rw, 4096)), buf);
      assert.equal(await without.getFirstBufferAddress(target.segmentName), 0);
      assert.equal(without.getLastError()?.code, ErrorCode.AUTH_REQUIRED);
    } finally {
      await withSecret.close();
      await without.close();
    }
  });

  it('an engine with a secret refuses a peer without one (TE_AUTH_FAILED), within the connect timeout', async () => {
    const plain = new TransferEngine({ env: {} });
    await plain.init('127.0.0.1');
    const e = new TransferEngine({ env: {}, authSecret: SECRET, config: { handshakeConnectTimeoutMs: 500 } });
    await e.init('127.0.0.1');
    try {
      await assert.rejects(e.openSegment(plain.segmentName), teCode(ErrorCode.AUTH_FAILED));
    } finally {
      await e.close();
      await plain.close();
    }
  });

  it('the handshake client and server halves agree, and a wrong server proof is caught', () => {
    const c = new AuthClientSide(Buffer.from(SECRET), 'peer');
    const server = new AuthServerSide(Buffer.from(SECRET));
    const challenge = server.challenge();
    const st = c.step(challenge, 0, challenge.length);
    assert.equal(st.kind, 'reply');
    if (st.kind !== 'reply') return;
    const accept = server.verify(st.reply);
    assert.ok(accept, 'the server refused a correct answer');
    // A server that does not hold the secret cannot forge its proof.
    const forged = encodeAccept(Buffer.alloc(32, 9));
    assert.throws(() => c.step(forged, 0, forged.length), teCode(ErrorCode.AUTH_FAILED));
    assert.deepEqual(c.step(accept, 0, accept.length), { kind: 'done', consumed: accept.length });
    // The other secret's answer is refused by the server.
    const other = new AuthClientSide(Buffer.from(OTHER), 'peer');
    const st2 = other.step(challenge, 0, challenge.length);
    assert.equal(st2.kind === 'reply' ? server.verify(st2.reply) : 'no reply', null);
  });
});

describe('shared-secret authentication through central metadata (the data lanes authenticate)', () => {
  it('right secret: data moves; wrong secret: the task fails with TE_AUTH_FAILED and nothing is written', async () => {
    const meta = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
    const url = `http://127.0.0.1:${meta.port}/metadata`;
    const target = new TransferEngine({ env: {}, metadataServer: url, authSecret: SECRET });
    const good = new TransferEngine({ env: {}, metadataServer: url, authSecret: SECRET });
    const bad = new TransferEngine({ env: {}, metadataServer: url, authSecret: OTHER });
    try {
      await target.init('sec-target', '127.0.0.1');
      await good.init('sec-good', '127.0.0.1');
      await bad.init('sec-bad', '127.0.0.1');
      const dst = target.registerLocalMemory(Buffer.alloc(SIZE));
      await target.flushMetadata();
      const desc = decodeSegmentDesc(await (await fetch(`${url}?key=${encodeURIComponent('mooncake/ram/sec-target')}`)).text());
      assert.equal(desc.auth, AUTH_SCHEME, 'the stored descriptor advertises authentication');

      const run = async (e: TransferEngine, seed: number): Promise<{ status: TaskStatus; error?: TransferEngineError }> => {
        const seg = await e.openSegment('sec-target'); // from the store: no RPC exchange, so the lanes authenticate first
        const src = e.registerLocalMemory(patternBuffer(SIZE, seed));
        const b = e.allocateBatchID(1);
        e.submitTransfer(b, [{ opcode: TransferOpcode.WRITE, source: src, targetId: seg, targetOffset: dst, length: SIZE }]);
        return (await e.waitBatch(b))[0]!;
      };
      const ok = await run(good, 21);
      assert.equal(ok.status, TaskStatus.COMPLETED, ok.error?.message);
      assert.equal(sha(target.localView(dst, SIZE)), sha(patternBuffer(SIZE, 21)));
      const served = target.stats().requestsServed;
      const no = await run(bad, 22);
      assert.equal(no.status, TaskStatus.FAILED);
      assert.equal(no.error?.code, ErrorCode.AUTH_FAILED, no.error?.message);
      assert.equal(target.stats().requestsServed, served, 'a request of the wrong-secret engine was served');
      assert.equal(sha(target.localView(dst, SIZE)), sha(patternBuffer(SIZE, 21)), 'the wrong-secret engine wrote');
      assert.ok(target.stats().authRejected >= 1);
    } finally {
      await bad.close();
      await good.close();
      await target.close();
      await meta.close();
    }
  });
});
