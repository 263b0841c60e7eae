/**
 * The client protocol, shared by the server and the client: the ops, their typed replies, and
 * the frames a server pushes (watch streams, progress notifications) besides request/response.
 * The one entry point of `src/protocol/`.
 */

export {
  type CancelWatchReply,
  type ChangeReply,
  isOp,
  type MemberRow,
  type MembersReply,
  OP_KINDS,
  OP_REPLIES_COMPLETE,
  type Op,
  type OpKind,
  type OpReplies,
  PROTOCOL_VERSION,
  type ReadEventsReply,
  type ReplyOf,
  type WatchReply,
} from "./ops.js";
export {
  type CancelWatchRequest,
  type ErrorJson,
  isPushFrame,
  type PushFrame,
  parseCancelWatch,
  parseWatchFrame,
  parseWatchRequest,
  WATCH_PREFIX_BYTES_MAX,
  type WatchCancelledFrame,
  type WatchEventsFrame,
  type WatchFrame,
  type WatchProgressFrame,
  type WatchRequest,
} from "./watch.js";
