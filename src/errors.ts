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
  MR_ERR_USAGE: { message: "the command line is wrong; nothing was sent", httpStatus: 400 },

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

  MR_ERR_NOT_LEADER: { message: "this node is not the leader", httpStatus: 503 },
  MR_ERR_PROPOSAL_DROPPED: { message: "the proposal was dropped; retry", httpStatus: 503 },
  MR_ERR_CONF_CHANGE_REJECTED: { message: "the membership change was refused", httpStatus: 409 },
  MR_ERR_NOT_READY: { message: "the new leader is not ready to serve writes yet; retry", httpStatus: 503 },
  MR_ERR_UNKNOWN_OP: { message: "unknown operation", httpStatus: 400 },
  MR_ERR_REQUEST_TOO_LARGE: { message: "the request is larger than its limit", httpStatus: 413 },
  MR_ERR_INVALID_NAME: { message: "the name breaks the naming rules", httpStatus: 400 },
  MR_ERR_VOLUME_EXISTS: { message: "the volume already exists", httpStatus: 409 },
  MR_ERR_VOLUME_NOT_FOUND: { message: "no such volume", httpStatus: 404 },
  MR_ERR_VOLUME_NOT_EMPTY: { message: "the volume still has buckets", httpStatus: 409 },
  MR_ERR_BUCKET_EXISTS: { message: "the bucket already exists", httpStatus: 409 },
  MR_ERR_BUCKET_NOT_FOUND: { message: "no such bucket", httpStatus: 404 },
  MR_ERR_BUCKET_NOT_EMPTY: { message: "the bucket still has keys", httpStatus: 409 },
  MR_ERR_KEY_NOT_FOUND: { message: "no such key", httpStatus: 404 },
  MR_ERR_KEY_EXISTS: { message: "the key already exists", httpStatus: 409 },
  MR_ERR_OPEN_KEY_NOT_FOUND: {
    message: "no such open key (never opened, already committed, or expired)",
    httpStatus: 404,
  },
  MR_ERR_LOG_COMPACTED: { message: "the log entry was compacted into a snapshot", httpStatus: 500 },
  MR_ERR_LOG_UNAVAILABLE: { message: "the log entry is not yet in the log", httpStatus: 500 },
  MR_ERR_LOG_CORRUPT: { message: "a stored log record is corrupt", httpStatus: 500 },
  MR_ERR_SNAPSHOT_UNAVAILABLE: { message: "no snapshot is available yet", httpStatus: 503 },
  MR_ERR_SNAPSHOT_OUT_OF_DATE: { message: "the snapshot is older than the one stored", httpStatus: 500 },
  MR_ERR_CLUSTER_MISMATCH: {
    message: "the node's data belongs to another cluster, or contradicts its flags",
    httpStatus: 409,
  },

  MR_ERR_HANDSHAKE_REJECTED: { message: "the connection handshake was refused", httpStatus: 401 },
  MR_ERR_HANDSHAKE_TIMEOUT: { message: "the connection handshake did not finish in time", httpStatus: 504 },
  MR_ERR_PEER_UNKNOWN: { message: "the peer is not a member of this cluster", httpStatus: 403 },
  MR_ERR_PEER_PROTOCOL: { message: "the peer broke the protocol", httpStatus: 400 },
  MR_ERR_CONNECTION_CLOSED: { message: "the connection closed", httpStatus: 503 },
  MR_ERR_LISTEN_FAILED: { message: "could not listen on the address", httpStatus: 500 },
  MR_ERR_TIMEOUT: { message: "the call timed out", httpStatus: 504 },
  MR_ERR_WRONG_PORT: { message: "the endpoint is not a client port", httpStatus: 400 },
  MR_ERR_UNAVAILABLE: { message: "no node could be reached", httpStatus: 503 },

  MR_ERR_COMPACTED: {
    message: "the events asked for were pruned from the ledger; details.firstTxid is the first it holds",
    httpStatus: 410,
  },
  MR_ERR_LISTENER_EXISTS: { message: "a listener of that name exists", httpStatus: 409 },
  MR_ERR_LISTENER_NOT_FOUND: { message: "no listener of that name", httpStatus: 404 },
  MR_ERR_SERVICE_NOT_FOUND: {
    message: "no service of that name (or it has no configuration)",
    httpStatus: 404,
  },
  MR_ERR_LISTENER_DELIVERY_FAILED: {
    message: "a listener could not deliver events; it retries",
    httpStatus: 502,
  },
  MR_ERR_PLUGIN_INVALID: {
    message: "the listener plugin does not meet the plugin contract",
    httpStatus: 400,
  },
  MR_ERR_PLUGIN_LOAD_FAILED: { message: "the listener plugin module could not be loaded", httpStatus: 500 },
  MR_ERR_WATCH_LIMIT: { message: "too many watches on this node or connection", httpStatus: 429 },

  MR_ERR_QUEUE_FULL: {
    message: "the queue holds its maxOutstandingBytes of events not yet processed; retry later",
    httpStatus: 429,
  },
  MR_ERR_QUEUE_NOT_FOUND: { message: "no queue of that name", httpStatus: 404 },
  MR_ERR_QUEUE_HANDLER_TIMEOUT: {
    message: "a queue consumer's handler did not finish within its handlerTimeoutMs",
    httpStatus: 504,
  },
  MR_ERR_QUEUE_CONSUMER_EXISTS: {
    message: "a consumer of that queue is registered already",
    httpStatus: 409,
  },
  MR_ERR_QUEUE_CONSUMER_INVALID: {
    message: "the queue consumer module does not export a handler factory",
    httpStatus: 400,
  },
  MR_ERR_QUEUE_CONSUMER_LOAD_FAILED: {
    message: "the queue consumer module could not be loaded",
    httpStatus: 500,
  },

  MR_ERR_KV_KEY_TOO_LARGE: { message: "the coordination key is longer than kv.keyBytesMax", httpStatus: 413 },
  MR_ERR_KV_VALUE_TOO_LARGE: {
    message: "the coordination value is larger than kv.valueBytesMax",
    httpStatus: 413,
  },
  MR_ERR_KV_KEY_GROUP_FULL: {
    message: "too many keys over 1900 bytes share their first 1900 bytes (kv.longKeyGroupMax)",
    httpStatus: 409,
  },
  MR_ERR_KV_TXN_TOO_LARGE: {
    message: "the txn has more compares and ops than kv.txnOpsMax",
    httpStatus: 413,
  },
  MR_ERR_SESSION_EXPIRED: {
    message: "the session has expired or was closed: open a new one",
    httpStatus: 404,
  },
  MR_ERR_SESSION_LIMIT: {
    message: "a session limit was reached (session.sessionsMax or session.ephemeralKeysMax)",
    httpStatus: 429,
  },

  MR_ERR_LOCK_NOT_HELD: {
    message: "this contender does not hold the lock (or lead the election): its key is gone",
    httpStatus: 409,
  },
  MR_ERR_LOCK_CONTENDED: { message: "the lock has more contenders than its limit", httpStatus: 503 },
  MR_ERR_CANCELLED: { message: "the caller cancelled the wait", httpStatus: 499 },

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
  /** Machine-readable context, e.g. `{ leader }` on NOT_LEADER. */
  readonly details: Readonly<Record<string, unknown>> | undefined;
  readonly httpStatus: number;

  constructor(
    code: ErrorCode,
    detail?: string,
    options?: { offset?: number | undefined; cause?: unknown; details?: Readonly<Record<string, unknown>> },
  ) {
    const spec = errorRegistry[code];
    const where = options?.offset === undefined ? "" : ` at offset ${options.offset}`;
    super(`${code}: ${spec.message}${where}${detail ? ` (${detail})` : ""}`, { cause: options?.cause });
    this.name = "MetaraftError";
    this.code = code;
    this.offset = options?.offset;
    this.details = options?.details;
    this.httpStatus = spec.httpStatus;
  }

  /** A plain object that survives structured clone (worker threads) and MessagePack. */
  toJSON(): {
    code: ErrorCode;
    message: string;
    offset?: number;
    details?: Readonly<Record<string, unknown>>;
  } {
    return {
      code: this.code,
      message: this.message,
      ...(this.offset === undefined ? {} : { offset: this.offset }),
      ...(this.details === undefined ? {} : { details: this.details }),
    };
  }

  /** Rebuilds an error that crossed a worker or the network, matched by its code. */
  static fromJSON(value: unknown): MetaraftError {
    if (typeof value === "object" && value !== null) {
      const { code, message, offset, details } = value as Record<string, unknown>;
      if (isErrorCode(code)) {
        const error = new MetaraftError(code, undefined, {
          offset: typeof offset === "number" ? offset : undefined,
          details:
            typeof details === "object" && details !== null
              ? (details as Record<string, unknown>)
              : undefined,
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
