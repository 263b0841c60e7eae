/** The transport's public surface: peer links for Raft, and the stream framing they use. */
export { type TransportErrorCode, transportCode, transportError } from "./errors.js";
export {
  encodeFrame,
  encodeFrameBatch,
  type FrameCore,
  FrameDecoder,
  type FrameDecoderOptions,
} from "./framing.js";
export {
  bootstrapFingerprint,
  CLUSTER_ID_BYTES_MAX,
  HANDSHAKE_FRAME_BYTES_MAX,
  PEER_PROTOCOL_VERSION,
  type RefusalReason,
  SECRET_BYTES_MIN,
} from "./handshake.js";
export {
  type MessageHandler,
  PEER_TRANSPORT_DEFAULTS,
  type PeerAddress,
  type PeerStats,
  PeerTransport,
  type PeerTransportOptions,
  reconnectDelayMs,
  type TransportLogger,
  type TransportStats,
} from "./peer-transport.js";
export { SendQueue } from "./send-queue.js";
export { WRITE_BATCH_MESSAGES_MAX, WriteBatcher } from "./write-batcher.js";
