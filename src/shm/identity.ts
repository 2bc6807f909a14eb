/**
 * Machine identity, as Mooncake's TENT computes it (transfer_engine_impl.cpp
 * under mooncake-transfer-engine/tent/src/runtime/):
 * "<boot_id>:<machine-id>". Two engines share memory only when these match:
 * the boot id changes on every boot and differs between hosts (even clones
 * with the same /etc/machine-id), the machine id tells hosts apart however
 * close their boots. Containers on one host may match yet see different
 * /dev/shm mounts; then the peer's file is simply missing and the transport
 * reports PEER_UNREACHABLE, so the engine falls back to TCP.
 */
import { readFileSync } from 'node:fs';
import { teError, ErrorCode } from '../errors.js';
import { envVar, MACHINE_ID_PATTERN, type Env, type EnvName } from '../env.js';

const BOOT_ID = '/proc/sys/kernel/random/boot_id';
const MACHINE_ID_FILES = ['/etc/machine-id', '/var/lib/dbus/machine-id'];
/** Env override (ours): makes an engine look like another host, for tests. */
export const MACHINE_ID_ENV = 'TE_MACHINE_ID' satisfies EnvName;

function readTrimmed(path: string): string | undefined {
  try {
    const v = readFileSync(path, 'utf8').trim();
    return v.length > 0 ? v : undefined;
  } catch {
    return undefined;
  }
}

let cached: string | null | undefined;

/** This host's identity from /proc and /etc, or undefined where there is no boot id (not Linux). */
export function hostMachineId(): string | undefined {
  if (cached === undefined) {
    const boot = readTrimmed(BOOT_ID);
    let machine: string | undefined;
    for (const f of MACHINE_ID_FILES) if ((machine = readTrimmed(f)) !== undefined) break;
    cached = boot === undefined ? null : `${boot}:${machine ?? ''}`;
  }
  return cached ?? undefined;
}

/**
 * The identity an engine publishes: `override` (an engine option), else
 * TE_MACHINE_ID, else the host's. An override must be 1-256 printable
 * ASCII characters without spaces (TE_BAD_ENV / TE_INVALID_ARGUMENT).
 */
export function localMachineId(override?: string, env: Env = process.env): string | undefined {
  if (override !== undefined) {
    if (typeof override !== 'string' || !MACHINE_ID_PATTERN.test(override)) {
      throw teError(ErrorCode.INVALID_ARGUMENT, 'machineId must be 1-256 printable ASCII characters without spaces');
    }
    return override;
  }
  return envVar(MACHINE_ID_ENV, env) ?? hostMachineId();
}
