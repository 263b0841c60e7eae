/**
 * Coordination: the keyspace (etcd's put, get, delete, range and txn over the `kv` table), as
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
