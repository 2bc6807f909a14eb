/**
 * Listen address: an engine listens (RPC port and data port) only on the
 * address it publishes, unless told to listen on all interfaces
 * (listenHost '0.0.0.0' or MC_TCP_BIND_ADDRESS=0.0.0.0). 127.0.0.2 is another
 * address of this host (all of 127/8 is loopback), so it shows what an
 * interface other than the published one would see.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TransferEngine } from '../src/core.js';
import { MetadataHttpServer } from '../src/metadata/http-server.js';
import { tryConnect } from './security-helpers.js';

async function reachable(engine: TransferEngine, host: string): Promise<{ rpc: string; data: string }> {
  return { rpc: await tryConnect(host, engine.rpcPort), data: await tryConnect(host, engine.dataPort) };
}

describe('listen address', () => {
  it('an engine published on 127.0.0.1 listens only there: 127.0.0.2 is refused on both ports', async () => {
    const e = new TransferEngine({ env: {} });
    await e.init('127.0.0.1');
    try {
      assert.equal(e.segmentName, `127.0.0.1:${e.rpcPort}`);
      assert.deepEqual(await reachable(e, '127.0.0.1'), { rpc: 'connected', data: 'connected' });
      assert.deepEqual(await reachable(e, '127.0.0.2'), { rpc: 'refused', data: 'refused' });
      // A transport installed later (tcp again after uninstalling) keeps the address.
      await e.uninstallTransport('tcp');
      await e.installTransport('tcp');
      assert.equal(await tryConnect('127.0.0.2', e.dataPort), 'refused');
      assert.equal(await tryConnect('127.0.0.1', e.dataPort), 'connected');
    } finally {
      await e.close();
    }
  });

  it("listenHost '0.0.0.0' listens on every interface, and the name stays the published host", async () => {
    const e = new TransferEngine({ env: {}, listenHost: '0.0.0.0' });
    await e.init('127.0.0.1');
    try {
      assert.equal(e.segmentName, `127.0.0.1:${e.rpcPort}`);
      assert.deepEqual(await reachable(e, '127.0.0.2'), { rpc: 'connected', data: 'connected' });
      // A peer can use it through the other address.
      const peer = new TransferEngine({ env: {} });
      await peer.init('127.0.0.2');
      try {
        await peer.sendProbe(`127.0.0.2:${e.rpcPort}`);
      } finally {
        await peer.close();
      }
    } finally {
      await e.close();
    }
  });

  it('MC_TCP_BIND_ADDRESS=0.0.0.0 does the same, and central modes never publish 0.0.0.0', async () => {
    const meta = await MetadataHttpServer.start({ host: '127.0.0.1', port: 0 });
    const e = new TransferEngine({ env: { MC_TCP_BIND_ADDRESS: '0.0.0.0' }, metadataServer: `http://127.0.0.1:${meta.port}/metadata` });
    try {
      await e.init('node-a', undefined);
      assert.deepEqual(await reachable(e, '127.0.0.2'), { rpc: 'connected', data: 'connected' });
      assert.deepEqual(await reachable(e, '127.0.0.1'), { rpc: 'connected', data: 'connected' });
      const res = await fetch(`http://127.0.0.1:${meta.port}/metadata?key=${encodeURIComponent('mooncake/rpc_meta/node-a')}`);
      const rpcMeta = (await res.json()) as { ip_or_host_name: string; rpc_port: number };
      assert.notEqual(rpcMeta.ip_or_host_name, '0.0.0.0', 'a wildcard is not an address peers can dial');
      assert.equal(rpcMeta.rpc_port, e.rpcPort);
    } finally {
      await e.close();
      await meta.close();
    }
  });
});
