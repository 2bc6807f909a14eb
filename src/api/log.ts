/**
 * MC_LOG_LEVEL for the high-level API: TRACE, INFO (default), WARNING or
 * ERROR, Mooncake's names. Lines go to stderr (or a sink given to the
 * engine), one per event, with the level spelled out so they grep well.
 */
export const LogLevel = { TRACE: 0, INFO: 1, WARNING: 2, ERROR: 3 } as const;
export type LogLevelName = keyof typeof LogLevel;

export type LogSink = (line: string) => void;

export const stderrSink: LogSink = (line) => {
  process.stderr.write(`${line}\n`);
};

export class Logger {
  constructor(
    public level: LogLevelName,
    private readonly sink: LogSink,
  ) {}

  enabled(level: LogLevelName): boolean {
    return LogLevel[level] >= LogLevel[this.level];
  }

  log(level: LogLevelName, message: string): void {
    if (this.enabled(level)) this.sink(`[transfer-engine] ${level} ${message}`);
  }

  trace(message: string): void {
    this.log('TRACE', message);
  }
  info(message: string): void {
    this.log('INFO', message);
  }
  warning(message: string): void {
    this.log('WARNING', message);
  }
  error(message: string): void {
    this.log('ERROR', message);
  }
}
