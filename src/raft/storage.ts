import type { ConfState, Entry, HardState, Snapshot } from "./types.js";

/**
 * The log as the Raft core reads it: a small, synchronous, read-only interface (as in etcd's
 * raft). Entries the core has produced but the host has not persisted yet live in the core's
 * unstable log, never here.
 *
 * Errors: an index below the first retained entry throws `MR_ERR_LOG_COMPACTED`; one above
 * the last throws `MR_ERR_LOG_UNAVAILABLE`. `MemoryStorage` is the reference implementation;
 * every other must pass the same suite (test/storage/raft-log.test.ts).
 */
export interface RaftStorage {
  initialState(): { readonly hardState: HardState; readonly confState: ConfState };
  /** Entries in [lo, hi), stopping once `maxBytes` of data is exceeded, but at least one. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /** The term of entry `index`, for `index` in [firstIndex() - 1, lastIndex()]. */
  term(index: number): number;
  /** The first index still in the log (the snapshot index + 1). */
  firstIndex(): number;
  lastIndex(): number;
  /** The latest snapshot; `MR_ERR_SNAPSHOT_UNAVAILABLE` while one is being made. */
  snapshot(): Snapshot;
}

/** One Ready's durable part, written in one transaction. */
export interface RaftUpdate {
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
}

/** The host's side: writes, snapshots and compaction. */
export interface RaftLogStore extends RaftStorage {
  /**
   * Stores the update durably: the snapshot replaces the log up to its index, entries replace
   * any conflicting tail, then the hard state. Resolves once it is synced to disk.
   */
  save(update: RaftUpdate): Promise<void> | void;
  /** Records a snapshot of the applied state at `index` (≤ the applied index). */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot;
  /** Drops the entries before `index`; `index` must not pass the latest snapshot. */
  compact(index: number): void;
  close(): Promise<void> | void;
}
