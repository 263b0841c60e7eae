import { MetaraftError } from "../../errors.js";
import { FRAME_HEADER_BYTES, FRAME_VERSION, type FrameSplit } from "../types.js";
import { checkFrameEvents } from "../validate.js";
import { crc32c } from "./crc32c.js";

export function encodeFrames(events: readonly Uint8Array[], maxFrameBytes: number): Uint8Array {
  const out = new Uint8Array(checkFrameEvents(events, maxFrameBytes));
  const view = new DataView(out.buffer);
  let p = 0;
  for (const event of events) {
    view.setUint32(p, event.length, true);
    out[p + 4] = FRAME_VERSION;
    view.setUint32(p + 5, crc32c(event), true);
    out.set(event, p + FRAME_HEADER_BYTES);
    p += FRAME_HEADER_BYTES + event.length;
  }
  return out;
}

/** Grown on demand and reused: splitting does not know the frame count up front. */
let scratch = new Uint32Array(1024);

export function splitFrames(buf: Uint8Array, maxFrameBytes: number): FrameSplit {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const end = buf.length;
  let count = 0;
  let p = 0;
  while (p < end) {
    if (end - p < FRAME_HEADER_BYTES)
      throw new MetaraftError("MR_ERR_FRAME_TRUNCATED", undefined, { offset: p });
    const length = view.getUint32(p, true);
    if (length > maxFrameBytes) {
      throw new MetaraftError("MR_ERR_FRAME_TOO_LARGE", `${length} bytes`, { offset: p });
    }
    const start = p + FRAME_HEADER_BYTES;
    if (end - start < length) throw new MetaraftError("MR_ERR_FRAME_TRUNCATED", undefined, { offset: p });
    const version = buf[p + 4]!;
    if (version !== FRAME_VERSION) {
      throw new MetaraftError("MR_ERR_FRAME_VERSION", `version ${version}`, { offset: p });
    }
    if (crc32c(buf, 0, start, start + length) !== view.getUint32(p + 5, true)) {
      throw new MetaraftError("MR_ERR_FRAME_CORRUPT", undefined, { offset: p });
    }
    if (2 * count + 2 > scratch.length) {
      const grown = new Uint32Array(scratch.length * 2);
      grown.set(scratch);
      scratch = grown;
    }
    scratch[2 * count] = start;
    scratch[2 * count + 1] = length;
    count++;
    p = start + length;
  }
  return unpackSplit(scratch, count);
}

/** Splits interleaved `start, length` pairs (the WASM and pool layout) into two arrays. */
export function unpackSplit(pairs: Uint32Array, count: number): FrameSplit {
  const starts = new Uint32Array(count);
  const lengths = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    starts[i] = pairs[2 * i]!;
    lengths[i] = pairs[2 * i + 1]!;
  }
  return { count, starts, lengths };
}
