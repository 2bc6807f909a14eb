/**
 * Topology: which network interfaces serve memory of which location.
 *
 * Mooncake's format (MC_CUSTOM_TOPO_JSON, get_local_topology):
 *   {"cpu:0": [["eth0"], ["eth1"]], "cpu:1": [["eth1"], ["eth0"]]}
 * location -> [preferred devices, available devices]. Mooncake lists RDMA
 * devices; TCP has none, so here the devices are network interfaces (or, as an
 * extension, local IPv4 addresses). A location's first preferred interface
 * gives the source address of the data connections that carry memory of that
 * location.
 */
import { readFile, readdir } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import { teError, ErrorCode } from '../errors.js';

export interface TopologyEntry {
  preferred: string[];
  available: string[];
}

type Interfaces = NodeJS.Dict<os.NetworkInterfaceInfo[]>;

const VAR = 'MC_CUSTOM_TOPO_JSON';

export class Topology {
  constructor(
    readonly entries: ReadonlyMap<string, TopologyEntry>,
    /** location -> IPv4 source address of its first preferred device. */
    private readonly sources: ReadonlyMap<string, string>,
  ) {}

  sourceAddress(location: string): string | undefined {
    return this.sources.get(location);
  }

  /** Mooncake's JSON form, optionally keeping only some devices. */
  toJSON(filter?: readonly string[]): string {
    return topologyJson(this.entries, filter);
  }
}

export function topologyJson(entries: ReadonlyMap<string, TopologyEntry>, filter?: readonly string[]): string {
  const keep = (d: string): boolean => filter === undefined || filter.includes(d);
  const out: Record<string, [string[], string[]]> = {};
  for (const [loc, e] of entries) out[loc] = [e.preferred.filter(keep), e.available.filter(keep)];
  return JSON.stringify(out);
}

function isLoopback4(ip: string): boolean {
  return ip.startsWith('127.');
}

/** The IPv4 address a device name stands for, or an error message. */
function deviceAddress(device: string, ifaces: Interfaces): { ip: string } | { error: string } {
  if (net.isIPv4(device)) {
    const assigned = Object.values(ifaces).some((list) => list?.some((a) => a.family === 'IPv4' && a.address === device));
    if (assigned || isLoopback4(device)) return { ip: device };
    return { error: `address ${device} is not assigned to any interface of this host` };
  }
  if (net.isIPv6(device)) return { error: `IPv6 address ${device}: data connections are IPv4` };
  const list = ifaces[device];
  if (!list) return { error: `interface "${device}" does not exist on this host (have: ${Object.keys(ifaces).join(', ')})` };
  const v4 = list.find((a) => a.family === 'IPv4');
  if (!v4) return { error: `interface "${device}" has no IPv4 address` };
  return { ip: v4.address };
}

function deviceList(v: unknown, where: string): string[] {
  if (!Array.isArray(v) || !v.every((d) => typeof d === 'string' && d.length > 0)) {
    throw teError(ErrorCode.BAD_ENV, `${VAR}: ${where} must be an array of non-empty device names`);
  }
  return v as string[];
}

/**
 * Parse and validate a topology document. Every named device must exist here:
 * a typo is an error at initialize, not a silently ignored preference.
 * @param source where the text came from, for messages
 */
export function parseTopology(text: string, source: string, ifaces: Interfaces = os.networkInterfaces()): Topology {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw teError(ErrorCode.BAD_ENV, `${VAR}="${source}" is not valid JSON: ${(e as Error).message}`, e);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw teError(ErrorCode.BAD_ENV, `${VAR}="${source}" must hold a JSON object {"cpu:0": [[preferred], [available]], ...}`);
  }
  const entries = new Map<string, TopologyEntry>();
  const sources = new Map<string, string>();
  for (const [loc, value] of Object.entries(doc)) {
    if (loc.length === 0) throw teError(ErrorCode.BAD_ENV, `${VAR}="${source}": a location name is empty`);
    if (!Array.isArray(value) || value.length !== 2) {
      throw teError(ErrorCode.BAD_ENV, `${VAR}="${source}": location "${loc}" must map to [[preferred devices], [available devices]]`);
    }
    const preferred = deviceList(value[0], `"${loc}" preferred devices`);
    const available = deviceList(value[1], `"${loc}" available devices`);
    for (const d of [...preferred, ...available]) {
      const r = deviceAddress(d, ifaces);
      if ('error' in r) throw teError(ErrorCode.BAD_ENV, `${VAR}="${source}": location "${loc}": ${r.error}`);
    }
    entries.set(loc, { preferred, available });
    const first = preferred[0];
    if (first !== undefined) sources.set(loc, (deviceAddress(first, ifaces) as { ip: string }).ip);
  }
  if (entries.size === 0) throw teError(ErrorCode.BAD_ENV, `${VAR}="${source}" defines no locations`);
  return new Topology(entries, sources);
}

export async function loadTopologyFile(path: string, ifaces?: Interfaces): Promise<Topology> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw teError(ErrorCode.BAD_ENV, `${VAR}="${path}" cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, e);
  }
  return parseTopology(text, path, ifaces);
}

async function readInt(path: string): Promise<number | undefined> {
  try {
    const v = Number((await readFile(path, 'utf8')).trim());
    return Number.isInteger(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * This host's topology, discovered like Mooncake does for RDMA devices: one
 * `cpu:N` location per NUMA node; an interface on node N is preferred there and
 * available elsewhere; an interface whose node is unknown (virtual NICs) is
 * preferred everywhere. Only non-loopback interfaces with an IPv4 address count.
 */
export async function discoverTopology(ifaces: Interfaces = os.networkInterfaces()): Promise<Map<string, TopologyEntry>> {
  let nodes: number[] = [];
  try {
    nodes = (await readdir('/sys/devices/system/node'))
      .map((d) => /^node(\d+)$/.exec(d))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
  } catch {
    /* no sysfs: one node */
  }
  if (nodes.length === 0) nodes = [0];
  const nics: Array<{ name: string; node: number | undefined }> = [];
  for (const [name, list] of Object.entries(ifaces)) {
    if (!list?.some((a) => a.family === 'IPv4' && !a.internal)) continue;
    const node = await readInt(`/sys/class/net/${name}/device/numa_node`);
    nics.push({ name, node: node === undefined || node < 0 ? undefined : node });
  }
  const entries = new Map<string, TopologyEntry>();
  for (const n of nodes) {
    entries.set(`cpu:${n}`, {
      preferred: nics.filter((x) => x.node === undefined || x.node === n).map((x) => x.name),
      available: nics.filter((x) => x.node !== undefined && x.node !== n).map((x) => x.name),
    });
  }
  return entries;
}

/**
 * getLocalTopology's answer: the configured topology (MC_CUSTOM_TOPO_JSON, after
 * initialize) or the discovered one, as Mooncake's JSON, keeping the devices
 * named in `deviceName` (comma-separated; all when empty or null).
 */
export async function localTopologyJson(configured: Topology | undefined, deviceName: string | null): Promise<string> {
  const filter = deviceName
    ? deviceName
        .split(',')
        .map((d) => d.trim())
        .filter((d) => d.length > 0)
    : undefined;
  if (configured) return configured.toJSON(filter);
  return topologyJson(await discoverTopology(), filter);
}
