/**
 * The storage package's one entry point: the node's LMDB environment, the Raft log in it, and
 * the disk of the state machine's tables (LMDB, or its in-memory twin for the simulator).
 * Record layouts are internal (raft-records.ts documents them).
 */
import type { EnvironmentOptions } from "./environment.js";
import { LmdbRaftLog, type LmdbRaftLogOptions } from "./raft-log.js";

export {
  type BinaryDb,
  DB_NAMES,
  type DbName,
  ENV_DBS_MAX_DEFAULT,
  type EnvironmentOptions,
  openEnvironment,
  RAFT_DB_NAMES,
  type StorageEnvironment,
  TABLE_NAMES,
  type TableName,
} from "./environment.js";
export type { ClusterIdentity } from "./identity.js";
export { MemoryStateDisk, type MemoryStateDiskOptions } from "./memory-state-disk.js";
export {
  ENTRY_DATA_BYTES_MAX_DEFAULT,
  LmdbRaftLog,
  type LmdbRaftLogOptions,
  SNAPSHOT_DATA_BYTES_MAX_DEFAULT,
  TERM_CACHE_ENTRIES_DEFAULT,
} from "./raft-log.js";
export {
  LmdbStateDisk,
  STATE_KEY_BYTES_MAX,
  type StateDisk,
  type StateDiskBatch,
  type StateDiskRow,
  type StateDiskView,
  type StateDiskWrite,
} from "./state-disk.js";

/**
 * Opens (creating if need be) the environment at `path` and the Raft log in it, recovering
 * whatever was stored there. The log's `close()` closes the environment too.
 */
export async function openRaftLog(
  path: string,
  options: LmdbRaftLogOptions & EnvironmentOptions = {},
): Promise<LmdbRaftLog> {
  return LmdbRaftLog.open(path, options);
}
