/**
 * What a failed call leaves behind: its return code (codes.ts), the CallError
 * getLastError() gives, and a WARNING log line. Only TransferEngineErrors are
 * failures; anything else (a TypeError for a wrong argument, a bug) propagates.
 */
import { TransferEngineError } from '../errors.js';
import { CallError, returnCodeFor, returnCodeName } from './codes.js';
import type { Logger } from './log.js';

export class CallRecorder {
  /** getLastError()'s answer: the API's own record (the core throws its errors and keeps none). */
  last: CallError | null = null;

  constructor(private readonly logger: Logger) {}

  /** Record a failure of `method` and return its code. */
  fail(method: string, e: unknown): number {
    if (!(e instanceof TransferEngineError)) throw e;
    const code = returnCodeFor(e);
    this.last = new CallError(method, code, e.code, e.message, e);
    this.logger.warning(`${this.last.message} [${returnCodeName(code) ?? code}, ${e.code}]`);
    return code;
  }

  /** Run `body` for `method`: its value, or the failure's code. */
  run<T>(method: string, body: () => T): T | number {
    try {
      return body();
    } catch (e) {
      return this.fail(method, e);
    }
  }

  /** The async run: the body's value, or the failure's code. */
  async runAsync<T>(method: string, body: () => Promise<T>): Promise<T | number> {
    try {
      return await body();
    } catch (e) {
      return this.fail(method, e);
    }
  }
}
