/**
 * src/env.ts, the one environment parser: golden cases per kind (spellings,
 * defaults, bounds, the blank rule), one TE_BAD_ENV naming the variable for a
 * bad value, readEnv, and docs/env.md's table of variables against ENV_VARS
 * both ways, so docs and code cannot drift. The loaders built on it keep their
 * own tests (config, file-codec, metadata-unit, shm-lifecycle, api-env).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { ENV_VARS, envVar, readEnv, type Env, type EnvName, type EnvSpec } from '../src/env.js';
import { loadConfig } from '../src/config.js';
import { TransferEngineError, ErrorCode } from '../src/errors.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url)); // dist/test/ -> the package root
const NAMES = Object.keys(ENV_VARS) as EnvName[];
const spec = (name: EnvName): EnvSpec => ENV_VARS[name];

/** The variable is named, with the text as given, and the code is TE_BAD_ENV. */
function badEnv(variable: string, raw?: string): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, ErrorCode.BAD_ENV);
    assert.ok(e.message.includes(variable), `message should name ${variable}: ${e.message}`);
    if (raw !== undefined) assert.ok(e.message.includes(`${variable}="${raw}"`), `message should quote the value: ${e.message}`);
    return true;
  };
}

function namesOf(kind: EnvSpec['kind']): EnvName[] {
  return NAMES.filter((n) => spec(n).kind === kind);
}

describe('integers', () => {
  test('every integer variable takes its bounds and refuses one past them', () => {
    for (const name of namesOf('integer')) {
      const { min, max } = spec(name);
      assert.ok(min !== undefined && max !== undefined, name);
      assert.equal(envVar(name, { [name]: String(min) }), min, name);
      assert.equal(envVar(name, { [name]: String(max) }), max, name);
      assert.equal(envVar(name, { [name]: ` ${max}\n` }), max, `${name}: surrounding whitespace`);
      assert.throws(() => envVar(name, { [name]: String(min - 1) }), badEnv(name, String(min - 1)));
      assert.throws(() => envVar(name, { [name]: String(max + 1) }), badEnv(name, String(max + 1)));
    }
  });

  test('decimal digits only: what Number() would also take is malformed', () => {
    for (const raw of ['abc', '12abc', '1.5', '0x10', '1e3', '10.0', '+10', 'Infinity', 'NaN', '٣', '99999999999999999999']) {
      assert.throws(() => envVar('MC_RETRY_CNT', { MC_RETRY_CNT: raw }), badEnv('MC_RETRY_CNT', raw), raw);
    }
  });

  test('"-0" reads as 0, a positive zero', () => {
    assert.ok(Object.is(envVar('MC_RETRY_CNT', { MC_RETRY_CNT: '-0' }), 0));
    assert.ok(Object.is(envVar('MC_REDIS_DB_INDEX', { MC_REDIS_DB_INDEX: '-0' }), 0));
    assert.throws(() => envVar('MC_RETRY_CNT', { MC_RETRY_CNT: '-1' }), badEnv('MC_RETRY_CNT'));
  });

  test('defaults, within their bounds; some are "unset" for the caller to fill', () => {
    const golden: Partial<Record<EnvName, number | undefined>> = {
      MC_TRANSFER_TIMEOUT: 30,
      MC_HANDSHAKE_CONNECT_TIMEOUT: 5,
      MC_HANDSHAKE_MAX_LENGTH: 1 << 20,
      MC_MIN_RPC_PORT: 15000,
      MC_MAX_RPC_PORT: 17000,
      MC_TCP_LANES_PER_PEER: 2,
      TE_TCP_SPLIT_SIZE: 1 << 20,
      MC_RETRY_CNT: 5,
      TE_PEER_PAUSE_MS: 1000,
      TE_METRICS_PORT: 0,
      TE_MAX_DESCRIPTOR_SIZE: 64 << 20,
      TE_MAX_DATA_CONNECTIONS_PER_PEER: 1024,
      TE_MAX_RPC_CONNECTIONS_PER_PEER: 256,
      TE_MAX_REQUESTS_IN_FLIGHT: 4096,
      TE_HANDSHAKE_RATE: 1000,
      TE_HANDSHAKE_BURST: 2000,
      TE_TCP_KEEPALIVE_MS: 15000,
      TE_STALL_TIMEOUT_MS: undefined,
      MC_REDIS_DB_INDEX: 0,
      TE_METADATA_TIMEOUT_MS: undefined,
      TE_METADATA_LEASE_TTL: 0,
      MC_TE_METRIC_INTERVAL_SECONDS: 5,
      MC_NVMEOF_GENERIC_NUM_WORKERS: 8,
    };
    assert.deepEqual(Object.keys(golden).sort(), namesOf('integer').sort(), 'every integer variable has a golden default here');
    for (const name of namesOf('integer')) {
      assert.equal(envVar(name, {}), golden[name], name);
      const { default: d, min, max } = spec(name);
      if (typeof d === 'number') assert.ok(d >= min! && d <= max!, `${name}'s default ${d} is in [${min}, ${max}]`);
    }
  });

  test('aliases: read when the name is unset or empty, the name wins, an error names the alias', () => {
    assert.equal(envVar('MC_MIN_RPC_PORT', { MC_MIN_PRC_PORT: '20000' }), 20000);
    assert.equal(envVar('MC_MIN_RPC_PORT', { MC_MIN_RPC_PORT: '', MC_MIN_PRC_PORT: '20000' }), 20000);
    assert.equal(envVar('MC_MIN_RPC_PORT', { MC_MIN_RPC_PORT: '18000', MC_MIN_PRC_PORT: '20000' }), 18000);
    assert.equal(envVar('MC_TCP_LANES_PER_PEER', { MC_TCP_MAX_CONNECTIONS_PER_PEER: '8' }), 8);
    assert.throws(() => envVar('MC_MAX_RPC_PORT', { MC_MAX_PRC_PORT: 'x' }), badEnv('MC_MAX_PRC_PORT', 'x'));
    const aliased = NAMES.filter((n) => spec(n).aliases.length > 0).sort();
    assert.deepEqual(aliased, ['MC_MAX_RPC_PORT', 'MC_MIN_RPC_PORT', 'MC_TCP_LANES_PER_PEER']);
  });
});

describe('booleans', () => {
  test('1/true/yes/on and 0/false/no/off, any case, around whitespace; anything else is malformed', () => {
    for (const name of namesOf('boolean')) {
      for (const raw of ['1', 'true', 'TRUE', 'yes', 'Yes', 'on', ' on ']) assert.equal(envVar(name, { [name]: raw }), true, `${name}=${raw}`);
      for (const raw of ['0', 'false', 'no', 'off', 'OFF', 'False\n']) assert.equal(envVar(name, { [name]: raw }), false, `${name}=${raw}`);
      for (const raw of ['2', 'maybe', 'y', 'n', 'enabled', 'truee']) assert.throws(() => envVar(name, { [name]: raw }), badEnv(name, raw));
    }
  });

  test('defaults', () => {
    const golden = { MC_LEGACY_RPC_PORT_BINDING: false, MC_TE_METRIC: false, MC_NVMEOF_GENERIC_DIRECT_IO: false, TE_FILE_SAME_HOST: true };
    assert.deepEqual(Object.keys(golden).sort(), namesOf('boolean').sort());
    for (const [name, d] of Object.entries(golden)) assert.equal(envVar(name as EnvName, {}), d, name);
  });
});

describe('enums', () => {
  test('MC_LOG_LEVEL: any case, around whitespace, returned as spelled in the table; INFO by default', () => {
    assert.equal(envVar('MC_LOG_LEVEL', {}), 'INFO');
    assert.equal(envVar('MC_LOG_LEVEL', { MC_LOG_LEVEL: ' warning ' }), 'WARNING');
    assert.equal(envVar('MC_LOG_LEVEL', { MC_LOG_LEVEL: 'Trace' }), 'TRACE');
    for (const raw of ['LOUD', 'WARN', 'DEBUG', '1']) assert.throws(() => envVar('MC_LOG_LEVEL', { MC_LOG_LEVEL: raw }), badEnv('MC_LOG_LEVEL', raw));
    assert.equal(envVar('MC_LOG_LEVEL', {}), 'INFO');
    assert.equal(envVar('MC_LOG_LEVEL', { MC_LOG_LEVEL: 'error' }), 'ERROR');
    assert.throws(() => envVar('MC_LOG_LEVEL', { MC_LOG_LEVEL: 'LOUD' }), badEnv('MC_LOG_LEVEL', 'LOUD'));
  });

  test('MC_TCP_PROTO: 1 or 2 (2 by default)', () => {
    assert.equal(envVar('MC_TCP_PROTO', {}), '2');
    assert.equal(envVar('MC_TCP_PROTO', { MC_TCP_PROTO: '1' }), '1');
    for (const raw of ['3', '0', 'v1', 'true', '1.0', '12']) assert.throws(() => envVar('MC_TCP_PROTO', { MC_TCP_PROTO: raw }), badEnv('MC_TCP_PROTO', raw));
  });
});

describe('strings', () => {
  test('kept as given (names, keys, secrets), "" is unset', () => {
    assert.equal(envVar('MC_METADATA_CLUSTER_ID', {}), '');
    assert.equal(envVar('MC_METADATA_CLUSTER_ID', { MC_METADATA_CLUSTER_ID: ' prod ' }), ' prod ');
    assert.equal(envVar('MC_REDIS_PASSWORD', { MC_REDIS_PASSWORD: ' pw ' }), ' pw ');
    assert.equal(envVar('MC_STORE_CLUSTER_ID', {}), 'mooncake_cluster');
    assert.equal(envVar('MC_STORE_CLUSTER_ID', { MC_STORE_CLUSTER_ID: '' }), 'mooncake_cluster');
    assert.equal(envVar('MC_METADATA_SERVER', { MC_METADATA_SERVER: '' }), undefined);
    assert.equal(envVar('MC_METADATA_SERVER', { MC_METADATA_SERVER: 'etcd://h:2379' }), 'etcd://h:2379');
    assert.equal(envVar('TE_AUTH_SECRET', { TE_AUTH_SECRET: ' x ' }), ' x ');
  });

  test('MC_TCP_BIND_ADDRESS and MC_CUSTOM_TOPO_JSON are trimmed', () => {
    assert.equal(envVar('MC_TCP_BIND_ADDRESS', { MC_TCP_BIND_ADDRESS: ' ::1 ' }), '::1');
    assert.equal(envVar('MC_CUSTOM_TOPO_JSON', { MC_CUSTOM_TOPO_JSON: ' /etc/topo.json\n' }), '/etc/topo.json');
  });

  test('TE_MACHINE_ID: 1-256 printable ASCII characters without spaces, as given', () => {
    assert.equal(envVar('TE_MACHINE_ID', {}), undefined);
    assert.equal(envVar('TE_MACHINE_ID', { TE_MACHINE_ID: 'host-b:1' }), 'host-b:1');
    for (const raw of ['has space', ' lead', 'tab\t', 'x'.repeat(257), 'é']) {
      assert.throws(() => envVar('TE_MACHINE_ID', { TE_MACHINE_ID: raw }), badEnv('TE_MACHINE_ID', raw), JSON.stringify(raw));
    }
  });
});

describe('TE_ADDRESS_BASE', () => {
  test('decimal or 0x hex, page-aligned in [2^44, 2^52); unset: undefined', () => {
    assert.equal(envVar('TE_ADDRESS_BASE', {}), undefined);
    assert.equal(envVar('TE_ADDRESS_BASE', { TE_ADDRESS_BASE: '0x100000000000' }), 2 ** 44);
    assert.equal(envVar('TE_ADDRESS_BASE', { TE_ADDRESS_BASE: ` ${2 ** 50} ` }), 2 ** 50);
    for (const raw of ['0', '4096', '0x100000000001', String(2 ** 52), '1e15', 'abc', '-17592186044416', ' ']) {
      assert.throws(() => envVar('TE_ADDRESS_BASE', { TE_ADDRESS_BASE: raw }), badEnv('TE_ADDRESS_BASE', raw), raw);
    }
  });
});

describe('the blank rule', () => {
  // Whitespace only is unset for these (the variables of the metadata, API and file
  // parsers this replaced); for the others it is a value, malformed unless a string.
  const BLANK_IS_UNSET: EnvName[] = [
    'MC_REDIS_DB_INDEX',
    'TE_METADATA_TIMEOUT_MS',
    'TE_METADATA_LEASE_TTL',
    'MC_CUSTOM_TOPO_JSON',
    'MC_TE_METRIC',
    'MC_TE_METRIC_INTERVAL_SECONDS',
    'MC_LOG_LEVEL',
    'MC_NVMEOF_GENERIC_NUM_WORKERS',
    'MC_NVMEOF_GENERIC_DIRECT_IO',
    'TE_FILE_SAME_HOST',
    // Paths: whitespace is no file name (and a blank one must not turn half of TLS on).
    'TE_TLS_CERT',
    'TE_TLS_KEY',
    'TE_TLS_CA',
    'TE_TLS_PEER_NAME',
  ];

  test('"" is unset for every variable', () => {
    for (const name of NAMES) assert.deepEqual(envVar(name, { [name]: '' }), spec(name).default, name);
  });

  test('whitespace only: unset where the table says so, else a value', () => {
    assert.deepEqual(NAMES.filter((n) => spec(n).blankIsUnset).sort(), [...BLANK_IS_UNSET].sort());
    for (const name of NAMES) {
      const env: Env = { [name]: ' \t' };
      const s = spec(name);
      if (s.blankIsUnset) assert.deepEqual(envVar(name, env), s.default, name);
      // A blank bind address trims to "" (listen host ""), as the core's first parser had it.
      else if (s.kind === 'string' && s.pattern === undefined) assert.equal(envVar(name, env), name === 'MC_TCP_BIND_ADDRESS' ? '' : ' \t', name);
      else assert.throws(() => envVar(name, env), badEnv(name), name);
    }
  });
});

describe('readEnv', () => {
  test('every variable once, frozen, defaults for an empty environment', () => {
    const all = readEnv({});
    assert.ok(Object.isFrozen(all));
    assert.deepEqual(Object.keys(all), NAMES);
    for (const name of NAMES) assert.deepEqual(all[name], spec(name).default, name);
    const set = readEnv({ MC_TRANSFER_TIMEOUT: '7', MC_LOG_LEVEL: 'error', TE_FILE_SAME_HOST: 'off', MC_MIN_PRC_PORT: '20000' });
    assert.equal(set.MC_TRANSFER_TIMEOUT, 7);
    assert.equal(set.MC_LOG_LEVEL, 'ERROR');
    assert.equal(set.TE_FILE_SAME_HOST, false);
    assert.equal(set.MC_MIN_RPC_PORT, 20000);
  });

  test('a malformed variable anywhere is TE_BAD_ENV naming it', () => {
    assert.throws(() => readEnv({ MC_TE_METRIC_INTERVAL_SECONDS: '0' }), badEnv('MC_TE_METRIC_INTERVAL_SECONDS', '0'));
  });

  test('reads process.env when no environment is passed', () => {
    const saved = process.env['MC_NVMEOF_GENERIC_NUM_WORKERS'];
    process.env['MC_NVMEOF_GENERIC_NUM_WORKERS'] = '3';
    try {
      assert.equal(envVar('MC_NVMEOF_GENERIC_NUM_WORKERS'), 3);
      assert.equal(readEnv().MC_NVMEOF_GENERIC_NUM_WORKERS, 3);
    } finally {
      if (saved === undefined) delete process.env['MC_NVMEOF_GENERIC_NUM_WORKERS'];
      else process.env['MC_NVMEOF_GENERIC_NUM_WORKERS'] = saved;
    }
  });

  test('a short secret is refused without echoing it', () => {
    assert.throws(
      () => loadConfig({ TE_AUTH_SECRET: 'hunter2' }),
      (e: unknown) => badEnv('TE_AUTH_SECRET')(e) && !(e as Error).message.includes('hunter2'),
    );
  });
});

describe('docs and code', () => {
  /** The names in the first column of docs/env.md's table (the reference of every variable), and its text. */
  function documented(): { names: string[]; section: string } {
    const lines = readFileSync(path.join(ROOT, 'docs', 'env.md'), 'utf8').split('\n');
    const start = lines.indexOf('# Environment variables');
    assert.ok(start >= 0, 'docs/env.md starts with "# Environment variables"');
    let end = lines.findIndex((l, i) => i > start && l.startsWith('#'));
    if (end < 0) end = lines.length;
    const section = lines.slice(start, end);
    const names: string[] = [];
    for (const row of section.filter((l) => l.startsWith('| `'))) {
      for (const m of row.split('|')[1]!.matchAll(/`([A-Za-z_][A-Za-z0-9_]*)`/g)) names.push(m[1]!);
    }
    return { names, section: section.join('\n') };
  }

  test("docs/env.md's table lists exactly ENV_VARS, and mentions every alias", () => {
    const { names, section } = documented();
    assert.equal(new Set(names).size, names.length, 'no variable listed twice');
    assert.deepEqual([...names].sort(), [...NAMES].sort(), 'docs/env.md and src/env.ts ENV_VARS');
    for (const name of NAMES) for (const alias of spec(name).aliases) assert.ok(section.includes(`\`${alias}\``), `docs/env.md mentions ${alias}`);
    for (const name of NAMES) assert.ok(spec(name).doc.length > 0, `${name} has a description`);
  });

  test('no source file reads the environment but through src/env.ts', () => {
    const read = /process\.env\s*(\[|\.[A-Za-z_])|\benv\s*\[|\benv\.(MC|TE)_/;
    const src = path.join(ROOT, 'src');
    const offenders: string[] = [];
    const walk = (dir: string): void => {
      for (const entry of readdirSync(dir)) {
        const p = path.join(dir, entry);
        if (statSync(p).isDirectory()) walk(p);
        else if (p.endsWith('.ts')) {
          const rel = path.relative(src, p).split(path.sep).join('/');
          if (rel === 'env.ts') continue;
          readFileSync(p, 'utf8')
            .split('\n')
            .forEach((line, i) => {
              if (read.test(line)) offenders.push(`src/${rel}:${i + 1}: ${line.trim()}`);
            });
        }
      }
    };
    walk(src);
    assert.deepEqual(offenders, []);
  });
});
