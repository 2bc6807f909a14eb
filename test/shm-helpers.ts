/**
 * Helpers for the shm-*.test.ts suites: an owner of shared-memory regions in
 * another process (a real peer: its own pid, its own mappings, its own exit
 * hooks), driven over IPC.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { TransferEngineError, type ErrorCode } from '../src/errors.js';

export const SHM_MODULE = new URL('../src/shm/index.js', import.meta.url).href;

const OWNER_SCRIPT = `
import { truncateSync } from 'node:fs';
import { createHash } from 'node:crypto';
const { allocateShmRegion } = await import(process.env.SHM_MODULE);
const regions = new Map();
process.on('message', (m) => {
  const reply = (result) => process.send({ id: m.id, ok: true, result });
  try {
    const r = m.name === undefined ? undefined : regions.get(m.name);
    switch (m.cmd) {
      case 'alloc': {
        const reg = allocateShmRegion(m.size);
        for (let i = 0; i < reg.size; i++) reg.bytes[i] = (i * 7 + m.seed) & 0xff;
        regions.set(reg.name, reg);
        return reply({ name: reg.name, size: reg.size });
      }
      case 'hash':
        return reply(createHash('sha256').update(r.bytes.subarray(m.offset, m.offset + m.length)).digest('hex'));
      case 'read':
        return reply(Array.from(r.bytes.subarray(m.offset, m.offset + m.length)));
      case 'truncate':
        truncateSync(r.path, m.length);
        return reply(null);
      case 'free':
        r.free();
        return reply(null);
      case 'exit':
        process.exit(0);
    }
    throw new Error('unknown command ' + m.cmd);
  } catch (e) {
    process.send({ id: m.id, ok: false, error: String(e && e.message), code: e && e.code });
  }
});
process.send({ ready: true });
`;

/** The byte the owner writes at index i of a region made with `seed`. */
export function ownerByte(i: number, seed: number): number {
  return (i * 7 + seed) & 0xff;
}

export class ShmOwner {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id?: number; ok?: boolean; result?: unknown; error?: string }) => {
      if (m.id === undefined) return;
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.result);
      else w.reject(new Error(m.error));
    });
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        for (const w of this.waiting.values()) w.reject(new Error('owner exited'));
        this.waiting.clear();
        resolve({ code, signal });
      });
    });
  }

  static async start(env: Record<string, string> = {}): Promise<ShmOwner> {
    const child = spawn(process.execPath, ['--input-type=module', '-e', OWNER_SCRIPT], {
      env: { ...process.env, SHM_MODULE, ...env },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`owner exited early (${code})`)));
    });
    return new ShmOwner(child);
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, cmd, ...args });
    });
  }

  /** A region filled with ownerByte(i, seed). */
  alloc(size: number, seed = 1): Promise<{ name: string; size: number }> {
    return this.call('alloc', { size, seed });
  }

  async kill(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
  }

  /** Normal exit (runs the owner's exit hook). */
  async exit(): Promise<void> {
    this.child.send({ id: 0, cmd: 'exit' });
    await this.exited;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) await this.kill();
  }
}

/** assert.throws / rejects matcher for a TransferEngineError with this code. */
export function teCode(code: ErrorCode, message?: RegExp): (e: unknown) => boolean {
  return (e) => {
    assert.ok(e instanceof TransferEngineError, `expected a TransferEngineError, got ${String(e)}`);
    assert.equal(e.code, code, `code of: ${e.message}`);
    if (message) assert.match(e.message, message);
    return true;
  };
}

/** Run an ESM snippet in a new node process; resolves with its exit and output. */
export function runSnippet(
  code: string,
  env: Record<string, string> = {},
  args: string[] = [],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...args, '--input-type=module', '-e', code], {
      env: { ...process.env, SHM_MODULE, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (c, signal) => resolve({ code: c, signal, stdout, stderr }));
  });
}
