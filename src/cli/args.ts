/**
 * A small command-line flag parser (gflags-like, as Mooncake's tools use):
 * `--name=value`, `--name value`, boolean `--flag` / `--flag=true|false`.
 * Flag names may be written with `_` or `-`. Any mistake is a UsageError
 * (one line, exit code 2), never a silent default.
 */

export type FlagType = 'string' | 'boolean' | 'integer' | 'number' | 'size';

export interface FlagSpec {
  readonly type: FlagType;
  readonly description: string;
  /** Allowed values of a string flag. */
  readonly choices?: readonly string[];
  /** Shown in help as the default. */
  readonly defaultText?: string;
  /** Other names accepted for this flag (e.g. Mooncake's classic names); the value lands under the canonical name. */
  readonly aliases?: readonly string[];
}

export type FlagSpecs = Readonly<Record<string, FlagSpec>>;

type ValueOf<T extends FlagType> = T extends 'boolean' ? boolean : T extends 'string' ? string : number;

/** Flags given on the command line; absent ones are undefined so callers can apply mode-specific defaults. */
export type ParsedFlags<S extends FlagSpecs> = { -readonly [K in keyof S]?: ValueOf<S[K]['type']> };

export interface ParseResult<S extends FlagSpecs> {
  flags: ParsedFlags<S>;
  /** The name each given flag was written with (an alias, or the canonical name), for messages. */
  written: { [K in keyof S]?: string };
  positionals: string[];
  help: boolean;
}

/** A command-line mistake: reported as one line on stderr, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  readonly exitCode = 2;
}

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

/**
 * Byte-size suffixes. Binary (K, Ki, KiB = 1024) as block sizes usually are;
 * KB/MB/GB are decimal so they mean the same as in --report_unit.
 */
const SIZE_SUFFIXES: ReadonlyMap<string, number> = new Map([
  ['', 1], ['b', 1],
  ['k', 2 ** 10], ['ki', 2 ** 10], ['kib', 2 ** 10], ['kb', 1e3],
  ['m', 2 ** 20], ['mi', 2 ** 20], ['mib', 2 ** 20], ['mb', 1e6],
  ['g', 2 ** 30], ['gi', 2 ** 30], ['gib', 2 ** 30], ['gb', 1e9],
  ['t', 2 ** 40], ['ti', 2 ** 40], ['tib', 2 ** 40], ['tb', 1e12],
]);

/** Parse "65536", "64K", "1M", "8MiB", "1.5GiB", "4KB" into a byte count. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(text.trim());
  if (!m) return undefined;
  const mult = SIZE_SUFFIXES.get(m[2]!.toLowerCase());
  if (mult === undefined) return undefined;
  const v = Number(m[1]) * mult;
  return Number.isSafeInteger(v) ? v : undefined;
}

function parseValue(flag: string, spec: FlagSpec, raw: string): string | number | boolean {
  switch (spec.type) {
    case 'boolean': {
      const w = raw.toLowerCase();
      if (TRUE_WORDS.has(w)) return true;
      if (FALSE_WORDS.has(w)) return false;
      throw new UsageError(`--${flag}=${raw}: expected true or false`);
    }
    case 'integer': {
      const v = /^[+-]?\d+$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(v)) throw new UsageError(`--${flag}=${raw}: not an integer`);
      return v;
    }
    case 'number': {
      const v = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(raw.trim()) ? Number(raw) : NaN;
      if (!Number.isFinite(v)) throw new UsageError(`--${flag}=${raw}: not a number`);
      return v;
    }
    case 'size': {
      const v = parseSize(raw);
      if (v === undefined) {
        throw new UsageError(`--${flag}=${raw}: not a byte size (examples: 4096, 64K, 1M, 8MiB, 1GB)`);
      }
      return v;
    }
    case 'string':
      if (spec.choices && !spec.choices.includes(raw)) {
        throw new UsageError(`--${flag}=${raw}: expected one of ${spec.choices.join(', ')}`);
      }
      return raw;
  }
}

/** Map every accepted name (canonical and aliases) to its canonical name. */
function nameTable(specs: FlagSpecs): Map<string, string> {
  const names = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    names.set(name, name);
    for (const alias of spec.aliases ?? []) names.set(alias, name);
  }
  return names;
}

/** Edit distance, for "did you mean" hints on unknown flags. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = row[j]!;
      row[j] = Math.min(up + 1, row[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return row[b.length]!;
}

function unknownFlag(written: string, names: Map<string, string>): UsageError {
  let best: string | undefined;
  let bestD = 3;
  for (const n of names.keys()) {
    const d = distance(written.replaceAll('-', '_'), n);
    if (d < bestD) {
      best = n;
      bestD = d;
    }
  }
  return new UsageError(`unknown flag --${written}${best !== undefined ? ` (did you mean --${best}?)` : ''}`);
}

/** Parse argv (without the node binary, script and subcommand) against `specs`. */
export function parseFlags<S extends FlagSpecs>(argv: readonly string[], specs: S): ParseResult<S> {
  const flags: Record<string, string | number | boolean> = {};
  const writtenAs: Record<string, string> = {};
  const positionals: string[] = [];
  const names = nameTable(specs);
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === '-h' || arg === '--help') {
      help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      if (arg.startsWith('-') && arg.length > 1) throw new UsageError(`unknown flag ${arg}`);
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const written = eq < 0 ? arg.slice(2) : arg.slice(2, eq);
    const asWritten = written.replaceAll('-', '_');
    const name = names.get(asWritten);
    const spec = name !== undefined && Object.hasOwn(specs, name) ? specs[name] : undefined;
    if (name === undefined || !spec) throw unknownFlag(written, names);
    let raw: string;
    if (eq >= 0) raw = arg.slice(eq + 1);
    else if (spec.type === 'boolean') raw = 'true';
    else if (i + 1 < argv.length) raw = argv[++i]!;
    else throw new UsageError(`--${asWritten} needs a value`);
    // Errors name the flag as it was written (an alias stays an alias).
    flags[name] = parseValue(asWritten, spec, raw); // repeated flags: the last one wins, as in gflags
    writtenAs[name] = asWritten;
  }
  return { flags: flags as ParsedFlags<S>, written: writtenAs as ParseResult<S>['written'], positionals, help };
}

const HELP_COLUMN = 34;

/** Help lines for the flags, aligned (long flag texts wrap). */
export function formatFlagHelp(specs: FlagSpecs): string {
  const pad = ' '.repeat(HELP_COLUMN);
  const row = (name: string, s: FlagSpec): string => {
    const value = s.type === 'boolean' ? '' : `=${s.choices ? s.choices.join('|') : s.type === 'size' ? 'BYTES' : s.type.toUpperCase()}`;
    const left = `  --${name}${value}`;
    let text = s.defaultText ? `${s.description}\n${pad}default: ${s.defaultText}` : s.description;
    if (s.aliases?.length) text += `\n${pad}alias: ${s.aliases.map((a) => `--${a}`).join(', ')}`;
    return left.length + 2 <= HELP_COLUMN ? left.padEnd(HELP_COLUMN) + text : `${left}\n${pad}${text}`;
  };
  return Object.entries(specs).map(([name, s]) => row(name, s)).join('\n');
}
