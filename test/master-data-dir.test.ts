/**
 * `transfer-engine master --data_dir`: the master's state on local disk, as
 * the metadata server's data directory. The master is SIGKILLed and started
 * again on the same port and directory: the wheel's Python client and ours
 * read every object back byte-exact, without remounting. And the journal
 * itself: a torn last line is dropped, a corrupt one refused, compaction
 * keeps the state.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MooncakeDistributedStore, ReplicateConfig } from '../src/store.js';
import { FileJournal } from '../src/master/file-journal.js';
import { MasterService } from '../src/master/service.js';
import { DEFAULT_MASTER_CONFIG } from '../src/master/config.js';
import type { Segment } from '../src/store/master-protocol.js';
import { ensureInteropEnv } from './interop/mooncake.js';
import { MooncakeMaster, sleep } from './store-harness/master.js';
import { PythonStore, pattern, patternDigest } from './store-harness/python-store.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING master --data_dir: ${skip} ***\n`);

const MiB = 1 << 20;
const digest = (b: Uint8Array): { length: number; sha: string } => ({ length: b.length, sha: createHash('sha256').update(b).digest('hex') });
const tmp = (p: string): string => fs.mkdtempSync(path.join(os.tmpdir(), p));

describe('master --data_dir: the state survives a SIGKILL and restart', { skip: skip ?? false }, () => {
  let dir = '';
  let master: MooncakeMaster;

  before(async () => {
    dir = tmp('te-master-data-');
    master = await MooncakeMaster.start({ kind: 'ours', extraArgs: [`--data_dir=${dir}`] });
  });

  after(async () => {
    await master?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('objects put by Python and Node before the crash read back after it; puts go on', async () => {
    const py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 32 * MiB });
    const node = new MooncakeDistributedStore({ env: { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1' } });
    assert.equal(await node.setup('127.0.0.1', master.metadataUrl, '32MB', '16MB', 'tcp', '', master.address), 0, node.getLastError()?.message);
    try {
      const sizes = [1, 70_000, 2 * MiB];
      for (const [i, size] of sizes.entries()) {
        assert.equal(await py.put(`py-${i}`, 50 + i, size, { preferred_segments: [py.hostname] }), 0);
        assert.equal(await node.put(`node-${i}`, pattern(60 + i, size), new ReplicateConfig({ preferredSegments: [node.getHostname()] })), 0, node.getLastError()?.message);
      }
      await master.restart({ signal: 'SIGKILL', downMs: 300 });
      // The first calls may fail while the clients reconnect; then everything is there (the embedded
      // metadata server kept its keys in the data directory too).
      const deadline = Date.now() + 20_000;
      for (const [i, size] of sizes.entries()) {
        for (;;) {
          const got = await node.get(`py-${i}`);
          if (got.length === size || Date.now() > deadline) {
            assert.deepEqual(digest(got), patternDigest(50 + i, size), `node reads py-${i}: ${node.getLastError()?.message}`);
            break;
          }
          await sleep(250);
        }
        // Python's first call after the crash fails on its dead connection (as with Mooncake's master); it reconnects.
        for (;;) {
          const got = await py.get(`node-${i}`);
          if (got.length === size || Date.now() > deadline) {
            assert.deepEqual(got, patternDigest(60 + i, size), `python reads node-${i}`);
            break;
          }
          await sleep(250);
        }
      }
      assert.equal(await py.put('after', 70, MiB), 0);
      assert.deepEqual(digest(await node.get('after')), patternDigest(70, MiB));
    } finally {
      await node.close();
      await py.stop();
    }
  });
});

describe('FileJournal', () => {
  const seg: Segment = { id: { first: 1n, second: 2n }, name: 'h:1', base: 0x1000n, size: 1n << 20n, teEndpoint: 'h:1', protocol: 'tcp', hostId: '' };
  const client = { first: 3n, second: 4n };
  const cfg = { replicaNum: 1n, nofReplicaNum: 0n, dfsReplicaNum: 0n, softPinAction: 0, softPinTtlMs: null, withHardPin: false, preferredSegments: [], preferredSegment: '', preferredNofSegments: [], preferAllocInSameNode: false, dataType: 0, hostId: '', groupIds: null };

  async function filled(dir: string, keys: number): Promise<MasterService> {
    const { journal, state } = await FileJournal.open(dir);
    const svc = new MasterService({ ...DEFAULT_MASTER_CONFIG, clientTtlMs: 1e12 }, () => 0);
    svc.restore(state);
    svc.trackChanges();
    svc.mountSegment(seg, client);
    for (let i = 0; i < keys; i++) {
      svc.putStart(client, `k${i}`, 100n, cfg, 'default');
      svc.putEnd(client, { key: `k${i}`, objectChecksum: null }, 'default');
      const c = svc.takeChanges();
      if (c) await journal.commit(c);
    }
    await journal.close();
    return svc;
  }

  test('reopened, it holds what was committed; a torn last line is dropped; a corrupt line is refused', async () => {
    const dir = tmp('te-journal-');
    try {
      await filled(dir, 5);
      const reopened = await FileJournal.open(dir);
      assert.equal(reopened.state.objects.length, 5);
      assert.equal(reopened.state.segments.length, 1);
      await reopened.journal.close();
      // A crash in the middle of an append: half a line at the end.
      const log = path.join(dir, 'journal.log');
      const whole = fs.readFileSync(log, 'utf8');
      fs.appendFileSync(log, '{"s":{},"o":{"x":"{\\"ten');
      const torn = await FileJournal.open(dir);
      assert.equal(torn.state.objects.length, 5, 'the torn append is not part of the state');
      await torn.journal.close();
      assert.equal(fs.readFileSync(log, 'utf8'), whole, 'and it is cut off the log');
      // A line in the middle that is not JSON: the journal is corrupt; refuse to serve from it.
      fs.writeFileSync(log, `garbage\n${whole}`);
      await assert.rejects(FileJournal.open(dir), { code: 'TE_MALFORMED' });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
