import { type ErrorCode, MetaraftError } from "../errors.js";

/** The registry codes the transport raises. */
export type TransportErrorCode = Extract<
  ErrorCode,
  | "MR_ERR_HANDSHAKE_REJECTED"
  | "MR_ERR_HANDSHAKE_TIMEOUT"
  | "MR_ERR_PEER_UNKNOWN"
  | "MR_ERR_PEER_PROTOCOL"
  | "MR_ERR_CONNECTION_CLOSED"
  | "MR_ERR_LISTEN_FAILED"
>;

/** Kept for the tests' matching; every transport code is in the registry. */
export function transportCode(code: TransportErrorCode): ErrorCode {
  return code;
}

export function transportError(code: TransportErrorCode, detail: string, cause?: unknown): MetaraftError {
  return new MetaraftError(code, detail, { cause });
}
