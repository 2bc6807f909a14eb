/**
 * The target respects backpressure: a client that sends many READ requests
 * and does not read its socket is not served ahead without bound; once it
 * reads, every response arrives complete and in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { TransferEngine } from '../src/core.js';
import { encodeHeader, HEADER_SIZE, STATUS_OK_FRAME } from '../src/codec/wire.js';
import { fillPattern } from './pattern.js';

test('a client that stops reading pauses the server; resuming delivers everything in order', async () => {
  const engine = new TransferEngine();
  await engine.init('127.0.0.1');
  const MiB = 1 << 20;
  const COUNT = 64;
  const mem = Buffer.alloc(COUNT * MiB);
  for (let i = 0; i < COUNT; i++) mem.fill(i, i * MiB, (i + 1) * MiB);
  fillPattern(mem.subarray(0, 16), 1);
  const base = engine.registerLocalMemory(mem);
  const sock = net.connect(engine.dataPort, '127.0.0.1');
  try {
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.pause();
    const headers = Buffer.alloc(COUNT * HEADER_SIZE);
    for (let i = 0; i < COUNT; i++) encodeHeader(headers, i * HEADER_SIZE, MiB, base + i * MiB, false, true);
    sock.write(headers);
    // Give the server ample time to run ahead if it were going to.
    await new Promise((r) => setTimeout(r, 500));
    const servedWhilePaused = engine.stats().requestsServed;
    assert.ok(servedWhilePaused < COUNT / 2, `server ran ahead: ${servedWhilePaused} of ${COUNT} served while the client read nothing`);
    const expected = COUNT * (8 + MiB);
    const got = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let n = 0;
      sock.on('data', (c: Buffer) => {
        chunks.push(c);
        n += c.length;
        if (n >= expected) resolve(Buffer.concat(chunks));
      });
      sock.on('error', reject);
      sock.resume();
    });
    assert.equal(got.length, expected);
    for (let i = 0; i < COUNT; i++) {
      const at = i * (8 + MiB);
      assert.ok(got.subarray(at, at + 8).equals(STATUS_OK_FRAME), `status ${i}`);
      assert.ok(got.subarray(at + 8, at + 8 + MiB).equals(mem.subarray(i * MiB, (i + 1) * MiB)), `payload ${i}`);
    }
    assert.equal(engine.stats().requestsServed, COUNT);
  } finally {
    sock.destroy();
    await engine.close();
  }
});
