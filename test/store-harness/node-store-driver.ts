/**
 * Plays a Node store client (`transfer-engine/store`) in its own process for the store fault tests
 * and the store soak, so that it can be SIGKILLed: the counterpart of store_driver.py, with the
 * same protocol (one JSON command per line on stdin, one JSON reply per line on stdout, in order;
 * the first line printed is {"ready": true}) and the same values: pattern(seed, length) bytes,
 * reads answered as {length, sha}. Driven by NodeStore (node-store.ts).
 *
 * Beyond the binding's calls, `put_partial` plays a writer that dies in the middle of a put: a
 * PutStart of its own (a master connection and client id apart from the store's), a WRITE of
 * the first part of the value into every replica the master placed, and no PutEnd. The test then
 * SIGKILLs the process.
 */
import { createInterface } from 'node:readline';
import { randomBytes } from 'node:crypto';
import { createHash } from 'node:crypto';
import { MooncakeDistributedStore, ReplicateConfig } from '../../src/store.js';
import { Master, type ReplicaDescriptor } from '../../src/store/master-protocol.js';
import { RpcClient } from '../../src/store/rpc-client.js';
import { memoryBuffer } from '../../src/store/replica-io.js';
import { TaskStatus, TransferOpcode } from '../../src/engine/types.js';
import { splitHostPort } from '../../src/net.js';
import { pattern } from './python-store.js';

type Cmd = Record<string, unknown> & { cmd: string };
interface ConfigInit {
  replica_num?: number;
  preferred_segments?: string[];
}

const store = new MooncakeDistributedStore({ env: { ...process.env, MC_TCP_BIND_ADDRESS: '127.0.0.1' } });
let master = '';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const config = (c: ConfigInit | undefined): ReplicateConfig =>
  new ReplicateConfig({ replicaNum: c?.replica_num ?? 1, preferredSegments: c?.preferred_segments ?? [] });
const lastError = (): { code: number; message: string } => ({ code: store.getLastError()?.returnCode ?? 0, message: store.getLastError()?.message ?? '' });

async function putPartial(c: Cmd): Promise<Record<string, unknown>> {
  const key = String(c['key']);
  const length = Number(c['length']);
  const part = Math.floor(length * Number(c['fraction'] ?? 0.5));
  const hp = splitHostPort(master);
  const rpc = new RpcClient({ host: hp.host, port: hp.port!, connectTimeoutMs: 5000, callTimeoutMs: 5000 });
  const b = randomBytes(16);
  const id = { first: b.readBigUInt64LE(0), second: b.readBigUInt64LE(8) };
  const r = await rpc.call(Master.PutStart, [id, key, BigInt(length), config(c['config'] as ConfigInit).toWire(), 'default']);
  if (!r.ok) return { rc: r.error };
  const value = Buffer.from(pattern(Number(c['seed']), length));
  if (store.registerBuffer(value) !== 0) throw new Error(`registerBuffer: ${lastError().message}`);
  const engine = store.getEngine()!;
  const replicas = r.value.map((rep: ReplicaDescriptor) => memoryBuffer(rep)!);
  if (part > 0) {
    const batch = engine.allocateBatchID(replicas.length);
    engine.submitTransfer(
      batch,
      replicas.map((d) => ({ opcode: TransferOpcode.WRITE, source: store.getBufferAddress(value), targetId: engine.segmentHandle(d.transportEndpoint), targetOffset: d.bufferAddress, length: part })),
    );
    const statuses = await engine.waitBatch(batch);
    engine.freeBatchID(batch);
    const bad = statuses.find((s) => s.status !== TaskStatus.COMPLETED);
    if (bad) throw new Error(`the partial WRITE failed: ${bad.error?.message}`);
  }
  // No PutEnd: the connection stays open (as a writer's would) until the process dies.
  return { rc: 0, written: part, replicas: replicas.map((d) => ({ endpoint: d.transportEndpoint, address: Number(d.bufferAddress), size: Number(d.size) })) };
}

async function handle(c: Cmd): Promise<Record<string, unknown>> {
  switch (c.cmd) {
    case 'setup': {
      master = String(c['master']);
      const rc = await store.setup(String(c['local_hostname'] ?? '127.0.0.1'), String(c['metadata']), Number(c['global_segment_size']), Number(c['local_buffer_size']), 'tcp', '', master);
      return { rc, hostname: rc === 0 ? store.getHostname() : '', message: rc === 0 ? '' : lastError().message };
    }
    case 'put': {
      const rc = await store.put(String(c['key']), pattern(Number(c['seed']), Number(c['length'])), config(c['config'] as ConfigInit));
      return { rc, ...(rc !== 0 ? { message: lastError().message } : {}) };
    }
    case 'get': {
      const v = await store.get(String(c['key']));
      return { value: { length: v.length, sha: sha(v) }, ...(v.length === 0 ? { rc: lastError().code, message: lastError().message } : { rc: 0 }) };
    }
    case 'remove':
      return { rc: await store.remove(String(c['key']), Boolean(c['force'])) };
    case 'is_exist':
      return { rc: await store.isExist(String(c['key'])) };
    case 'get_hostname':
      return { hostname: store.getHostname() };
    case 'put_partial':
      return putPartial(c);
    case 'close':
      return { rc: await store.close() };
    default:
      throw new Error(`unknown command ${JSON.stringify(c.cmd)}`);
  }
}

process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`);
for await (const line of createInterface({ input: process.stdin })) {
  const c = JSON.parse(line) as Cmd;
  if (c.cmd === 'exit') break;
  let out: Record<string, unknown>;
  try {
    out = await handle(c);
  } catch (e) {
    out = { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}
await store.close();
process.stdout.write(`${JSON.stringify({ closed: true })}\n`);
process.exit(0);
