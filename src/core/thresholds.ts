/**
 * Where `auto` switches implementation, per path, in units of input size (bytes, except where
 * noted). Taken from `npm run bench:core` on the 2-core reference machine (bench/results/core.json
 * records the run); re-run it and update these when the core changes.
 */
export interface PathThresholds {
  /** At or above this size, WASM inline beats pure TypeScript. */
  readonly wasm: number;
  /** At or above this size, the pool beats WASM inline for an asynchronous caller. */
  readonly pool: number;
}

export type CorePath = "crc32c" | "frames" | "deltas" | "keys" | "merge" | "indexes";

/** A size no call reaches: the implementation never wins at any measured size. */
export const NEVER = Number.MAX_SAFE_INTEGER;

/**
 * From the run recorded in bench/results/core.json (2 cores, Node 20): the smallest measured
 * size from which WASM inline is at least 5% faster at every larger size. WASM won at the
 * smallest size measured for every path but merge, whose smallest case was 2 write-sets of
 * 64 entries (9,274 bytes, 4.5x). The pool never beat WASM inline for one call at a time (a
 * round trip costs 20-100 µs here), so `auto` never picks it; it exists to keep the event loop
 * free, which a caller chooses with `core.mode = pool`.
 */
export const thresholdsDefault: Readonly<Record<CorePath, PathThresholds>> = {
  crc32c: { wasm: 64, pool: NEVER },
  frames: { wasm: 200, pool: NEVER },
  deltas: { wasm: 128, pool: NEVER },
  keys: { wasm: 464, pool: NEVER },
  merge: { wasm: 9274, pool: NEVER },
  /** Units: requests in the batch. */
  indexes: { wasm: 64, pool: NEVER },
};
