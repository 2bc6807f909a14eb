/**
 * Recovery through central metadata (our HTTP metadata server in a child
 * process): a target SIGKILLed in the middle of a write and restarted on new
 * ports is found again by the retries, which complete every interrupted task;
 * and the metadata server restarted (with --data-dir) while transfers run
 * costs no transfer, even one whose retry happens while the server is down.
 * Targets publish 127.0.0.2 and sit behind test/fault-proxy.ts proxies, which
 * throttle the write (so that the kill lands in its middle) and reset
 * connections on demand.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine, TransferOpcode, TaskStatus, type TransferStatus, type TransferRequest } from '../src/core.js';
import { forkPeer, initPeer, spawnPeer, sha256, type PeerProcess } from './helpers.js';
import { MetadataServerProcess, tempDir } from './servers.js';
import { proxyPeerPorts, PROXY_HOST, expectNoLeaks, resourceSnapshot, type PeerProxy } from './fault-proxy.js';
import { fillPattern } from './pattern.js';

const MiB = 1 << 20;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function until(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

describe('recovery through central metadata', () => {
  const peers: PeerProcess[] = [];
  const proxies: PeerProxy[] = [];
  const metas: MetadataServerProcess[] = [];
  after(async () => {
    for (const p of proxies) await p.stop();
    for (const p of peers) await p.stop();
    for (const m of metas) await m.stop();
  });

  it('a target killed with SIGKILL mid-write and restarted on new ports: the interrupted tasks are retried there and complete', async () => {
    const before = resourceSnapshot();
    const meta = await MetadataServerProcess.start();
    metas.push(meta);
    const TASKS = 32;
    const TASK = 512 * 1024;
    const SIZE = TASKS * TASK;
    // Both processes use one fixed address base (TE_ADDRESS_BASE), so the restart registers the same memory at the
    // same address and the interrupted WRITEs can complete there; by default each engine's base is random.
    const fixed = { TE_ADDRESS_BASE: '0x300000000000' };
    const first = await spawnPeer({ PEER_LISTEN: '127.0.0.1', ...fixed }, { host: 'target', connectable: PROXY_HOST, metadataServer: meta.url });
    peers.push(first);
    const remote = await first.register(SIZE);
    // 4 MiB/s per lane: the 16 MiB write takes about 2 s, and is killed a quarter of the way in.
    const proxy = await proxyPeerPorts(first, { mode: { kind: 'throttle', bytesPerSec: 4 * MiB, direction: 'up' } });
    proxies.push(proxy);
    // The replacement process is started now and initialized right after the kill: it comes back at once.
    const second = await forkPeer({ PEER_LISTEN: '127.0.0.1', ...fixed });
    peers.push(second);

    const engine = new TransferEngine({ metadataServer: meta.url, env: { MC_RETRY_CNT: '10' } });
    try {
      await engine.init('initiator', '127.0.0.1');
      const local = Buffer.alloc(SIZE);
      fillPattern(local, 41);
      const localAddr = engine.registerLocalMemory(local);
      const seg = await engine.openSegment('target');
      const bid = engine.allocateBatchID(TASKS);
      const reqs: TransferRequest[] = [];
      for (let i = 0; i < TASKS; i++) {
        reqs.push({ opcode: TransferOpcode.WRITE, source: localAddr + i * TASK, targetId: seg, targetOffset: remote + i * TASK, length: TASK });
      }
      engine.submitTransfer(bid, reqs);
      await until(() => proxy.data.stats.bytesUp >= SIZE / 4, 20_000, 'a quarter of the write to pass');
      // Freeze the link, note what completed (in the first process, so lost with it), then kill.
      proxy.setMode({ kind: 'blackhole' });
      await sleep(50);
      const doneBefore = new Set<number>();
      for (let i = 0; i < TASKS; i++) if (engine.getTransferStatus(bid, i).status === TaskStatus.COMPLETED) doneBefore.add(i);
      first.kill();
      await new Promise((r) => first.child.once('exit', r));
      await proxy.stop(); // the old address now refuses
      await initPeer(second, { host: 'target', connectable: '127.0.0.1', metadataServer: meta.url });
      assert.notEqual(second.dataPort, first.dataPort);
      assert.equal(await second.register(SIZE), remote, 'same registration order, same synthetic address');

      const st: TransferStatus[] = await within(engine.waitBatch(bid), 30_000, 'the interrupted batch');
      engine.freeBatchID(bid);
      const statuses = st.map((s, i) => `${i}:${s.status}${s.error ? ` ${s.error.code} ${s.error.message}` : ''}`);
      assert.ok(st.every((s) => s.status === TaskStatus.COMPLETED && s.transferred === TASK), statuses.join('\n'));
      assert.ok(doneBefore.size < TASKS, 'the kill came before the end of the write');
      // Every task not finished at the kill was written, whole, into the restarted target.
      const zero = sha256(Buffer.alloc(TASK));
      for (let i = 0; i < TASKS; i++) {
        const got = await second.hash(remote + i * TASK, TASK);
        if (doneBefore.has(i)) assert.equal(got, zero, `task ${i} completed in the first process: nothing of it in the second`);
        else assert.equal(got, sha256(local.subarray(i * TASK, (i + 1) * TASK)), `task ${i} retried into the restarted target`);
      }
      assert.equal(engine.getSegmentDescriptor(seg).tcpDataPort, second.dataPort, 'the refetched descriptor is cached');
      const s = engine.stats();
      assert.ok(s.retries >= TASKS - doneBefore.size, `${s.retries} slices resent for ${TASKS - doneBefore.size} interrupted tasks`);
      engine.unregisterLocalMemory(localAddr); // no retried slice still pins it
    } finally {
      await engine.close();
    }
    await second.stop();
    await meta.stop();
    await expectNoLeaks(before, 'restart on new ports');
  });

  it('the metadata server restarted under load (--data-dir): no transfer is lost, a retry while it is down still completes', async () => {
    const before = resourceSnapshot();
    const meta = await MetadataServerProcess.start({ dataDir: tempDir('te-meta-') });
    metas.push(meta);
    const target = await spawnPeer({ PEER_LISTEN: '127.0.0.1' }, { host: 'target-m', connectable: PROXY_HOST, metadataServer: meta.url });
    peers.push(target);
    const SLOTS = 8;
    const SLOT = MiB;
    const remote = await target.register(SLOTS * SLOT);
    const proxy = await proxyPeerPorts(target);
    proxies.push(proxy);
    const engine = new TransferEngine({ metadataServer: meta.url, env: { MC_RETRY_CNT: '5', TE_METADATA_TIMEOUT_MS: '500' } });
    let stop = false;
    let rounds = 0;
    const failures: string[] = [];
    try {
      await engine.init('initiator-m', '127.0.0.1');
      const out = Buffer.alloc(SLOTS * SLOT);
      const back = Buffer.alloc(SLOTS * SLOT);
      const outAddr = engine.registerLocalMemory(out);
      const backAddr = engine.registerLocalMemory(back);
      const seg = await engine.openSegment('target-m');
      // The load: each round writes every slot with a fresh pattern, reads it back, and compares.
      const load = (async (): Promise<void> => {
        while (!stop) {
          const seed = 1000 + rounds;
          fillPattern(out, seed);
          back.fill(0);
          for (const [op, addr] of [[TransferOpcode.WRITE, outAddr], [TransferOpcode.READ, backAddr]] as const) {
            const bid = engine.allocateBatchID(SLOTS);
            const reqs: TransferRequest[] = [];
            for (let i = 0; i < SLOTS; i++) reqs.push({ opcode: op, source: addr + i * SLOT, targetId: seg, targetOffset: remote + i * SLOT, length: SLOT });
            engine.submitTransfer(bid, reqs);
            const st = await within(engine.waitBatch(bid), 20_000, `round ${rounds}`);
            engine.freeBatchID(bid);
            st.forEach((s, i) => {
              if (s.status !== TaskStatus.COMPLETED) failures.push(`round ${rounds} ${op === TransferOpcode.WRITE ? 'write' : 'read'} ${i}: ${s.status} ${s.error?.message}`);
            });
          }
          assert.ok(back.equals(out), `round ${rounds}: read back what was written`);
          rounds++;
        }
      })();
      try {
        await until(() => rounds >= 3, 20_000, 'load before the restart');
        await meta.stop(); // SIGTERM; restarted below on the same port and data directory
        // While it is down: connections are reset until a transfer in flight is hit; its retry's
        // refetch fails, and it resends to the address it had.
        const retriesBefore = engine.stats().retries;
        await until(
          () => {
            proxy.data.resetAll();
            return engine.stats().retries > retriesBefore;
          },
          10_000,
          'a reset to hit a transfer in flight',
        );
        const r0 = rounds;
        await until(() => rounds >= r0 + 2, 20_000, 'load while the metadata server is down');
        assert.ok(!meta.alive);
        await meta.restart();
        const r1 = rounds;
        await until(() => rounds >= r1 + 3, 20_000, 'load after the restart');
      } finally {
        stop = true;
        await load;
      }
      assert.deepEqual(failures, []);
      assert.ok(engine.stats().retries >= 1, 'resets were retried');
      // The store kept the target's entry across the restart: a fresh engine opens it by name.
      const other = new TransferEngine({ metadataServer: meta.url });
      try {
        await other.init('initiator-m2', '127.0.0.1');
        const mem = Buffer.alloc(SLOT);
        const addr = other.registerLocalMemory(mem);
        const seg2 = await other.openSegment('target-m');
        const bid = other.allocateBatchID(1);
        other.submitTransfer(bid, [{ opcode: TransferOpcode.READ, source: addr, targetId: seg2, targetOffset: remote, length: SLOT }]);
        const [st] = await within(other.waitBatch(bid), 10_000, 'read through the restarted store');
        assert.equal(st!.status, TaskStatus.COMPLETED, st!.error?.message);
        assert.ok(mem.equals(out.subarray(0, SLOT)));
      } finally {
        await other.close();
      }
      engine.unregisterLocalMemory(outAddr);
      engine.unregisterLocalMemory(backAddr);
    } finally {
      stop = true;
      await engine.close();
    }
    await proxy.stop();
    await target.stop();
    await meta.stop();
    await expectNoLeaks(before, 'metadata restart');
  });
});
