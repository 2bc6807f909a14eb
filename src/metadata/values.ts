/**
 * Values stored under the metadata keys, byte-compatible with what Mooncake
 * writes: jsoncpp objects are std::maps, so keys come out sorted; etcd and
 * Redis values come from FastWriter (compact, trailing "\n"), HTTP values from
 * StreamWriterBuilder with no indentation (compact, no newline).
 */
import { encodeSegmentDesc, decodeSegmentDesc, type SegmentDesc } from '../codec/descriptor.js';
import { parseJson, isJsonObject, type JsonValue } from '../codec/json.js';
import { teError, ErrorCode, TransferEngineError } from '../errors.js';

/** Where the location of a segment's RPC port is published (central modes). */
export interface RpcMeta {
  ipOrHostName: string;
  rpcPort: number;
}

/** Compact JSON with object keys sorted by byte order, as jsoncpp writes it. */
export function sortedJson(value: JsonValue): string {
  if (Array.isArray(value)) return `[${value.map(sortedJson).join(',')}]`;
  if (isJsonObject(value)) {
    const keys = Object.keys(value).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    return `{${keys.map((k) => `${JSON.stringify(k)}:${sortedJson(value[k]!)}`).join(',')}}`;
  }
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number') return Number.isInteger(value) ? BigInt(value).toString() : String(value);
  return JSON.stringify(value);
}

/** The stored form of our descriptor; `newline` for etcd and Redis (FastWriter). */
export function encodeDescriptorValue(desc: SegmentDesc, newline: boolean): string {
  // Re-parse the codec's output losslessly so the bytes follow the codec exactly, only reordered.
  const text = sortedJson(parseJson(encodeSegmentDesc(desc), { bigintIntegers: true }));
  return newline ? `${text}\n` : text;
}

/**
 * Decode a stored descriptor; `key` names the source in errors. Garbage or an unknown protocol:
 * TE_MALFORMED; longer than `maxLength` (TE_MAX_DESCRIPTOR_SIZE): TE_FRAME_TOO_LARGE, before parsing.
 */
export function decodeDescriptorValue(text: string, key: string, maxLength?: number): SegmentDesc {
  try {
    return decodeSegmentDesc(text, { maxLength });
  } catch (e) {
    if (e instanceof TransferEngineError && e.code === ErrorCode.FRAME_TOO_LARGE) {
      throw teError(ErrorCode.FRAME_TOO_LARGE, `metadata key "${key}": ${e.message}`, e);
    }
    const msg = e instanceof Error ? e.message : String(e);
    throw teError(ErrorCode.MALFORMED, `metadata key "${key}" does not hold a valid segment descriptor: ${msg}`, e);
  }
}

export function encodeRpcMeta(meta: RpcMeta, newline: boolean): string {
  const text = sortedJson({ ip_or_host_name: meta.ipOrHostName, rpc_port: meta.rpcPort });
  return newline ? `${text}\n` : text;
}

export function decodeRpcMeta(text: string, key: string): RpcMeta {
  let v: JsonValue;
  try {
    v = parseJson(text);
  } catch (e) {
    throw teError(ErrorCode.MALFORMED, `metadata key "${key}" is not JSON: ${(e as Error).message}`, e);
  }
  if (!isJsonObject(v)) throw teError(ErrorCode.MALFORMED, `metadata key "${key}" must hold a JSON object`);
  const host = v['ip_or_host_name'];
  const port = v['rpc_port'];
  if (typeof host !== 'string' || host.length === 0) {
    throw teError(ErrorCode.MALFORMED, `metadata key "${key}" has no "ip_or_host_name" string`);
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw teError(ErrorCode.MALFORMED, `metadata key "${key}" has no valid "rpc_port" (got ${JSON.stringify(String(port))})`);
  }
  return { ipOrHostName: host, rpcPort: port };
}
