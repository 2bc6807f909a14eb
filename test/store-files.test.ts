/**
 * File segments (Mooncake Store's, pull request #793): a Node provider mounts files as
 * segments (setupWithFiles, mountFileSegment, unmountFileSegment); the wheel's
 * Python clients and our Node clients, which mount no memory, put objects that
 * can only land in those files, and read them back byte-exact. Against our
 * master the objects outlive the provider: a restarted provider that mounts the
 * same files gets them back. Real processes throughout: the master, the Python
 * driver, the provider killed and restarted (test/fixtures/store-files-node.ts).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { MooncakeDistributedStore, ReplicateConfig, StoreErrorCode } from '../src/store.js';
import { ensureInteropEnv } from './interop/mooncake.js';
import { MASTER_KINDS, MooncakeMaster, killOnExit, stopChild, sleep } from './store-harness/master.js';
import { PythonStore, pattern, patternDigest } from './store-harness/python-store.js';

const skip = ensureInteropEnv();
if (skip) console.warn(`\n*** SKIPPING store file segments: ${skip} ***\n`);

const MiB = 1 << 20;
const FILE_SIZE = 8 * MiB;
const ENV = { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1' };
const FIXTURE = fileURLToPath(new URL('./fixtures/store-files-node.js', import.meta.url));
const digest = (b: Uint8Array): { length: number; sha: string } => ({ length: b.length, sha: createHash('sha256').update(b).digest('hex') });

function makeFiles(dir: string, names: string[], size = FILE_SIZE): string[] {
  return names.map((n) => {
    const f = path.join(dir, n);
    fs.writeFileSync(f, '');
    fs.truncateSync(f, size);
    return f;
  });
}

/** A store client with no memory segment: what it puts can only go to someone else's segments. */
async function nodeClient(master: MooncakeMaster): Promise<MooncakeDistributedStore> {
  const s = new MooncakeDistributedStore({ env: ENV });
  const rc = await s.setup('127.0.0.1', master.metadataUrl, 0, '16MB', 'tcp', '', master.address);
  assert.equal(rc, 0, `setup: ${s.getLastError()?.message}`);
  return s;
}

/** The provider fixture in its own process; resolves with its segment name once it serves. */
async function startProvider(master: MooncakeMaster, files: string[]): Promise<{ child: ChildProcess; hostname: string }> {
  const child = fork(FIXTURE, [master.address, master.metadataUrl, files.join(',')], { env: ENV, stdio: ['ignore', 'pipe', 'inherit', 'ipc'] });
  killOnExit(child);
  const first = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next();
  const info = JSON.parse(String(first.value)) as { hostname?: string; error?: number; message?: string };
  assert.ok(info.hostname, `the provider did not start: ${String(info.error)} ${info.message ?? ''}`);
  return { child, hostname: info.hostname };
}

async function until(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

for (const kind of MASTER_KINDS) {
  describe(`file segments with ${kind === 'ours' ? 'our master' : 'mooncake_master'}`, { skip: skip ?? false }, () => {
    let master: MooncakeMaster;
    let dir: string;
    let provider: MooncakeDistributedStore;
    let files: string[];
    let py: PythonStore;
    let node: MooncakeDistributedStore;

    before(async () => {
      master = await MooncakeMaster.start({ kind, leaseTtlMs: 500, clientTtlS: 3 });
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-files-'));
      files = makeFiles(dir, ['seg-a.bin', 'seg-b.bin']);
      provider = new MooncakeDistributedStore({ env: ENV });
      const rc = await provider.setupWithFiles('127.0.0.1', master.metadataUrl, files, '4MB', 'tcp', '', master.address);
      assert.equal(rc, 0, `setupWithFiles: ${provider.getLastError()?.message}`);
      py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 0, localBufferSize: 16 * MiB });
      node = await nodeClient(master);
    });

    after(async () => {
      await node?.close();
      await py?.stop();
      await provider?.close();
      await master?.stop();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    test('objects put by Python and by Node land in the two files and read back byte-exact from both', async () => {
      const sizes = [1, 4096, MiB, 3 * MiB];
      for (const [i, size] of sizes.entries()) {
        assert.equal(await py.put(`py-${i}`, 100 + i, size), 0, `py put ${size}`);
        assert.equal(await node.put(`node-${i}`, pattern(200 + i, size)), 0, `node put ${size}: ${node.getLastError()?.message}`);
      }
      for (const [i, size] of sizes.entries()) {
        assert.deepEqual(digest(await node.get(`py-${i}`)), patternDigest(100 + i, size), `node get py-${i}: ${node.getLastError()?.message}`);
        assert.deepEqual(await py.get(`node-${i}`), patternDigest(200 + i, size), `py get node-${i}`);
      }
      // The bytes are in the files themselves (a MAP_SHARED mapping: the page cache is the file).
      const contents = files.map((f) => fs.readFileSync(f));
      for (const [i, size] of sizes.entries()) {
        if (size < 4096) continue; // too short to be told apart from chance
        for (const v of [pattern(100 + i, size), pattern(200 + i, size)]) {
          assert.ok(contents.some((c) => c.indexOf(v) >= 0), `a ${size}-byte value is in one of the files`);
        }
      }
      // With no memory segment anywhere, both files took replicas.
      const used = contents.map((c) => c.some((b) => b !== 0));
      assert.deepEqual(used, [true, true], 'both files hold objects');
    });

    test('mountFileSegment refuses what cannot be a file segment, with codes', async () => {
      assert.equal(await provider.mountFileSegment(path.join(dir, 'missing.bin')), StoreErrorCode.INVALID_PARAMS);
      assert.equal(await provider.mountFileSegment(dir), StoreErrorCode.INVALID_PARAMS, 'a directory');
      const empty = path.join(dir, 'empty.bin');
      fs.writeFileSync(empty, '');
      assert.equal(await provider.mountFileSegment(empty), StoreErrorCode.INVALID_PARAMS, 'an empty file');
      assert.equal(await provider.mountFileSegment(files[0]!), StoreErrorCode.SEGMENT_ALREADY_EXISTS, 'mounted already');
      assert.equal(await provider.unmountFileSegment(path.join(dir, 'never.bin')), StoreErrorCode.SEGMENT_NOT_FOUND);
      // A file another process serves: its lock says so.
      const [busy] = makeFiles(dir, ['busy.bin'], MiB);
      const other = await startProvider(master, [busy!]);
      try {
        assert.equal(await provider.mountFileSegment(busy!), StoreErrorCode.SEGMENT_ALREADY_EXISTS);
        assert.match(provider.getLastError()?.message ?? '', /another process/);
      } finally {
        await stopChild(other.child, 'SIGTERM');
      }
    });

    test('setupWithFiles with a file it cannot mount fails as a whole, releases the others, and can be tried again', async () => {
      const [good] = makeFiles(dir, ['retry-good.bin'], MiB);
      const s = new MooncakeDistributedStore({ env: ENV });
      try {
        assert.equal(await s.setupWithFiles('127.0.0.1', master.metadataUrl, [good!, path.join(dir, 'retry-missing.bin')], '4MB', 'tcp', '', master.address), StoreErrorCode.INVALID_PARAMS);
        assert.match(s.getLastError()?.message ?? '', /retry-missing/);
        // The good file was released (its lock too): the same object sets up with it now.
        assert.equal(await s.setupWithFiles('127.0.0.1', master.metadataUrl, [good!], '4MB', 'tcp', '', master.address), 0, s.getLastError()?.message);
      } finally {
        await s.close();
      }
    });

    test('unmountFileSegment: no new replicas go to the file; mounting it again brings back what it held (our master)', async () => {
      const cfg = new ReplicateConfig({ preferredSegments: [provider.getHostname()] });
      assert.equal(await node.put('um-1', pattern(300, 2 * MiB), cfg), 0, node.getLastError()?.message);
      assert.equal(await provider.unmountFileSegment(files[0]!), 0, provider.getLastError()?.message);
      assert.equal(await provider.unmountFileSegment(files[1]!), 0, provider.getLastError()?.message);
      // No segment left at all: a put has nowhere to go, and the object is not readable.
      assert.equal(await py.put('um-2', 301, 1000), StoreErrorCode.NO_AVAILABLE_HANDLE);
      assert.equal(await py.isExist('um-1'), 0);
      assert.equal(await provider.mountFileSegment(files[1]!), 0, provider.getLastError()?.message);
      assert.equal(await provider.mountFileSegment(files[0]!), 0, provider.getLastError()?.message);
      if (kind === 'ours') {
        assert.deepEqual(await py.get('um-1'), patternDigest(300, 2 * MiB), 'the object came back with its file');
      } else {
        assert.equal(await py.isExist('um-1'), 0, "Mooncake's master drops a segment's objects when it is unmounted");
      }
    });
  });
}

describe('file segments: a provider restarted on the same files gets its objects back (our master)', { skip: skip ?? false }, () => {
  let master: MooncakeMaster;
  let dir: string;

  before(async () => {
    master = await MooncakeMaster.start({ kind: 'ours', clientTtlS: 2 });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-files-restart-'));
  });

  after(async () => {
    await master?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  for (const how of ['SIGKILL', 'SIGTERM'] as const) {
    test(`provider stopped with ${how}, then started again: Python and Node read every object byte-exact`, async () => {
      const files = makeFiles(dir, [`${how}-a.bin`, `${how}-b.bin`]);
      let p = await startProvider(master, files);
      const py = await PythonStore.start({ master: master.address, metadata: master.metadataUrl, globalSegmentSize: 0, localBufferSize: 16 * MiB });
      const node = await nodeClient(master);
      try {
        const keys = [0, 1, 2, 3].map((i) => `${how}-k${i}`);
        for (const [i, k] of keys.entries()) {
          assert.equal(i % 2 ? await py.put(k, 400 + i, (i + 1) * 300_000) : await node.put(k, pattern(400 + i, (i + 1) * 300_000)), 0, k);
        }
        await stopChild(p.child, how);
        // The provider is gone: its objects are not readable (after the client TTL for a SIGKILL), never wrong.
        await until(async () => (await py.isExist(keys[0]!)) === 0, 15_000, 'the objects to become unreadable');
        assert.equal((await node.get(keys[1]!)).length, 0);
        p = await startProvider(master, files);
        for (const [i, k] of keys.entries()) {
          assert.deepEqual(await py.get(k), patternDigest(400 + i, (i + 1) * 300_000), `python ${k}`);
          assert.deepEqual(digest(await node.get(k)), patternDigest(400 + i, (i + 1) * 300_000), `node ${k}: ${node.getLastError()?.message}`);
        }
        // And it keeps working as a segment: a new object goes in and comes out.
        assert.equal(await py.put(`${how}-after`, 450, MiB), 0);
        assert.deepEqual(digest(await node.get(`${how}-after`)), patternDigest(450, MiB));
      } finally {
        await node.close();
        await py.stop();
        await stopChild(p.child, 'SIGTERM');
      }
    });
  }
});
