/** Shared-memory building blocks (owner side, names, identity, reaper); the peer side is transport/shm.ts. */
export { allocateShmRegion, allocateAligned, ShmRegion, MAX_SHM_REGION, type ShmRegionOptions } from './region.js';
export { reapStaleShmFiles, type ReapOptions, type ReapResult } from './reaper.js';
export { localMachineId, hostMachineId, MACHINE_ID_ENV } from './identity.js';
export { makeShmName, parseShmName, validateShmName, shmPath, SHM_DIR, SHM_PREFIX, type ParsedShmName } from './names.js';
export { nativeAvailable, loadNative, type NativeAddon } from '../native/addon.js';
