/**
 * The master's state on local disk (`--data_dir`, without HA): what the
 * metadata server's data directory is for its keys. Every change set is one
 * JSON line appended to `journal.log` and fdatasync'ed before the replies
 * that depend on it leave; when the log grows past a bound, the whole state is
 * written to `state.json` (a temporary file, fsynced, renamed over the old
 * one) and the log starts empty. A restarted master loads the snapshot and
 * replays the log; a torn last line (a crash mid-append) was never
 * acknowledged and is dropped.
 */
import { promises as fsp } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { teError, ErrorCode } from '../errors.js';
import { decodeObjectRecord, decodeSegmentRecord, encodeObjectRecord, encodeSegmentRecord, type ChangeSet, type StateSnapshot } from './records.js';

/** Log size after which the next commit writes a snapshot and empties the log. */
const COMPACT_BYTES = 64 * 1024 * 1024;

interface Entry {
  s: Record<string, string | null>;
  o: Record<string, string | null>;
}

export class FileJournal {
  /** The current records, encoded: what a snapshot writes. */
  private readonly segments = new Map<string, string>();
  private readonly objects = new Map<string, string>();
  private log: FileHandle | null = null;
  private logBytes = 0;

  private constructor(private readonly dir: string) {}

  private get logPath(): string {
    return path.join(this.dir, 'journal.log');
  }

  private get statePath(): string {
    return path.join(this.dir, 'state.json');
  }

  /** Open (creating the directory) and load what is there. */
  static async open(dir: string): Promise<{ journal: FileJournal; state: StateSnapshot }> {
    const j = new FileJournal(dir);
    await fsp.mkdir(dir, { recursive: true });
    await j.readSnapshot();
    await j.replay();
    j.log = await fsp.open(j.logPath, 'a');
    return {
      journal: j,
      state: { segments: [...j.segments.values()].map(decodeSegmentRecord), objects: [...j.objects.values()].map(decodeObjectRecord) },
    };
  }

  private async readSnapshot(): Promise<void> {
    let text: string;
    try {
      text = await fsp.readFile(this.statePath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    let snap: unknown;
    try {
      snap = JSON.parse(text);
    } catch {
      throw teError(ErrorCode.MALFORMED, `master state ${this.statePath} is not JSON`);
    }
    if (typeof snap !== 'object' || snap === null || !('s' in snap) || !('o' in snap)) throw teError(ErrorCode.MALFORMED, `master state ${this.statePath} has no s/o maps`);
    this.apply(snap as Entry, this.statePath);
  }

  private async replay(): Promise<void> {
    let text: string;
    try {
      text = await fsp.readFile(this.logPath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw e;
    }
    const lines = text.split('\n');
    const complete = lines.length - 1; // what follows the last \n is empty, or a torn append
    for (let i = 0; i < complete; i++) {
      let entry: unknown;
      try {
        entry = JSON.parse(lines[i]!);
      } catch {
        throw teError(ErrorCode.MALFORMED, `master journal ${this.logPath}: line ${i + 1} is not JSON`);
      }
      this.apply(entry as Entry, `${this.logPath}:${i + 1}`);
    }
    this.logBytes = Buffer.byteLength(text);
    if (!text.endsWith('\n') && text.length > 0) {
      // A crash cut the last append: drop it, so the next line starts clean.
      await fsp.truncate(this.logPath, Buffer.byteLength(lines.slice(0, complete).map((l) => `${l}\n`).join('')));
    }
  }

  private apply(e: Entry, where: string): void {
    if (typeof e.s !== 'object' || e.s === null || typeof e.o !== 'object' || e.o === null) throw teError(ErrorCode.MALFORMED, `master journal ${where}: not a change set`);
    for (const [k, v] of Object.entries(e.s)) v === null ? this.segments.delete(k) : this.segments.set(k, v);
    for (const [k, v] of Object.entries(e.o)) v === null ? this.objects.delete(k) : this.objects.set(k, v);
  }

  /** Append the change set and make it durable; a snapshot now and then keeps the log short. */
  async commit(changes: ChangeSet): Promise<void> {
    if (!this.log) throw teError(ErrorCode.CLOSED, 'the master journal is closed');
    const entry: Entry = { s: {}, o: {} };
    for (const [k, v] of changes.segments) entry.s[k] = v === null ? null : encodeSegmentRecord(v);
    for (const [k, v] of changes.objects) entry.o[k] = v === null ? null : encodeObjectRecord(v);
    this.apply(entry, 'commit');
    const line = `${JSON.stringify(entry)}\n`;
    await this.log.appendFile(line);
    await this.log.datasync();
    this.logBytes += Buffer.byteLength(line);
    if (this.logBytes > COMPACT_BYTES) await this.compact();
  }

  private async compact(): Promise<void> {
    const snap: Entry = { s: Object.fromEntries(this.segments), o: Object.fromEntries(this.objects) };
    const tmp = `${this.statePath}.tmp-${process.pid}`;
    const fh = await fsp.open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(JSON.stringify(snap));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, this.statePath);
    // The snapshot holds everything the log did: a crash from here on replays an empty or partial log over it, harmlessly.
    await this.log!.truncate(0);
    await this.log!.sync();
    this.logBytes = 0;
    const d = await fsp.open(this.dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }

  async close(): Promise<void> {
    await this.log?.close();
    this.log = null;
  }
}
