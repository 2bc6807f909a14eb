/**
 * The master's durable state as records: one per segment, one per object,
 * JSON with bigints as decimal strings and times as wall-clock milliseconds
 * (a successor's monotonic clock is another). What a journal stores (etcd
 * for HA: src/master/ha.ts) and what a master taking over restores from.
 * Pure: no I/O.
 *
 * Not recorded, on purpose: read leases and clients' last pings (soft state
 * of seconds: a successor gives every client of a recorded segment a full
 * TTL to ping it), LRU order, and space quarantined after a discard (freed
 * at once by a successor).
 */
import { teError, ErrorCode } from '../errors.js';
import type { Segment, UUID } from '../store/master-protocol.js';

export interface ReplicaRecord {
  id: bigint;
  /** The segment's key (its id as `uuidKey`). */
  segment: string;
  offset: number;
  size: number;
  status: number;
}

export interface ObjectRecord {
  tenant: string;
  key: string;
  size: number;
  replicas: ReplicaRecord[];
  /** The writer's client key while a put or upsert is in progress, else null. */
  writer: string | null;
  writeStartedAtWall: number;
  previous: ReplicaRecord[] | null;
  hardPin: boolean;
  /** 0: not soft-pinned. */
  softPinUntilWall: number;
  checksum: bigint | null;
}

export interface SegmentRecord {
  segment: Segment;
  client: UUID;
  /** A file segment whose provider left (its objects wait for it). */
  dormant: boolean;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const uuidOut = (u: UUID): Json => [u.first.toString(), u.second.toString()];
const replicaOut = (r: ReplicaRecord): Json => [r.id.toString(), r.segment, r.offset, r.size, r.status];

export function encodeSegmentRecord(r: SegmentRecord): string {
  const s = r.segment;
  return JSON.stringify({
    id: uuidOut(s.id),
    name: s.name,
    base: s.base.toString(),
    size: s.size.toString(),
    te: s.teEndpoint,
    protocol: s.protocol,
    host: s.hostId,
    client: uuidOut(r.client),
    dormant: r.dormant,
  } satisfies Json);
}

export function encodeObjectRecord(o: ObjectRecord): string {
  return JSON.stringify({
    tenant: o.tenant,
    key: o.key,
    size: o.size,
    replicas: o.replicas.map(replicaOut),
    writer: o.writer,
    writeStartedAt: o.writeStartedAtWall,
    previous: o.previous === null ? null : o.previous.map(replicaOut),
    hardPin: o.hardPin,
    softPinUntil: o.softPinUntilWall,
    checksum: o.checksum === null ? null : o.checksum.toString(),
  } satisfies Json);
}

/** A record that does not parse is a corrupt journal: the master refuses to serve from it. */
function bad(what: string): never {
  throw teError(ErrorCode.MALFORMED, `master state: ${what}`);
}

function parse(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    bad(`${what} is not JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad(`${what} is not an object`);
  return v as Record<string, unknown>;
}

function str(o: Record<string, unknown>, k: string, what: string): string {
  const v = o[k];
  if (typeof v !== 'string') bad(`${what}.${k} is not a string`);
  return v;
}

function num(o: Record<string, unknown>, k: string, what: string): number {
  const v = o[k];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) bad(`${what}.${k} is not a non-negative integer`);
  return v;
}

function big(v: unknown, what: string): bigint {
  if (typeof v !== 'string' || !/^\d+$/.test(v)) bad(`${what} is not a decimal integer`);
  return BigInt(v);
}

function uuidIn(v: unknown, what: string): UUID {
  if (!Array.isArray(v) || v.length !== 2) bad(`${what} is not a [first, second] pair`);
  return { first: big(v[0], `${what}[0]`), second: big(v[1], `${what}[1]`) };
}

function replicaIn(v: unknown, what: string): ReplicaRecord {
  if (!Array.isArray(v) || v.length !== 5) bad(`${what} is not a replica`);
  const [id, segment, offset, size, status] = v as unknown[];
  if (typeof segment !== 'string' || typeof offset !== 'number' || typeof size !== 'number' || typeof status !== 'number') bad(`${what} has a field of the wrong type`);
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(size) || size <= 0) bad(`${what} has a bad range`);
  return { id: big(id, `${what}.id`), segment, offset, size, status };
}

export function decodeSegmentRecord(text: string): SegmentRecord {
  const o = parse(text, 'segment record');
  return {
    segment: {
      id: uuidIn(o['id'], 'segment.id'),
      name: str(o, 'name', 'segment'),
      base: big(o['base'], 'segment.base'),
      size: big(o['size'], 'segment.size'),
      teEndpoint: str(o, 'te', 'segment'),
      protocol: str(o, 'protocol', 'segment'),
      hostId: str(o, 'host', 'segment'),
    },
    client: uuidIn(o['client'], 'segment.client'),
    dormant: o['dormant'] === true,
  };
}

export function decodeObjectRecord(text: string): ObjectRecord {
  const o = parse(text, 'object record');
  const replicas = o['replicas'];
  if (!Array.isArray(replicas)) bad('object.replicas is not a list');
  const previous = o['previous'];
  if (previous !== null && !Array.isArray(previous)) bad('object.previous is not a list');
  const writer = o['writer'];
  if (writer !== null && typeof writer !== 'string') bad('object.writer is not a string');
  const checksum = o['checksum'];
  return {
    tenant: str(o, 'tenant', 'object'),
    key: str(o, 'key', 'object'),
    size: num(o, 'size', 'object'),
    replicas: replicas.map((r, i) => replicaIn(r, `object.replicas[${i}]`)),
    writer,
    writeStartedAtWall: num(o, 'writeStartedAt', 'object'),
    previous: previous === null ? null : previous.map((r, i) => replicaIn(r, `object.previous[${i}]`)),
    hardPin: o['hardPin'] === true,
    softPinUntilWall: num(o, 'softPinUntil', 'object'),
    checksum: checksum === null ? null : big(checksum, 'object.checksum'),
  };
}

/** What changed since the last commit: records to write and names to delete, each keyed as the journal stores them. */
export interface ChangeSet {
  segments: Map<string, SegmentRecord | null>;
  objects: Map<string, ObjectRecord | null>;
}

/** The whole state, as loaded by a successor. */
export interface StateSnapshot {
  segments: SegmentRecord[];
  objects: ObjectRecord[];
}
