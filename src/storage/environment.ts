import { type Database, open, type RootDatabase } from "lmdb";
import { MetaraftError } from "../errors.js";

/**
 * One LMDB environment per node, holding every named database the node uses. All of them are
 * opened here, at once, with binary keys and binary values: each owner encodes its own keys
 * (u64 big-endian for anything ordered by number, so LMDB's byte order is numeric order; lmdb's
 * `uint32` keys wrap silently) and frames its own values.
 */

/** The Raft log (key: u64 BE index) and the Raft state (hard state, snapshot, log start; fixed keys). */
export const RAFT_DB_NAMES = ["raftLog", "raftState"] as const;

/** The state machine's tables (DESIGN.md, Storage); opened now so later issues only fill them. */
export const TABLE_NAMES = [
  "volumes",
  "buckets",
  "keys",
  "openKeys",
  "kv",
  "sessions",
  "serviceConfig",
  "checkpoints",
  "queues",
  "replies",
  "events",
  "meta",
  "members",
] as const;

export const DB_NAMES = [...RAFT_DB_NAMES, ...TABLE_NAMES] as const;

export type TableName = (typeof TABLE_NAMES)[number];
export type DbName = (typeof DB_NAMES)[number];

/**
 * lmdb's default of 12 named databases is already too few for the list above; 32 leaves room for
 * the ones later issues add (indexes, queues' segments) without reopening existing environments.
 */
export const ENV_DBS_MAX_DEFAULT = 32;

/** A named database with binary keys (Buffer or Uint8Array) and binary values (read back as Buffer). */
export type BinaryDb = Database<Buffer, Uint8Array>;

export interface EnvironmentOptions {
  /**
   * Benchmarks and tests that do not test durability only: commits are not fsynced, so a crash
   * of the machine (not just of the process) may lose acknowledged writes.
   */
  readonly noSync?: boolean;
  /**
   * Commits resolve before their fsync, which overlaps the next transaction. LMDB stays intact
   * after a crash, but the last commits may be missing: only for data that can be rebuilt, like
   * the state machine's tables, which a restart re-applies from the Raft log.
   */
  readonly overlappingSync?: boolean;
  /**
   * Opens an environment another process or thread writes, for reading only (a listener's
   * worker, the separate runner): nothing is created, and a write fails.
   */
  readonly readOnly?: boolean;
  /** `maxDbs`: at least `DB_NAMES.length`; defaults to `ENV_DBS_MAX_DEFAULT`. */
  readonly dbsMax?: number;
}

export interface StorageEnvironment {
  readonly path: string;
  readonly noSync: boolean;
  readonly dbs: Readonly<Record<DbName, BinaryDb>>;
  /** The root handle, for tools (stats, backups). Write through `transaction`, never around it. */
  readonly root: RootDatabase;
  /**
   * Runs `writes` (synchronous puts and removes on `dbs`) in one write transaction, after every
   * transaction queued before it. Resolves with its result once the transaction is committed and
   * synced to disk (unless `noSync`). If `writes` throws, nothing it wrote is committed and the
   * promise rejects with that error.
   */
  transaction<T>(writes: () => T): Promise<T>;
  /** Resolves once every transaction committed so far is synced to disk (see `overlappingSync`). */
  flushed(): Promise<void>;
  /** Waits for queued transactions, then closes the environment. Idempotent. */
  close(): Promise<void>;
}

export function openEnvironment(path: string, options: EnvironmentOptions = {}): StorageEnvironment {
  const dbsMax = options.dbsMax ?? ENV_DBS_MAX_DEFAULT;
  if (!Number.isInteger(dbsMax) || dbsMax < DB_NAMES.length) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `dbsMax ${dbsMax} < ${DB_NAMES.length} named databases`,
    );
  }
  const noSync = options.noSync ?? false;
  let root: RootDatabase;
  try {
    root = open({
      path,
      maxDbs: dbsMax,
      noSync,
      ...(options.readOnly ? { readOnly: true } : {}),
      // With overlappingSync (lmdb's default on Linux) a commit's promise resolves before the
      // fsync; Raft must not send a message that depends on a write until the write is durable,
      // so it is off unless asked for.
      // (noSync skips the fsync altogether, and lmdb refuses the two together.)
      overlappingSync: !noSync && (options.overlappingSync ?? false),
      encoding: "binary",
      keyEncoding: "binary",
    });
  } catch (error) {
    throw new MetaraftError("MR_ERR_INTERNAL", `cannot open the LMDB environment at ${path}`, {
      cause: error,
    });
  }
  const dbs = {} as Record<DbName, BinaryDb>;
  for (const name of DB_NAMES) {
    dbs[name] = root.openDB<Buffer, Uint8Array>({ name, encoding: "binary", keyEncoding: "binary" });
  }
  let closing: Promise<void> | undefined;
  return {
    path,
    noSync,
    dbs,
    root,
    // A child transaction so that a callback that throws half-way commits none of its writes
    // (lmdb's plain `transaction` would commit whatever ran before the throw).
    transaction: (writes) => root.childTransaction(writes),
    flushed: async () => {
      await root.flushed;
    },
    close: () => {
      closing ??= root.close();
      return closing;
    },
  };
}
