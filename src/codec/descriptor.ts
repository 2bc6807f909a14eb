/**
 * Segment descriptor JSON, byte-compatible with Mooncake's classic engine
 * (encodeSegmentDesc / decodeSegmentDesc in Mooncake's transfer_metadata.cpp).
 * Addresses and lengths are u64 and kept as bigint so that
 * nothing is rounded, whatever the peer publishes.
 */
import { teError, ErrorCode } from '../errors.js';
import { parseJson, stringifyJson, isJsonObject, type JsonValue } from './json.js';
import { decodeFileBuffers, decodeFileEndpoint, encodeFileBuffers, encodeFileEndpoint, type FileBufferDesc, type FileEndpoint } from './file-buffers.js';

/** Protocols Mooncake's decoder accepts; anything else makes it return null. */
export const KNOWN_PROTOCOLS: ReadonlySet<string> = new Set([
  'tcp', 'rdma', 'barex', 'efa', 'cxi', 'ub', 'nccl', 'ascend', 'nvlink', 'nvlink_intra',
  'hip', 'maca', 'musa', 'ubshmem', 'sunrise_link', 'cxl', 'nvmeof',
]);

export interface BufferDesc {
  name: string;
  addr: bigint;
  length: bigint;
  /**
   * Ours: the /dev/shm file holding this buffer, for peers on the same machine
   * (`shm_name`; Mooncake's decoder ignores unknown fields).
   */
  shmName?: string;
  /**
   * Ours: 'read' when peers may only READ this buffer (`access`; absent: read
   * and write, as with Mooncake). Same-host peers then never write it through
   * shared memory; the owner's data server refuses WRITEs anyway.
   */
  access?: 'read';
}

export interface SegmentDesc {
  name: string;
  protocol: string;
  /** 0 when the peer published none. */
  tcpDataPort: number;
  /** 1 when absent (legacy peers), 2 for acknowledged writes. */
  tcpProtoVersion: number;
  timestamp?: string;
  buffers: BufferDesc[];
  /** Boot id + machine id of the publisher (`machine_id`, as Mooncake's TENT names it): same host, shm may be used. */
  machineId?: string;
  /** Ours (src/codec/file-buffers.ts): registered files (`file_buffers`), present only when there are some. */
  fileBuffers?: FileBufferDesc[];
  /** Ours: where file requests go when not to tcp_data_port (`file_data_host` / `file_data_port`). */
  fileEndpoint?: FileEndpoint;
  /**
   * Ours: the authentication both ports require (`auth`, e.g. "hmac-sha256-v1",
   * src/codec/auth.ts); absent: none. Mooncake's decoder ignores it, but cannot
   * connect to such a segment.
   */
  auth?: string;
  /**
   * Ours: both ports take only mutual TLS (`tls`, "mtls-1.3", src/tls.ts);
   * absent: clear text. An engine with TLS opens no segment without it, and
   * one without TLS none with it.
   */
  tls?: string;
  /**
   * Ours: this engine instance's random id (`engine_id`, an integer in [1, 2^53)).
   * Our clients check it on every data connection before the first request
   * (src/codec/wire.ts, engine identity), so a process that took a dead
   * peer's port is never served requests meant for the peer.
   */
  engineId?: number;
  /**
   * Ours: the port serving this engine's /metrics, /health and /status.json
   * (`metrics_port`, TE_METRICS_PORT), on the host rpc_meta names; absent: none.
   * A metadata server's status page reads each engine's status there.
   */
  metricsPort?: number;
}

/** Default bound on a descriptor's text (TE_MAX_DESCRIPTOR_SIZE): ~500k buffers. */
export const DEFAULT_MAX_DESCRIPTOR_SIZE = 64 << 20;

export interface DecodeDescOptions {
  /** Longer texts are TE_FRAME_TOO_LARGE, before they are parsed. */
  maxLength?: number;
}

const U64_MAX = (1n << 64n) - 1n;

/** "YYYY-MM-DD HH:MM:SS.uuuuuu" in local time, as Mooncake writes it. */
export function mooncakeTimestamp(d = new Date()): string {
  const p = (v: number, w = 2): string => String(v).padStart(w, '0');
  return (
    `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ` +
    `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds() * 1000, 6)}`
  );
}

function encodeBuffer(b: BufferDesc): JsonValue {
  return {
    name: b.name,
    addr: b.addr,
    length: b.length,
    ...(b.shmName ? { shm_name: b.shmName } : {}),
    ...(b.access ? { access: b.access } : {}),
  };
}

/** The bytes one buffer adds to an encoded descriptor (its entry and a comma), so sizes can be tracked without encoding it all. */
export function bufferEntrySize(segmentName: string, b: BufferDesc): number {
  return Buffer.byteLength(stringifyJson(encodeBuffer({ ...b, name: segmentName }))) + 1;
}

export function encodeSegmentDesc(desc: SegmentDesc): string {
  const obj: { [k: string]: JsonValue } = {
    name: desc.name,
    protocol: desc.protocol,
    tcp_data_port: desc.tcpDataPort,
    tcp_proto_version: desc.tcpProtoVersion,
    timestamp: desc.timestamp ?? mooncakeTimestamp(),
    buffers: desc.buffers.map(encodeBuffer),
    ...(desc.machineId ? { machine_id: desc.machineId } : {}),
    ...(desc.auth ? { auth: desc.auth } : {}),
    ...(desc.tls ? { tls: desc.tls } : {}),
    ...(desc.engineId !== undefined ? { engine_id: BigInt(desc.engineId) } : {}),
    ...(desc.metricsPort !== undefined ? { metrics_port: desc.metricsPort } : {}),
  };
  const files = encodeFileBuffers(desc.fileBuffers);
  if (files !== undefined) obj['file_buffers'] = files;
  Object.assign(obj, encodeFileEndpoint(desc.fileEndpoint));
  return stringifyJson(obj);
}

function asU64(v: JsonValue | undefined, what: string): bigint {
  if (typeof v === 'bigint') {
    if (v < 0n || v > U64_MAX) throw teError(ErrorCode.MALFORMED, `${what} is out of the u64 range`);
    return v;
  }
  // Integer literals parse as bigint, so a number here was written as 1.5, 1e3 or 1000.0.
  throw teError(ErrorCode.MALFORMED, `${what} must be a non-negative integer`);
}

function asInt(v: JsonValue | undefined, what: string, dflt: number): number {
  if (v === undefined || v === null) return dflt;
  if (typeof v === 'bigint' && v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
  if (typeof v === 'number' && Number.isSafeInteger(v)) return v; // 2e53 is an integer, but not one we can hold exactly
  throw teError(ErrorCode.MALFORMED, `${what} must be an integer`);
}

/**
 * Decode and validate a descriptor. Mirrors Mooncake's rules: unknown protocol
 * rejects the segment; for tcp, a buffer with an empty name, addr 0 or length 0
 * rejects the whole segment.
 */
export function decodeSegmentDesc(text: string, options: DecodeDescOptions = {}): SegmentDesc {
  const max = options.maxLength ?? DEFAULT_MAX_DESCRIPTOR_SIZE;
  if (typeof text === 'string' && text.length > max) {
    throw teError(ErrorCode.FRAME_TOO_LARGE, `segment descriptor of ${text.length} characters exceeds the ${max}-byte limit (TE_MAX_DESCRIPTOR_SIZE)`);
  }
  let v: JsonValue;
  try {
    v = parseJson(text, { bigintIntegers: true });
  } catch (e) {
    throw teError(ErrorCode.MALFORMED, `segment descriptor is not valid JSON: ${(e as Error).message}`, e);
  }
  if (!isJsonObject(v)) throw teError(ErrorCode.MALFORMED, 'segment descriptor must be a JSON object');
  const name = v['name'];
  const protocol = v['protocol'];
  if (typeof name !== 'string') throw teError(ErrorCode.MALFORMED, 'segment descriptor has no string "name"');
  if (typeof protocol !== 'string') {
    throw teError(ErrorCode.MALFORMED, 'segment descriptor has no string "protocol" (multi-protocol arrays are not supported)');
  }
  if (!KNOWN_PROTOCOLS.has(protocol)) throw teError(ErrorCode.MALFORMED, `segment descriptor has unknown protocol "${protocol}"`);
  const tcpDataPort = asInt(v['tcp_data_port'], 'tcp_data_port', 0);
  if (tcpDataPort < 0 || tcpDataPort > 65535) throw teError(ErrorCode.MALFORMED, `tcp_data_port ${tcpDataPort} is not a port`);
  const tcpProtoVersion = asInt(v['tcp_proto_version'], 'tcp_proto_version', 1);
  const rawBuffers = v['buffers'] ?? [];
  if (!Array.isArray(rawBuffers)) throw teError(ErrorCode.MALFORMED, '"buffers" must be an array');
  const buffers: BufferDesc[] = [];
  for (const [i, b] of rawBuffers.entries()) {
    if (!isJsonObject(b)) throw teError(ErrorCode.MALFORMED, `buffers[${i}] must be an object`);
    if (protocol !== 'tcp') continue; // other layouts (rdma rkeys, nvmeof files) are not ours to use
    const bname = b['name'];
    if (typeof bname !== 'string' || bname.length === 0) throw teError(ErrorCode.MALFORMED, `buffers[${i}].name must be a non-empty string`);
    const addr = asU64(b['addr'], `buffers[${i}].addr`);
    const length = asU64(b['length'], `buffers[${i}].length`);
    if (addr === 0n) throw teError(ErrorCode.MALFORMED, `buffers[${i}].addr is 0`);
    if (length === 0n) throw teError(ErrorCode.MALFORMED, `buffers[${i}].length is 0`);
    if (addr + length - 1n > U64_MAX) throw teError(ErrorCode.MALFORMED, `buffers[${i}] overflows the address space`);
    // Our own optional field: a wrong type is ignored, never a reason to reject the segment.
    const shmName = b['shm_name'];
    const desc: BufferDesc = typeof shmName === 'string' && shmName.length > 0 ? { name: bname, addr, length, shmName } : { name: bname, addr, length };
    // Anything but our 'read' leaves the Mooncake meaning (read and write); the owner enforces its own rule anyway.
    if (b['access'] === 'read') desc.access = 'read';
    buffers.push(desc);
  }
  const ts = v['timestamp'];
  const machineId = v['machine_id'];
  const auth = v['auth'];
  const tls = v['tls'];
  const engineId = v['engine_id'];
  const metricsPort = v['metrics_port'];
  const fileBuffers = decodeFileBuffers(v['file_buffers']);
  const fileEndpoint = decodeFileEndpoint(v['file_data_host'], v['file_data_port']);
  return {
    name,
    protocol,
    tcpDataPort,
    tcpProtoVersion,
    ...(typeof ts === 'string' ? { timestamp: ts } : {}),
    buffers,
    ...(typeof machineId === 'string' && machineId.length > 0 ? { machineId } : {}),
    ...(fileBuffers.length > 0 ? { fileBuffers } : {}),
    ...(fileEndpoint ? { fileEndpoint } : {}),
    ...(typeof auth === 'string' && auth.length > 0 ? { auth } : {}),
    ...(typeof tls === 'string' && tls.length > 0 ? { tls } : {}),
    // Our own optional field: anything but an integer in [1, 2^53) is ignored, as for shm_name.
    ...(typeof engineId === 'bigint' && engineId > 0n && engineId <= BigInt(Number.MAX_SAFE_INTEGER) ? { engineId: Number(engineId) } : {}),
    // Likewise: anything but a port in [1, 65535] is ignored.
    ...(typeof metricsPort === 'bigint' && metricsPort > 0n && metricsPort <= 65535n ? { metricsPort: Number(metricsPort) } : {}),
  };
}
