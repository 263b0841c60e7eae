import { MetaraftError } from "../errors.js";
import { FRAME_HEADER_BYTES, OBJECTS_PER_TXID_MAX, TXID_MAX } from "./types.js";

/**
 * Argument checks that every implementation shares, done on the host before any bytes move,
 * so that the three implementations fail identically on inputs no byte format can express.
 */

export function checkFrameEvents(events: readonly Uint8Array[], maxFrameBytes: number): number {
  checkLimit("maxFrameBytes", maxFrameBytes);
  let total = 0;
  for (const event of events) {
    if (event.length > maxFrameBytes) {
      throw new MetaraftError("MR_ERR_FRAME_TOO_LARGE", `event of ${event.length} bytes`, { offset: total });
    }
    total += FRAME_HEADER_BYTES + event.length;
  }
  return total;
}

export function checkIndexArgs(baseTxid: number, objectCounts: ArrayLike<number>): number {
  const n = objectCounts.length;
  if (!Number.isInteger(baseTxid) || baseTxid < 1 || (n > 0 && baseTxid + n - 1 > TXID_MAX)) {
    throw new MetaraftError("MR_ERR_INDEX_EXHAUSTED", `base ${baseTxid}, ${n} requests`, { offset: 0 });
  }
  let objects = 0;
  for (let i = 0; i < n; i++) {
    const count = objectCounts[i]!;
    if (!(Number.isInteger(count) && count >= 0 && count <= OBJECTS_PER_TXID_MAX)) {
      throw new MetaraftError("MR_ERR_INDEX_OBJECTS_MAX", `request ${i} asks for ${count}`, { offset: i });
    }
    objects += count;
  }
  return objects;
}

/** Limits cross the WASM boundary as i32 results, so they stay below 2^31. */
export function checkLimit(name: string, value: number): void {
  if (!(Number.isInteger(value) && value >= 0 && value <= 0x7fffffff)) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${name} must be an integer in [0, 2^31): ${value}`);
  }
}
