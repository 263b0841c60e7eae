import { type CoreSync, FRAME_BYTES_MAX_DEFAULT, KEYS_DECODED_BYTES_MAX_DEFAULT } from "../types.js";
import { checkLimit } from "../validate.js";
import { crc32c } from "./crc32c.js";
import { decodeDeltas, encodeDeltas } from "./deltas.js";
import { encodeFrames, splitFrames } from "./frames.js";
import { allocateIndexes } from "./indexes.js";
import { decodeKeys, encodeKeys } from "./keys.js";
import { mergeWriteSets } from "./writeset.js";

/** The pure-TypeScript implementation: the reference the WASM module must match byte for byte. */
export const tsCore: CoreSync = {
  impl: "ts",
  crc32c: (data, seed = 0) => crc32c(data, seed),
  encodeFrames: (events, maxFrameBytes = FRAME_BYTES_MAX_DEFAULT) => encodeFrames(events, maxFrameBytes),
  splitFrames: (buf, maxFrameBytes = FRAME_BYTES_MAX_DEFAULT) => {
    checkLimit("maxFrameBytes", maxFrameBytes);
    return splitFrames(buf, maxFrameBytes);
  },
  encodeDeltas,
  decodeDeltas,
  encodeKeys,
  decodeKeys: (buf, decodedBytesMax = KEYS_DECODED_BYTES_MAX_DEFAULT) => {
    checkLimit("decodedBytesMax", decodedBytesMax);
    return decodeKeys(buf, decodedBytesMax);
  },
  mergeWriteSets,
  allocateIndexes,
};
