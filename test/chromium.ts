/**
 * Headless Chromium driven over the DevTools protocol on a pipe
 * (`--remote-debugging-pipe`: JSON messages separated by NUL bytes, commands
 * on fd 3, replies and events on fd 4), so the tests need no WebSocket and no
 * browser-automation package. Debian's `chromium` is installed by .ci/run;
 * a missing browser fails the suite (never skipped).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

export const CHROMIUM = process.env['TE_TEST_CHROMIUM'] ?? 'chromium';

/** Throws with what to install when the browser is missing. */
export function checkChromium(): string {
  const r = spawnSync(CHROMIUM, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`headless Chromium is needed for the status page tests: \`${CHROMIUM} --version\` failed (${r.error?.message ?? r.stderr}); install Debian's chromium (apt-get install chromium), as .ci/run does`);
  }
  return r.stdout.trim();
}

interface Pending {
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

export class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private buffered = '';
  private readonly profile: string;
  private sessionId: string | null = null;
  private exited = false;

  private constructor(private readonly proc: ChildProcess, profile: string) {
    this.profile = profile;
    const out = proc.stdio[4] as Readable;
    out.setEncoding('utf8');
    out.on('data', (chunk: string) => this.receive(chunk));
    proc.on('exit', () => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(new Error('chromium exited'));
      this.pending.clear();
    });
  }

  static async launch(): Promise<Browser> {
    checkChromium();
    const profile = mkdtempSync(path.join(os.tmpdir(), 'te-chromium-'));
    const args = [
      '--headless',
      '--remote-debugging-pipe',
      `--user-data-dir=${profile}`,
      '--no-first-run',
      '--no-default-browser-check',
      '--disable-gpu',
      '--disable-dev-shm-usage',
      '--disable-extensions',
      '--disable-background-networking',
      '--window-size=1280,900',
      // Root has no user namespace sandbox here (CI runs as root).
      ...(process.getuid?.() === 0 ? ['--no-sandbox'] : []),
      'about:blank',
    ];
    const proc = spawn(CHROMIUM, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr?.on('data', (c: Buffer) => {
      if (stderr.length < 8192) stderr += c.toString('utf8');
    });
    const b = new Browser(proc, profile);
    try {
      const { targetInfos } = (await b.send('Target.getTargets')) as { targetInfos: { targetId: string; type: string }[] };
      const page = targetInfos.find((t) => t.type === 'page');
      if (!page) throw new Error('chromium opened no page');
      const { sessionId } = (await b.send('Target.attachToTarget', { targetId: page.targetId, flatten: true })) as { sessionId: string };
      b.sessionId = sessionId;
      await b.page('Page.enable');
      await b.page('Runtime.enable');
    } catch (e) {
      await b.close();
      throw new Error(`cannot drive chromium: ${(e as Error).message}; its stderr: ${stderr}`);
    }
    return b;
  }

  private receive(chunk: string): void {
    this.buffered += chunk;
    let nul: number;
    while ((nul = this.buffered.indexOf('\0')) >= 0) {
      const text = this.buffered.slice(0, nul);
      this.buffered = this.buffered.slice(nul + 1);
      const msg = JSON.parse(text) as { id?: number; result?: Record<string, unknown>; error?: { message: string } };
      if (msg.id === undefined) continue; // an event
      const p = this.pending.get(msg.id);
      if (!p) continue;
      this.pending.delete(msg.id);
      if (msg.error) p.reject(new Error(msg.error.message));
      else p.resolve(msg.result ?? {});
    }
  }

  /** A browser-level command. */
  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    if (this.exited) return Promise.reject(new Error('chromium exited'));
    const id = this.nextId++;
    const input = this.proc.stdio[3] as Writable;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no reply within 30 s`));
      }, 30_000);
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      input.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  }

  /** A command to the page. */
  page(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    return this.send(method, params, this.sessionId ?? undefined);
  }

  async navigate(url: string): Promise<void> {
    const r = (await this.page('Page.navigate', { url })) as { errorText?: string };
    if (r.errorText) throw new Error(`navigate to ${url}: ${r.errorText}`);
  }

  /** Evaluate an expression in the page; its JSON-serializable value. */
  async evaluate<T>(expression: string): Promise<T> {
    const r = (await this.page('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true })) as {
      result: { value?: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) throw new Error(`in the page: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value as T;
  }

  /** Poll an expression until it is truthy; its value. */
  async waitFor<T>(expression: string, what: string, timeoutMs = 15_000): Promise<T> {
    const until = Date.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const v = await this.evaluate<T>(expression);
        if (v) return v;
        last = v;
      } catch (e) {
        last = e;
      }
      if (Date.now() > until) throw new Error(`timed out waiting for ${what} (last: ${String(last)})`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** A PNG of the page, full length. */
  async screenshot(): Promise<Buffer> {
    const r = (await this.page('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true })) as { data: string };
    return Buffer.from(r.data, 'base64');
  }

  async close(): Promise<void> {
    if (!this.exited) {
      const gone = new Promise((r) => this.proc.once('exit', r));
      this.send('Browser.close').catch(() => undefined);
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    }
    rmSync(this.profile, { recursive: true, force: true });
  }
}
