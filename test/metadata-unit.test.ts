/**
 * Metadata pieces without servers: connection strings exactly as Mooncake
 * parses them, initializeExt's type + server, the key layout with
 * MC_METADATA_CLUSTER_ID and names holding '/', curl's key escaping, and the
 * stored values byte for byte.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseMetadataConnString, metadataConnString } from '../src/metadata/connection.js';
import { metadataKeys } from '../src/metadata/keys.js';
import { curlEscape } from '../src/metadata/http.js';
import { encodeDescriptorValue, decodeDescriptorValue, encodeRpcMeta, decodeRpcMeta, sortedJson } from '../src/metadata/values.js';
import { storeOptionsFromEnv, redisDbIndex } from '../src/metadata/store.js';
import { TransferEngine } from '../src/core.js';

const te = (code: string) => (e: unknown): boolean => (e as { code?: string }).code === code;

describe('metadata connection strings', () => {
  it('parses every form Mooncake accepts', () => {
    assert.deepEqual(parseMetadataConnString('P2PHANDSHAKE'), { type: 'p2p' });
    assert.deepEqual(parseMetadataConnString('http://10.0.0.1:8080/metadata'), { type: 'http', url: 'http://10.0.0.1:8080/metadata' });
    assert.deepEqual(parseMetadataConnString('https://meta.example:443/metadata'), { type: 'http', url: 'https://meta.example:443/metadata' });
    assert.deepEqual(parseMetadataConnString('etcd://h1:2379,h2:2379'), { type: 'etcd', endpoints: ['http://h1:2379', 'http://h2:2379'] });
    assert.deepEqual(parseMetadataConnString('etcd://h1:2379;h2:2379; ,h3:1'), { type: 'etcd', endpoints: ['http://h1:2379', 'http://h2:2379', 'http://h3:1'] });
    assert.deepEqual(parseMetadataConnString('192.168.3.77:2379'), { type: 'etcd', endpoints: ['http://192.168.3.77:2379'] }, 'no scheme means etcd');
    assert.deepEqual(parseMetadataConnString('etcd://http://h:2379'), { type: 'etcd', endpoints: ['http://h:2379'] });
    assert.deepEqual(parseMetadataConnString('redis://127.0.0.1:6379'), { type: 'redis', host: '127.0.0.1', port: 6379 });
    assert.deepEqual(parseMetadataConnString('redis://cache'), { type: 'redis', host: 'cache', port: 12001 }, 'redis defaults to 12001');
    assert.deepEqual(parseMetadataConnString('redis://[::1]:7000'), { type: 'redis', host: '::1', port: 7000 });
  });

  it('refuses malformed strings with TE_INVALID_ARGUMENT, naming the problem', () => {
    for (const bad of ['', '   ', 'zk://h:2181', 'etcd://', 'etcd://,;', 'etcd://h', 'etcd://h:99999', 'etcd://:2379', 'redis://h:port', 'redis://:pw@h:1', 'redis://h:1/2', 'http://', 'http://h:8080/metadata?key=x']) {
      assert.throws(() => parseMetadataConnString(bad), te('TE_INVALID_ARGUMENT'), JSON.stringify(bad));
    }
    assert.throws(() => parseMetadataConnString('zk://h:2181'), /unknown scheme "zk"/);
  });

  it('builds initializeExt connection strings from a type and a server', () => {
    assert.equal(metadataConnString('http', '10.0.0.1:8080/metadata'), 'http://10.0.0.1:8080/metadata');
    assert.equal(metadataConnString('etcd', 'h1:2379,h2:2379'), 'etcd://h1:2379,h2:2379');
    assert.equal(metadataConnString('redis', '127.0.0.1:6379'), 'redis://127.0.0.1:6379');
    assert.equal(metadataConnString('etcd', 'http://already:8080/metadata'), 'http://already:8080/metadata', 'a scheme wins');
    assert.equal(metadataConnString('http', 'P2PHANDSHAKE'), 'P2PHANDSHAKE');
    assert.equal(metadataConnString('p2p', ''), 'P2PHANDSHAKE');
    assert.throws(() => metadataConnString('consul', 'h:1'), te('TE_INVALID_ARGUMENT'));
    assert.throws(() => metadataConnString('etcd', ''), te('TE_INVALID_ARGUMENT'));
  });

  it('an engine refuses a bad metadata string at init, before binding anything', async () => {
    const e = new TransferEngine({ metadataServer: 'zk://h:1' });
    await assert.rejects(e.init('127.0.0.1'), te('TE_INVALID_ARGUMENT'));
    const f = new TransferEngine({ metadataServer: 'http://127.0.0.1:1/metadata', env: { TE_METADATA_TIMEOUT_MS: 'soon' } });
    await assert.rejects(f.init('seg', '127.0.0.1'), te('TE_BAD_ENV'));
  });
});

describe('metadata keys', () => {
  it('uses mooncake/ram/<name>, mooncake/<name> for names with "/", and mooncake/rpc_meta/<name>', () => {
    const k = metadataKeys({});
    assert.equal(k.segment('node1'), 'mooncake/ram/node1');
    assert.equal(k.segment('10.0.0.7:15342'), 'mooncake/ram/10.0.0.7:15342');
    assert.equal(k.segment('nvmeof/disk0'), 'mooncake/nvmeof/disk0');
    assert.equal(k.rpcMeta('node1'), 'mooncake/rpc_meta/node1');
  });

  it('prefixes MC_METADATA_CLUSTER_ID, adding the "/" when missing', () => {
    for (const id of ['prod', 'prod/']) {
      const k = metadataKeys({ MC_METADATA_CLUSTER_ID: id });
      assert.equal(k.segment('node1'), 'mooncake/prod/ram/node1');
      assert.equal(k.segment('nvmeof/disk0'), 'mooncake/prod/nvmeof/disk0');
      assert.equal(k.rpcMeta('node1'), 'mooncake/prod/rpc_meta/node1');
    }
    assert.equal(metadataKeys({ MC_METADATA_CLUSTER_ID: '' }).prefix, 'mooncake/');
  });

  it('escapes keys as curl_easy_escape does', () => {
    assert.equal(curlEscape('mooncake/ram/10.0.0.7:15342'), 'mooncake%2Fram%2F10.0.0.7%3A15342');
    assert.equal(curlEscape("a b+c&d=e?f#g%h~i_j-k.l!*'()"), 'a%20b%2Bc%26d%3De%3Ff%23g%25h~i_j-k.l%21%2A%27%28%29');
    assert.equal(curlEscape('é'), '%C3%A9');
  });
});

describe('metadata values', () => {
  const desc = {
    name: 'node1',
    protocol: 'tcp',
    tcpDataPort: 16021,
    tcpProtoVersion: 2,
    timestamp: '2026-08-22 13:12:18.123456',
    buffers: [{ name: 'node1', addr: 139880479506448n, length: 1048576n }],
  };

  it('writes descriptors as jsoncpp does: sorted keys, compact, "\\n" only for etcd/redis', () => {
    const expected =
      '{"buffers":[{"addr":139880479506448,"length":1048576,"name":"node1"}],"name":"node1","protocol":"tcp","tcp_data_port":16021,"tcp_proto_version":2,"timestamp":"2026-08-22 13:12:18.123456"}';
    assert.equal(encodeDescriptorValue(desc, false), expected);
    assert.equal(encodeDescriptorValue(desc, true), `${expected}\n`);
    assert.equal(encodeRpcMeta({ ipOrHostName: '127.0.0.1', rpcPort: 15001 }, false), '{"ip_or_host_name":"127.0.0.1","rpc_port":15001}');
    assert.equal(encodeRpcMeta({ ipOrHostName: 'h', rpcPort: 1 }, true), '{"ip_or_host_name":"h","rpc_port":1}\n');
    assert.equal(sortedJson({ b: 1, a: [{ d: 18446744073709551615n, c: null }], B: true }), '{"B":true,"a":[{"c":null,"d":18446744073709551615}],"b":1}');
  });

  it('round-trips u64 addresses exactly and reads values with or without the newline', () => {
    const big = { ...desc, buffers: [{ name: 'x', addr: 18446744073709547520n, length: 4096n }] };
    for (const nl of [false, true]) assert.deepEqual(decodeDescriptorValue(encodeDescriptorValue(big, nl), 'k').buffers, big.buffers);
    assert.deepEqual(decodeRpcMeta('{"rpc_port":16000,"ip_or_host_name":"10.1.2.3"}\n', 'k'), { ipOrHostName: '10.1.2.3', rpcPort: 16000 });
  });

  it('a key holding garbage, half a descriptor or an unknown protocol is TE_MALFORMED naming the key', () => {
    const full = encodeDescriptorValue(desc, true);
    for (const bad of ['garbage', '', full.slice(0, full.length >> 1), '[]', full.replace('"tcp"', '"carrier-pigeon"')]) {
      assert.throws(() => decodeDescriptorValue(bad, 'mooncake/ram/node1'), (e: Error & { code?: string }) => e.code === 'TE_MALFORMED' && e.message.includes('mooncake/ram/node1'), JSON.stringify(bad));
    }
    for (const bad of ['x', '{}', '{"ip_or_host_name":"h"}', '{"ip_or_host_name":"h","rpc_port":0}', '{"ip_or_host_name":"","rpc_port":1}', '{"ip_or_host_name":"h","rpc_port":"1"}', '{"ip_or_host_name":"h","rpc_port":1.5}']) {
      assert.throws(() => decodeRpcMeta(bad, 'k'), te('TE_MALFORMED'), bad);
    }
  });
});

describe('metadata environment', () => {
  it('reads TE_METADATA_TIMEOUT_MS, TE_METADATA_LEASE_TTL and MC_REDIS_DB_INDEX strictly', () => {
    assert.deepEqual(storeOptionsFromEnv({}), { leaseTtlS: 0, env: {} });
    const env = { TE_METADATA_TIMEOUT_MS: '250', TE_METADATA_LEASE_TTL: '10' };
    assert.deepEqual(storeOptionsFromEnv(env), { timeoutMs: 250, leaseTtlS: 10, env });
    for (const bad of [{ TE_METADATA_TIMEOUT_MS: '1e3' }, { TE_METADATA_TIMEOUT_MS: '5' }, { TE_METADATA_LEASE_TTL: '-1' }]) {
      assert.throws(() => storeOptionsFromEnv(bad), te('TE_BAD_ENV'));
    }
    assert.equal(redisDbIndex({}), 0);
    assert.equal(redisDbIndex({ MC_REDIS_DB_INDEX: '15' }), 15);
    for (const bad of ['256', 'one', '-1']) assert.throws(() => redisDbIndex({ MC_REDIS_DB_INDEX: bad }), te('TE_BAD_ENV'));
  });
});
