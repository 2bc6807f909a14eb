/**
 * Self-test of the store harness (test/store-harness/), against the real parts only: the wheel's
 * mooncake_master (and then ours, which must pass the same checks) and two Python
 * MooncakeDistributedStore clients. It checks that the harness
 * drives them as documented (test/store/CAPTURES.md, docs/store-wire.md §4), so the store tests
 * built on it can trust what it reports. Under CI=true a missing wheel fails this file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ensureInteropEnv } from './interop/mooncake.js';
import { MASTER_KINDS, MooncakeMaster, waitFor } from './store-harness/master.js';
import { PythonStore, pattern, patternDigest } from './store-harness/python-store.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING store-harness: ${skip} ***\n`);

const KiB = 1024;
const MiB = 1024 * KiB;
/** The master forgets a silent client after this long (default 10 s; Pings come every 1 s). */
const CLIENT_TTL_S = 4;
/** docs/store-wire.md ErrorCode values the Python binding returns. */
const OBJECT_NOT_FOUND = -704;
const OBJECT_HAS_LEASE = -706;

for (const kind of MASTER_KINDS) describe(`store harness: ${kind === 'mooncake' ? 'real mooncake_master' : 'our master (transfer-engine master)'} + Python store clients`, { skip: skip ?? false }, () => {
  let master: MooncakeMaster;
  let a: PythonStore; // the store killed in the "leaves" test
  let b: PythonStore;
  const logs = (): string => `--- master:\n${master.log.slice(-3000)}\n--- store A:\n${a.stderr.slice(-1500)}\n--- store B:\n${b.stderr.slice(-1500)}`;

  before(async () => {
    master = await MooncakeMaster.start({ kind, clientTtlS: CLIENT_TTL_S });
    const init = { master: master.address, metadata: master.metadataUrl, globalSegmentSize: 16 * MiB, localBufferSize: 16 * MiB };
    [a, b] = await Promise.all([PythonStore.start(init), PythonStore.start(init)]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await master?.stop();
  });

  test('the master and the stores are up, with distinct segment names', async () => {
    assert.match(master.address, /^127\.0\.0\.1:\d+$/);
    assert.match(master.metadataUrl, /^http:\/\/127\.0\.0\.1:\d+\/metadata$/);
    assert.match(a.hostname, /^127\.0\.0\.1:\d+$/);
    assert.notEqual(a.hostname, b.hostname);
    assert.equal(await b.getHostname(), b.hostname);
    assert.equal(await a.healthCheck(), 0);
  });

  test('pattern(): SHAKE-256 of the decimal seed, the same bytes as the driver', () => {
    assert.equal(pattern(42, 8).toString('hex'), 'a1d650099ec75539'); // hashlib.shake_256(b"42").digest(8)
    assert.equal(pattern(1, 0).length, 0);
    assert.deepEqual(pattern(7, 100).subarray(0, 10), pattern(7, 10)); // an XOF: shorter is a prefix
  });

  test('put in one store, get from the other (1 B, 4 KiB, 1 MiB), in the writer\'s segment', async () => {
    for (const [i, len] of [1, 4 * KiB, MiB].entries()) {
      const key = `pg-${len}`;
      // Placed in A's segment, so B's get is a real Transfer Engine read from A.
      assert.equal(await a.put(key, 100 + i, len, { preferred_segments: [a.hostname] }), 0);
      assert.deepEqual(await b.get(key), patternDigest(100 + i, len), key);
      assert.deepEqual(await b.getInto(key, 2 * MiB), { rc: len, value: patternDigest(100 + i, len) }, key);
    }
  });

  test('zero-copy and batch calls', async () => {
    assert.equal(await a.registerBuffer(8 * MiB), 0);
    assert.equal(await a.putFrom('zc-1', 200, 300 * KiB), 0);
    assert.deepEqual(await b.getInto('zc-1', MiB), { rc: 300 * KiB, value: patternDigest(200, 300 * KiB) });

    const keys = ['bt-1', 'bt-2', 'bt-3'];
    const lens = [1, 5000, 64 * KiB];
    assert.equal(await a.putBatch(keys, [301, 302, 303], lens), 0); // one int, not a list
    assert.deepEqual(await b.getBatch(keys), [patternDigest(301, 1), patternDigest(302, 5000), patternDigest(303, 64 * KiB)]);

    const zkeys = ['bz-1', 'bz-2'];
    assert.deepEqual(await b.batchPutFrom(zkeys, [401, 402], [10, 128 * KiB], { replica_num: 1 }), [0, 0]);
    const got = await a.batchGetInto([...zkeys, 'bz-missing'], [KiB, 256 * KiB, KiB]);
    assert.deepEqual(got.rcs.slice(0, 2), [10, 128 * KiB]);
    assert.ok(got.rcs[2]! < 0, `batch_get_into of a missing key: ${got.rcs[2]}`);
    assert.deepEqual(got.values, [patternDigest(401, 10), patternDigest(402, 128 * KiB), null]);

    assert.deepEqual(await b.batchIsExist(['bt-1', 'bz-2', 'nope']), [1, 1, 0]);
    assert.deepEqual(await b.getBatch(['bt-2', 'nope']), [patternDigest(302, 5000), { length: 0, sha: patternDigest(0, 0).sha }]);
  });

  test('is_exist, get_size, remove: a read lease refuses remove (-706) until force', async () => {
    assert.equal(await a.put('rm-1', 500, 777), 0);
    assert.equal(await b.isExist('rm-1'), 1);
    assert.equal(await b.getSize('rm-1'), 777);
    assert.deepEqual(await b.get('rm-1'), patternDigest(500, 777)); // (get_size already took a lease)
    assert.equal(await a.remove('rm-1'), OBJECT_HAS_LEASE);
    assert.equal(await a.remove('rm-1', true), 0);
    assert.equal(await b.isExist('rm-1'), 0);
    assert.equal(await b.getSize('rm-1'), OBJECT_NOT_FOUND);
    assert.equal((await b.get('rm-1')).length, 0); // get hides the code: b""
    assert.equal(await a.remove('rm-1'), OBJECT_NOT_FOUND);
  });

  test('remove_by_regex and remove_all return counts', async () => {
    assert.equal(await a.putBatch(['rx-1', 'rx-2', 'keep-rx'], [1, 2, 3], [16, 16, 16]), 0);
    assert.equal(await b.removeByRegex('^rx-'), 2); // no get, so no lease
    assert.equal(await b.removeByRegex('^rx-'), 0);
    // Earlier tests left objects, some under a 10 s lease: force, and count them first.
    const all = ['keep-rx', 'pg-1', 'pg-4096', `pg-${MiB}`, 'zc-1', 'bt-1', 'bt-2', 'bt-3', 'bz-1', 'bz-2'];
    const present = (await b.batchIsExist(all)).filter((x) => x === 1).length;
    assert.equal(present, all.length);
    assert.equal(await a.removeAll(true), present);
    assert.deepEqual(await b.batchIsExist(all), all.map(() => 0));
  });

  test('a killed store leaves: its objects are gone after the master\'s client TTL', async (t) => {
    assert.equal(await a.put('gone-1', 600, 4 * KiB, { preferred_segments: [a.hostname] }), 0);
    assert.equal(await b.put('stays-1', 601, 4 * KiB, { preferred_segments: [b.hostname] }), 0);
    assert.deepEqual(await b.get('gone-1'), patternDigest(600, 4 * KiB));
    await a.kill();
    const t0 = Date.now();
    await waitFor(`get_size of the killed store's object`, 20_000, () => b.getSize('gone-1'), (rc) => rc === OBJECT_NOT_FOUND, logs);
    t.diagnostic(`the master dropped the killed store's segment after ${Date.now() - t0} ms (client_ttl=${CLIENT_TTL_S} s)`);
    assert.equal((await b.get('gone-1')).length, 0);
    assert.equal(await b.isExist('gone-1'), 0);
    assert.deepEqual(await b.get('stays-1'), patternDigest(601, 4 * KiB)); // the survivor is untouched
  });

  test('master restart: the store reconnects, remounts and works; the old objects are gone', async (t) => {
    assert.equal(await b.put('before-restart', 700, 2 * KiB), 0);
    const pid = master.pid;
    await master.restart({ signal: 'SIGKILL', downMs: 500 });
    assert.notEqual(master.pid, pid);
    // The client reconnects on its next call and remounts after its next Ping (about 1 s).
    const t0 = Date.now();
    await waitFor('a put after the restart', 20_000, () => b.put('after-restart', 701, 2 * KiB), (rc) => rc === 0, logs);
    t.diagnostic(`first successful put ${Date.now() - t0} ms after the master came back`);
    assert.deepEqual(await b.get('after-restart'), patternDigest(701, 2 * KiB));
    assert.equal(await b.getSize('before-restart'), OBJECT_NOT_FOUND); // no HA: the master kept nothing
    assert.equal(await b.close(), 0);
  });
});
