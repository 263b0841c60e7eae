/**
 * Coordination: the keyspace (etcd's put, get, delete, range and txn over the `kv` table) and sessions with their ephemeral entries, as
 * `RequestSpec`s for the executor, and the records it stores.
 */

export {
  decodeKvRecord,
  encodeKvRecord,
  KV_COMPARE_OPS,
  KV_COMPARE_TARGETS,
  KV_LIMITS_DEFAULT,
  KV_RANGE_LIMIT_DEFAULT,
  KV_RANGE_LIMIT_MAX,
  KV_RANGE_REPLY_BYTES_MAX,
  KvChanges,
  type KvCompare,
  type KvCompareOp,
  type KvCompareTarget,
  type KvDeleteRequest,
  type KvEntry,
  type KvGetRequest,
  type KvLimits,
  type KvPutRequest,
  type KvRangeRequest,
  type KvRecord,
  type KvTxnOp,
  type KvTxnRequest,
  type KvTxnResponse,
  type KvValue,
  kvCompareHolds,
  kvSpecs,
  kvValueBytes,
  readKv,
  runKvOps,
} from "./kv.js";
export { KV_SHORT_KEY_BYTES } from "./kv-keys.js";
export {
  readSession,
  SESSION_TOMBSTONES_KEPT,
  SESSION_TTL_MIN_MS,
  type SessionEnd,
  type SessionId,
  type SessionRecord,
  type SessionTombstone,
} from "./session-records.js";
export {
  type KeepAliveResult,
  type SessionLiveness,
  SessionTracker,
  type SessionTrackerOptions,
} from "./session-tracker.js";
export {
  allSessions,
  type EndedSessionInfo,
  readTombstone,
  SESSION_BATCH_MAX,
  SESSION_EXPIRE_KEYS_MAX,
  SESSION_INTERNAL_OPS,
  SESSION_LIMITS_DEFAULT,
  type SessionInfo,
  type SessionLimits,
  sessionSpecs,
} from "./sessions.js";
