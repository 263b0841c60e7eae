import type { ErrorCode } from "../errors.js";

/** The WASM module's negative statuses, in the order of docs/core-formats.md. */
const statusCodes: readonly ErrorCode[] = [
  "MR_ERR_FRAME_TRUNCATED",
  "MR_ERR_FRAME_TOO_LARGE",
  "MR_ERR_FRAME_VERSION",
  "MR_ERR_FRAME_CORRUPT",
  "MR_ERR_DELTA_MALFORMED",
  "MR_ERR_DELTA_RANGE",
  "MR_ERR_KEYS_MALFORMED",
  "MR_ERR_DECODED_TOO_LARGE",
  "MR_ERR_WRITESET_MALFORMED",
  "MR_ERR_INDEX_OBJECTS_MAX",
  "MR_ERR_INDEX_EXHAUSTED",
];

export function codeOfStatus(status: number): ErrorCode {
  return statusCodes[-status - 1] ?? "MR_ERR_INTERNAL";
}
