/**
 * The core engine, in the vocabulary of Mooncake's C++ API: segments,
 * registered memory, batches of READ/WRITE requests whose status is polled
 * (or awaited), pluggable transports. Errors are TransferEngineError with a
 * stable `code`; a request's own failure is reported on its task. This class
 * holds the lifecycle and the wiring; the parts are beside it: types.ts (the
 * vocabulary), batch.ts (tasks), retry.ts (the retry policy), segments.ts
 * (opened segments), peer-rpc.ts (peers' RPC ports), planner.ts (request ->
 * plan), dispatch.ts (plans carried out and retried), local-memory.ts
 * (registered memory), addresses.ts (listen and publish).
 */
import { randomBytes } from 'node:crypto';
import type { SegmentDesc } from '../codec/descriptor.js';
import { HandshakeType } from '../codec/handshake.js';
import { teError, ErrorCode } from '../errors.js';
import type { RegisterFileOptions } from '../file/registry.js';
import type { RegionAccess } from '../memory.js';
import { parseHostPort } from '../net.js';
import type { Notification } from '../rpc/handshake.js';
import { notifyAccepted, notifyJson, probeSucceeded } from '../rpc/messages.js';
import { BatchTable, type Batch } from './batch.js';
import { collectStats, EngineParts } from './parts.js';
import { checkRequest, planRequest, resolveLocal } from './planner.js';
import { Telemetry } from './telemetry.js';
import {
  LOCAL_SEGMENT,
  type BatchID,
  type EngineLifecycle,
  type EngineOptions,
  type EngineStats,
  type LocalRegistration,
  type RequestRanges,
  type SegmentHandle,
  type TransferRequest,
  type TransferStatus,
  type WaitOptions,
} from './types.js';

/** waitBatch's signal, checked: an AbortSignal or nothing. */
function checkSignal(options: WaitOptions): AbortSignal | undefined {
  if (typeof options !== 'object' || options === null) throw teError(ErrorCode.INVALID_ARGUMENT, 'waitBatch options must be an object');
  const { signal } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw teError(ErrorCode.INVALID_ARGUMENT, 'waitBatch options.signal must be an AbortSignal');
  return signal;
}

/** A random engine id in [1, 2^53) (src/codec/wire.ts, engine identity). */
function newEngineId(): number {
  for (;;) {
    const id = Number(randomBytes(8).readBigUInt64LE() >> 11n);
    if (id > 0) return id;
  }
}

/** A region as registeredAt / registrationsIn report it. */
function registration(r: { addr: number; length: number; byteOffset: number }): LocalRegistration {
  return { addr: r.addr, length: r.length, byteOffset: r.byteOffset };
}

export class TransferEngine {
  private state: EngineLifecycle = 'new';
  /** What the engine is made of, from init() on (parts.ts); kept after close(), released. */
  private parts: EngineParts | null = null;
  private readonly batches = new BatchTable();
  private notifications: Notification[] = [];

  /** This engine instance's identity: published as engine_id, checked by our peers on each data connection. */
  readonly engineId: number = newEngineId();
  /** Counters, metrics and diagnostics events of its transfers (kept after close). */
  private readonly telemetry = new Telemetry(this.engineId);

  constructor(private readonly options: EngineOptions = {}) {}

  /**
   * Start the engine: bind the RPC (handshake) port and the TCP data port.
   * In P2P mode the segment name becomes the dialable `host:rpcPort`. In central
   * modes the name stays as given, and the descriptor and rpc_meta are published.
   * @param serverName this engine's name; its host part is used unless `connectableName` is given.
   * @param connectableName the host peers dial (Mooncake's ip_or_host_name); central modes default to
   *   MC_TCP_BIND_ADDRESS, an IP in `serverName`, else the first non-loopback IPv4 address.
   * @param rpcPort RPC port to bind; 0 (default) picks a free one in [MC_MIN_RPC_PORT, MC_MAX_RPC_PORT].
   */
  async init(serverName: string, connectableName?: string, rpcPort = 0): Promise<void> {
    if (this.state !== 'new') {
      throw teError(this.state === 'closed' ? ErrorCode.CLOSED : ErrorCode.ALREADY_INITIALIZED, 'init() may be called once');
    }
    if (typeof serverName !== 'string' || serverName.length === 0) {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'serverName must be a non-empty string');
    }
    if (connectableName !== undefined && (typeof connectableName !== 'string' || connectableName.length === 0)) {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'connectableName must be a non-empty string when given');
    }
    if (!Number.isInteger(rpcPort) || rpcPort < 0 || rpcPort > 65535) {
      throw teError(ErrorCode.INVALID_ARGUMENT, `rpcPort ${String(rpcPort)} is not a port number`);
    }
    const args = {
      serverName,
      connectableName,
      rpcPort,
      options: this.options,
      engineId: this.engineId,
      telemetry: this.telemetry,
      ready: () => this.state === 'ready',
      lifecycle: () => this.state,
      notify: (n: Notification) => this.notifications.push(n),
    };
    let parts: EngineParts;
    try {
      parts = await EngineParts.start(args, (made) => {
        // The settings are good: from here on there is something to release (close() may come meanwhile).
        this.parts = made;
        this.state = 'initializing';
      });
    } catch (e) {
      if (this.lifecycle === 'initializing') this.state = 'new';
      throw e;
    }
    if (this.lifecycle === 'closed') {
      // close() came while init() ran: what it released was not complete yet.
      await parts.unpublish();
      await parts.release();
      throw teError(ErrorCode.CLOSED, 'the engine was closed while init() ran');
    }
    this.state = 'ready';
  }

  /** The parts, once ready; else TE_NOT_INITIALIZED / TE_CLOSED. */
  private get p(): EngineParts {
    this.ready();
    return this.parts!;
  }

  private ready(): void {
    if (this.state === 'ready') return;
    if (this.state === 'closed') throw teError(ErrorCode.CLOSED, 'the engine is closed');
    throw teError(ErrorCode.NOT_INITIALIZED, 'call init() first');
  }

  /** Where this engine is in its life: 'new', 'initializing' (init() runs), 'ready', or 'closed'. */
  get lifecycle(): EngineLifecycle {
    return this.state;
  }

  /** MC_TRANSFER_TIMEOUT in milliseconds, as this engine applies it (the environment, or the config option). */
  get transferTimeoutMs(): number {
    return this.p.config.transferTimeoutMs;
  }

  /** This engine's segment name (`host:rpcPort` in P2P mode). */
  get segmentName(): string {
    return this.p.name;
  }

  get rpcPort(): number {
    return this.p.handshake!.port;
  }

  /** The TCP data port published in the descriptor (0 when TCP is uninstalled). */
  get dataPort(): number {
    return this.p.tcp?.dataPort ?? 0;
  }

  // ---------------------------------------------------------------- memory

  /**
   * Register memory; returns its address in this engine's segment.
   * @param location 'cpu:0', '*', ... (GPU locations are not supported on this host)
   * @param access what peers may do: 'readwrite' (default, as Mooncake), 'read', or 'none';
   *   Mooncake's remote_accessible boolean is accepted too (true: 'readwrite', false: 'none')
   */
  registerLocalMemory(mem: Uint8Array | ArrayBuffer, location = '*', access: RegionAccess | boolean = true): number {
    return this.p.memory.register(mem, location, access);
  }

  /**
   * Allocate `size` bytes (zeroed) and register them; returns the address.
   * With the `shm` option the memory lives in /dev/shm and same-host peers
   * copy into and out of it directly. Give it back with unregisterLocalMemory.
   */
  allocateLocalMemory(size: number, location = '*', access: RegionAccess | boolean = true): number {
    return this.p.memory.allocate(size, location, access);
  }

  /** Register several regions; all or none (a failure unregisters the ones already done). */
  registerLocalMemoryBatch(mems: Array<Uint8Array | ArrayBuffer>, location = '*', access: RegionAccess | boolean = true): number[] {
    return this.p.memory.registerAll(mems, location, access);
  }

  /** Unregister the region starting at `addr`. Refused (TE_REGION_BUSY) while transfers use it. */
  unregisterLocalMemory(addr: number): void {
    this.p.memory.unregister(addr);
  }

  /** Unregister several regions; checks all first, so a busy or unknown one changes nothing. */
  unregisterLocalMemoryBatch(addrs: number[]): void {
    this.p.memory.unregisterAll(addrs);
  }

  // ---------------------------------------------------------------- files

  /**
   * Register a local file (registerLocalFile of Mooncake's generic NVMe-oF
   * transport, PR #793): peers (and this engine) can then read and
   * write `[0, size)` of it by (segment, file id, offset). Returns the file id.
   * The file must exist and hold at least `size` bytes (or pass `grow`); block
   * devices need `allowBlockDevice`. See src/file/registry.ts.
   */
  registerLocalFile(path: string, size: number, options?: RegisterFileOptions): number {
    const p = this.p;
    const id = p.files!.register(path, size, options).id;
    p.directory?.descriptorChanged();
    return id;
  }

  /** Unregister a file by the path it was registered with. Refused (TE_REGION_BUSY) while transfers use it. */
  unregisterLocalFile(path: string): void {
    const p = this.p;
    p.files!.unregister(path);
    p.directory?.descriptorChanged();
  }

  /** The address of the memory's first byte if it is registered (and not detached), else 0. */
  addressOf(mem: Uint8Array | ArrayBuffer): number {
    return this.p.memory.registry.addressOf(mem instanceof Uint8Array ? mem : new Uint8Array(mem));
  }

  /** The registration that starts at `addr` (not merely contains it), or undefined. */
  registeredAt(addr: number): LocalRegistration | undefined {
    const p = this.p;
    const r = p.memory.registry.resolve(addr, 1);
    return r && r.offset === 0 ? registration(r.region) : undefined;
  }

  /**
   * The registrations over `buffer` (views of it, or the ArrayBuffer itself),
   * in registration order. Detached memory keeps its registrations (they can
   * be unregistered by address). Registrations are not forgotten by close(),
   * so this answers after it too; before init() nothing is registered.
   */
  registrationsIn(buffer: ArrayBufferLike): LocalRegistration[] {
    if (this.state === 'new' || this.state === 'initializing') return [];
    return this.parts!.memory.registry.regionsOf(buffer).map(registration);
  }

  /** A view of registered memory: `[addr, addr+length)` must lie inside one region. */
  localView(addr: number, length: number): Uint8Array {
    const p = this.p;
    const r = resolveLocal(p.memory.registry, addr, length, 'address');
    return r.region.bytes.subarray(r.offset, r.offset + length);
  }

  /** This engine's descriptor as peers see it. */
  getLocalSegmentDescriptor(): SegmentDesc {
    return this.p.descriptor();
  }

  // -------------------------------------------------------------- segments

  /**
   * Open a segment by name (P2P: `host:rpcPort`); fetches and caches its
   * descriptor. Concurrent opens of one name share one fetch.
   */
  async openSegment(segmentName: string): Promise<SegmentHandle> {
    const p = this.p;
    const name = this.segmentKey(segmentName);
    if (name === p.name) return LOCAL_SEGMENT;
    return p.segments.open(name);
  }

  /**
   * The handle of a segment by name, at once: an open segment's, or a new one
   * whose descriptor is fetched in the background (shared with concurrent
   * opens). Memory requests submitted to it meanwhile wait inside their tasks
   * and fail with the fetch's error if it fails (then the handle is dropped;
   * the next call opens the name afresh). For the calls that need the
   * descriptor (getSegmentDescriptor, file requests), await openSegment.
   */
  segmentHandle(segmentName: string): SegmentHandle {
    const p = this.p;
    const name = this.segmentKey(segmentName);
    if (name === p.name) return LOCAL_SEGMENT;
    return p.segments.handleOf(name);
  }

  /** A segment name as given, checked: non-empty, and in P2P mode a dialable `host[:port]`. */
  private segmentKey(segmentName: unknown): string {
    if (typeof segmentName !== 'string') throw teError(ErrorCode.INVALID_ARGUMENT, 'segment name must be a string');
    const name = segmentName.replace(/^\/+/, '');
    if (name.length === 0) throw teError(ErrorCode.INVALID_ARGUMENT, 'segment name is empty');
    if (!this.parts?.directory) parseHostPort(name, 'segment name'); // P2P names are addresses: a bad port is an error, not 12001
    return name;
  }

  /** Forget a segment (requests already submitted to it go on). A segment still opening is not kept. */
  closeSegment(handle: SegmentHandle): void {
    const p = this.p;
    if (handle === LOCAL_SEGMENT) return;
    p.segments.close(handle);
  }

  /** The cached descriptor of an open segment. */
  getSegmentDescriptor(handle: SegmentHandle): SegmentDesc {
    const p = this.p;
    if (handle === LOCAL_SEGMENT) return p.descriptor();
    return p.segments.descriptor(handle);
  }

  // -------------------------------------------------------------- batches

  allocateBatchID(batchSize: number): BatchID {
    this.ready();
    return this.batches.allocate(batchSize);
  }

  /** Was `id` returned by allocateBatchID (freed since or not)? Ids are never reused, so this tells a freed id from a made-up one. */
  batchIdIssued(id: BatchID): boolean {
    return this.batches.issued(id);
  }

  /**
   * Submit requests to a batch. All requests are validated first: on any
   * error nothing is submitted. Each request's outcome is then reported on its
   * task (getTransferStatus / waitBatch).
   */
  submitTransfer(batchId: BatchID, requests: readonly TransferRequest[]): void {
    const p = this.p;
    const batch = this.batches.get(batchId);
    if (!Array.isArray(requests)) throw teError(ErrorCode.INVALID_ARGUMENT, 'requests must be an array');
    if (batch.tasks.length + requests.length > batch.capacity) {
      throw teError(
        ErrorCode.BATCH_FULL,
        `batch ${batchId} holds ${batch.capacity} tasks; ${batch.tasks.length} submitted, ${requests.length} more requested`,
      );
    }
    const plans = requests.map((r, i) => planRequest(p.planner!, r, i));
    this.telemetry.submitted(batchId, batch.tasks.length, requests);
    batch.submittedAt = performance.now();
    for (const plan of plans) p.dispatch!.start(batch, plan);
  }

  /**
   * Check requests as submitTransfer checks them before it looks at their
   * target segment: known opcode, local range inside one registered region
   * (not detached), target address range inside 64 bits. Nothing is
   * submitted. For callers that refuse bad input before they open the target
   * segment (the high-level sync calls); submitTransfer checks again, as the
   * memory may change in between.
   */
  checkRequests(requests: readonly RequestRanges[]): void {
    const p = this.p;
    if (!Array.isArray(requests)) throw teError(ErrorCode.INVALID_ARGUMENT, 'requests must be an array');
    requests.forEach((r, i) => checkRequest(p.memory.registry, r, i));
  }

  getTransferStatus(batchId: BatchID, taskId: number): TransferStatus {
    this.ready();
    const batch = this.batches.get(batchId);
    const task = batch.tasks[taskId];
    if (!task) throw teError(ErrorCode.INVALID_ARGUMENT, `batch ${batchId} has no task ${String(taskId)}`);
    return task.statusReport;
  }

  /**
   * Resolves once every task submitted so far has finished; returns their
   * statuses in order. With `signal`, its abort cancels the batch's
   * unfinished tasks (as cancelBatch does), which then end CANCELED: the
   * call returns at once, and the batch can be freed once they drained
   * (cancelBatch's promise tells when).
   */
  async waitBatch(batchId: BatchID, options: WaitOptions = {}): Promise<TransferStatus[]> {
    this.ready();
    const batch = this.batches.get(batchId);
    const signal = checkSignal(options);
    if (signal) await this.doneOrAborted(batch, signal);
    else await batch.whenDone();
    return batch.tasks.map((t) => t.statusReport);
  }

  /** The batch done, its unfinished tasks canceled when `signal` aborts (no closure on the common, signal-less path). */
  private async doneOrAborted(batch: Batch, signal: AbortSignal): Promise<void> {
    const abort = (): void => {
      this.parts?.dispatch?.cancel(batch); // after close() there is nothing left to cancel
    };
    if (signal.aborted) abort();
    else signal.addEventListener('abort', abort, { once: true });
    try {
      await batch.whenDone();
    } finally {
      signal.removeEventListener('abort', abort);
    }
  }

  /**
   * Cancel a batch's unfinished tasks: they end CANCELED at once
   * (getTransferStatus, waitBatch), with the bytes moved so far. Requests
   * already on the wire cannot be recalled: until each has ended, the memory
   * it uses stays pinned (unregistering it is TE_REGION_BUSY), a READ may
   * still land in it and a WRITE may still reach the peer. Resolves once they
   * all ended; freeBatchID is TE_BATCH_BUSY until then (after an aborted
   * waitBatch signal, call it to await that). Rejects with TE_INVALID_BATCH
   * for an unknown batch and TE_BATCH_FINISHED when every task had ended and
   * none is draining (nothing changes).
   */
  async cancelBatch(batchId: BatchID): Promise<void> {
    this.ready();
    const batch = this.batches.get(batchId);
    if (batch.unfinished === 0 && batch.draining === 0) {
      throw teError(ErrorCode.BATCH_FINISHED, `batch ${batchId} has no unfinished task: nothing to cancel`);
    }
    this.p.dispatch!.cancel(batch); // none left when an aborted waitBatch signal canceled them: then only the drain is awaited
    await batch.whenDrained();
  }

  /** Free a batch. Refused (TE_BATCH_BUSY) while any of its tasks is unfinished, or canceled and still draining. */
  freeBatchID(batchId: BatchID): void {
    this.ready();
    this.batches.free(batchId);
  }

  // ----------------------------------------------------------- transports

  /**
   * Install a transport by name. 'tcp' runs here, and 'file' (alias
   * 'nvmeof_generic'), which serves registered files over this engine's own
   * TCP protocol (not NVMe/TCP): on the tcp data port, or, given a trid
   * argument such as "trtype=tcp adrfam=ipv4 traddr=127.0.0.1 trsvcid=4420",
   * on a listener of its own at traddr:trsvcid. RDMA/GPU/NVMe-oF kernel
   * transports are refused as unsupported.
   */
  async installTransport(proto: string, args?: string): Promise<void> {
    const p = this.p;
    if (await p.tcp!.install(proto, args)) p.directory?.descriptorChanged(); // a data port or file_data_port
  }

  /** Uninstall a transport: its port closes and its in-flight transfers fail. */
  async uninstallTransport(proto: string): Promise<void> {
    const p = this.p;
    await p.tcp!.uninstall(proto);
    p.directory?.descriptorChanged();
  }

  /** Installed transport names. */
  get transports(): string[] {
    return this.parts?.tcp?.names ?? [];
  }

  // ------------------------------------------------------------ messages

  /**
   * Send a Notify message to a segment's RPC port; the peer queues it for its
   * getNotifies(). Rejects if the peer does not acknowledge it.
   */
  async sendNotify(segmentName: string, notify: Notification): Promise<void> {
    const json = this.notifyFrame(notify);
    const reply = await this.p.peers.exchange(this.segmentKey(segmentName), HandshakeType.NOTIFY, json);
    if (!notifyAccepted(reply)) throw teError(ErrorCode.PROTOCOL_ERROR, `${segmentName} did not accept the notification`);
  }

  /**
   * A Notify message's frame JSON, refused (TE_INVALID_ARGUMENT) when it is larger than a
   * handshake frame may be: the peer would close on it without a word.
   */
  notifyFrame(notify: Notification): string {
    const p = this.p;
    return notifyJson(notify, p.config.handshakeMaxLength);
  }

  /** Check that a segment's RPC port answers (Mooncake's Probe message). */
  async sendProbe(segmentName: string): Promise<void> {
    const p = this.p;
    const reply = await p.peers.exchange(this.segmentKey(segmentName), HandshakeType.PROBE, '{}\n');
    if (!probeSucceeded(reply)) throw teError(ErrorCode.PROTOCOL_ERROR, `${segmentName} answered the probe with ${reply.trim().slice(0, 80)}`);
  }

  /** Drain Notify messages received from peers. */
  getNotifies(): Notification[] {
    this.ready();
    const n = this.notifications;
    this.notifications = [];
    return n;
  }

  /** Counters for tests and monitoring: connections, requests served, bytes and tasks by outcome. */
  stats(): EngineStats {
    return collectStats(this.telemetry.counters, this.parts);
  }

  /** Release ports and connections. In-flight transfers end in FAILED (TE_CLOSED). Idempotent. */
  async close(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const parts = this.parts;
    if (!parts) return;
    parts.peers.close();
    parts.dispatch?.abandonRetries(teError(ErrorCode.CLOSED, 'the engine was closed while the transfer waited to be retried'));
    // Unpublish first, so peers stop finding us before the ports go (bounded by the store's timeouts).
    await parts.unpublish();
    await parts.release();
  }

  /**
   * Resolves once this engine's current descriptor is in the metadata store
   * (at once in P2P mode). Registration changes re-publish in the background;
   * this rejects with the store's error (TE_METADATA_UNAVAILABLE, TE_TIMEOUT, ...)
   * if the latest attempt failed; retries continue until close().
   */
  flushMetadata(): Promise<void> {
    return this.p.directory?.flush() ?? Promise.resolve();
  }

  /**
   * Write this engine's rpc_meta and descriptor to the metadata store again,
   * in the background (flushMetadata() waits for it): for a store that lost
   * them, such as an HTTP metadata server that restarted empty. Nothing to do
   * in P2P mode.
   */
  republishMetadata(): void {
    this.p.directory?.republish();
  }

  /** The metadata service in use: 'P2PHANDSHAKE', or the store's address. */
  get metadataServer(): string {
    return this.p.directory?.label ?? 'P2PHANDSHAKE';
  }
}
