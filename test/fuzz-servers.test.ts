/**
 * Live fuzz of the servers that read bytes from the network: the real data
 * server (memory and file requests) and the RPC (handshake) server, in this
 * process, over real loopback sockets.
 *
 * Data port: each connection carries a long stream of valid requests, then
 * mutated (bit flips, truncation, inserted and deleted bytes, boundary
 * integers, near-miss headers, bodies that look like headers). An independent
 * model parses the same bytes as the protocol says the server must (exact
 * u64 arithmetic) and predicts the response bytes and the final content of
 * the regions and files. Regions live in one backing buffer with random
 * canary bytes between them, and the registered files have a canary tail past
 * their registered size, so any byte written outside an addressed range, or
 * any request served differently, fails the comparison. Also with a shared
 * secret: wrong, missing or cut answers to the challenge must be refused
 * before a byte is served.
 *
 * RPC port: random and mutated frames (with and without a secret) get the
 * reply the protocol prescribes or none. And the other direction: our client
 * (exchange(), and the engine's data path) against servers answering garbage
 * gets the reply or a typed error, never a hang, and never writes outside the
 * destination of a READ. Every connection must end up closed.
 */
import { test, describe, before, after, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TcpDataServer } from '../src/transport/tcp/server.js';
import { HandshakeServer, exchange, type Notification } from '../src/rpc/handshake.js';
import { HandshakeType, encodeHandshakeFrame, HandshakeFrameDecoder, type HandshakeFrame } from '../src/codec/handshake.js';
import { MemoryRegistry, type RegionAccess } from '../src/memory.js';
import { FileRegistry } from '../src/file/registry.js';
import { FileIO } from '../src/file/io.js';
import { StagingPool } from '../src/file/staging.js';
import { MAX_FILE_REQUEST } from '../src/transport/tcp/file-serve.js';
import { DEFAULT_LIMITS } from '../src/limits.js';
import { AuthKind, CHALLENGE_SIZE, NONCE_SIZE, RESPONSE_SIZE, REJECT_FRAME, authKindAt, clientMac, serverMac, encodeAccept, encodeChallenge, encodeResponse } from '../src/codec/auth.js';
import { TransferEngineError } from '../src/errors.js';
import { TransferEngine, TransferOpcode, TaskStatus } from '../src/core.js';
import { encodeSegmentDesc } from '../src/codec/descriptor.js';
import { Rng, U64_MAX, InputCounter, openServerSockets, waitFor, show } from './fuzz-lib.js';

const SEED = 0xf022_5e7e;
/** Inputs this file must try per run (with test/fuzz-codecs.test.ts: over a million). */
const MIN_INPUTS = 300_000;
const counter = new InputCounter();
/** A live test that hangs fails instead of holding CI (every step below also has its own deadline). */
const LIVE_TIMEOUT_MS = 120_000;

const OK = Buffer.from([0, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);
const REJECTED = Buffer.from([1, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);
const FILE_REJECTED = Buffer.from([2, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);
const HEADER = 24;
const FILE_READ = 0x90;
const FILE_WRITE = 0x91;
/** Our identity check (src/codec/wire.ts): size 0, addr = the engine id. */
const HELLO = 0x92;
const CONFIRMED = Buffer.from([5, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);
const WRONG_ENGINE = Buffer.from([4, 0, 0, 0, 0x56, 0x54, 0x43, 0x4d]);

// ---------------------------------------------------------------------------------------------
// The target: regions in one backing buffer, canaries between them; files with a canary tail.

interface ModelRegion {
  addr: bigint;
  len: number;
  /** Offset of the region in the backing buffer. */
  off: number;
  access: RegionAccess;
}

interface ModelFile {
  id: number;
  /** Registered size: requests must stay in [0, size). */
  size: number;
  path: string;
  /** Expected content of the whole file on disk, canary tail included. */
  shadow: Buffer;
}

class Target {
  readonly registry = new MemoryRegistry();
  /** The id the server confirms to identity checks. */
  readonly engineId: number;
  readonly regions: ModelRegion[] = [];
  readonly backing: Buffer;
  readonly shadow: Buffer;
  readonly files = new Map<number, ModelFile>();
  server!: TcpDataServer;
  port = 0;
  io: FileIO | null = null;
  /** The shared secret the server requires, if any. */
  secret: Buffer | null = null;

  constructor(rng: Rng, layout: ReadonlyArray<{ len: number; access: RegionAccess }>) {
    this.engineId = 1 + rng.u32();
    const GAP = 4096;
    const total = layout.reduce((s, r) => s + r.len + GAP, GAP);
    this.backing = rng.bytes(total); // every byte outside the regions is a canary
    let off = GAP;
    for (const r of layout) {
      const region = this.registry.register(this.backing.subarray(off, off + r.len), { access: r.access });
      this.regions.push({ addr: BigInt(region.addr), len: r.len, off, access: r.access });
      off += r.len + GAP;
    }
    this.shadow = Buffer.from(this.backing);
  }

  /** Register files (ids 1..n) in `dir`, each `tail` bytes longer on disk than registered; then one more, unregistered, so its id is stale. */
  withFiles(rng: Rng, dir: string, sizes: number[], tail: number): FileRegistry {
    const reg = new FileRegistry(false);
    for (const size of [...sizes, 64]) {
      const p = path.join(dir, `f${reg.size + this.files.size}-${size}`);
      const content = rng.bytes(size + tail);
      fs.writeFileSync(p, content);
      const f = reg.register(p, size);
      this.files.set(f.id, { id: f.id, size, path: p, shadow: content });
    }
    const stale = [...this.files.values()].at(-1)!;
    reg.unregister(stale.path);
    this.files.delete(stale.id);
    return reg;
  }

  async start(files: FileRegistry | null, secret: Buffer | null = null): Promise<void> {
    this.secret = secret;
    const options = { engineId: this.engineId, ...(secret ? { authSecret: secret } : {}) };
    if (files) {
      const staging = new StagingPool();
      this.io = new FileIO(4, staging);
      this.server = new TcpDataServer(this.registry, { files, io: this.io, staging }, options);
    } else {
      this.server = new TcpDataServer(this.registry, null, options);
    }
    this.port = await this.server.listen('127.0.0.1', 0, 20000, 30000);
  }

  /** Regions peers may READ (`writable`: WRITE). */
  accessible(writable = false): ModelRegion[] {
    return this.regions.filter((r) => (writable ? r.access === 'readwrite' : r.access !== 'none'));
  }

  /** The region wholly containing [addr, addr+size) if the request may be served (exact u64 arithmetic). */
  find(addr: bigint, size: bigint, write: boolean): ModelRegion | undefined {
    if (size === 0n) return undefined;
    return this.accessible(write).find((r) => r.addr <= addr && addr + size <= r.addr + BigInt(r.len));
  }

  /** Region and file content as the model says: compare everything, canaries included. */
  assertContent(what: () => string): void {
    if (!this.backing.equals(this.shadow)) {
      let i = 0;
      while (this.backing[i] === this.shadow[i]) i++;
      const r = this.regions.find((x) => i >= x.off && i < x.off + x.len);
      assert.fail(`memory differs from the model at backing offset ${i} (${r ? `region at +${i - r.off}` : 'a CANARY'}): ${what()}`);
    }
    for (const f of this.files.values()) {
      const disk = fs.readFileSync(f.path);
      assert.equal(disk.length, f.shadow.length, `file ${f.id} changed size: ${what()}`);
      if (!disk.equals(f.shadow)) {
        let i = 0;
        while (disk[i] === f.shadow[i]) i++;
        assert.fail(`file ${f.id} differs from the model at ${i} (${i >= f.size ? 'past its registered size' : 'inside'}): ${what()}`);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Streams of requests, and the model of how they must be served.

function header(size: bigint, addr: bigint, opcode: number, pad?: Buffer): Buffer {
  const h = Buffer.alloc(HEADER);
  h.writeBigUInt64LE(size & U64_MAX, 0);
  h.writeBigUInt64LE(addr & U64_MAX, 8);
  h[16] = opcode;
  pad?.copy(h, 17, 0, 7);
  return h;
}

function fileHeader(size: bigint, offset: bigint, write: boolean, id: number, reserved = 0): Buffer {
  const h = header(size, offset, write ? FILE_WRITE : FILE_READ);
  h.writeUInt32LE(id >>> 0, 17);
  h[21 + (reserved % 3)] = reserved === 0 ? 0 : 1 + (reserved % 255);
  return h;
}

function pickSize(rng: Rng, max: number): number {
  const r = rng.int(1000);
  const cap = r < 850 ? 64 : r < 970 ? 4096 : r < 995 ? 32 * 1024 : max;
  return 1 + rng.int(Math.min(cap, max));
}

/** Opcodes Mooncake's server treats as READ (anything but 1 / 0x81, and never our file opcodes). */
function readOpcode(rng: Rng): number {
  if (rng.chance(0.9)) return rng.pick([0x00, 0x80]);
  for (;;) {
    const op = rng.u32() & 0xff;
    if ((op & 0x7f) !== 1 && op !== FILE_READ && op !== FILE_WRITE && op !== HELLO) return op;
  }
}

function validMemoryRequest(rng: Rng, t: Target, parts: Buffer[]): void {
  const write = rng.chance(0.5);
  const r = rng.pick(t.accessible(write));
  const size = pickSize(rng, r.len);
  const addr = r.addr + BigInt(rng.int(r.len - size + 1));
  const op = write ? rng.pick([0x01, 0x81]) : readOpcode(rng);
  parts.push(header(BigInt(size), addr, op, rng.chance(0.3) ? rng.bytes(7) : undefined));
  if (write) parts.push(body(rng, t, size));
}

function validFileRequest(rng: Rng, t: Target, parts: Buffer[]): void {
  const f = rng.pick([...t.files.values()]);
  const size = pickSize(rng, f.size);
  const offset = rng.int(f.size - size + 1);
  const write = rng.chance(0.5);
  parts.push(fileHeader(BigInt(size), BigInt(offset), write, f.id));
  if (write) parts.push(body(rng, t, size));
}

/** A WRITE body: random bytes, or valid headers, so a desynchronised stream reads plausible requests. */
function body(rng: Rng, t: Target, size: number): Buffer {
  if (size < HEADER || !rng.chance(0.15)) return rng.bytes(size);
  const parts: Buffer[] = [];
  let n = 0;
  while (n < size) {
    const r = rng.pick(t.accessible(true));
    const h = header(BigInt(1 + rng.int(Math.min(64, r.len))), r.addr, rng.pick([0x00, 0x80, 0x01, 0x81]));
    parts.push(h);
    n += h.length;
  }
  return Buffer.concat(parts).subarray(0, size);
}

/** Headers just outside what may be served: each must be refused, and nothing outside any range written. */
function nearMiss(rng: Rng, t: Target): Buffer {
  const r = rng.pick(t.regions);
  const end = r.addr + BigInt(r.len);
  const op = rng.pick([0x00, 0x80, 0x01, 0x81]);
  const size = BigInt(1 + rng.int(Math.min(64, r.len)));
  const memory: Array<() => Buffer> = [
    () => header(size, end - size + 1n, op), // one byte past the end
    () => header(size, r.addr - 1n, op), // one byte before
    () => header(1n, end, op), // the guard page
    () => header(0n, r.addr, op), // empty
    () => header(U64_MAX, r.addr, op),
    () => header((1n << 53n) + 1n, r.addr, op), // inexact as a double
    () => header(2n, U64_MAX, op), // wraps to 0
    () => header(4096n + r.addr + 16n, U64_MAX - 4095n, op), // wraps into the region
    () => header(size, r.addr + (1n << 60n), op),
    () => header(size, r.addr | (1n << 63n), op),
    () => header((1n << 53n) - r.addr + 1n, r.addr, op), // the end is past 2^53
    () => header(BigInt(r.len) + 4096n + 16n, r.addr, op), // across the gap into the next region
    () => header(size, BigInt(rng.u32()) * 4096n, op),
    () => {
      // Inside a region closed to peers, or a WRITE into a read-only one.
      const closed = rng.pick(t.regions.filter((x) => x.access !== 'readwrite'));
      return header(1n + BigInt(rng.int(Math.min(64, closed.len))), closed.addr, closed.access === 'read' ? rng.pick([0x01, 0x81]) : op);
    },
    () => header(rng.u64(), rng.u64(), rng.u32() & 0xff, rng.bytes(7)),
    // An identity check naming another engine, or with a size.
    () => header(0n, BigInt(t.engineId) + BigInt(1 + rng.int(1000)), HELLO),
    () => header(BigInt(1 + rng.int(64)), BigInt(t.engineId), HELLO),
  ];
  const files: Array<() => Buffer> = [];
  if (t.files.size > 0) {
    const f = rng.pick([...t.files.values()]);
    const fsz = BigInt(f.size);
    const w = rng.chance(0.5);
    files.push(
      () => fileHeader(1n, fsz, w, f.id), // at the end
      () => fileHeader(fsz + 1n, 0n, w, f.id),
      () => fileHeader(0n, 0n, w, f.id),
      () => fileHeader(BigInt(MAX_FILE_REQUEST) + 1n, 0n, w, f.id),
      () => fileHeader(16n, U64_MAX - 7n, w, f.id), // wraps
      () => fileHeader(16n, 1n << 53n, w, f.id),
      () => fileHeader(16n, 0n, w, rng.pick([0, f.id + 0x100, t.files.size + 1, 0xffff_ffff])), // unknown or stale id
      () => fileHeader(16n, 0n, w, f.id, 1 + rng.int(1000)), // reserved bytes set
    );
  } else {
    files.push(() => fileHeader(16n, 0n, rng.chance(0.5), 1));
  }
  return rng.pick(rng.chance(t.files.size > 0 ? 0.5 : 0.1) ? files : memory)();
}

/** Byte-level mutations, mostly in the last third so that a long valid prefix is served first. */
function mutateStream(rng: Rng, t: Target, s: Buffer): Buffer {
  const ops = 1 + rng.int(3);
  for (let k = 0; k < ops; k++) {
    const p = s.length === 0 ? 0 : rng.chance(0.8) ? Math.floor(s.length * (2 / 3)) + rng.int(Math.ceil(s.length / 3)) : rng.int(s.length);
    switch (rng.int(8)) {
      case 0:
        if (p < s.length) s[p] ^= 1 << rng.int(8);
        break;
      case 1:
        if (p < s.length) s[p] = rng.u32() & 0xff;
        break;
      case 2:
        s = s.subarray(0, p);
        break;
      case 3:
        s = Buffer.concat([s.subarray(0, p), rng.bytes(1 + rng.int(30)), s.subarray(p)]);
        break;
      case 4:
        s = Buffer.concat([s.subarray(0, p), s.subarray(p + 1 + rng.int(30))]);
        break;
      case 5:
        if (p + 8 <= s.length) s.writeBigUInt64LE(rng.u64(), p);
        break;
      case 6:
        s = Buffer.concat([s.subarray(0, p), nearMiss(rng, t), s.subarray(p)]);
        break;
      default: {
        const a = rng.int(s.length + 1);
        s = Buffer.concat([s.subarray(0, p), s.subarray(a, a + 1 + rng.int(100)), s.subarray(p)]);
      }
    }
  }
  return s;
}

/** How the server must end the connection. */
type Ending = 'open' | 'reject-v1' | 'reject-v2' | 'file-reject' | 'wrong-engine';

interface Prediction {
  expected: Buffer;
  ending: Ending;
  headers: number;
}

/**
 * The protocol, applied to the stream byte by byte: requests are served in
 * order; the first one refused ends the connection (v2: a rejection frame;
 * v1: a silent close; a file request: the file rejection frame). Updates the
 * target's shadows with what the valid WRITEs put there.
 */
function predict(t: Target, s: Buffer, servesFiles: boolean): Prediction {
  const out: Buffer[] = [];
  let pos = 0;
  let headers = 0;
  while (s.length - pos >= HEADER) {
    headers++;
    const size = s.readBigUInt64LE(pos);
    const addr = s.readBigUInt64LE(pos + 8);
    const op = s[pos + 16]!;
    pos += HEADER;
    if (op === HELLO) {
      // Confirmed when it names this engine; else refused, and nothing after it is served.
      if (size === 0n && addr === BigInt(t.engineId)) {
        out.push(CONFIRMED);
        continue;
      }
      out.push(WRONG_ENGINE);
      return { expected: Buffer.concat(out), ending: 'wrong-engine', headers };
    }
    if (op === FILE_READ || op === FILE_WRITE) {
      const id = s.readUInt32LE(pos - HEADER + 17);
      const reservedClear = s[pos - 3] === 0 && s[pos - 2] === 0 && s[pos - 1] === 0;
      const f = servesFiles && reservedClear ? t.files.get(id) : undefined;
      if (!f || size === 0n || size > BigInt(MAX_FILE_REQUEST) || addr + size > BigInt(f.size)) {
        out.push(FILE_REJECTED);
        return { expected: Buffer.concat(out), ending: 'file-reject', headers };
      }
      const n = Number(size);
      const at = Number(addr);
      if (op === FILE_WRITE) {
        if (s.length - pos < n) return { expected: Buffer.concat(out), ending: 'open', headers }; // an incomplete body is never written
        s.copy(f.shadow, at, pos, pos + n);
        pos += n;
        out.push(OK);
      } else {
        out.push(OK, Buffer.from(f.shadow.subarray(at, at + n)));
      }
      continue;
    }
    const write = (op & 0x7f) === 1;
    const v2 = (op & 0x80) !== 0;
    const r = t.find(addr, size, write);
    if (!r) {
      if (v2) out.push(REJECTED);
      return { expected: Buffer.concat(out), ending: v2 ? 'reject-v2' : 'reject-v1', headers };
    }
    const at = r.off + Number(addr - r.addr);
    const n = Number(size);
    if (write) {
      const take = Math.min(n, s.length - pos);
      s.copy(t.shadow, at, pos, pos + take); // a body cut short is written as far as it came
      pos += take;
      if (take < n) break;
      if (v2) out.push(OK);
    } else {
      if (v2) out.push(OK);
      out.push(Buffer.from(t.shadow.subarray(at, at + n)));
    }
  }
  return { expected: Buffer.concat(out), ending: 'open', headers };
}

// ---------------------------------------------------------------------------------------------
// A raw client

interface Outcome {
  /** What the server sent after its challenge (after nothing, without a secret). */
  received: Buffer;
  /** The server ended the connection (FIN or reset) before we did. */
  serverClosed: boolean;
}

interface Plan {
  send: Buffer;
  /** Bytes the server must send after its challenge. */
  expectLen: number;
  /** The server must close the connection (else we half-close once everything expected arrived). */
  serverEnds: boolean;
}

/**
 * One connection: wait for the server's challenge (`challengeSize` bytes, 0
 * without a secret), ask `plan` what to send, send it in random pieces, and
 * collect the answer until the connection closes. When the server must keep
 * the connection open, half-close once `expectLen` bytes arrived.
 */
function runStream(rng: Rng, port: number, challengeSize: number, plan: (challenge: Buffer) => Plan, timeoutMs: number): Promise<Outcome & { challenge: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    let ended = false;
    let written = false;
    let serverClosed = false;
    let p: Plan | null = null;
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`stream timed out: received ${have} bytes, planned ${p ? `${challengeSize} + ${p.expectLen}, serverEnds=${p.serverEnds}` : 'nothing yet'}`));
    }, timeoutMs);
    const maybeEnd = (): void => {
      if (p && !p.serverEnds && written && !ended && have >= challengeSize + p.expectLen) {
        ended = true;
        sock.end();
      }
    };
    const start = (challenge: Buffer): void => {
      const plan_ = plan(challenge);
      p = plan_;
      void (async () => {
        // A few pieces, sometimes a turn of the event loop apart, so headers arrive split.
        const send = plan_.send;
        const cuts = [0, ...Array.from({ length: rng.int(4) }, () => rng.int(send.length + 1)).sort((a, b) => a - b), send.length];
        for (let i = 0; i + 1 < cuts.length; i++) {
          if (sock.destroyed) return;
          sock.write(send.subarray(cuts[i], cuts[i + 1]));
          if (rng.chance(0.3)) await new Promise((r) => setImmediate(r));
        }
        written = true;
        maybeEnd();
      })();
    };
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      const before = have;
      have += c.length;
      if (!p) {
        if (have >= challengeSize) start(Buffer.concat(chunks).subarray(0, challengeSize));
        else return;
      }
      if (have > challengeSize + p!.expectLen) sock.destroy(); // already wrong: report it now rather than at the timeout
      else if (before < have) maybeEnd();
    });
    sock.on('end', () => {
      serverClosed = !ended;
      sock.destroy(); // the server has said everything: do not wait for our unread writes
    });
    sock.on('error', () => {
      serverClosed = !ended;
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      resolve({ challenge: all.subarray(0, challengeSize), received: all.subarray(challengeSize), serverClosed });
    });
    sock.once('connect', () => {
      if (challengeSize === 0) start(Buffer.alloc(0));
    });
  });
}

/** The correct answer to a challenge, and the server's proof that must follow it. */
function authAnswer(secret: Buffer, challenge: Buffer, clientNonce: Buffer): { response: Buffer; accept: Buffer } {
  const serverNonce = challenge.subarray(8, 8 + NONCE_SIZE);
  return {
    response: encodeResponse(clientNonce, clientMac(secret, serverNonce, clientNonce)),
    accept: encodeAccept(serverMac(secret, serverNonce, clientNonce)),
  };
}

/** Write `send` on an open connection and wait for exactly `n` bytes back. */
function talk(sock: net.Socket, send: Buffer, n: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const timer = setTimeout(() => reject(new Error(`no answer of ${n} bytes (got ${have})`)), 5000);
    const onData = (c: Buffer): void => {
      chunks.push(c);
      have += c.length;
      if (have >= n) {
        clearTimeout(timer);
        sock.off('data', onData);
        resolve(Buffer.concat(chunks));
      }
    };
    sock.on('data', onData);
    if (send.length > 0) sock.write(send);
  });
}

/** A valid READ on an open connection answers with the model's bytes: the server is alive and in step. */
async function probe(t: Target, sock: net.Socket): Promise<void> {
  const r = t.accessible()[0]!;
  const n = Math.min(512, r.len);
  const want = Buffer.concat([OK, t.shadow.subarray(r.off, r.off + n)]);
  assert.deepEqual(await talk(sock, header(BigInt(n), r.addr, 0x80), want.length), want, 'a valid READ after the fuzz');
}

/** A connection ready for requests (authenticated when the target has a secret). */
async function connect(t: Target): Promise<net.Socket> {
  const sock = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port: t.port, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
  if (t.secret) {
    const { response, accept } = authAnswer(t.secret, await talk(sock, Buffer.alloc(0), CHALLENGE_SIZE), randomBytes(NONCE_SIZE));
    assert.deepEqual(await talk(sock, response, accept.length), accept, 'authenticated');
  }
  return sock;
}

interface LaneOptions {
  seed: number;
  streams: number;
  minRequests: number;
  maxRequests: number;
  /** Share of file requests among the valid ones (0: a server without files). */
  fileShare: number;
}

function makeStream(rng: Rng, t: Target, o: LaneOptions): Buffer {
  if (rng.chance(0.03)) return rng.bytes(rng.int(200)); // plain noise
  const parts: Buffer[] = [];
  if (rng.chance(0.2)) parts.push(header(0n, BigInt(t.engineId), HELLO)); // our clients start with an identity check
  const valid = (): void => (rng.chance(o.fileShare) ? validFileRequest : validMemoryRequest)(rng, t, parts);
  if (rng.chance(0.3)) {
    // A few valid requests, one just out of bounds (never mutated), then more that must never be served.
    for (let k = rng.int(20); k > 0; k--) valid();
    parts.push(nearMiss(rng, t));
    for (let k = rng.int(5); k > 0; k--) valid();
    return Buffer.concat(parts);
  }
  for (let k = o.minRequests + rng.int(o.maxRequests - o.minRequests + 1); k > 0; k--) valid();
  if (rng.chance(0.4)) parts.push(nearMiss(rng, t));
  const stream = Buffer.concat(parts);
  return rng.chance(0.6) ? mutateStream(rng, t, stream) : stream;
}

/**
 * What to send after a challenge instead of the right answer, and whether the
 * server must refuse it (REJECT, then close) or wait for more (we close).
 */
function badAnswer(rng: Rng, t: Target, challenge: Buffer, stream: Buffer): { send: Buffer; refused: boolean } {
  const { response } = authAnswer(t.secret!, challenge, rng.bytes(NONCE_SIZE));
  const bad = Buffer.from(response);
  switch (rng.int(6)) {
    case 0: // one bit anywhere in the answer (kind, nonce or mac)
      bad[rng.int(bad.length)] ^= 1 << rng.int(8);
      return { send: Buffer.concat([bad, stream]), refused: true };
    case 1: // another secret
      return { send: Buffer.concat([authAnswer(Buffer.from('not the secret, not at all'), challenge, rng.bytes(NONCE_SIZE)).response, stream]), refused: true };
    case 2: // no answer: a Mooncake client's requests straight away
      return { send: stream.length >= 8 ? stream : Buffer.concat([stream, rng.bytes(8)]), refused: true };
    case 3: // another frame of ours in its place
      return { send: Buffer.concat([rng.pick([challenge, REJECT_FRAME, encodeAccept(rng.bytes(32))]), stream]), refused: true };
    case 4: {
      // An answer cut short: the server waits for the rest (a first 8 bytes that are not RESPONSE are refused at once).
      const cut = response.subarray(0, rng.int(RESPONSE_SIZE));
      return { send: cut, refused: cut.length >= 8 && !cut.subarray(0, 8).equals(response.subarray(0, 8)) };
    }
    default: // noise
      return { send: Buffer.concat([rng.bytes(RESPONSE_SIZE), stream]), refused: true };
  }
}

/** One connection at a time against `t`, each stream checked against the model. */
async function fuzzLane(t: Target, o: LaneOptions): Promise<{ headers: number; endings: Record<string, number> }> {
  const rng = new Rng(o.seed);
  const endings: Record<string, number> = {};
  let headers = 0;
  const bystander = await connect(t); // opened before any bad input; must keep working
  try {
    for (let i = 0; i < o.streams; i++) {
      const stream = makeStream(rng, t, o);
      const input = (): string => `seed ${o.seed} stream ${i} (${stream.length} bytes${stream.length <= 400 ? `: ${show(stream)}` : ''})`;
      let p: Prediction | null = null;
      let want: Buffer = Buffer.alloc(0);
      const res = await runStream(rng, t.port, t.secret ? CHALLENGE_SIZE : 0, (challenge) => {
        let prelude: Buffer = Buffer.alloc(0);
        if (t.secret) {
          assert.equal(authKindAt(challenge), AuthKind.CHALLENGE, 'a challenge first');
          if (rng.chance(0.3)) {
            const bad = badAnswer(rng, t, challenge, stream);
            headers++;
            endings[bad.refused ? 'auth-refused' : 'auth-incomplete'] = (endings[bad.refused ? 'auth-refused' : 'auth-incomplete'] ?? 0) + 1;
            want = bad.refused ? REJECT_FRAME : Buffer.alloc(0);
            return { send: bad.send, expectLen: want.length, serverEnds: bad.refused };
          }
          const a = authAnswer(t.secret, challenge, rng.bytes(NONCE_SIZE));
          prelude = a.response;
          want = a.accept;
        }
        p = predict(t, stream, o.fileShare > 0);
        headers += p.headers;
        endings[p.ending] = (endings[p.ending] ?? 0) + 1;
        want = Buffer.concat([want, p.expected]);
        return { send: Buffer.concat([prelude, stream]), expectLen: want.length, serverEnds: p.ending !== 'open' };
      }, 10_000);
      const ending: Ending | 'auth' = p ? (p as Prediction).ending : 'auth';
      if (ending === 'reject-v1') {
        // A silent close may drop responses still queued: what arrives is a prefix.
        assert.ok(res.received.length <= want.length && res.received.equals(want.subarray(0, res.received.length)), `not a prefix of the expected responses: ${input()}`);
        if (res.received.length < want.length) endings['reject-v1, responses cut'] = (endings['reject-v1, responses cut'] ?? 0) + 1;
      } else if (!res.received.equals(want)) {
        let k = 0;
        while (res.received[k] === want[k]) k++;
        assert.fail(`responses differ at byte ${k} (got ${res.received.length}, expected ${want.length}, ending ${ending}): ${input()}`);
      }
      const serverEnds = ending === 'auth' ? want.length > 0 : ending !== 'open';
      assert.equal(res.serverClosed, serverEnds, `the server ${res.serverClosed ? 'closed a connection it had to keep' : 'kept a connection open after a refusal'}: ${input()}`);
      if (t.io) await waitFor(() => t.io!.inFlight === 0, 10_000, () => `file I/O to finish: ${input()}`);
      t.assertContent(input);
      if (i % 50 === 49) await probe(t, bystander);
    }
    await probe(t, bystander);
  } finally {
    bystander.destroy();
  }
  // Refused connections linger at most the server's grace period (2 s) for the client's close.
  await waitFor(
    () => t.server.connectionCount === 0 && openServerSockets(t.port) === 0,
    8000,
    () => `connections to close: server has ${t.server.connectionCount}, kernel ${openServerSockets(t.port)}`,
  );
  return { headers, endings };
}

// ---------------------------------------------------------------------------------------------

describe('fuzz: live data server', () => {
  const LAYOUT: Array<{ len: number; access: RegionAccess }> = [
    { len: 64 * 1024, access: 'readwrite' },
    { len: 96 * 1024 + 123, access: 'readwrite' },
    { len: 8 * 1024, access: 'none' },
    { len: 1, access: 'readwrite' },
    { len: 48 * 1024, access: 'readwrite' },
    { len: 12 * 1024 + 5, access: 'read' },
  ];
  let dir = '';
  const targets: Target[] = [];

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'te-fuzz-'));
  });

  after(async () => {
    for (const t of targets) await t.server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('memory requests: streams of valid, mutated and refused requests on parallel connections', { timeout: LIVE_TIMEOUT_MS }, async (t) => {
    // Independent servers (one per lane), so parallel lanes stay deterministic.
    const lanes = [0, 1, 2, 3].map((k) => new Target(new Rng(SEED + k), LAYOUT));
    targets.push(...lanes);
    for (const l of lanes) await l.start(null);
    const results = await Promise.all(lanes.map((l, k) => fuzzLane(l, { seed: SEED * 7 + k, streams: 200, minRequests: 50, maxRequests: 1500, fileShare: 0 })));
    const headers = results.reduce((s, r) => s + r.headers, 0);
    const endings: Record<string, number> = {};
    for (const r of results) for (const [k, n] of Object.entries(r.endings)) endings[k] = (endings[k] ?? 0) + n;
    counter.add('data server: request headers', headers);
    t.diagnostic(`${headers} request headers; endings ${JSON.stringify(endings)}`);
    for (const e of ['open', 'reject-v1', 'reject-v2', 'file-reject', 'wrong-engine']) assert.ok((endings[e] ?? 0) >= 5, `too few '${e}' streams: ${JSON.stringify(endings)}`);
  });

  test('file requests mixed with memory requests: nothing outside [0, size) of a file, sizes unchanged', { timeout: LIVE_TIMEOUT_MS }, async (t) => {
    const rng = new Rng(SEED ^ 0xf11e);
    const target = new Target(rng, LAYOUT);
    targets.push(target);
    await target.start(target.withFiles(rng, dir, [256 * 1024, 5000, 1], 4096));
    const r = await fuzzLane(target, { seed: SEED * 11, streams: 160, minRequests: 20, maxRequests: 600, fileShare: 0.6 });
    counter.add('data server: file and memory request headers', r.headers);
    t.diagnostic(`${r.headers} request headers; endings ${JSON.stringify(r.endings)}`);
    for (const e of ['open', 'reject-v1', 'reject-v2', 'file-reject']) assert.ok((r.endings[e] ?? 0) >= 3, `too few '${e}' streams: ${JSON.stringify(r.endings)}`);
  });

  test('with a shared secret: nothing is served before a valid answer; bad answers are refused and change nothing', { timeout: LIVE_TIMEOUT_MS }, async (t) => {
    const rng = new Rng(SEED ^ 0xa17);
    const target = new Target(rng, LAYOUT);
    targets.push(target);
    await target.start(target.withFiles(rng, dir, [64 * 1024], 512), rng.bytes(32));
    const r = await fuzzLane(target, { seed: SEED * 13, streams: 150, minRequests: 20, maxRequests: 400, fileShare: 0.3 });
    counter.add('data server with a secret: answers and request headers', r.headers);
    t.diagnostic(`${r.headers} answers and request headers; endings ${JSON.stringify(r.endings)}`);
    for (const e of ['open', 'auth-refused', 'auth-incomplete']) assert.ok((r.endings[e] ?? 0) >= 3, `too few '${e}' streams: ${JSON.stringify(r.endings)}`);
    assert.ok(target.server.stats.authRejected >= (r.endings['auth-refused'] ?? 0), 'refusals counted');
  });
});

// ---------------------------------------------------------------------------------------------
// The RPC port: one frame per connection.

const MAX_FRAME = 4096;
const DESCRIPTOR = '{"buffers":[],"name":"fuzz","protocol":"tcp","tcp_data_port":1,"tcp_proto_version":2,"timestamp":"x"}';

/** Nesting depth of a parsed JSON value (the root is 0), for the parser's limit. */
function depth(v: unknown): number {
  if (Array.isArray(v)) return 1 + Math.max(-1, ...v.map(depth));
  if (v !== null && typeof v === 'object') return 1 + Math.max(-1, ...Object.values(v).map(depth));
  return 0;
}

type HandshakeExpectation = { reply: null } | { reply: HandshakeFrame; notify?: Notification };

/** What the server must answer to `bytes` sent then half-closed; `trailing`: bytes after a complete frame. */
function predictHandshake(bytes: Buffer): { want: HandshakeExpectation; trailing: boolean } {
  if (bytes.length < 8) return { want: { reply: null }, trailing: false };
  const len = bytes.readBigUInt64LE(0);
  if (len === 0n || len > BigInt(MAX_FRAME) || bytes.length < 8 + Number(len)) return { want: { reply: null }, trailing: false };
  const end = 8 + Number(len);
  const frameBody = bytes.subarray(8, end);
  const type = (frameBody[0]! > 3 ? HandshakeType.LEGACY : frameBody[0]!) as HandshakeType;
  const json = (type === HandshakeType.LEGACY ? frameBody : frameBody.subarray(1)).toString('utf8');
  const trailing = bytes.length > end;
  let body: unknown;
  try {
    body = JSON.parse(json);
  } catch {
    return { want: { reply: null }, trailing };
  }
  if (depth(body) > 64) return { want: { reply: null }, trailing };
  switch (type) {
    case HandshakeType.METADATA:
      return { want: { reply: { type, json: `${DESCRIPTOR}\n` } }, trailing };
    case HandshakeType.NOTIFY: {
      if (body === null || typeof body !== 'object' || Array.isArray(body)) return { want: { reply: null }, trailing };
      const o = body as Record<string, unknown>;
      const notify = { name: typeof o['name'] === 'string' ? o['name'] : '', msg: typeof o['notify_msg'] === 'string' ? o['notify_msg'] : '' };
      return { want: { reply: { type, json: '{"name":"","notify_msg":"success"}\n' }, notify }, trailing };
    }
    case HandshakeType.PROBE:
      return { want: { reply: { type, json: '{"status":"success"}\n' } }, trailing };
    default:
      return { want: { reply: { type, json: '' } }, trailing }; // a refusal: checked by shape
  }
}

function handshakeInput(rng: Rng): Buffer {
  const jsons = [DESCRIPTOR, '{}', '[]', '{"name":"peer","notify_msg":"hello"}', '{"name":1,"notify_msg":[]}', '"s"', '{"local_nic_path":"a","peer_nic_path":"b","qp_num":[1]}', '[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]'];
  const type = rng.pick([HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE, HandshakeType.LEGACY]);
  let json = rng.pick(jsons);
  if (rng.chance(0.3)) json = json.slice(0, rng.int(json.length + 1));
  if (rng.chance(0.1)) json = json.padEnd(MAX_FRAME + rng.int(3) - 1, ' '); // around the limit
  let b = encodeHandshakeFrame(type, json);
  if (rng.chance(0.1)) return rng.bytes(rng.int(40));
  if (rng.chance(0.5)) {
    b = Buffer.from(b);
    for (let k = 1 + rng.int(2); k > 0; k--) {
      const p = rng.chance(0.5) ? rng.int(Math.min(9, b.length + 1)) : rng.int(b.length + 1);
      switch (rng.int(5)) {
        case 0:
          if (p < b.length) b[p] ^= 1 << rng.int(8);
          break;
        case 1:
          b = b.subarray(0, p);
          break;
        case 2:
          b = Buffer.concat([b.subarray(0, p), rng.bytes(1 + rng.int(8)), b.subarray(p)]);
          break;
        case 3:
          if (b.length >= 8) b.writeBigUInt64LE(rng.pick([0n, 1n, BigInt(b.length - 8), BigInt(b.length - 9), BigInt(MAX_FRAME), BigInt(MAX_FRAME) + 1n, U64_MAX, rng.u64()]), 0);
          break;
        default:
          b = Buffer.concat([b, rng.bytes(1 + rng.int(8))]); // trailing bytes
      }
    }
  }
  return b;
}

/** Send, half-close, collect the reply until the server closes. */
/**
 * Send `bytes` (after answering the challenge with `answer` when the server
 * has a secret), half-close, and collect what comes back until the server
 * closes: after the challenge, which is returned apart.
 */
function handshakeOnce(port: number, bytes: Buffer, split: number, answer: ((challenge: Buffer) => Buffer) | null): Promise<{ challenge: Buffer; got: Buffer }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    let sent = false;
    const sock = net.connect({ host: '127.0.0.1', port, noDelay: true });
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`handshake server kept the connection open: ${show(bytes.subarray(0, 64))}`));
    }, 10_000);
    const send = (prelude: Buffer): void => {
      sent = true;
      const all = Buffer.concat([prelude, bytes]);
      const cut = split > 0 ? prelude.length + split : 0;
      if (cut > 0 && cut < all.length) {
        sock.write(all.subarray(0, cut));
        setImmediate(() => sock.end(all.subarray(cut)));
      } else sock.end(all);
    };
    sock.on('data', (c: Buffer) => {
      chunks.push(c);
      have += c.length;
      if (answer && !sent && have >= CHALLENGE_SIZE) send(answer(Buffer.concat(chunks).subarray(0, CHALLENGE_SIZE)));
    });
    sock.on('error', () => {
      /* a reset ends the exchange; 'close' follows */
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const n = answer ? CHALLENGE_SIZE : 0;
      resolve({ challenge: all.subarray(0, n), got: all.subarray(n) });
    });
    sock.once('connect', () => {
      if (!answer) send(Buffer.alloc(0));
    });
  });
}

async function fuzzHandshakeServer(t: TestContext, seed: number, n: number, secret: Buffer | null): Promise<void> {
  const notes: Notification[] = [];
  // Thousands of connections a second from one address: above the default handshake rate, which is not under test here.
  const limits = { ...DEFAULT_LIMITS, handshakeRate: 1 << 20, handshakeBurst: 1 << 20 };
  const server = new HandshakeServer({ metadata: () => DESCRIPTOR, notify: (x) => notes.push(x) }, MAX_FRAME, { limits, ...(secret ? { authSecret: secret } : {}) });
  const port = await server.listen('127.0.0.1', 0, 20000, 30000);
  const counts: Record<string, number> = {};
  const wantNotes: Notification[] = [];
  try {
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < n) {
        const index = next++;
        const rng = Rng.forInput(seed, index);
        const bytes = handshakeInput(rng);
        const { want, trailing } = predictHandshake(bytes);
        const input = (): string => `seed ${seed} input #${index}: ${show(bytes.subarray(0, 200))} (${bytes.length} bytes)`;
        let accept: Buffer = Buffer.alloc(0);
        let refused = false;
        const answer = !secret
          ? null
          : (challenge: Buffer): Buffer => {
              assert.equal(authKindAt(challenge), AuthKind.CHALLENGE, 'a challenge first');
              const a = authAnswer(secret, challenge, rng.bytes(NONCE_SIZE));
              if (rng.chance(0.7)) {
                accept = a.accept;
                return a.response;
              }
              refused = true;
              const bad = Buffer.from(a.response);
              bad[rng.int(bad.length)] ^= 1 << rng.int(8);
              return rng.pick([bad, rng.bytes(RESPONSE_SIZE), Buffer.alloc(0)]); // a wrong answer, noise, or none (a Mooncake client)
            };
        const res = await handshakeOnce(port, bytes, rng.chance(0.3) ? rng.int(bytes.length + 1) : 0, answer);
        if (refused) {
          // Unless the frame alone is too short to be looked at (under 8 bytes, then the close): refused, nothing served.
          if (res.got.length > 0 || bytes.length >= 8) assert.deepEqual(res.got, REJECT_FRAME, `not refused: ${input()}`);
          counts['auth-refused'] = (counts['auth-refused'] ?? 0) + 1;
          continue;
        }
        assert.deepEqual(res.got.subarray(0, accept.length), accept, `no proof of the secret: ${input()}`);
        const got = res.got.subarray(accept.length);
        if (got.length === 0) {
          // Nothing: the frame was refused, or trailing bytes arrived with it (the server may refuse those).
          assert.ok(want.reply === null || trailing, `no reply: ${input()}`);
          counts[trailing && want.reply ? 'trailing-refused' : 'refused'] = (counts[trailing && want.reply ? 'trailing-refused' : 'refused'] ?? 0) + 1;
          continue;
        }
        assert.ok(want.reply, `a reply to a frame that must be refused: ${input()}`);
        const frame = new HandshakeFrameDecoder(1 << 20).push(got);
        assert.ok(frame, `an incomplete reply: ${input()}`);
        assert.equal(frame.type, want.reply.type, input());
        if (want.reply.json === '') {
          const v = JSON.parse(frame.json) as { reply_msg?: unknown };
          assert.ok(typeof v.reply_msg === 'string' && v.reply_msg.length > 0, `a connection request must be refused: ${input()}`);
        } else {
          assert.equal(frame.json, want.reply.json, input());
        }
        if ('notify' in want && want.notify) wantNotes.push(want.notify);
        counts[`type${want.reply.type}`] = (counts[`type${want.reply.type}`] ?? 0) + 1;
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    counter.add(`handshake server${secret ? ' with a secret' : ''}: connections`, n);
    t.diagnostic(`${n} connections: ${JSON.stringify(counts)}`);
    // Notifications arrive in completion order across the parallel workers: compare as multisets.
    const key = (x: Notification): string => JSON.stringify([x.name, x.msg]);
    assert.deepEqual(notes.map(key).sort(), wantNotes.map(key).sort());
    const min = Math.floor(n / 150);
    for (const k of ['refused', 'type0', 'type1', 'type2', 'type3', 'type255', ...(secret ? ['auth-refused'] : [])]) {
      assert.ok((counts[k] ?? 0) >= min, `too few '${k}': ${JSON.stringify(counts)}`);
    }
    const reply = await exchange('127.0.0.1', port, HandshakeType.METADATA, '{}', { connectTimeoutMs: 2000, timeoutMs: 5000, maxFrame: 1 << 20, ...(secret ? { authSecret: secret } : {}) });
    assert.equal(reply, `${DESCRIPTOR}\n`, 'still serving a valid client');
    // Refused answers linger at most the server's grace period (2 s) for the client's close.
    await waitFor(() => openServerSockets(port) === 0, 5000, () => `${openServerSockets(port)} server sockets to close`);
  } finally {
    await server.close();
  }
}

describe('fuzz: live handshake server', () => {
  test('random and mutated frames: the right reply or none, every connection closed, still serving', { timeout: LIVE_TIMEOUT_MS }, async (t) => {
    await fuzzHandshakeServer(t, SEED ^ 0x4a5, 3000, null);
  });

  test('with a shared secret: a frame is looked at only after a valid answer', { timeout: LIVE_TIMEOUT_MS }, async (t) => {
    await fuzzHandshakeServer(t, SEED ^ 0x4a6, 1000, randomBytes(32));
  });
});

describe('fuzz: handshake replies read by our client', () => {
  test('exchange() against a server answering random and mutated frames: the reply, or a typed error, never a hang', { timeout: LIVE_TIMEOUT_MS }, async (t) => {
    const seed = SEED ^ 0xc11e;
    const counts: Record<string, number> = {};
    const N = 2000;
    let next = 0;
    const worker = async (): Promise<void> => {
      let reply: Buffer = Buffer.alloc(0);
      let split = 0;
      const server = net.createServer((sock) => {
        sock.on('error', () => {
          /* the client may close first */
        });
        sock.once('data', () => {
          // Answer once the request is in, in one or two pieces, then close.
          if (split > 0 && split < reply.length) {
            sock.write(reply.subarray(0, split));
            setImmediate(() => sock.end(reply.subarray(split)));
          } else sock.end(reply);
        });
      });
      const port = await new Promise<number>((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
      try {
        while (next < N) {
          const index = next++;
          const rng = Rng.forInput(seed, index);
          reply = rng.chance(0.05) ? Buffer.concat([encodeChallenge(rng.bytes(NONCE_SIZE)), rng.bytes(rng.int(8))]) : handshakeInput(rng);
          split = rng.chance(0.3) ? rng.int(reply.length + 1) : 0;
          const type = rng.pick([HandshakeType.CONNECTION, HandshakeType.METADATA, HandshakeType.NOTIFY, HandshakeType.PROBE]);
          const input = (): string => `seed ${seed} input #${index}: type ${type}, reply ${show(reply.subarray(0, 200))} (${reply.length} bytes)`;
          // The model, for a reply to a request of `type`.
          let want: { json: string } | { code: string; orJson?: string };
          const len = reply.length >= 8 ? reply.readBigUInt64LE(0) : 0n;
          if (reply.length >= 8 && authKindAt(reply) === AuthKind.CHALLENGE) want = { code: 'TE_AUTH_REQUIRED' };
          else if (reply.length < 8) want = { code: 'TE_PEER_UNREACHABLE' };
          else if (len === 0n) want = { code: 'TE_MALFORMED' };
          else if (len > BigInt(MAX_FRAME)) want = { code: 'TE_FRAME_TOO_LARGE' };
          else if (reply.length < 8 + Number(len)) want = { code: 'TE_PEER_UNREACHABLE' };
          else {
            const frameBody = reply.subarray(8, 8 + Number(len));
            const legacy = frameBody[0]! > 3;
            const got = legacy ? HandshakeType.LEGACY : frameBody[0]!;
            const json = (legacy ? frameBody : frameBody.subarray(1)).toString('utf8');
            const trailing = reply.length > 8 + Number(len);
            if (got !== type) want = { code: trailing ? 'TE_MALFORMED|TE_PROTOCOL_ERROR' : 'TE_PROTOCOL_ERROR' };
            else want = trailing ? { code: 'TE_MALFORMED', orJson: json } : { json };
          }
          let outcome: { json: string } | { code: string };
          try {
            outcome = { json: await exchange('127.0.0.1', port, type, '{}', { connectTimeoutMs: 2000, timeoutMs: 5000, maxFrame: MAX_FRAME }) };
          } catch (e) {
            assert.ok(e instanceof TransferEngineError, `untyped ${String(e)}: ${input()}`);
            outcome = { code: e.code };
          }
          if ('json' in want) assert.deepEqual(outcome, want, input());
          else if ('json' in outcome) assert.equal(outcome.json, want.orJson, `resolved: ${input()}`);
          else assert.ok(want.code.split('|').includes(outcome.code), `${outcome.code}, expected ${want.code}: ${input()}`);
          const k = 'json' in outcome ? 'reply' : outcome.code;
          counts[k] = (counts[k] ?? 0) + 1;
        }
      } finally {
        await new Promise((r) => server.close(r));
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
    counter.add('handshake replies (client side)', N);
    t.diagnostic(`${N} exchanges: ${JSON.stringify(counts)}`);
    for (const k of ['reply', 'TE_PEER_UNREACHABLE', 'TE_MALFORMED', 'TE_FRAME_TOO_LARGE', 'TE_PROTOCOL_ERROR', 'TE_AUTH_REQUIRED']) {
      assert.ok((counts[k] ?? 0) >= 10, `too few '${k}': ${JSON.stringify(counts)}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Our initiator reading a hostile data server's answers: status frames and READ data.

describe('fuzz: data server answers read by our client', () => {
  test('random, mutated, short and overlong answers: the right outcome, typed errors, no byte outside the destination', { timeout: LIVE_TIMEOUT_MS }, async (t) => {
    const rng = new Rng(SEED ^ 0xc0de);
    const REMOTE = 0x2000_0000_0000n;
    const GAP = 4096;
    const L = 256 * 1024;
    // No retries or pauses: each transfer is exactly one request, answered as planned.
    const engine = new TransferEngine({ config: { lanesPerPeer: 1, retryCount: 0, peerPauseMs: 0 } });
    await engine.init('127.0.0.1');
    const backing = rng.bytes(GAP + L + GAP);
    const shadow = Buffer.from(backing);
    const localAddr = engine.registerLocalMemory(backing.subarray(GAP, GAP + L));
    /** The answer to the next request (given its header); `close`: then end the connection. */
    let answer: (size: number, write: boolean) => { bytes: Buffer; close: 'no' | 'end' | 'reset' } = () => ({ bytes: Buffer.alloc(0), close: 'end' });
    /** The last answer left the connection in step and open: the client may keep using it. */
    let inStep = true;
    const answerWith = (bytes: Buffer, close: 'no' | 'end' | 'reset', ok: boolean): { bytes: Buffer; close: 'no' | 'end' | 'reset' } => {
      inStep = ok && close === 'no';
      return { bytes, close };
    };
    const socks = new Set<net.Socket>();
    /** The connection that carried the last answer. */
    let answered: net.Socket | null = null;
    const onConnection = (sock: net.Socket): void => {
      socks.add(sock);
      sock.on('close', () => socks.delete(sock));
      sock.on('error', () => {
        /* the initiator may reset us */
      });
      let buf = Buffer.alloc(0);
      let bodyLeft = 0;
      let pending: { size: number; write: boolean } | null = null;
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          if (pending && bodyLeft > 0) {
            const take = Math.min(bodyLeft, buf.length);
            bodyLeft -= take;
            buf = buf.subarray(take);
            if (bodyLeft > 0) return;
          }
          if (pending) {
            answered = sock;
            const a = answer(pending.size, pending.write);
            pending = null;
            if (a.close === 'reset') sock.write(a.bytes, () => sock.resetAndDestroy());
            else if (a.close === 'end') sock.end(a.bytes);
            else sock.write(a.bytes);
          }
          if (buf.length < HEADER) return;
          const op = buf[16]!;
          pending = { size: Number(buf.readBigUInt64LE(0)), write: (op & 0x7f) === 1 };
          bodyLeft = pending.write ? pending.size : 0;
          buf = buf.subarray(HEADER);
        }
      });
    };
    // The client paces reconnections to one peer (10 a second); most answers here cost the connection,
    // so the transfers go round many fake peers, each a data port and an RPC port publishing it.
    const PEERS = 32;
    const servers: net.Server[] = [];
    const rpcs: HandshakeServer[] = [];
    const segs: number[] = [];
    const counts: Record<string, number> = {};
    const N = 1200;
    try {
      for (let k = 0; k < PEERS; k++) {
        const data = net.createServer(onConnection);
        servers.push(data);
        const dataPort = await new Promise<number>((resolve) => data.listen(0, '127.0.0.1', () => resolve((data.address() as net.AddressInfo).port)));
        let name = '';
        const rpc = new HandshakeServer(
          {
            metadata: () => encodeSegmentDesc({ name, protocol: 'tcp', tcpDataPort: dataPort, tcpProtoVersion: 2, buffers: [{ name, addr: REMOTE, length: 1n << 30n }] }),
            notify: () => {},
          },
          1 << 20,
        );
        rpcs.push(rpc);
        name = `127.0.0.1:${await rpc.listen('127.0.0.1', 0, 20000, 30000)}`;
        segs.push(await engine.openSegment(name));
      }
      for (let i = 0; i < N; i++) {
        const seg = segs[i % PEERS]!;
        const write = rng.chance(0.4);
        const n = 1 + rng.int(rng.chance(0.8) ? 512 : 64 * 1024);
        const dst = rng.int(L - n + 1);
        const content = rng.bytes(n);
        // What the server answers, and what the client must make of it.
        let want: { ok: true } | { ok: false; codes: string[] };
        let kind: string;
        const frame = Buffer.from(OK);
        const k = rng.int(10);
        if (k < 4) {
          kind = 'ok';
          want = { ok: true };
          answer = () => answerWith(write ? OK : Buffer.concat([OK, content]), rng.chance(0.2) ? 'end' : 'no', true);
        } else if (k === 4) {
          kind = 'overlong';
          want = { ok: true }; // extra bytes after a complete answer: the task is complete, the connection dropped
          answer = () => answerWith(Buffer.concat([write ? OK : Buffer.concat([OK, content]), rng.bytes(1 + rng.int(64))]), rng.pick(['no', 'end'] as const), false);
        } else if (k === 5) {
          kind = 'bad frame';
          const p = rng.int(8);
          frame[p] ^= 1 << rng.int(8);
          const code = frame.readUInt32LE(4) !== 0x4d435456 ? 'TE_PROTOCOL_ERROR' : frame.readUInt32LE(0) === 1 ? 'TE_ADDRESS_REJECTED' : 'TE_PROTOCOL_ERROR';
          want = { ok: false, codes: [code] };
          answer = () => answerWith(write ? frame : Buffer.concat([frame, content]), rng.pick(['no', 'end', 'reset'] as const), false);
        } else if (k === 6) {
          kind = 'rejected';
          want = { ok: false, codes: ['TE_ADDRESS_REJECTED'] };
          answer = () => answerWith(Buffer.from(REJECTED), rng.pick(['no', 'end'] as const), true); // a complete answer: the client may keep the connection
        } else if (k === 7) {
          kind = 'short';
          want = { ok: false, codes: ['TE_PEER_UNREACHABLE'] };
          answer = () => {
            const whole = write ? OK : Buffer.concat([OK, content]);
            return answerWith(whole.subarray(0, rng.int(whole.length)), rng.pick(['end', 'reset'] as const), false);
          };
        } else {
          kind = 'noise';
          const noise = rng.bytes(1 + rng.int(600));
          want = noise.length < 8 ? { ok: false, codes: ['TE_PEER_UNREACHABLE'] } : { ok: false, codes: ['TE_PROTOCOL_ERROR', 'TE_ADDRESS_REJECTED', 'TE_PEER_UNREACHABLE'] };
          if (noise.length >= 8 && noise.readUInt32LE(4) === 0x4d435456 && noise.readUInt32LE(0) === 0) want = { ok: true }; // 2^-64
          answer = () => answerWith(noise, rng.pick(['end', 'reset'] as const), false);
        }
        if (write) backing.set(content, GAP + dst), shadow.set(content, GAP + dst);
        const input = (): string => `transfer ${i}: ${write ? 'WRITE' : 'READ'} ${n} bytes at +${dst}, answer '${kind}'`;
        const bid = engine.allocateBatchID(1);
        engine.submitTransfer(bid, [{ opcode: write ? TransferOpcode.WRITE : TransferOpcode.READ, source: localAddr + dst, targetId: seg, targetOffset: REMOTE + BigInt(rng.int(1 << 20)), length: n }]);
        let timer: NodeJS.Timeout | undefined;
        const [st] = await Promise.race([
          engine.waitBatch(bid),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no outcome within 10 s: ${input()}`)), 10_000);
          }),
        ]);
        clearTimeout(timer);
        engine.freeBatchID(bid);
        if (want.ok) {
          assert.equal(st!.status, TaskStatus.COMPLETED, `${st!.error?.code ?? ''} ${st!.error?.message ?? ''}: ${input()}`);
          assert.equal(st!.transferred, n, input());
          if (!write) assert.ok(backing.subarray(GAP + dst, GAP + dst + n).equals(content), `wrong data: ${input()}`);
        } else {
          assert.equal(st!.status, TaskStatus.FAILED, input());
          assert.ok(st!.error instanceof TransferEngineError && want.codes.includes(st!.error.code), `${st!.error?.code}, expected ${want.codes.join('|')}: ${input()}`);
          assert.ok(st!.transferred < n, `a failed transfer reports ${st!.transferred} of ${n} bytes: ${input()}`);
        }
        // A READ may leave partial data in its destination; nothing else changes, canaries included.
        if (!write) backing.copy(shadow, GAP + dst, GAP + dst, GAP + dst + n);
        if (!backing.equals(shadow)) {
          let b = 0;
          while (backing[b] === shadow[b]) b++;
          assert.fail(`local memory changed at ${b - GAP} (destination [${dst}, ${dst + n})): ${input()}`);
        }
        const outcome = `${kind}: ${st!.status === TaskStatus.COMPLETED ? 'completed' : st!.error!.code}`;
        counts[outcome] = (counts[outcome] ?? 0) + 1;
        // A connection out of step or closed by the server is dropped by the client: it is not used again.
        if (!inStep) await waitFor(() => !socks.has(answered!), 5000, () => `the client to drop the connection after ${input()}`);
      }
      counter.add('data server answers (client side)', N);
      t.diagnostic(`${N} transfers: ${JSON.stringify(counts)}`);
    } finally {
      await engine.close();
      for (const x of socks) x.destroy();
      for (const x of servers) await new Promise((r) => x.close(r));
      for (const x of rpcs) await x.close();
    }
  });
});

test('fuzz-servers: inputs tried', (t) => {
  t.diagnostic(counter.table());
  assert.ok(counter.total >= MIN_INPUTS, `only ${counter.total} inputs: ${counter.table()}`);
});
