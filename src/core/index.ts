import { MetaraftError } from "../errors.js";
import { CorePool, type PoolOptions } from "./pool.js";
import { type CorePath, type PathThresholds, thresholdsDefault } from "./thresholds.js";
import { tsCore } from "./twin/index.js";
import {
  CORE_MODE_DEFAULT,
  type CoreAsync,
  type CoreImpl,
  type CoreMode,
  type CoreSync,
  FRAME_BYTES_MAX_DEFAULT,
  KEYS_DECODED_BYTES_MAX_DEFAULT,
} from "./types.js";
import { wasmCore } from "./wasm.js";

export { MetaraftError } from "../errors.js";
export { CorePool, type PoolOptions } from "./pool.js";
export { type CorePath, type PathThresholds, thresholdsDefault } from "./thresholds.js";
export { tsCore } from "./twin/index.js";
export { decodeWriteSet, encodeWriteSet } from "./twin/writeset.js";
export * from "./types.js";
export { WasmCore, wasmCore, wasmPath } from "./wasm.js";

export interface CoreOptions {
  /** `core.mode`: `auto` picks per call by size; the others force one implementation. */
  readonly mode?: CoreMode;
  readonly thresholds?: Partial<Record<CorePath, PathThresholds>>;
  readonly pool?: PoolOptions;
}

export interface Core {
  readonly mode: CoreMode;
  /** Synchronous calls: pure TypeScript or WASM inline (a thread hop cannot be synchronous). */
  readonly sync: CoreSync;
  /** Asynchronous calls, which may also run in the worker pool. */
  readonly async: CoreAsync;
  /** Which implementation a call of this size takes (for metrics, tests and `status`). */
  implFor(path: CorePath, size: number, caller: "sync" | "async"): CoreImpl;
  close(): Promise<void>;
}

const sumLengths = (parts: readonly Uint8Array[]): number => {
  let total = 0;
  for (const part of parts) total += part.length;
  return total;
};

/** Chooses, per call, between two implementations of the same interface by input size. */
function bySize<T extends CoreSync | CoreAsync>(
  below: () => T,
  above: () => T,
  threshold: (path: CorePath) => number,
): Omit<T, "impl"> {
  const pick = (path: CorePath, size: number): T => (size >= threshold(path) ? above() : below());
  const core = {
    crc32c: (data: Uint8Array, seed?: number) => pick("crc32c", data.length).crc32c(data, seed),
    encodeFrames: (events: readonly Uint8Array[], max = FRAME_BYTES_MAX_DEFAULT) =>
      pick("frames", sumLengths(events)).encodeFrames(events, max),
    splitFrames: (buf: Uint8Array, max = FRAME_BYTES_MAX_DEFAULT) =>
      pick("frames", buf.length).splitFrames(buf, max),
    encodeDeltas: (values: ArrayLike<number>) => pick("deltas", 8 * values.length).encodeDeltas(values),
    decodeDeltas: (buf: Uint8Array) => pick("deltas", 4 * buf.length).decodeDeltas(buf),
    encodeKeys: (keys: readonly Uint8Array[]) => pick("keys", sumLengths(keys)).encodeKeys(keys),
    decodeKeys: (buf: Uint8Array, max = KEYS_DECODED_BYTES_MAX_DEFAULT) =>
      pick("keys", 4 * buf.length).decodeKeys(buf, max),
    mergeWriteSets: (writeSets: readonly Uint8Array[]) =>
      pick("merge", sumLengths(writeSets)).mergeWriteSets(writeSets),
    allocateIndexes: (base: number, counts: ArrayLike<number>) =>
      pick("indexes", counts.length).allocateIndexes(base, counts),
  };
  return core as unknown as Omit<T, "impl">;
}

/**
 * The synchronous `auto` core: both implementations and every threshold resolved once, so a
 * call costs one comparison more than calling the chosen implementation directly.
 */
function autoSync(ts: CoreSync, wasm: CoreSync, t: Readonly<Record<CorePath, PathThresholds>>): CoreSync {
  const crc = t.crc32c.wasm;
  const frames = t.frames.wasm;
  const deltas = t.deltas.wasm;
  const keys = t.keys.wasm;
  const merge = t.merge.wasm;
  const indexes = t.indexes.wasm;
  return {
    impl: "auto",
    crc32c: (data, seed) => (data.length >= crc ? wasm : ts).crc32c(data, seed),
    encodeFrames: (events, max) => (sumLengths(events) >= frames ? wasm : ts).encodeFrames(events, max),
    splitFrames: (buf, max) => (buf.length >= frames ? wasm : ts).splitFrames(buf, max),
    encodeDeltas: (values) => (8 * values.length >= deltas ? wasm : ts).encodeDeltas(values),
    decodeDeltas: (buf) => (4 * buf.length >= deltas ? wasm : ts).decodeDeltas(buf),
    encodeKeys: (list) => (sumLengths(list) >= keys ? wasm : ts).encodeKeys(list),
    decodeKeys: (buf, max) => (4 * buf.length >= keys ? wasm : ts).decodeKeys(buf, max),
    mergeWriteSets: (sets) => (sumLengths(sets) >= merge ? wasm : ts).mergeWriteSets(sets),
    allocateIndexes: (base, counts) => (counts.length >= indexes ? wasm : ts).allocateIndexes(base, counts),
  };
}

/** Wraps a synchronous core so it answers the asynchronous interface. */
function asAsync(core: () => CoreSync): CoreAsync {
  const wrapped: Record<string, unknown> = {};
  for (const name of Object.keys(tsCore) as (keyof CoreSync)[]) {
    if (name === "impl") continue;
    wrapped[name] = async (...args: unknown[]) =>
      (core()[name] as unknown as (...a: unknown[]) => unknown)(...args);
  }
  return { ...(wrapped as unknown as Omit<CoreAsync, "impl">), impl: core().impl };
}

/**
 * The host's one entry to the core. In `auto` mode a WASM core that fails to load is reported
 * once and the TypeScript twin serves instead; a forced mode fails loudly.
 */
export function createCore(options: CoreOptions = {}): Core {
  const mode = options.mode ?? CORE_MODE_DEFAULT;
  const thresholds = { ...thresholdsDefault, ...options.thresholds };
  let pool: CorePool | undefined;
  const lazyPool = (): CorePool => {
    pool ??= new CorePool(options.pool);
    return pool;
  };
  let wasmOrTs: () => CoreSync = wasmCore;
  if (mode === "auto") {
    try {
      wasmCore();
    } catch (error) {
      process.emitWarning(`metaraft core falls back to TypeScript: ${(error as Error).message}`);
      wasmOrTs = () => tsCore;
    }
  }

  let sync: CoreSync;
  let async: CoreAsync;
  switch (mode) {
    case "ts":
      sync = tsCore;
      async = asAsync(() => tsCore);
      break;
    case "wasm":
      sync = wasmCore();
      async = asAsync(wasmCore);
      break;
    case "pool":
      sync = wasmCore();
      async = lazyPool();
      break;
    case "auto": {
      const inlineSync = autoSync(tsCore, wasmOrTs(), thresholds);
      sync = inlineSync;
      const inline = asAsync(() => inlineSync);
      async = {
        ...bySize<CoreAsync>(
          () => inline,
          lazyPool,
          (path) => thresholds[path].pool,
        ),
        impl: "auto",
      };
      break;
    }
    default:
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `core.mode must be auto, ts, wasm or pool: ${String(mode)}`,
      );
  }
  const wasmImpl = (): CoreImpl => (wasmOrTs().impl === "wasm" ? "wasm" : "ts");
  const implFor = (path: CorePath, size: number, caller: "sync" | "async"): CoreImpl => {
    if (mode === "ts" || mode === "wasm") return mode;
    if (mode === "pool") return caller === "sync" ? "wasm" : "pool";
    if (caller === "async" && size >= thresholds[path].pool) return "pool";
    return size >= thresholds[path].wasm ? wasmImpl() : "ts";
  };
  return {
    mode,
    sync,
    async,
    implFor,
    close: async () => {
      await pool?.close();
    },
  };
}
