/**
 * The one shape every transport has. The planner (src/engine/planner.ts)
 * turns a request into a `Job`: the local bytes and where their other end is
 * (`Destination`). The dispatcher (src/engine/dispatch.ts) hands the job to
 * the first transport, in a fixed order, whose `canServe` accepts it:
 *
 *   memory-copy.ts      this engine's own memory: one copy
 *   file.ts             a file read and written here by the I/O pool
 *   file-same-host.ts   a same-host peer's file, opened here through its owner's descriptor
 *   shm.ts              a same-host peer's shared memory: copies
 *   tcp/transport.ts    everything addressed to a peer: slices over TCP
 *
 * A transport reports to the request's task (`TaskSink`): whole-request
 * transports set `transferred` and call `finish()`; TCP settles slices, and
 * the task finishes when its last slice has. A transport that cannot go on
 * with a job it took (a same-host copy whose mapping failed) gives the rest
 * back to the dispatcher (`TransportHost.reroute`), which offers it to the
 * transports after it: TCP carries it or says why not.
 */
import type { FileBufferDesc } from '../codec/file-buffers.js';
import type { TransferEngineError } from '../errors.js';
import type { RegisteredFile } from '../file/registry.js';
import type { Region } from '../memory.js';
import type { SliceOwner } from './slice.js';
import type { PeerAddress } from './tcp/options.js';

/** A peer region as its descriptor publishes it (buffers with `shm_name`). */
export interface ShmPeerRegion {
  /** File name inside /dev/shm (descriptor field `shm_name`). */
  shmName: string;
  /** The region's length; the file must be exactly this size. */
  size: number | bigint;
  /** The region's address in the peer's address space. */
  addr: number | bigint;
  /**
   * The owner lets peers only READ it (descriptor `access: "read"`): writes are
   * refused (ADDRESS_REJECTED, as its data server would) and the file is
   * mapped read-only, so no write can reach it through shared memory.
   */
  readOnly?: boolean;
}

/**
 * A peer as transports reach it, built once per descriptor the engine holds
 * (src/engine/segments.ts) and replaced when a refetch finds it changed. The
 * TCP client keys its connections on the address objects, so they are kept.
 */
export interface PeerEndpoint {
  readonly kind: 'peer';
  /** The segment's name. */
  readonly name: string;
  /** The peer's machine id (same host as us when equal to ours); undefined for Mooncake peers. */
  readonly machineId: string | undefined;
  /** Where memory requests go over TCP (its data port). */
  readonly data: PeerAddress;
  /** Where file requests go over TCP (its file listener, else its data port). */
  readonly files: PeerAddress;
  /** Its shared-memory regions (none for most peers). */
  readonly shmRegions: readonly ShmPeerRegion[];
}

/** Where a request's other end is. */
export type Destination =
  /** This engine's own registered memory (LOCAL_SEGMENT). */
  | { readonly kind: 'memory'; readonly bytes: Uint8Array }
  /** A file this engine registered. */
  | { readonly kind: 'file'; readonly file: RegisteredFile }
  /** A peer's memory. */
  | PeerEndpoint
  /** A peer's registered file, as its descriptor lists it. */
  | { readonly kind: 'peer-file'; readonly peer: PeerEndpoint; readonly file: FileBufferDesc };

/** One request, checked and resolved, as transports carry it. */
export interface Job {
  readonly write: boolean;
  /** The request's local bytes (source of a WRITE, destination of a READ). */
  readonly local: Uint8Array;
  /** Their registered region, pinned while any of them is in flight. */
  readonly region: Region;
  /** Address in the peer's segment, or offset in the file (unused for local memory). */
  readonly target: bigint;
  readonly to: Destination;
}

/** The task a job belongs to (src/engine/batch.ts, Task), as a transport reports to it. */
export interface TaskSink extends SliceOwner {
  /** Bytes moved so far. */
  transferred: number;
  /** Slices in flight: a transport that sends slices sets it before the first goes out. */
  pending: number;
  error: TransferEngineError | undefined;
  /** The transport carrying it, for its metrics: set by the dispatcher as it hands the job over. */
  via: TransportName | null;
  /** End the task (whole-request transports; a slicing one settles its slices instead). */
  finish(): void;
  /** Canceled (reported already): a transport working in steps stops at the next one and calls finish(). */
  readonly canceled: boolean;
}

/** What a transport may ask of the dispatcher that hands it jobs. */
export interface TransportHost {
  /** False once the engine is closing: work a transport left for a later event-loop turn ends with TE_CLOSED. */
  ready(): boolean;
  /** Carry a job (or what is left of one) by the transports after `from`. */
  reroute(from: Transport, task: TaskSink, job: Job): void;
}

export type TransportName = 'memory' | 'file' | 'file-same-host' | 'shm' | 'tcp';

export interface Transport {
  readonly name: TransportName;
  /** Whether this transport carries `job` now. Cheap, never throws; asked once per job, in order. */
  canServe(job: Job): boolean;
  /** Carry a job `canServe` accepted; its outcome goes to `task`. Never throws. */
  submit(task: TaskSink, job: Job, host: TransportHost): void;
  /** Its counters, for the engine's stats(). */
  stats(): Readonly<Record<string, number>>;
  /** In-flight work ends (TE_CLOSED where it can no longer finish); idempotent. */
  close(): void | Promise<void>;
}
