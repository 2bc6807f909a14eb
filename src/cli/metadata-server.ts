/**
 * `transfer-engine metadata-server`: the bundled HTTP metadata server
 * (src/metadata/http-server.ts). Engines use it with a metadata server of
 * `http://HOST:PORT/metadata`. Serves until SIGINT/SIGTERM.
 */
import { MetadataHttpServer } from '../metadata/http-server.js';
import { formatFlagHelp, parseFlags, UsageError, type FlagSpecs } from './args.js';
import { untilStopSignal } from './signals.js';

export const METADATA_SERVER_FLAGS = {
  host: { type: 'string', description: 'address to listen on (0.0.0.0 serves other hosts)', defaultText: '127.0.0.1' },
  port: { type: 'integer', description: 'port to listen on; 0 picks a free one', defaultText: '8080' },
  data_dir: { type: 'string', description: 'persist the store in this directory and reload it on start', defaultText: 'none: memory only, as Mooncake' },
  json: { type: 'boolean', description: 'print the ready line as one JSON object' },
} as const satisfies FlagSpecs;

export const METADATA_SERVER_HELP = `Usage: transfer-engine metadata-server [flags]

An HTTP metadata server with the semantics of Mooncake's (GET/PUT/DELETE
/metadata?key=..., GET /health). Engines use http://HOST:PORT/metadata.

Flags:
${formatFlagHelp(METADATA_SERVER_FLAGS)}
`;

export async function runMetadataServer(argv: readonly string[]): Promise<number> {
  const { flags, positionals, help } = parseFlags(argv, METADATA_SERVER_FLAGS);
  if (help) {
    process.stdout.write(METADATA_SERVER_HELP);
    return 0;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  const port = flags.port ?? 8080;
  if (port < 0 || port > 65535) throw new UsageError(`--port=${port}: not a port number`);
  const host = flags.host ?? '127.0.0.1';
  if (host.length === 0) throw new UsageError('--host must not be empty');
  if (flags.data_dir !== undefined && flags.data_dir.length === 0) throw new UsageError('--data_dir must not be empty');
  const server = await MetadataHttpServer.start({ host, port, ...(flags.data_dir ? { dataDir: flags.data_dir } : {}) });
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ event: 'metadata_server_ready', url: server.url, port: server.port, pid: process.pid, keys: server.size, data_dir: flags.data_dir ?? null })}\n`);
  } else {
    const persisted = flags.data_dir ? `, ${server.size} key(s) loaded from ${flags.data_dir}` : ' (memory only)';
    process.stdout.write(`Metadata server listening on ${server.url}${persisted}. Stop with Ctrl-C or SIGTERM.\n`);
  }
  await untilStopSignal();
  await server.close();
  return 0;
}
