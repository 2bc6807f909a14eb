/**
 * Stale descriptors in P2P mode: a peer killed and restarted on the same RPC
 * port (so the same segment name) but a new data port is found again by the
 * retry rounds, which refetch the descriptor (MC_RETRY_CNT); addresses of the
 * old engine are refused by the new one (each engine has its own random
 * address base), those of the new one work without reopening; a peer that is
 * simply gone still fails promptly, with bounded attempts and no retry storm. (The central-store variants are in
 * metadata-http and metadata-etcd.)
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine, TransferOpcode, TaskStatus } from '../src/core.js';
import { spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { patternBuffer } from './pattern.js';

const SIZE = 1024 * 1024;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('stale peers in P2P mode', () => {
  const peers: PeerProcess[] = [];
  const engine = new TransferEngine();
  after(async () => {
    await engine.close();
    for (const p of peers) await p.stop();
  });

  it('a peer restarted on the same RPC port but a new data port is found again, without reopening', async () => {
    await engine.init('127.0.0.1');
    const local = Buffer.alloc(SIZE);
    const localAddr = engine.registerLocalMemory(local);
    const first = await spawnPeer();
    peers.push(first);
    const remote = await first.register(SIZE, 31);
    const seg = await engine.openSegment(first.segmentName);
    const read = async (at = remote): Promise<{ status: TaskStatus; code: string | undefined }> => {
      const bid = engine.allocateBatchID(1);
      engine.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: localAddr, targetId: seg, targetOffset: at, length: SIZE }]);
      const [st] = await engine.waitBatch(bid);
      engine.freeBatchID(bid);
      return { status: st!.status, code: st!.error?.code };
    };
    assert.deepEqual(await read(), { status: TaskStatus.COMPLETED, code: undefined });
    first.kill();
    await sleep(200);
    // Gone for good (for now): one refetch fails, the task fails promptly with the original error.
    const t0 = Date.now();
    assert.deepEqual(await read(), { status: TaskStatus.FAILED, code: 'TE_PEER_UNREACHABLE' });
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
    // Back on the same RPC port: same name, new data port.
    const second = await spawnPeer({}, { rpcPort: first.rpcPort });
    peers.push(second);
    assert.equal(second.segmentName, first.segmentName);
    assert.notEqual(second.dataPort, first.dataPort);
    const fresh = await second.register(SIZE, 32);
    assert.notEqual(fresh, remote, 'each engine starts its addresses at its own random base');
    // The retry rounds find the new descriptor; the old engine's address names nothing there.
    assert.deepEqual(await read(remote), { status: TaskStatus.FAILED, code: 'TE_ADDRESS_REJECTED' });
    assert.deepEqual(await read(fresh), { status: TaskStatus.COMPLETED, code: undefined });
    assert.equal(sha256(local), sha256(patternBuffer(SIZE, 32)));
    assert.equal(engine.getSegmentDescriptor(seg).tcpDataPort, second.dataPort, 'the cache holds the fresh descriptor');
    // No region stayed pinned by the retried slices.
    engine.unregisterLocalMemory(localAddr);
  });
});
