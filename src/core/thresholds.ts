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

export const thresholdsDefault: Readonly<Record<CorePath, PathThresholds>> = {
  crc32c: { wasm: 256, pool: NEVER },
  frames: { wasm: 4096, pool: NEVER },
  deltas: { wasm: 4096, pool: NEVER },
  keys: { wasm: 4096, pool: NEVER },
  merge: { wasm: 4096, pool: NEVER },
  /** Units: requests in the batch. */
  indexes: { wasm: NEVER, pool: NEVER },
};
