/**
 * The one error registry of metaraft. Every error that leaves a module carries a stable code
 * from this table; callers, workers and remote clients match on `code`, never on messages.
 * docs/errors.md documents each code (a test keeps the two in step).
 */

export interface ErrorSpec {
  readonly message: string;
  /** The HTTP status the API answers with when this error reaches a client. */
  readonly httpStatus: number;
}

export const errorRegistry = {
  MR_ERR_INVALID_ARGUMENT: { message: "invalid argument", httpStatus: 400 },
  MR_ERR_INTERNAL: { message: "internal error", httpStatus: 500 },

  MR_ERR_FRAME_TRUNCATED: { message: "frame truncated", httpStatus: 400 },
  MR_ERR_FRAME_TOO_LARGE: { message: "frame larger than frame.bytes_max", httpStatus: 413 },
  MR_ERR_FRAME_VERSION: { message: "unsupported frame version", httpStatus: 400 },
  MR_ERR_FRAME_CORRUPT: { message: "frame checksum mismatch", httpStatus: 400 },
  MR_ERR_DELTA_MALFORMED: { message: "malformed delta-encoded integers", httpStatus: 400 },
  MR_ERR_DELTA_RANGE: { message: "integer outside [0, 2^53 - 1]", httpStatus: 400 },
  MR_ERR_KEYS_MALFORMED: { message: "malformed front-coded keys", httpStatus: 400 },
  MR_ERR_DECODED_TOO_LARGE: { message: "decoded data larger than its limit", httpStatus: 413 },
  MR_ERR_WRITESET_MALFORMED: { message: "malformed write-set", httpStatus: 400 },
  MR_ERR_INDEX_OBJECTS_MAX: { message: "more than 256 objects in one request", httpStatus: 400 },
  MR_ERR_INDEX_EXHAUSTED: { message: "transaction id space exhausted", httpStatus: 500 },

  MR_ERR_WASM_UNAVAILABLE: { message: "the WebAssembly core could not be loaded", httpStatus: 500 },
  MR_ERR_POOL_CLOSED: { message: "the worker pool is closed", httpStatus: 503 },
  MR_ERR_POOL_QUEUE_FULL: { message: "the worker pool queue is full", httpStatus: 503 },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof errorRegistry;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === "string" && Object.hasOwn(errorRegistry, code);
}

export class MetaraftError extends Error {
  readonly code: ErrorCode;
  /** Byte offset (or item index) in the input where a decoder found the problem. */
  readonly offset: number | undefined;
  readonly httpStatus: number;

  constructor(code: ErrorCode, detail?: string, options?: { offset?: number; cause?: unknown }) {
    const spec = errorRegistry[code];
    const where = options?.offset === undefined ? "" : ` at offset ${options.offset}`;
    super(`${code}: ${spec.message}${where}${detail ? ` (${detail})` : ""}`, { cause: options?.cause });
    this.name = "MetaraftError";
    this.code = code;
    this.offset = options?.offset;
    this.httpStatus = spec.httpStatus;
  }

  /** A plain object that survives structured clone (worker threads) and MessagePack. */
  toJSON(): { code: ErrorCode; message: string; offset?: number } {
    return this.offset === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, offset: this.offset };
  }

  /** Rebuilds an error that crossed a worker or the network, matched by its code. */
  static fromJSON(value: unknown): MetaraftError {
    if (typeof value === "object" && value !== null) {
      const { code, message, offset } = value as Record<string, unknown>;
      if (isErrorCode(code)) {
        const error = new MetaraftError(code, undefined, {
          offset: typeof offset === "number" ? offset : undefined,
        });
        if (typeof message === "string") error.message = message;
        return error;
      }
    }
    return new MetaraftError("MR_ERR_INTERNAL", `unrecognised error: ${String(value)}`);
  }
}

export function hasCode(error: unknown, code: ErrorCode): boolean {
  return error instanceof MetaraftError && error.code === code;
}
