/**
 * Our initiator against misbehaving peers: fake handshake + data servers
 * written here with net.createServer on 127.0.0.1, and a real peer engine in a
 * child process for the pipelined-rejection case. Every bad answer must end
 * the task FAILED/TIMEOUT with a typed error, never hang, and never take good
 * requests down with it.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import {
  TransferEngine,
  TransferOpcode,
  TaskStatus,
  type TransferStatus,
  type TransferRequest,
  type EngineConfig,
} from '../src/core.js';
import { encodeSegmentDesc } from '../src/codec/descriptor.js';
import { encodeHandshakeFrame, HandshakeType, type HandshakeFrame } from '../src/codec/handshake.js';
import { OK_FRAME, REJECT_FRAME, BAD_MAGIC_FRAME, REMOTE_BASE, REMOTE_LEN, fakePeer, fakeRpc, listen, type FakeConn, type FakePeer, type Req } from './fake-peer.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { patternBuffer } from './pattern.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Run one batch and wait for it, failing the test (not hanging) if it takes more than `boundMs`. */
async function runBatch(engine: TransferEngine, reqs: TransferRequest[], boundMs = 10_000): Promise<TransferStatus[]> {
  const bid = engine.allocateBatchID(reqs.length);
  engine.submitTransfer(bid, reqs);
  let timer: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`batch did not finish within ${boundMs} ms`)), boundMs);
  });
  try {
    const st = await Promise.race([engine.waitBatch(bid), bound]);
    engine.freeBatchID(bid);
    return st;
  } finally {
    clearTimeout(timer);
  }
}

async function newEngine(config: Partial<EngineConfig> = {}): Promise<TransferEngine> {
  const e = new TransferEngine({ config });
  await e.init('127.0.0.1');
  return e;
}

async function waitFor(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) assert.fail(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('initiator against misbehaving data servers', () => {
  let engine: TransferEngine;
  let local: Buffer;
  let localAddr = 0;
  const fakes: FakePeer[] = [];

  async function fake(onRequest: (c: FakeConn, r: Req) => void, onConnect?: (c: FakeConn) => void): Promise<{ peer: FakePeer; seg: number }> {
    const peer = await fakePeer(onRequest, onConnect);
    fakes.push(peer);
    return { peer, seg: await engine.openSegment(peer.name) };
  }

  const req = (seg: number, write: boolean, length: number, at = 0, src = localAddr): TransferRequest => ({
    opcode: write ? TransferOpcode.WRITE : TransferOpcode.READ,
    source: src,
    targetId: seg,
    targetOffset: REMOTE_BASE + BigInt(at),
    length,
  });

  before(async () => {
    engine = await newEngine({ lanesPerPeer: 1 });
    local = Buffer.alloc(4 * 1024 * 1024);
    localAddr = engine.registerLocalMemory(local);
  });

  after(async () => {
    await engine.close();
    await Promise.all(fakes.map((f) => f.close()));
  });

  it('a status frame with the wrong magic fails the task with TE_PROTOCOL_ERROR and drops the lane', async () => {
    const { peer, seg } = await fake((c) => c.sock.write(BAD_MAGIC_FRAME));
    for (const write of [false, true]) {
      const [st] = await runBatch(engine, [req(seg, write, 4096)]);
      assert.equal(st!.status, TaskStatus.FAILED);
      assert.equal(st!.error?.code, 'TE_PROTOCOL_ERROR');
      assert.equal(st!.transferred, 0);
    }
    await waitFor(() => peer.conns.every((c) => c.closed), 'the initiator to drop the out-of-step connections');
  });

  it('a valid magic with an unknown status code fails with TE_PROTOCOL_ERROR', async () => {
    const frame = Buffer.from(OK_FRAME);
    frame[0] = 7;
    const { seg } = await fake((c) => c.sock.write(frame));
    const [st] = await runBatch(engine, [req(seg, false, 100)]);
    assert.equal(st!.status, TaskStatus.FAILED);
    assert.equal(st!.error?.code, 'TE_PROTOCOL_ERROR');
  });

  it('a rejection frame fails the task with TE_ADDRESS_REJECTED', async () => {
    const { seg } = await fake((c) => c.sock.end(REJECT_FRAME));
    for (const write of [false, true]) {
      const [st] = await runBatch(engine, [req(seg, write, 100)]);
      assert.equal(st!.status, TaskStatus.FAILED);
      assert.equal(st!.error?.code, 'TE_ADDRESS_REJECTED');
    }
  });

  it('unsolicited bytes as soon as we connect fail the request with TE_PROTOCOL_ERROR', async () => {
    const { seg } = await fake(
      () => {},
      (c) => c.sock.write('SSH-2.0-OpenSSH_9.6\r\n'),
    );
    const [st] = await runBatch(engine, [req(seg, false, 64)]);
    assert.equal(st!.status, TaskStatus.FAILED);
    assert.equal(st!.error?.code, 'TE_PROTOCOL_ERROR');
  });

  it('unsolicited bytes after a complete answer: that task completes, the lane is dropped, the next request works', async () => {
    const content = patternBuffer(256, 3);
    let first = true;
    const { peer, seg } = await fake((c, r) => {
      const extra = first ? Buffer.from('garbage!') : Buffer.alloc(0);
      first = false;
      c.sock.write(Buffer.concat([OK_FRAME, content.subarray(0, r.size), extra]));
    });
    local.fill(0, 0, 256);
    const [st] = await runBatch(engine, [req(seg, false, 256)]);
    assert.equal(st!.status, TaskStatus.COMPLETED);
    assert.ok(local.subarray(0, 256).equals(content));
    await waitFor(() => peer.conns[0]!.closed, 'the lane that received unsolicited bytes to be closed');
    local.fill(0, 0, 256);
    const [st2] = await runBatch(engine, [req(seg, false, 128)]);
    assert.equal(st2!.status, TaskStatus.COMPLETED);
    assert.ok(local.subarray(0, 128).equals(content.subarray(0, 128)));
    assert.equal(peer.conns.length, 2, 'expected a fresh connection after the bad one');
  });

  it('a server that closes mid READ payload: FAILED TE_PEER_UNREACHABLE with transferred < length', async () => {
    for (const [len, how] of [[200, 'end'], [256 * 1024, 'end'], [256 * 1024, 'reset']] as const) {
      const { seg } = await fake((c, r) => {
        c.sock.write(Buffer.concat([OK_FRAME, Buffer.alloc(Math.floor(r.size / 2), 0x42)]), () => {
          if (how === 'end') c.sock.end();
          else c.sock.resetAndDestroy();
        });
      });
      const [st] = await runBatch(engine, [req(seg, false, len)]);
      assert.equal(st!.status, TaskStatus.FAILED, `${how} after half of ${len}`);
      assert.equal(st!.error?.code, 'TE_PEER_UNREACHABLE');
      assert.ok(st!.transferred < len, `transferred ${st!.transferred} of ${len}`);
    }
  });

  it('a multi-slice READ cut off midway reports only the slices that arrived', async () => {
    const e = await newEngine({ lanesPerPeer: 1, splitSize: 64 * 1024 });
    try {
      const mem = Buffer.alloc(1024 * 1024);
      const addr = e.registerLocalMemory(mem);
      let served = 0;
      const peer = await fakePeer((c, r) => {
        if (c.closed || c.sock.destroyed) return;
        if (served++ < 3) c.sock.write(Buffer.concat([OK_FRAME, Buffer.alloc(r.size, 0x33)]));
        else c.sock.write(Buffer.concat([OK_FRAME, Buffer.alloc(100, 0x33)]), () => c.sock.destroy());
      });
      fakes.push(peer);
      const seg = await e.openSegment(peer.name);
      const len = 1024 * 1024;
      const [st] = await runBatch(e, [{ opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: REMOTE_BASE, length: len }]);
      assert.equal(st!.status, TaskStatus.FAILED);
      assert.equal(st!.error?.code, 'TE_PEER_UNREACHABLE');
      assert.ok(st!.transferred < len);
      assert.equal(st!.transferred % (64 * 1024), 0, 'transferred must count whole acknowledged slices only');
      assert.ok(st!.transferred <= 3 * 64 * 1024);
    } finally {
      await e.close();
    }
  });

  it('a server that dies mid WRITE body fails the task with TE_PEER_UNREACHABLE', async () => {
    const { seg } = await fake(() => {}, (c) => {
      c.sock.on('data', () => {
        if (c.bodyBytes > 100 * 1024) c.sock.destroy();
      });
    });
    const [st] = await runBatch(engine, [req(seg, true, 4 * 1024 * 1024)]);
    assert.equal(st!.status, TaskStatus.FAILED);
    assert.equal(st!.error?.code, 'TE_PEER_UNREACHABLE');
    assert.equal(st!.transferred, 0);
  });

  it('a server that never answers: TIMEOUT after MC_TRANSFER_TIMEOUT, never a hang', async () => {
    const e = await newEngine({ transferTimeoutMs: 1000 });
    try {
      const mem = Buffer.alloc(16 * 1024 * 1024);
      const addr = e.registerLocalMemory(mem);
      const silent = await fakePeer(() => {});
      // Accepts but never reads: a large WRITE blocks in the socket buffers.
      const stuck = await fakePeer(() => {}, (c) => c.sock.pause());
      fakes.push(silent, stuck);
      const segSilent = await e.openSegment(silent.name);
      const segStuck = await e.openSegment(stuck.name);
      const st = await runBatch(
        e,
        [
          { opcode: TransferOpcode.READ, source: addr, targetId: segSilent, targetOffset: REMOTE_BASE, length: 4096 },
          { opcode: TransferOpcode.WRITE, source: addr, targetId: segSilent, targetOffset: REMOTE_BASE, length: 4096 },
          { opcode: TransferOpcode.WRITE, source: addr, targetId: segStuck, targetOffset: REMOTE_BASE, length: mem.length },
        ],
        // A hang, not a duration: 6 rounds (MC_RETRY_CNT 5) of 1 s timeouts plus backoff came within 11 ms of an 8 s bound once.
        30_000,
      );
      for (const s of st) {
        assert.equal(s.status, TaskStatus.TIMEOUT);
        assert.equal(s.error?.code, 'TE_TIMEOUT');
      }
      // The timed-out connections are dropped (the stuck server must read to see it), and the
      // region is no longer pinned.
      for (const c of stuck.conns) c.sock.resume();
      await waitFor(() => silent.conns.every((c) => c.closed) && stuck.conns.every((c) => c.closed), 'timed-out lanes to close');
      e.unregisterLocalMemory(addr);
    } finally {
      await e.close();
    }
  });

  it('a data port nobody listens on: FAILED TE_PEER_UNREACHABLE quickly', async () => {
    const dead = net.createServer();
    const deadPort = await listen(dead);
    await new Promise<void>((r) => dead.close(() => r()));
    const rpc = await fakeRpc((f, sock) => {
      const name = `127.0.0.1:${(sock.address() as net.AddressInfo).port}`;
      const desc = encodeSegmentDesc({ name, protocol: 'tcp', tcpDataPort: deadPort, tcpProtoVersion: 2, buffers: [{ name, addr: REMOTE_BASE, length: REMOTE_LEN }] });
      sock.end(encodeHandshakeFrame(f.type, `${desc}\n`));
    });
    try {
      const seg = await engine.openSegment(`127.0.0.1:${rpc.port}`);
      const st = await runBatch(engine, [req(seg, false, 100), req(seg, true, 100, 100)], 5000);
      for (const s of st) {
        assert.equal(s.status, TaskStatus.FAILED);
        assert.equal(s.error?.code, 'TE_PEER_UNREACHABLE');
      }
    } finally {
      await rpc.close();
    }
  });
});

describe('initiator against misbehaving handshake servers', () => {
  let engine: TransferEngine;
  before(async () => {
    engine = await newEngine({ handshakeConnectTimeoutMs: 2000 });
  });
  after(async () => {
    await engine.close();
  });

  async function openAgainst(answer: (frame: HandshakeFrame, sock: net.Socket) => void): Promise<unknown> {
    const rpc = await fakeRpc(answer);
    try {
      await engine.openSegment(`127.0.0.1:${rpc.port}`);
      return null;
    } catch (e) {
      return e;
    } finally {
      await rpc.close();
    }
  }

  const goodDesc = (port: number, over: Record<string, unknown> = {}): string =>
    `${JSON.stringify({
      name: `127.0.0.1:${port}`,
      protocol: 'tcp',
      tcp_data_port: 1,
      tcp_proto_version: 2,
      buffers: [{ name: 'b', addr: 4096, length: 4096 }],
      ...over,
    })}\n`;

  it('reply with a different type byte: TE_PROTOCOL_ERROR', async () => {
    const err = await openAgainst((_f, sock) => sock.end(encodeHandshakeFrame(HandshakeType.PROBE, '{"status":"success"}\n')));
    assert.equal((err as { code?: string } | null)?.code, 'TE_PROTOCOL_ERROR');
  });

  it('close without a reply: TE_PEER_UNREACHABLE', async () => {
    const err = await openAgainst((_f, sock) => sock.end());
    assert.equal((err as { code?: string } | null)?.code, 'TE_PEER_UNREACHABLE');
  });

  it('reply claiming more than 1 MiB: TE_FRAME_TOO_LARGE', async () => {
    const err = await openAgainst((_f, sock) => {
      const b = Buffer.alloc(9);
      b.writeBigUInt64LE(BigInt(64 << 20));
      b[8] = 1;
      sock.write(b);
    });
    assert.equal((err as { code?: string } | null)?.code, 'TE_FRAME_TOO_LARGE');
  });

  it('garbage descriptors: TE_MALFORMED; foreign protocol: TE_NO_TRANSPORT; null: TE_INVALID_SEGMENT', async () => {
    const cases: Array<[(port: number) => string, string]> = [
      [() => 'not json at all\n', 'TE_MALFORMED'],
      [() => '[1,2,3]\n', 'TE_MALFORMED'],
      [(p) => goodDesc(p, { protocol: 'carrier-pigeon' }), 'TE_MALFORMED'],
      [(p) => goodDesc(p, { buffers: [{ name: 'b', addr: 0, length: 4096 }] }), 'TE_MALFORMED'],
      [(p) => goodDesc(p, { buffers: [{ name: 'b', addr: 1.5, length: 4096 }] }), 'TE_MALFORMED'],
      [(p) => goodDesc(p, { tcp_data_port: 70000 }), 'TE_MALFORMED'],
      [(p) => goodDesc(p, { tcp_data_port: 0 }), 'TE_MALFORMED'],
      [(p) => goodDesc(p, { protocol: 'rdma' }), 'TE_NO_TRANSPORT'],
      [() => 'null\n', 'TE_INVALID_SEGMENT'],
    ];
    for (const [make, code] of cases) {
      const err = await openAgainst((f, sock) => sock.end(encodeHandshakeFrame(f.type, make((sock.address() as net.AddressInfo).port))));
      assert.equal((err as { code?: string } | null)?.code, code, `descriptor ${make(0)}`);
    }
  });
});

describe('a rejected request does not fail the good ones pipelined with it (real peer)', () => {
  let peer: PeerProcess;
  let engine: TransferEngine;
  const REGION = 4 * 1024 * 1024;
  let remote = 0;

  before(async () => {
    peer = await spawnPeer();
    remote = await peer.register(REGION, 5);
    engine = await newEngine();
  });
  after(async () => {
    await engine.close();
    await peer.stop();
  });

  async function check(badIdx: Set<number>, n: number): Promise<void> {
    const piece = 32 * 1024;
    const local = Buffer.alloc(n * piece);
    const addr = engine.registerLocalMemory(local);
    try {
      const seg = await engine.openSegment(peer.segmentName);
      // READs: good ones read distinct pieces of the peer's pattern.
      const reqs: TransferRequest[] = [];
      for (let i = 0; i < n; i++) {
        const target = badIdx.has(i) ? BigInt(remote) + 1024n * 1024n * 1024n : BigInt(remote + ((i * piece) % REGION));
        reqs.push({ opcode: TransferOpcode.READ, source: addr + i * piece, targetId: seg, targetOffset: target, length: piece });
      }
      const st = await runBatch(engine, reqs);
      const pattern = patternBuffer(REGION, 5);
      for (let i = 0; i < n; i++) {
        if (badIdx.has(i)) {
          assert.equal(st[i]!.status, TaskStatus.FAILED, `bad READ ${i}`);
          assert.equal(st[i]!.error?.code, 'TE_ADDRESS_REJECTED', `bad READ ${i}`);
        } else {
          assert.equal(st[i]!.status, TaskStatus.COMPLETED, `good READ ${i} ended ${TaskStatus[st[i]!.status]} ${st[i]!.error?.code ?? ''}`);
          const off = (i * piece) % REGION;
          assert.ok(local.subarray(i * piece, (i + 1) * piece).equals(pattern.subarray(off, off + piece)), `READ ${i} data`);
        }
      }
      // WRITEs: good ones write distinct pieces; the peer's region must end up exactly as expected.
      const src = patternBuffer(n * piece, 9);
      src.copy(local);
      const expectRemote = Buffer.from(pattern);
      const wreqs: TransferRequest[] = [];
      for (let i = 0; i < n; i++) {
        const off = (i * piece) % REGION;
        const target = badIdx.has(i) ? BigInt(remote + REGION - 100) : BigInt(remote + off);
        if (!badIdx.has(i)) src.copy(expectRemote, off, i * piece, (i + 1) * piece);
        wreqs.push({ opcode: TransferOpcode.WRITE, source: addr + i * piece, targetId: seg, targetOffset: target, length: piece });
      }
      const wst = await runBatch(engine, wreqs);
      for (let i = 0; i < n; i++) {
        const want = badIdx.has(i) ? TaskStatus.FAILED : TaskStatus.COMPLETED;
        assert.equal(wst[i]!.status, want, `WRITE ${i} ended ${TaskStatus[wst[i]!.status]} ${wst[i]!.error?.code ?? ''}`);
      }
      assert.equal(await peer.hash(remote, REGION), sha256(expectRemote), 'peer memory differs from the good writes');
      await peer.call('fill', { addr: remote, length: REGION, seed: 5 });
    } finally {
      engine.unregisterLocalMemory(addr);
    }
    assert.equal(peer.child.exitCode, null, 'the peer process died');
  }

  it('one bad address among 40 requests', async () => {
    await check(new Set([7]), 40);
  });

  it('several bad addresses among 100 requests', async () => {
    await check(new Set([3, 20, 21, 50, 77]), 100);
  });
});
