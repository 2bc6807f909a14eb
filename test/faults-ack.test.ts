/**
 * A WRITE completes only when its status frame has come and its whole payload
 * was handed to the socket: a peer that acknowledges a payload it cannot have
 * received (it answers OK on the header and never reads) is a protocol error,
 * never a COMPLETED task, and is not retried (a peer that speaks garbage).
 * Protocol errors from a peer that keeps sending them are not retried either.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferStatus, type TransferRequest } from '../src/core.js';
import { encodeSegmentDesc } from '../src/codec/descriptor.js';
import { HandshakeFrameDecoder, encodeHandshakeFrame } from '../src/codec/handshake.js';
import { STATUS_OK_FRAME } from '../src/codec/wire.js';
import { expectNoLeaks, resourceSnapshot } from './fault-proxy.js';

const BASE = 0x3000_0000_0000n;
const LEN = 64n << 20n;

interface Fake {
  name: string;
  /** Data connections accepted. */
  connections: number;
  close(): Promise<void>;
}

function listen(server: net.Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => resolve((server.address() as net.AddressInfo).port));
  });
}

/** A P2P peer whose handshake publishes one buffer, and whose data port runs `onConnection`. */
async function fakePeer(onConnection: (sock: net.Socket) => void): Promise<Fake> {
  const socks = new Set<net.Socket>();
  const track = (s: net.Socket): void => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => {});
  };
  const fake: Fake = { name: '', connections: 0, close: async () => {} };
  const data = net.createServer((s) => {
    track(s);
    fake.connections++;
    onConnection(s);
  });
  const dataPort = await listen(data);
  const rpc = net.createServer((s) => {
    track(s);
    const dec = new HandshakeFrameDecoder();
    s.on('data', (d: Buffer) => {
      const f = dec.push(d);
      if (!f) return;
      const desc = encodeSegmentDesc({ name: fake.name, protocol: 'tcp', tcpDataPort: dataPort, tcpProtoVersion: 2, buffers: [{ name: fake.name, addr: BASE, length: LEN }], fileBuffers: [{ id: 1, path: '/fake/file', size: Number(LEN), align: 1 }] });
      s.end(encodeHandshakeFrame(f.type, `${desc}\n`));
    });
  });
  fake.name = `127.0.0.1:${await listen(rpc)}`;
  fake.close = async () => {
    for (const s of socks) s.destroy();
    await Promise.all([new Promise((r) => data.close(r)), new Promise((r) => rpc.close(r))]);
  };
  return fake;
}

async function runBatch(engine: TransferEngine, reqs: TransferRequest[], boundMs = 15_000): Promise<TransferStatus[]> {
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

describe('write acknowledgements', () => {
  const fakes: Fake[] = [];
  after(async () => {
    await Promise.all(fakes.map((f) => f.close()));
  });

  it('an OK for a WRITE whose payload cannot have arrived is a protocol error, not a completion, and is not retried', async () => {
    const before = resourceSnapshot();
    // Answers OK as soon as a header arrives, then stops reading: the 48 MiB payload cannot all leave
    // (more than the kernel's socket buffers hold). A file request, because those are not cut into
    // 256 KiB wire requests, whose payloads would fit in the socket buffers and look delivered.
    const fake = await fakePeer((s) => {
      s.once('data', () => {
        s.pause();
        s.write(STATUS_OK_FRAME);
      });
    });
    fakes.push(fake);
    // One wire request; the no-progress timeout is well after the two sweeps (1 s apart) that detect it.
    const engine = new TransferEngine({ env: { MC_TRANSFER_TIMEOUT: '5', MC_TCP_LANES_PER_PEER: '1', MC_RETRY_CNT: '3' }, config: { splitSize: 48 << 20 } });
    try {
      await engine.init('127.0.0.1');
      const mem = Buffer.alloc(48 << 20, 1);
      const addr = engine.registerLocalMemory(mem);
      const seg = await engine.openSegment(fake.name);
      const t0 = performance.now();
      const [st] = await runBatch(engine, [{ opcode: TransferOpcode.WRITE, source: addr, targetId: seg, targetOffset: 0, length: mem.length, fileId: 1 }]);
      assert.equal(st!.status, TaskStatus.FAILED, `status ${st!.status}: ${st!.error?.message}`);
      assert.equal(st!.error?.code, 'TE_PROTOCOL_ERROR', st!.error?.message);
      assert.match(st!.error!.message, /before its payload could have arrived/);
      assert.equal(st!.transferred, 0);
      assert.ok(performance.now() - t0 < 5000, 'found before the no-progress timeout');
      assert.equal(engine.stats().retries, 0, 'a protocol error is not retried');
      assert.equal(fake.connections, 1);
      engine.unregisterLocalMemory(addr);
    } finally {
      await engine.close();
    }
    await fake.close();
    await expectNoLeaks(before, 'early OK');
  });

  it('a peer that answers garbage is not retried', async () => {
    const fake = await fakePeer((s) => s.once('data', () => s.write(Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'))));
    fakes.push(fake);
    const engine = new TransferEngine({ env: { MC_RETRY_CNT: '5' } });
    try {
      await engine.init('127.0.0.1');
      const mem = Buffer.alloc(4096);
      const addr = engine.registerLocalMemory(mem);
      const seg = await engine.openSegment(fake.name);
      const st = await runBatch(engine, [
        { opcode: TransferOpcode.READ, source: addr, targetId: seg, targetOffset: BASE, length: 4096 },
        { opcode: TransferOpcode.WRITE, source: addr, targetId: seg, targetOffset: BASE, length: 4096 },
      ]);
      for (const s of st) {
        assert.equal(s.status, TaskStatus.FAILED);
        assert.equal(s.error?.code, 'TE_PROTOCOL_ERROR');
      }
      assert.equal(engine.stats().retries, 0);
    } finally {
      await engine.close();
    }
  });
});
