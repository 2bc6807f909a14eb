/**
 * A real Mooncake engine (the wheel pinned by test/interop/setup.sh) against
 * an engine of ours with a shared secret: it can neither fetch our metadata
 * nor read or write our memory, and fails at once rather than hanging; our
 * engine, in turn, refuses to use it. Skipped when the interop environment is
 * unavailable, as the interop suite is.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { TransferEngine, ErrorCode, TransferEngineError } from '../src/core.js';
import { ensureInteropEnv, MooncakePeer } from './interop/mooncake.js';
import { patternBuffer } from './pattern.js';
import { waitFor } from './security-helpers.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING security-mooncake: ${skip} ***\n`);
const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

describe('Mooncake peers and an engine with a shared secret', { skip: skip ?? false }, () => {
  const ours = new TransferEngine({ env: {}, authSecret: 'a secret Mooncake does not know', config: { handshakeConnectTimeoutMs: 1000 } });
  let mc: MooncakePeer;
  let addr = 0;
  const bytes = patternBuffer(1 << 20, 11);

  before(async () => {
    await ours.init('127.0.0.1');
    addr = ours.registerLocalMemory(Buffer.from(bytes));
    mc = await MooncakePeer.start();
  });

  after(async () => {
    await mc?.stop();
    await ours.close();
  });

  it('Mooncake cannot probe, read, write or see our buffers; our memory is untouched', async () => {
    const buf = await mc.alloc(1 << 20, true);
    const t0 = performance.now();
    assert.notEqual((await mc.call('probe', { segment: ours.segmentName })).rc, 0, 'probe succeeded');
    const w = await mc.call('write', { target: ours.segmentName, local: buf.addr, remote: addr, len: 4096 });
    assert.ok(Number(w.rc) < 0, `write returned ${String(w.rc)}`);
    const r = await mc.call('read', { target: ours.segmentName, local: buf.addr, remote: addr, len: 4096 });
    assert.ok(Number(r.rc) < 0, `read returned ${String(r.rc)}`);
    const fb = await mc.call('first_buffer', { segment: ours.segmentName });
    assert.ok(!fb['addr'], `first_buffer gave ${String(fb['addr'])}`);
    assert.ok(performance.now() - t0 < 30_000, 'Mooncake hung on our challenge');
    assert.equal(await mc.hash(buf.addr, 1 << 20), buf.sha, 'Mooncake received bytes into its buffer');
    assert.equal(sha(ours.localView(addr, 1 << 20)), sha(bytes), 'our memory changed');
    assert.equal(ours.stats().requestsServed, 0);
    assert.ok(await waitFor(() => ours.stats().authRejected >= 1), 'the refusals were not counted');
  });

  it('our engine with a secret refuses the Mooncake peer (TE_AUTH_FAILED)', async () => {
    await assert.rejects(
      ours.openSegment(mc.segment),
      (e: unknown) => e instanceof TransferEngineError && e.code === ErrorCode.AUTH_FAILED,
    );
  });
});

describe('Mooncake peers and a read-only region of ours', { skip: skip ?? false }, () => {
  it('Mooncake parses our descriptor ("access":"read"), reads the region, and its WRITE is refused', async () => {
    const ours = new TransferEngine({ env: {} });
    await ours.init('127.0.0.1');
    const bytes = patternBuffer(1 << 20, 12);
    const ro = ours.registerLocalMemory(Buffer.from(bytes), '*', 'read');
    const mc = await MooncakePeer.start();
    try {
      assert.equal(Number((await mc.call('first_buffer', { segment: ours.segmentName }))['addr']), ro);
      const buf = await mc.alloc(1 << 20, true);
      const r = await mc.call('read', { target: ours.segmentName, local: buf.addr, remote: ro, len: 1 << 20 });
      assert.equal(r.rc, 0);
      assert.equal(await mc.hash(buf.addr, 1 << 20), sha(bytes));
      const w = await mc.call('write', { target: ours.segmentName, local: buf.addr, remote: ro, len: 4096 });
      assert.ok(Number(w.rc) < 0, `write returned ${String(w.rc)}`);
      assert.equal(sha(ours.localView(ro, 1 << 20)), sha(bytes));
    } finally {
      await mc.stop();
      await ours.close();
    }
  });
});
