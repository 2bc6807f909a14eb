/**
 * The shapes of the Store master's live state (clients, segments, replicas,
 * objects) and the result type its rules answer with. Types and tiny pure
 * helpers only: every part of the service (service.ts and the modules it
 * delegates to) imports them from here, so the parts need not import each
 * other for a type.
 */
import type { SegmentAllocator } from './allocator.js';
import type { Segment, UUID } from '../store/master-protocol.js';
import type { Expected } from '../store/codec/struct-pack.js';

export type Result<T> = Expected<T, number>;
export const ok = <T>(value: T): Result<T> => ({ ok: true, value });
export const fail = <T>(error: number): Result<T> => ({ ok: false, error });
export const OK_VOID: Result<null> = ok(null);

export const uuidKey = (u: UUID): string => `${u.first.toString(16)}-${u.second.toString(16)}`;

/** An object's map key (and journal name): its tenant and key. */
export const objectSlot = (tenant: string, key: string): string => `${tenant}\u0000${key}`;

export interface Client {
  readonly id: UUID;
  lastSeen: number;
  readonly segments: Set<MountedSegment>;
  hostId: string;
}

export interface MountedSegment {
  readonly key: string;
  /** What the owner mounted; a file segment remounted after its provider restarted gets the new one. */
  wire: Segment;
  client: Client;
  readonly allocator: SegmentAllocator;
  /** Objects with a replica here: what an unmount must visit. */
  readonly objects: Set<StoredObject>;
}

export interface Replica {
  readonly id: bigint;
  readonly segment: MountedSegment;
  readonly offset: number;
  readonly size: number;
  status: number;
}

export interface StoredObject {
  readonly tenant: string;
  readonly key: string;
  /** Map key in the object table: tenant and key. */
  readonly slot: string;
  size: number;
  replicas: Replica[];
  /** True between Put/UpsertStart and End or Revoke. */
  writing: boolean;
  /** The client that started the write in progress. */
  writer: string;
  writeStartedAt: number;
  /** An upsert in progress keeps the replicas it replaces here until it ends. */
  previous: Replica[] | null;
  leaseUntil: number;
  hardPin: boolean;
  /** 0: not soft-pinned. */
  softPinUntil: number;
  checksum: bigint | null;
}

/** Counters a scrape reads; monotonic. */
export interface MasterCounters {
  evictedObjects: number;
  evictedBytes: number;
  evictionRounds: number;
  expiredClients: number;
  droppedReplicas: number;
  /** Writes given up on by the sweep: not ended within the release timeout. */
  discardedWrites: number;
}
