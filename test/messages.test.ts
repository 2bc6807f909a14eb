/** Notify and Probe over the RPC port, between two engines in separate processes. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TransferEngine, ErrorCode, type Notification } from '../src/core.js';
import { spawnPeer, type PeerProcess } from './helpers.js';

let engine: TransferEngine;
let peer: PeerProcess;

before(async () => {
  engine = new TransferEngine();
  await engine.init('127.0.0.1');
  peer = await spawnPeer();
});

after(async () => {
  await engine.close();
  await peer.stop();
});

test('a notification reaches the peer, which drains it once', async () => {
  await engine.sendNotify(peer.segmentName, { name: 'kv-ready', msg: 'layer 3 done' });
  await engine.sendNotify(peer.segmentName, { name: 'kv-ready', msg: 'ünïcode ✓' });
  const got = await peer.call<{ notifies: Notification[] }>('notifies');
  assert.deepEqual(got.notifies, [
    { name: 'kv-ready', msg: 'layer 3 done' },
    { name: 'kv-ready', msg: 'ünïcode ✓' },
  ]);
  assert.deepEqual((await peer.call<{ notifies: Notification[] }>('notifies')).notifies, []);
});

test('probe answers for a live peer and fails fast for a closed port', async () => {
  await engine.sendProbe(peer.segmentName);
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  await assert.rejects(engine.sendProbe(`127.0.0.1:${port}`), { code: ErrorCode.PEER_UNREACHABLE });
  await assert.rejects(engine.sendNotify(`127.0.0.1:${port}`, { name: 'x', msg: 'y' }), { code: ErrorCode.PEER_UNREACHABLE });
});

test('bad notification arguments are typed errors and send nothing', async () => {
  await assert.rejects(engine.sendNotify('', { name: 'a', msg: 'b' }), { code: ErrorCode.INVALID_ARGUMENT });
  await assert.rejects(engine.sendNotify(peer.segmentName, { name: 'a' } as unknown as Notification), { code: ErrorCode.INVALID_ARGUMENT });
  assert.deepEqual((await peer.call<{ notifies: Notification[] }>('notifies')).notifies, []);
});
