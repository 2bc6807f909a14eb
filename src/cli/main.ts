#!/usr/bin/env node
/**
 * The `transfer-engine` command: dispatches to subcommands. Exit codes:
 * 0 success, 1 a failed run, 2 a usage mistake (reported on one stderr line).
 */
import { readFileSync } from 'node:fs';
import { UsageError } from './args.js';
import { runBench } from './bench.js';
import { runMaster } from './master.js';
import { runMetadataServer } from './metadata-server.js';
import { runStoreBench } from './store-bench.js';

type Command = (argv: readonly string[]) => Promise<number>;

const COMMANDS: Readonly<Record<string, Command>> = {
  bench: runBench,
  master: runMaster,
  'metadata-server': runMetadataServer,
  'store-bench': runStoreBench,
};

const USAGE = `Usage: transfer-engine <command> [flags]

Commands:
  bench             measure batched TCP transfers (see transfer-engine bench --help)
  master            a Mooncake Store master, wire-compatible with mooncake_master (see transfer-engine master --help)
  metadata-server   an HTTP metadata server, Mooncake-compatible (see transfer-engine metadata-server --help)
  store-bench       Mooncake Store stress benchmark: prefill/decode against a mooncake_master (see transfer-engine store-bench --help)

Flags:
  -h, --help    show this help
  --version     print the version
`;

function version(): string {
  try {
    // dist/src/cli/main.js -> package.json at the package root
    const pkg: unknown = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'));
    if (typeof pkg === 'object' && pkg !== null && 'version' in pkg && typeof pkg.version === 'string') return pkg.version;
  } catch {
    // fall through
  }
  return 'unknown';
}

async function main(argv: readonly string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    process.stderr.write(USAGE);
    return 2;
  }
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (cmd === '--version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const run = Object.hasOwn(COMMANDS, cmd) ? COMMANDS[cmd] : undefined;
  if (!run) throw new UsageError(`unknown command "${cmd}" (commands: ${Object.keys(COMMANDS).join(', ')}; see transfer-engine --help)`);
  return run(rest);
}

const argv = process.argv.slice(2);
main(argv).then(
  (code) => {
    // exitCode, not exit(): let stdout drain; a handle left open would show up as a hang, not be hidden.
    process.exitCode = code;
  },
  (e: unknown) => {
    const cmd = argv[0] !== undefined && Object.hasOwn(COMMANDS, argv[0]) ? ` ${argv[0]}` : '';
    if (e instanceof UsageError) {
      const hint = cmd ? ` (see transfer-engine${cmd} --help)` : '';
      process.stderr.write(`transfer-engine${cmd}: ${e.message}${e.message.includes('--help') ? '' : hint}\n`);
      process.exitCode = e.exitCode;
    } else {
      process.stderr.write(`transfer-engine${cmd}: error: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    }
  },
);
