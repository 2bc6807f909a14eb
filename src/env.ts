/**
 * THE environment parser: every variable the engine reads, in one table, each
 * kind parsed by one rule, every malformed value one TE_BAD_ENV error naming
 * the variable, never a silent default. Pure: the environment is a parameter
 * (default process.env) and nothing else is read. What needs I/O (the secret
 * file, the topology file, "is this an address of this host") is done by the
 * callers with the values read here.
 *
 * docs/env.md documents exactly these names (test/env.test.ts
 * checks both ways).
 */
import { teError, ErrorCode, type TransferEngineError } from './errors.js';
import { DEFAULT_LIMITS } from './limits.js';
import { ADDRESS_BASE, ADDRESS_BASE_LIMIT, PAGE_SIZE } from './address-space.js';

export type Env = Readonly<Record<string, string | undefined>>;

export type EnvKind = 'string' | 'boolean' | 'integer' | 'enum' | 'address';

/** A variable: V is what a set value parses to, D the value when unset. */
export interface EnvSpec<V = unknown, D = unknown> {
  readonly kind: EnvKind;
  /** One line for people; the README's table says more. */
  readonly doc: string;
  readonly default: D;
  /** Older names, read in order when the name itself is unset (an error names the one that was read). */
  readonly aliases: readonly string[];
  /**
   * "" is always unset. With this, whitespace only is unset too; without it, whitespace
   * is a value like any other (so malformed for all kinds but strings). Kept per variable
   * as the parsers this module replaced had it: see test/env.test.ts.
   */
  readonly blankIsUnset: boolean;
  /** Integers and addresses: the bounds (addresses: max excluded). */
  readonly min?: number;
  readonly max?: number;
  /** Enums: the values, as returned. */
  readonly values?: readonly string[];
  /** Strings with a shape (TE_MACHINE_ID). */
  readonly pattern?: RegExp;
  /** The end of the error: `NAME="raw" is not <expects>`. */
  readonly expects: string;
  /** The value of set text, or undefined when it is malformed. */
  readonly parse: (text: string) => V | undefined;
}

interface Common {
  doc: string;
  aliases?: readonly string[];
  blankIsUnset?: boolean;
}

function common(o: Common): Pick<EnvSpec, 'doc' | 'aliases' | 'blankIsUnset'> {
  return { doc: o.doc, aliases: o.aliases ?? [], blankIsUnset: o.blankIsUnset ?? false };
}

// ---------------------------------------------------------------- the rules, one per kind

/** Decimal digits around whitespace; no "0x", "1e3", "1.0" or "+1", which Number() would take. "-0" reads as 0. */
function integer<D extends number | undefined>(o: Common & { default: D; min: number; max: number }): EnvSpec<number, D> {
  return {
    kind: 'integer',
    ...common(o),
    default: o.default,
    min: o.min,
    max: o.max,
    expects: `an integer in [${o.min}, ${o.max}]`,
    parse(text) {
      const t = text.trim();
      const v = /^-?\d+$/.test(t) ? Number(t) : NaN;
      return Number.isSafeInteger(v) && v >= o.min && v <= o.max ? v + 0 : undefined;
    },
  };
}

const TRUE = ['1', 'true', 'yes', 'on'];
const FALSE = ['0', 'false', 'no', 'off'];

/** 1/0, true/false, yes/no, on/off, any case, around whitespace (Mooncake's spellings of true, and their falses). */
function boolean(o: Common & { default: boolean }): EnvSpec<boolean, boolean> {
  return {
    kind: 'boolean',
    ...common(o),
    default: o.default,
    expects: 'a boolean (1/0, true/false, yes/no, on/off)',
    parse(text) {
      const t = text.trim().toLowerCase();
      return TRUE.includes(t) ? true : FALSE.includes(t) ? false : undefined;
    },
  };
}

/** One of `values`, any case, around whitespace; returned as spelled in `values`. */
function oneOf<const V extends string>(o: Common & { values: readonly V[]; default: NoInfer<V> }): EnvSpec<V, V> {
  return {
    kind: 'enum',
    ...common(o),
    default: o.default,
    values: o.values,
    expects: `one of ${o.values.join(', ')}`,
    // toUpperCase, as MC_LOG_LEVEL's first parser compared.
    parse: (text) => o.values.find((v) => v.toUpperCase() === text.trim().toUpperCase()),
  };
}

/**
 * Text as given (names, keys, paths, secrets: whitespace may be meant), or trimmed
 * with `trim`; with `pattern`, text that does not match is malformed. Never echoes
 * a value that parsed, so secrets stay out of messages.
 */
function text<D extends string | undefined>(o: Common & { default: D; trim?: boolean; pattern?: RegExp; expects?: string }): EnvSpec<string, D> {
  const pattern = o.pattern;
  return {
    kind: 'string',
    ...common(o),
    default: o.default,
    ...(pattern ? { pattern } : {}),
    expects: o.expects ?? 'a string',
    parse(raw) {
      const t = o.trim ? raw.trim() : raw;
      return pattern === undefined || pattern.test(t) ? t : undefined;
    },
  };
}

/** A synthetic address: decimal or 0x hex, page-aligned, in [min, max). */
function address(o: Common & { min: number; max: number; align: number }): EnvSpec<number, undefined> {
  return {
    kind: 'address',
    ...common(o),
    default: undefined,
    min: o.min,
    max: o.max,
    expects: `a multiple of ${o.align} in [0x${o.min.toString(16)}, 0x${o.max.toString(16)})`,
    parse(raw) {
      const t = raw.trim();
      const v = /^0x[0-9a-f]+$/i.test(t) || /^\d+$/.test(t) ? Number(t) : NaN;
      return Number.isSafeInteger(v) && v % o.align === 0 && v >= o.min && v < o.max ? v : undefined;
    },
  };
}

/** TE_MACHINE_ID's shape, also the machineId option's (src/shm/identity.ts). */
export const MACHINE_ID_PATTERN = /^[\x21-\x7e]{1,256}$/;

// ---------------------------------------------------------------- the table

/**
 * Every variable the engine reads. Order: core (src/config.ts), metadata,
 * high-level API, file segments, shared memory, store, CLI.
 */
export const ENV_VARS = {
  MC_TRANSFER_TIMEOUT: integer({ default: 30, min: 1, max: 86400, doc: 'seconds without progress before a transfer ends in TIMEOUT' }),
  MC_HANDSHAKE_CONNECT_TIMEOUT: integer({ default: 5, min: 1, max: 3599, doc: "seconds to connect to a peer's RPC port" }),
  MC_HANDSHAKE_MAX_LENGTH: integer({ default: 1 << 20, min: 1, max: 128 << 20, doc: 'largest handshake frame accepted, in bytes' }),
  // MC_*_PRC_PORT: Mooncake's misspelling, still read by it.
  MC_MIN_RPC_PORT: integer({ default: 15000, min: 1024, max: 65535, aliases: ['MC_MIN_PRC_PORT'], doc: 'lowest port for the RPC and data ports' }),
  MC_MAX_RPC_PORT: integer({ default: 17000, min: 1024, max: 65535, aliases: ['MC_MAX_PRC_PORT'], doc: 'highest port for the RPC and data ports' }),
  MC_TCP_PROTO: oneOf({ values: ['1', '2'], default: '2', doc: '1 forces the unacknowledged v1 initiator' }),
  MC_TCP_BIND_ADDRESS: text({ default: undefined, trim: true, doc: 'address the ports listen on (and central modes publish)' }),
  MC_LEGACY_RPC_PORT_BINDING: boolean({ default: false, doc: 'take the RPC port from the server name' }),
  MC_TCP_LANES_PER_PEER: integer({ default: 2, min: 1, max: 16, aliases: ['MC_TCP_MAX_CONNECTIONS_PER_PEER'], doc: 'persistent data connections per peer' }),
  TE_TCP_SPLIT_SIZE: integer({ default: 1 << 20, min: 4096, max: 1 << 30, doc: 'requests larger than this are split over the lanes, in bytes' }),
  MC_RETRY_CNT: integer({ default: 5, min: 0, max: 100, doc: "retry rounds of a task's failed slices (0: none)" }),
  TE_PEER_PAUSE_MS: integer({ default: 1000, min: 0, max: 3600_000, doc: 'pause of a peer that failed to connect 3 times in a row (0: never)' }),
  TE_AUTH_SECRET: text({ default: undefined, doc: 'shared secret both ports require (16 bytes or more)' }),
  TE_AUTH_SECRET_FILE: text({ default: undefined, doc: 'file holding that secret (mode 600 or stricter)' }),
  TE_TLS_CERT: text({ default: undefined, trim: true, blankIsUnset: true, doc: 'our certificate (PEM file): mutual TLS 1.3 on both ports' }),
  TE_TLS_KEY: text({ default: undefined, trim: true, blankIsUnset: true, doc: "that certificate's private key (PEM file, mode 600 or stricter)" }),
  TE_TLS_CA: text({ default: undefined, trim: true, blankIsUnset: true, doc: "the CA (PEM file) peers' certificates must be signed by" }),
  TE_TLS_PEER_NAME: text({ default: undefined, trim: true, blankIsUnset: true, doc: "the name peers' certificates must carry (default: any the CA signed)" }),
  TE_MAX_DESCRIPTOR_SIZE: integer({ default: 64 << 20, min: 1024, max: 1 << 30, doc: 'largest segment descriptor accepted from a peer, in bytes' }),
  TE_ADDRESS_BASE: address({ min: ADDRESS_BASE, max: ADDRESS_BASE_LIMIT, align: PAGE_SIZE, doc: 'first synthetic address (default: random per engine)' }),
  TE_MAX_DATA_CONNECTIONS_PER_PEER: integer({ default: DEFAULT_LIMITS.maxDataConnectionsPerPeer, min: 1, max: 1 << 20, doc: 'open data-port connections per remote address' }),
  TE_MAX_RPC_CONNECTIONS_PER_PEER: integer({ default: DEFAULT_LIMITS.maxRpcConnectionsPerPeer, min: 1, max: 1 << 20, doc: 'open RPC-port connections per remote address' }),
  TE_MAX_REQUESTS_IN_FLIGHT: integer({ default: DEFAULT_LIMITS.maxRequestsInFlight, min: 1, max: 1 << 20, doc: 'answers a data connection may have queued before it is not read' }),
  TE_HANDSHAKE_RATE: integer({ default: DEFAULT_LIMITS.handshakeRate, min: 1, max: 1 << 20, doc: 'new RPC connections per second per remote address' }),
  TE_HANDSHAKE_BURST: integer({ default: DEFAULT_LIMITS.handshakeBurst, min: 1, max: 1 << 20, doc: 'burst of new RPC connections per remote address' }),
  TE_TCP_KEEPALIVE_MS: integer({ default: DEFAULT_LIMITS.keepAliveMs, min: 0, max: 86400_000, doc: 'TCP keepalive on data connections after this long idle (0: off)' }),
  TE_METRICS_PORT: integer({ default: 0, min: 0, max: 65535, doc: 'port of the engine\'s /metrics and /health (0: off)' }),
  // Unset: MC_TRANSFER_TIMEOUT (src/config.ts).
  TE_STALL_TIMEOUT_MS: integer({ default: undefined, min: 10, max: 86400_000, doc: 'a connection mid-request without progress this long is closed' }),

  // Unset: P2PHANDSHAKE (the callers say so, so that they can tell unset from set).
  MC_METADATA_SERVER: text({ default: undefined, doc: 'metadata service when none is given' }),
  MC_METADATA_CLUSTER_ID: text({ default: '', doc: 'key prefix mooncake/<id>/ in the central store' }),
  MC_REDIS_USERNAME: text({ default: '', doc: 'Redis AUTH user' }),
  MC_REDIS_PASSWORD: text({ default: '', doc: 'Redis AUTH password (AUTH only when set)' }),
  MC_REDIS_DB_INDEX: integer({ default: 0, min: 0, max: 255, blankIsUnset: true, doc: 'Redis database' }),
  // Unset: the backend's Mooncake default (HTTP 3 s, etcd and Redis 5 s).
  TE_METADATA_TIMEOUT_MS: integer({ default: undefined, min: 100, max: 600_000, blankIsUnset: true, doc: 'bound on each metadata call' }),
  TE_METADATA_LEASE_TTL: integer({ default: 0, min: 0, max: 86_400, blankIsUnset: true, doc: 'etcd: seconds of the lease our keys hang on (0: none)' }),

  MC_CUSTOM_TOPO_JSON: text({ default: undefined, trim: true, blankIsUnset: true, doc: 'topology file: source addresses per memory location' }),
  MC_TE_METRIC: boolean({ default: false, blankIsUnset: true, doc: 'print a throughput line every interval' }),
  MC_TE_METRIC_INTERVAL_SECONDS: integer({ default: 5, min: 1, max: 86400, blankIsUnset: true, doc: 'seconds between metrics lines' }),
  MC_LOG_LEVEL: oneOf({ values: ['TRACE', 'INFO', 'WARNING', 'ERROR'], default: 'INFO', blankIsUnset: true, doc: "the high-level API's log level" }),

  MC_NVMEOF_GENERIC_NUM_WORKERS: integer({ default: 8, min: 1, max: 256, blankIsUnset: true, doc: 'file operations in flight at once' }),
  MC_NVMEOF_GENERIC_DIRECT_IO: boolean({ default: false, blankIsUnset: true, doc: 'open registered files with O_DIRECT by default' }),
  TE_FILE_SAME_HOST: boolean({ default: true, blankIsUnset: true, doc: "read and write a same-host peer's files directly (off: TCP)" }),

  TE_MACHINE_ID: text({
    default: undefined,
    pattern: MACHINE_ID_PATTERN,
    expects: '1-256 printable ASCII characters without spaces',
    doc: 'machine identity for the same-host check (tests: another host)',
  }),
  TE_SHM_ADDON: text({ default: undefined, doc: 'path of the native addon instead of build/Release' }),

  MC_STORE_CLUSTER_ID: text({ default: 'mooncake_cluster', doc: "cluster whose master_view an etcd:// master address reads" }),

  // Set by npm, not by users: under npx the bench target prints an npx command.
  npm_command: text({ default: undefined, doc: 'npm\'s command ("exec" under npx)' }),
} as const satisfies Record<string, EnvSpec>;

export type EnvName = keyof typeof ENV_VARS;
export type EnvValue<N extends EnvName> = (typeof ENV_VARS)[N] extends EnvSpec<infer V, infer D> ? V | D : never;
export type EnvSettings = { readonly [N in EnvName]: EnvValue<N> };

// ---------------------------------------------------------------- reading

/** The one error for a bad value (also for checks across variables, made by the callers). */
export function envError(message: string, cause?: unknown): TransferEngineError {
  return teError(ErrorCode.BAD_ENV, message, cause);
}

/** One variable, parsed and checked: its default when unset, TE_BAD_ENV naming it when malformed. */
export function envVar<N extends EnvName>(name: N, env: Env = process.env): EnvValue<N> {
  const spec: EnvSpec = ENV_VARS[name];
  for (const n of [name, ...spec.aliases]) {
    const raw = env[n];
    if (raw === undefined || raw === '' || (spec.blankIsUnset && raw.trim() === '')) continue;
    const v = spec.parse(raw);
    if (v === undefined) throw envError(`${n}="${raw}" is not ${spec.expects}`);
    return v as EnvValue<N>;
  }
  return spec.default as EnvValue<N>;
}

/**
 * Every variable at once, frozen: parse once, pass down. The first malformed one
 * (in table order) throws, so use it where all of them apply.
 */
export function readEnv(env: Env = process.env): EnvSettings {
  const out: Partial<Record<EnvName, unknown>> = {};
  for (const name of Object.keys(ENV_VARS) as EnvName[]) out[name] = envVar(name, env);
  return Object.freeze(out) as EnvSettings;
}
