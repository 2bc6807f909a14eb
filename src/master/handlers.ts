/**
 * The master's RPC surface: each method of the wire table
 * (src/store/master-protocol.ts) bound to the service. Typed end to end: a
 * handler receives the decoded arguments of its method and returns the value
 * its result codec encodes.
 */
import { Master, ReplicaType, StoreErrorCode as EC, type Method } from '../store/master-protocol.js';
import { ok, fail, type MasterService, type Result } from './service.js';

/** A bound method: decoded arguments in, the value to encode out (typed where it is bound). */
export interface Handler {
  readonly method: Method<unknown, unknown>;
  readonly call: (args: unknown) => unknown;
}

function bind<A, R>(method: Method<A, R>, call: (args: A) => R): Handler {
  // The server decodes with method.args and encodes with method.result, so the types meet at run time.
  return { method, call } as unknown as Handler;
}

/** The types the wire's storage config carries; this master has no disk tier. */
const STORAGE_CONFIG = { fsdir: '', enableDiskEviction: true, quotaBytes: 0n };

/** PutEnd/PutRevoke name which replicas they end; we hold memory replicas only. */
function memoryReplicas(type: number): boolean {
  return type === ReplicaType.ALL || type === ReplicaType.MEMORY;
}

const unsupportedType = (): Result<null> => fail(EC.INVALID_PARAMS);

/** Every method this master answers, by function id. Others get coro_rpc's "function not registered". */
export function masterHandlers(svc: MasterService, version: string): Map<number, Handler> {
  const handlers: Handler[] = [
    bind(Master.ServiceReady, () => ok(version)),
    bind(Master.GetStorageConfig, () => ok(STORAGE_CONFIG)),
    bind(Master.MountSegment, ([segment, client]) => svc.mountSegment(segment, client)),
    bind(Master.ReMountSegment, ([segments, client]) => svc.reMountSegment(segments, client)),
    bind(Master.UnmountSegment, ([segment, client]) => svc.unmountSegment(segment, client)),
    bind(Master.Ping, (client) => svc.ping(client)),
    bind(Master.FetchTasks, () => ok([])),
    bind(Master.PutStart, ([client, key, len, config, tenant]) => svc.putStart(client, key, len, config, tenant)),
    bind(Master.PutEnd, ([client, meta, type, tenant]) => (memoryReplicas(type) ? svc.putEnd(client, meta, tenant) : unsupportedType())),
    bind(Master.PutRevoke, ([client, key, type, tenant]) => (memoryReplicas(type) ? svc.putRevoke(client, key, tenant) : unsupportedType())),
    bind(Master.UpsertStart, ([client, key, len, config, tenant]) => svc.upsertStart(client, key, len, config, tenant)),
    bind(Master.UpsertEnd, ([client, meta, type, tenant]) => (memoryReplicas(type) ? svc.putEnd(client, meta, tenant) : unsupportedType())),
    bind(Master.UpsertRevoke, ([client, key, type, tenant]) => (memoryReplicas(type) ? svc.putRevoke(client, key, tenant) : unsupportedType())),
    bind(Master.BatchPutStart, ([client, keys, lens, config, tenant]) => batchStart(keys, lens, (k, n) => svc.putStart(client, k, n, config, tenant))),
    bind(Master.BatchPutEnd, ([client, metas, type, tenant]) => metas.map((m) => (memoryReplicas(type) ? svc.putEnd(client, m, tenant) : unsupportedType()))),
    bind(Master.BatchPutRevoke, ([client, keys, type, tenant]) => keys.map((k) => (memoryReplicas(type) ? svc.putRevoke(client, k, tenant) : unsupportedType()))),
    bind(Master.BatchUpsertStart, ([client, keys, lens, config, tenant]) => batchStart(keys, lens, (k, n) => svc.upsertStart(client, k, n, config, tenant))),
    bind(Master.BatchUpsertEnd, ([client, metas, tenant]) => metas.map((m) => svc.putEnd(client, m, tenant))),
    bind(Master.BatchUpsertRevoke, ([client, keys, tenant]) => keys.map((k) => svc.putRevoke(client, k, tenant))),
    bind(Master.GetReplicaList, ([key, tenant]) => svc.getReplicaList(key, tenant)),
    bind(Master.BatchGetReplicaList, ([keys, tenant]) => keys.map((k) => svc.getReplicaList(k, tenant))),
    bind(Master.ExistKey, ([key, tenant]) => svc.existKey(key, tenant)),
    bind(Master.BatchExistKey, ([keys, tenant]) => keys.map((k) => svc.existKey(k, tenant))),
    bind(Master.Remove, ([key, force, tenant]) => svc.remove(key, force, tenant)),
    bind(Master.BatchRemove, ([keys, force, tenant]) => keys.map((k) => svc.remove(k, force, tenant))),
    bind(Master.RemoveByRegex, ([pattern, force, tenant]) => svc.removeByRegex(pattern, force, tenant)),
    bind(Master.RemoveAll, ([force, tenant]) => BigInt(svc.removeWhere(() => true, force, tenant))),
  ];
  return new Map(handlers.map((h) => [h.method.id, h]));
}

/** A batch start: keys and lengths must pair up; each key succeeds or fails alone. */
function batchStart<T>(keys: string[], lens: bigint[], start: (key: string, len: bigint) => Result<T>): Result<T>[] {
  if (keys.length !== lens.length) return keys.map(() => fail<T>(EC.INVALID_PARAMS));
  return keys.map((k, i) => start(k, lens[i]!));
}
