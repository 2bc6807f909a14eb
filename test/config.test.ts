import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { loadConfig, type EngineConfig } from '../src/config.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

type Env = Record<string, string | undefined>;

function badEnv(variable: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, ErrorCode.BAD_ENV);
    assert.ok(e.message.includes(variable), `message should name ${variable}: ${e.message}`);
    return true;
  };
}

const DEFAULTS: EngineConfig = {
  transferTimeoutMs: 30_000,
  handshakeConnectTimeoutMs: 5_000,
  handshakeMaxLength: 1 << 20,
  minPort: 15000,
  maxPort: 17000,
  forceTcpV1: false,
  bindAddress: undefined,
  legacyRpcPortBinding: false,
  lanesPerPeer: 2,
  splitSize: 1 << 20,
  retryCount: 5,
  peerPauseMs: 1000,
  metricsPort: 0,
  authSecret: undefined,
  tls: undefined,
  maxDescriptorSize: 64 << 20,
  addressBase: undefined,
  maxDataConnectionsPerPeer: 1024,
  maxRpcConnectionsPerPeer: 256,
  maxRequestsInFlight: 4096,
  handshakeRate: 1000,
  handshakeBurst: 2000,
  stallTimeoutMs: 30_000,
  keepAliveMs: 15_000,
};

interface IntVar {
  name: string;
  field: keyof EngineConfig;
  min: number;
  max: number;
  /** Value stored per unit of the variable (seconds -> ms). */
  scale: number;
  /** Other variables needed so that min/max are individually valid. */
  extra?: Env;
}

const INT_VARS: IntVar[] = [
  { name: 'MC_TRANSFER_TIMEOUT', field: 'transferTimeoutMs', min: 1, max: 86400, scale: 1000 },
  { name: 'MC_HANDSHAKE_CONNECT_TIMEOUT', field: 'handshakeConnectTimeoutMs', min: 1, max: 3599, scale: 1000 },
  { name: 'MC_HANDSHAKE_MAX_LENGTH', field: 'handshakeMaxLength', min: 1, max: 128 << 20, scale: 1 },
  { name: 'MC_MIN_RPC_PORT', field: 'minPort', min: 1024, max: 65535, scale: 1, extra: { MC_MAX_RPC_PORT: '65535' } },
  { name: 'MC_MAX_RPC_PORT', field: 'maxPort', min: 1024, max: 65535, scale: 1, extra: { MC_MIN_RPC_PORT: '1024' } },
  { name: 'MC_TCP_LANES_PER_PEER', field: 'lanesPerPeer', min: 1, max: 16, scale: 1 },
  { name: 'TE_TCP_SPLIT_SIZE', field: 'splitSize', min: 4096, max: 1 << 30, scale: 1 },
  { name: 'MC_RETRY_CNT', field: 'retryCount', min: 0, max: 100, scale: 1 },
  { name: 'TE_PEER_PAUSE_MS', field: 'peerPauseMs', min: 0, max: 3600_000, scale: 1 },
  { name: 'TE_METRICS_PORT', field: 'metricsPort', min: 0, max: 65535, scale: 1 },
  { name: 'TE_MAX_DESCRIPTOR_SIZE', field: 'maxDescriptorSize', min: 1024, max: 1 << 30, scale: 1 },
  { name: 'TE_MAX_DATA_CONNECTIONS_PER_PEER', field: 'maxDataConnectionsPerPeer', min: 1, max: 1 << 20, scale: 1 },
  { name: 'TE_MAX_RPC_CONNECTIONS_PER_PEER', field: 'maxRpcConnectionsPerPeer', min: 1, max: 1 << 20, scale: 1 },
  { name: 'TE_MAX_REQUESTS_IN_FLIGHT', field: 'maxRequestsInFlight', min: 1, max: 1 << 20, scale: 1 },
  { name: 'TE_HANDSHAKE_RATE', field: 'handshakeRate', min: 1, max: 1 << 20, scale: 1 },
  { name: 'TE_HANDSHAKE_BURST', field: 'handshakeBurst', min: 1, max: 1 << 20, scale: 1 },
  { name: 'TE_STALL_TIMEOUT_MS', field: 'stallTimeoutMs', min: 10, max: 86400_000, scale: 1 },
  { name: 'TE_TCP_KEEPALIVE_MS', field: 'keepAliveMs', min: 0, max: 86400_000, scale: 1 },
];

describe('TE_AUTH_SECRET', () => {
  test('a secret of 16 bytes or more is kept as bytes; a shorter one is TE_BAD_ENV', () => {
    assert.deepEqual(loadConfig({ TE_AUTH_SECRET: 'sixteen bytes!!!' }).authSecret, Buffer.from('sixteen bytes!!!'));
    assert.throws(() => loadConfig({ TE_AUTH_SECRET: 'too short' }), badEnv('TE_AUTH_SECRET'));
  });

  test('TE_AUTH_SECRET_FILE: read from a private file, one trailing newline dropped; bad files are TE_BAD_ENV', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'te-secret-'));
    try {
      const file = path.join(dir, 'secret');
      writeFileSync(file, 'sixteen bytes!!!\n', { mode: 0o600 });
      assert.deepEqual(loadConfig({ TE_AUTH_SECRET_FILE: file }).authSecret, Buffer.from('sixteen bytes!!!'));
      writeFileSync(file, 'sixteen bytes!!!\r\n');
      assert.deepEqual(loadConfig({ TE_AUTH_SECRET_FILE: file }).authSecret, Buffer.from('sixteen bytes!!!'));
      assert.throws(() => loadConfig({ TE_AUTH_SECRET_FILE: file, TE_AUTH_SECRET: 'sixteen bytes!!!' }), badEnv('TE_AUTH_SECRET_FILE'));
      assert.throws(() => loadConfig({ TE_AUTH_SECRET_FILE: path.join(dir, 'missing') }), badEnv('TE_AUTH_SECRET_FILE'));
      assert.throws(() => loadConfig({ TE_AUTH_SECRET_FILE: dir }), badEnv('TE_AUTH_SECRET_FILE'));
      writeFileSync(file, 'short\n');
      assert.throws(() => loadConfig({ TE_AUTH_SECRET_FILE: file }), badEnv('TE_AUTH_SECRET_FILE'));
      writeFileSync(file, 'sixteen bytes!!!\n');
      chmodSync(file, 0o640);
      assert.throws(() => loadConfig({ TE_AUTH_SECRET_FILE: file }), (e: unknown) => badEnv('TE_AUTH_SECRET_FILE')(e) && /chmod 600/.test((e as Error).message));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the stall timeout follows MC_TRANSFER_TIMEOUT unless TE_STALL_TIMEOUT_MS is set', () => {
    assert.equal(loadConfig({ MC_TRANSFER_TIMEOUT: '7' }).stallTimeoutMs, 7000);
    assert.equal(loadConfig({ MC_TRANSFER_TIMEOUT: '7', TE_STALL_TIMEOUT_MS: '250' }).stallTimeoutMs, 250);
  });
});

describe('loadConfig defaults', () => {
  test('an empty environment gives the defaults', () => {
    assert.deepEqual(loadConfig({}), DEFAULTS);
  });

  test('empty strings count as unset', () => {
    const env: Env = {};
    for (const v of INT_VARS) env[v.name] = '';
    env['MC_TCP_PROTO'] = '';
    env['MC_TCP_BIND_ADDRESS'] = '';
    env['MC_LEGACY_RPC_PORT_BINDING'] = '';
    assert.deepEqual(loadConfig(env), DEFAULTS);
  });

  test('unrelated variables are ignored', () => {
    assert.deepEqual(loadConfig({ MC_SLICE_SIZE: 'x', MC_FORCE_TCP: 'banana', PATH: '/bin' }), DEFAULTS);
  });

  test('reads process.env when no env is passed', () => {
    const saved = process.env['MC_TCP_LANES_PER_PEER'];
    process.env['MC_TCP_LANES_PER_PEER'] = '7';
    try {
      assert.equal(loadConfig().lanesPerPeer, 7);
    } finally {
      if (saved === undefined) delete process.env['MC_TCP_LANES_PER_PEER'];
      else process.env['MC_TCP_LANES_PER_PEER'] = saved;
    }
  });
});

describe('loadConfig integer variables', () => {
  for (const v of INT_VARS) {
    test(`${v.name} accepts [${v.min}, ${v.max}]`, () => {
      for (const n of [v.min, v.max, Math.floor((v.min + v.max) / 2)]) {
        const cfg = loadConfig({ ...v.extra, [v.name]: String(n) });
        assert.equal(cfg[v.field], n * v.scale, `${v.name}=${n}`);
      }
      assert.equal(loadConfig({ ...v.extra, [v.name]: ` ${v.min}\n` })[v.field], v.min * v.scale, 'surrounding whitespace');
    });

    test(`${v.name} rejects out-of-range and malformed values`, () => {
      const bad = [String(v.min - 1), String(v.max + 1), '-1', 'abc', '12abc', '1.5', '0x10', '1e3', `${v.min}.0`, 'Infinity', 'NaN', ' ', '٣'];
      for (const raw of bad) {
        assert.throws(() => loadConfig({ ...v.extra, [v.name]: raw }), badEnv(v.name), `${v.name}=${JSON.stringify(raw)}`);
      }
    });
  }

  test('MC_TRANSFER_TIMEOUT=abc is BAD_ENV naming the variable', () => {
    assert.throws(() => loadConfig({ MC_TRANSFER_TIMEOUT: 'abc' }), badEnv('MC_TRANSFER_TIMEOUT'));
  });
});

describe('loadConfig port range', () => {
  test('MC_MIN_RPC_PORT above MC_MAX_RPC_PORT is BAD_ENV naming both', () => {
    assert.throws(() => loadConfig({ MC_MIN_RPC_PORT: '17001', MC_MAX_RPC_PORT: '17000' }), (e: unknown) => {
      return badEnv('MC_MIN_RPC_PORT')(e) && badEnv('MC_MAX_RPC_PORT')(e);
    });
    assert.throws(() => loadConfig({ MC_MIN_RPC_PORT: '20000' }), badEnv('MC_MIN_RPC_PORT'), 'above the default max');
  });

  test('equal bounds are a one-port range', () => {
    const cfg = loadConfig({ MC_MIN_RPC_PORT: '16000', MC_MAX_RPC_PORT: '16000' });
    assert.equal(cfg.minPort, 16000);
    assert.equal(cfg.maxPort, 16000);
  });

  test('the MC_*_PRC_PORT typo aliases apply when the real names are unset', () => {
    const cfg = loadConfig({ MC_MIN_PRC_PORT: '20000', MC_MAX_PRC_PORT: '21000' });
    assert.equal(cfg.minPort, 20000);
    assert.equal(cfg.maxPort, 21000);
    const both = loadConfig({ MC_MIN_RPC_PORT: '18000', MC_MIN_PRC_PORT: '19000', MC_MAX_RPC_PORT: '22000', MC_MAX_PRC_PORT: '23000' });
    assert.equal(both.minPort, 18000, 'the real name wins');
    assert.equal(both.maxPort, 22000);
  });

  test('a bad alias value names the alias', () => {
    assert.throws(() => loadConfig({ MC_MIN_PRC_PORT: '80' }), badEnv('MC_MIN_PRC_PORT'));
    assert.throws(() => loadConfig({ MC_MAX_PRC_PORT: 'x' }), badEnv('MC_MAX_PRC_PORT'));
  });
});

describe('loadConfig other variables', () => {
  test('MC_TCP_MAX_CONNECTIONS_PER_PEER is the deprecated lanes alias', () => {
    assert.equal(loadConfig({ MC_TCP_MAX_CONNECTIONS_PER_PEER: '8' }).lanesPerPeer, 8);
    assert.equal(loadConfig({ MC_TCP_LANES_PER_PEER: '3', MC_TCP_MAX_CONNECTIONS_PER_PEER: '8' }).lanesPerPeer, 3);
    assert.throws(() => loadConfig({ MC_TCP_MAX_CONNECTIONS_PER_PEER: '17' }), badEnv('MC_TCP_MAX_CONNECTIONS_PER_PEER'));
  });

  test('MC_TCP_PROTO: 1 forces v1, 2 does not, anything else is BAD_ENV', () => {
    assert.equal(loadConfig({ MC_TCP_PROTO: '1' }).forceTcpV1, true);
    assert.equal(loadConfig({ MC_TCP_PROTO: '2' }).forceTcpV1, false);
    for (const raw of ['3', '0', 'v1', 'true', '1.0', '12']) {
      assert.throws(() => loadConfig({ MC_TCP_PROTO: raw }), badEnv('MC_TCP_PROTO'), raw);
    }
  });

  test('MC_TCP_BIND_ADDRESS is trimmed', () => {
    assert.equal(loadConfig({ MC_TCP_BIND_ADDRESS: '10.0.0.7' }).bindAddress, '10.0.0.7');
    assert.equal(loadConfig({ MC_TCP_BIND_ADDRESS: ' ::1 ' }).bindAddress, '::1');
  });

  test('MC_LEGACY_RPC_PORT_BINDING accepts the usual boolean spellings', () => {
    for (const raw of ['1', 'true', 'TRUE', 'yes', 'Yes', 'on', ' on ']) {
      assert.equal(loadConfig({ MC_LEGACY_RPC_PORT_BINDING: raw }).legacyRpcPortBinding, true, raw);
    }
    for (const raw of ['0', 'false', 'no', 'off', 'OFF']) {
      assert.equal(loadConfig({ MC_LEGACY_RPC_PORT_BINDING: raw }).legacyRpcPortBinding, false, raw);
    }
    for (const raw of ['2', 'maybe', 'y', 'enabled']) {
      assert.throws(() => loadConfig({ MC_LEGACY_RPC_PORT_BINDING: raw }), badEnv('MC_LEGACY_RPC_PORT_BINDING'), raw);
    }
  });

  test('TE_ADDRESS_BASE: decimal or hex, page-aligned in [2^44, 2^52); anything else is BAD_ENV', () => {
    assert.equal(loadConfig({ TE_ADDRESS_BASE: '0x100000000000' }).addressBase, 2 ** 44);
    assert.equal(loadConfig({ TE_ADDRESS_BASE: String(2 ** 50) }).addressBase, 2 ** 50);
    for (const raw of ['0', '4096', '0x100000000001', String(2 ** 52), '1e15', 'abc', '-17592186044416']) {
      assert.throws(() => loadConfig({ TE_ADDRESS_BASE: raw }), badEnv('TE_ADDRESS_BASE'), raw);
    }
  });

  test('the first bad variable fails the whole load', () => {
    assert.throws(() => loadConfig({ MC_TCP_LANES_PER_PEER: '4', MC_HANDSHAKE_MAX_LENGTH: '0' }), badEnv('MC_HANDSHAKE_MAX_LENGTH'));
  });
});
