/**
 * The core's one interface. Each hot path has three implementations behind it (pure
 * TypeScript, WASM inline, WASM in the worker pool) that produce identical bytes and identical
 * errors; docs/core-formats.md is the contract.
 */

export const FRAME_HEADER_BYTES = 9;
export const FRAME_VERSION = 1;
/** Default `frame.bytes_max`: the largest payload a frame may carry. */
export const FRAME_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;
/** Default bound on what decodeKeys may inflate to (front coding compresses shared prefixes). */
export const KEYS_DECODED_BYTES_MAX_DEFAULT = 64 * 1024 * 1024;
export const DELTA_VALUE_MAX = Number.MAX_SAFE_INTEGER;
/** Object ids are `txid * 256 + k`, so a request may create at most 256 objects. */
export const OBJECTS_PER_TXID_MAX = 256;
/** The largest txid whose object ids all stay below 2^53. */
export const TXID_MAX = 2 ** 45 - 1;

export const WRITE_PUT = 1;
export const WRITE_DELETE = 2;
export const WRITE_RECORD_HEADER_BYTES = 8;
export const WRITE_KEY_BYTES_MAX = 0xffff;

export type CoreImpl = "ts" | "wasm" | "pool";
export type CoreMode = CoreImpl | "auto";
/** `core.mode` when none is given (the settings table takes it from here: core imports nothing above it). */
export const CORE_MODE_DEFAULT: CoreMode = "auto";

/** Where each frame's payload lies in the buffer that was split; payloads are views, never copies. */
export interface FrameSplit {
  readonly count: number;
  readonly starts: Uint32Array;
  readonly lengths: Uint32Array;
}

export interface IndexAllocation {
  /** `txids[i]` belongs to request i. */
  readonly txids: Float64Array;
  /** Request i's object ids follow request i-1's: `objectCounts[i]` of them. */
  readonly objectIds: Float64Array;
}

/** One write as the executor produces it; `value: null` deletes. */
export interface WriteOp {
  readonly table: number;
  readonly key: Uint8Array;
  readonly value: Uint8Array | null;
}

export interface CoreSync {
  readonly impl: "ts" | "wasm" | "auto";
  /** CRC32C (Castagnoli) continuing from `seed` (0 starts afresh). */
  crc32c(data: Uint8Array, seed?: number): number;
  encodeFrames(events: readonly Uint8Array[], maxFrameBytes?: number): Uint8Array;
  splitFrames(buf: Uint8Array, maxFrameBytes?: number): FrameSplit;
  encodeDeltas(values: ArrayLike<number>): Uint8Array;
  decodeDeltas(buf: Uint8Array): Float64Array;
  encodeKeys(keys: readonly Uint8Array[]): Uint8Array;
  decodeKeys(buf: Uint8Array, decodedBytesMax?: number): Uint8Array[];
  /** Merges encoded write-sets given in execution order; the last write to a key wins. */
  mergeWriteSets(writeSets: readonly Uint8Array[]): Uint8Array;
  allocateIndexes(baseTxid: number, objectCounts: ArrayLike<number>): IndexAllocation;
}

type Async<T> = {
  readonly [K in keyof T]: T[K] extends (...args: infer A) => infer R ? (...args: A) => Promise<R> : T[K];
};

export type CoreAsync = Omit<Async<CoreSync>, "impl"> & { readonly impl: CoreImpl | "auto" };

/** The payloads of a split buffer as views into it. */
export function framePayloads(buf: Uint8Array, split: FrameSplit): Uint8Array[] {
  const payloads = new Array<Uint8Array>(split.count);
  for (let i = 0; i < split.count; i++) {
    const start = split.starts[i]!;
    payloads[i] = buf.subarray(start, start + split.lengths[i]!);
  }
  return payloads;
}
