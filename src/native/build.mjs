#!/usr/bin/env node
/**
 * Install-time build of the te_native addon (`npm install` / `npm ci` run it as
 * the package's "install" script). Downloads nothing:
 *
 *  1. node-gyp (npm's bundled copy, else one on the path) with --nodedir set
 *     to headers that are already on disk: npm's `nodedir` setting, else the
 *     include/node beside the running node binary (official tarballs, the
 *     Debian/NodeSource packages and the `node` npm package all ship it).
 *     Without --nodedir node-gyp would try to download headers.
 *  2. If that fails or no full header tree exists: a direct `cc -shared` with
 *     the Node-API headers only (the addon uses nothing else), from the
 *     `node-api-headers` package or the headers beside node.
 *     (TE_NATIVE_BUILD=cc goes straight to this step.)
 *  3. If both fail, a warning and exit 0: the engine works without the addon
 *     (shared memory reports TE_NOT_SUPPORTED), unless TE_REQUIRE_NATIVE=1.
 *
 * Not TypeScript on purpose: it runs before `prepare` compiles anything.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const out = join(root, 'build', 'Release', 'te_native.node');
const source = join(root, 'src', 'native', 'native.c');
const require = createRequire(import.meta.url);
const log = (msg) => process.stderr.write(`te_native: ${msg}\n`);

/** A directory node-gyp can use as --nodedir: include/node with common.gypi and node_api.h. */
function fullNodeDir(dir) {
  if (!dir) return undefined;
  const inc = join(dir, 'include', 'node');
  return existsSync(join(inc, 'node_api.h')) && existsSync(join(inc, 'common.gypi')) ? dir : undefined;
}

function nodeGypScript() {
  const candidates = [
    process.env.npm_config_node_gyp, // npm sets this for lifecycle scripts
    join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'),
  ];
  try {
    candidates.push(require.resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not installed locally
  }
  return candidates.find((c) => c && existsSync(c));
}

function run(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: root, stdio: 'inherit', env: process.env });
  return r.status === 0;
}

function viaNodeGyp() {
  const script = nodeGypScript();
  const nodedir = fullNodeDir(process.env.npm_config_nodedir) ?? fullNodeDir(resolve(dirname(process.execPath), '..'));
  if (!script) return log('node-gyp not found'), false;
  if (!nodedir) return log('no local Node header tree for node-gyp (it would download one)'), false;
  log(`node-gyp rebuild --nodedir=${nodedir}`);
  return run(process.execPath, [script, 'rebuild', `--nodedir=${nodedir}`]);
}

function napiIncludeDir() {
  try {
    const { include_dir: dir } = require('node-api-headers');
    if (dir && existsSync(join(dir, 'node_api.h'))) return dir;
  } catch {
    // optional
  }
  const beside = join(dirname(process.execPath), '..', 'include', 'node');
  return existsSync(join(beside, 'node_api.h')) ? beside : undefined;
}

function viaCc() {
  const inc = napiIncludeDir();
  if (!inc) return log('no Node-API headers found'), false;
  mkdirSync(dirname(out), { recursive: true });
  const cc = process.env.CC || 'cc';
  const args = ['-O2', '-fPIC', '-shared', '-pthread', '-fvisibility=hidden', '-DNAPI_VERSION=8', '-D_FILE_OFFSET_BITS=64',
    `-I${inc}`, source, '-o', out];
  log(`${cc} ${args.join(' ')}`);
  return run(cc, args);
}

// Linux only: /dev/shm, MAP_POPULATE, flock on tmpfs.
// TE_NATIVE_BUILD=cc skips node-gyp (to exercise the fallback).
const built = process.platform === 'linux' && ((process.env.TE_NATIVE_BUILD !== 'cc' && viaNodeGyp()) || viaCc());
if (built && existsSync(out) && statSync(out).size > 0) {
  log(`built ${out}`);
} else {
  log('could not build the native addon; the engine will run without shared memory, direct I/O and busy polling');
  if (process.env.TE_REQUIRE_NATIVE === '1') process.exit(1);
}
