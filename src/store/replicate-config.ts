/**
 * ReplicateConfig, as Python's `mooncake.store.ReplicateConfig` (fields in
 * camelCase): how many replicas an object gets and where. The wire form is
 * the master's 13-field struct (src/store/master-protocol.ts).
 */
import { teError, ErrorCode } from '../errors.js';
import { SoftPinAction, type ReplicateConfigWire } from './master-protocol.js';

export class ReplicateConfig {
  /** Memory replicas, on distinct segments (1 by default). */
  replicaNum = 1;
  /** Segments (their names: the clients' local hostnames) to place replicas in first. */
  preferredSegments: string[] = [];
  /** Mooncake's older single preferred segment; '' for none. */
  preferredSegment = '';
  /** Never evicted, until removed. */
  withHardPin = false;
  /** Soft pin: kept in preference during eviction, for softPinTtlMs (the master's default when null). */
  softPinAction: (typeof SoftPinAction)[keyof typeof SoftPinAction] = SoftPinAction.PRESERVE;
  softPinTtlMs: number | null = null;
  /** Place the replica on this host when possible. */
  preferAllocInSameNode = false;
  nofReplicaNum = 0;
  dfsReplicaNum = 0;
  preferredNofSegments: string[] = [];
  /** Mooncake's ObjectDataType (0: unknown). */
  dataType = 0;
  groupIds: string[] | null = null;

  constructor(init: Partial<ReplicateConfig> = {}) {
    Object.assign(this, init);
  }

  /** The wire struct, checked: numbers must be non-negative integers. */
  toWire(hostId = ''): ReplicateConfigWire {
    const count = (v: unknown, what: string): bigint => {
      if (typeof v === 'bigint' && v >= 0n) return v;
      if (!Number.isSafeInteger(v) || (v as number) < 0) throw teError(ErrorCode.INVALID_ARGUMENT, `ReplicateConfig.${what} ${String(v)} is not a non-negative integer`);
      return BigInt(v as number);
    };
    const names = (v: unknown, what: string): string[] => {
      if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw teError(ErrorCode.INVALID_ARGUMENT, `ReplicateConfig.${what} must be an array of strings`);
      return v as string[];
    };
    if (count(this.replicaNum, 'replicaNum') === 0n) throw teError(ErrorCode.INVALID_ARGUMENT, 'ReplicateConfig.replicaNum must be at least 1');
    // A u8 on the wire: any byte would encode, but the master knows only these.
    if (!(Object.values(SoftPinAction) as number[]).includes(this.softPinAction)) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `ReplicateConfig.softPinAction ${String(this.softPinAction)} is not one of SoftPinAction (${Object.entries(SoftPinAction).map(([k, v]) => `${k} ${v}`).join(', ')})`);
    }
    return {
      replicaNum: count(this.replicaNum, 'replicaNum'),
      nofReplicaNum: count(this.nofReplicaNum, 'nofReplicaNum'),
      dfsReplicaNum: count(this.dfsReplicaNum, 'dfsReplicaNum'),
      softPinAction: this.softPinAction,
      softPinTtlMs: this.softPinTtlMs === null ? null : count(this.softPinTtlMs, 'softPinTtlMs'),
      withHardPin: this.withHardPin === true,
      preferredSegments: names(this.preferredSegments, 'preferredSegments'),
      preferredSegment: typeof this.preferredSegment === 'string' ? this.preferredSegment : '',
      preferredNofSegments: names(this.preferredNofSegments, 'preferredNofSegments'),
      preferAllocInSameNode: this.preferAllocInSameNode === true,
      dataType: this.dataType,
      hostId,
      groupIds: this.groupIds === null ? null : names(this.groupIds, 'groupIds'),
    };
  }
}
