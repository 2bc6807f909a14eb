/**
 * IPv6 (issue 21): both ports on IPv6 addresses, segment names `[addr]:port`
 * in P2P mode, rpc_meta carrying an IPv6 host in central modes (as Mooncake
 * writes it: the bare address), `MC_TCP_BIND_ADDRESS=::` (dual stack), and
 * between two network namespaces that have IPv6 addresses only on their link.
 * Every completed request is checked byte for byte. Bad input: malformed
 * bracketed names are typed errors.
 */
import { describe, it, after } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine, TaskStatus, ErrorCode } from '../src/core.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { NetnsPair, netnsSkipReason, planRequests, verifiedBatch } from './netns.js';
import { roundTrip } from './helpers.js';

const MiB = 1 << 20;

describe('IPv6', () => {
  it('P2P on [::1]: names are [::1]:port, the descriptor names the data port, bytes move both ways', async () => {
    const a = new TransferEngine();
    const b = new TransferEngine();
    try {
      await a.init('[::1]');
      await b.init('[::1]');
      assert.match(b.segmentName, /^\[::1\]:\d+$/);
      await roundTrip(a, b, b.segmentName);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('central mode over IPv6: the metadata server on [::1], rpc_meta holds the bare address', async () => {
    const server = await MetadataHttpServer.start({ host: '::1', port: 0 });
    const env = { MC_TCP_BIND_ADDRESS: '::1' };
    const a = new TransferEngine({ metadataServer: server.url, env });
    const b = new TransferEngine({ metadataServer: server.url, env });
    try {
      assert.match(server.url, /^http:\/\/\[::1\]:\d+\/metadata$/);
      await a.init('v6-a');
      await b.init('v6-b');
      const rpc = (await (await fetch(`${server.url}?key=${encodeURIComponent('mooncake/rpc_meta/v6-b')}`)).json()) as { ip_or_host_name: string; rpc_port: number };
      assert.equal(rpc.ip_or_host_name, '::1');
      await roundTrip(a, b, 'v6-b');
    } finally {
      await a.close();
      await b.close();
      await server.close();
    }
  });

  it('MC_TCP_BIND_ADDRESS=:: listens on both families: a peer dials its published IPv4 address', async () => {
    const a = new TransferEngine();
    const b = new TransferEngine({ env: { MC_TCP_BIND_ADDRESS: '::' } });
    try {
      await a.init('127.0.0.1');
      await b.init('127.0.0.1');
      assert.match(b.segmentName, /^127\.0\.0\.1:\d+$/, 'a wildcard is never published');
      await roundTrip(a, b, b.segmentName);
      // The same RPC port answers on IPv6 too: a peer that names it [::1]:port opens the segment.
      const port = Number(b.segmentName.slice(b.segmentName.lastIndexOf(':') + 1));
      const c = new TransferEngine();
      try {
        await c.init('[::1]');
        const seg = await c.openSegment(`[::1]:${port}`);
        assert.equal(c.getSegmentDescriptor(seg).engineId, b.engineId, 'the engine that listens on ::');
      } finally {
        await c.close();
      }
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('malformed bracketed names: typed errors, nothing bound', async () => {
    for (const name of ['[::1', '[::1]:70000', '[::1]x', '[not-an-address]:1']) {
      const e = new TransferEngine();
      await assert.rejects(e.init(name), (err: unknown) => {
        assert.equal((err as { code?: string }).code, ErrorCode.INVALID_ARGUMENT, `${name}: ${String(err)}`);
        return true;
      });
      await e.close();
    }
  });
});

const skip = netnsSkipReason();

describe('IPv6 between two network namespaces', { skip: skip ?? false }, () => {
  let pair: NetnsPair | null = null;
  after(async () => {
    await pair?.destroy();
  });

  it('engines in two namespaces named by their IPv6 addresses: 64 mixed READs and WRITEs byte-exact', async () => {
    pair = NetnsPair.create();
    const target = await pair.spawnPeer(pair.b, {}, { host: `[${pair.addr6B}]` });
    const init = await pair.spawnPeer(pair.a, {}, { host: `[${pair.addr6A}]` });
    assert.equal(target.segmentName, `[${pair.addr6B}]:${target.rpcPort}`);
    const size = 16 * MiB;
    const t = { peer: target, addr: await target.register(size), size };
    const i = { peer: init, addr: await init.register(size), size };
    let seed = 1;
    const requests = planRequests(size, 4096, 512 * 1024, 64, () => seed++);
    const outcomes = await verifiedBatch(i, t, target.segmentName, requests);
    for (const o of outcomes) {
      assert.equal(o.status, TaskStatus.COMPLETED, `${o.request.op} at ${o.request.offset}: ${o.code}`);
      assert.equal(o.wrongBytes, 0);
    }
    // The traffic went over the link's IPv6 addresses: the target sees its initiator's connection from there.
    assert.match(pair.exec(pair.b, 'ss', ['-tnH']), new RegExp(`\\[${pair.addr6A}\\]`));
  });
});
