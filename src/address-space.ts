/**
 * The synthetic address space registered memory lives in (src/memory.ts):
 * each engine draws a page-aligned base at random, so that two engines'
 * addresses rarely coincide and a request meant for one is not served with
 * the memory of another (README, Engine identity). Constants only, so that
 * the environment parser (src/env.ts) can check TE_ADDRESS_BASE without the
 * registry.
 */
export const PAGE_SIZE = 4096;
/** Lowest base address (2^44): far from 0. */
export const ADDRESS_BASE = 0x1000_0000_0000;
/** Bases are drawn below this (2^52), leaving at least 2^52 bytes of address space above any base, below 2^53. */
export const ADDRESS_BASE_LIMIT = 0x10_0000_0000_0000;
