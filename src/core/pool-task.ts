/** Tasks the pool's workers run: one message in, one transferable buffer (or a number) out. */
export type PoolTask =
  | { readonly op: "crc32c"; readonly data: Uint8Array; readonly seed: number }
  | {
      readonly op: "encodeFrames";
      readonly data: Uint8Array;
      readonly lengths: Uint32Array;
      readonly max: number;
    }
  | { readonly op: "splitFrames"; readonly data: Uint8Array; readonly max: number }
  | { readonly op: "encodeDeltas"; readonly values: Float64Array }
  | { readonly op: "decodeDeltas"; readonly data: Uint8Array }
  | { readonly op: "encodeKeys"; readonly data: Uint8Array; readonly lengths: Uint32Array }
  | { readonly op: "decodeKeys"; readonly data: Uint8Array; readonly max: number }
  | { readonly op: "mergeWriteSets"; readonly data: Uint8Array }
  | { readonly op: "allocateIndexes"; readonly base: number; readonly counts: Float64Array };

export interface PoolFailure {
  readonly error: { code: string; message: string; offset?: number };
}

/** Slices `data` back into the parts whose lengths are given. */
export function unpack(data: Uint8Array, lengths: Uint32Array): Uint8Array[] {
  const parts = new Array<Uint8Array>(lengths.length);
  let p = 0;
  for (let i = 0; i < lengths.length; i++) {
    parts[i] = data.subarray(p, p + lengths[i]!);
    p += lengths[i]!;
  }
  return parts;
}
