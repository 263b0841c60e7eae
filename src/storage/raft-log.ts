import { FRAME_BYTES_MAX_DEFAULT } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { EMPTY_CONF_STATE } from "../raft/memory-storage.js";
import type { RaftLogStore, RaftUpdate } from "../raft/storage.js";
import {
  type ConfState,
  EMPTY_HARD_STATE,
  type Entry,
  type HardState,
  type Snapshot,
} from "../raft/types.js";
import {
  type BinaryDb,
  type EnvironmentOptions,
  openEnvironment,
  type StorageEnvironment,
} from "./environment.js";
import { type ClusterIdentity, decodeIdentity, encodeIdentity } from "./identity.js";
import {
  corrupt,
  decodeEntry,
  decodeHardState,
  decodeLogStart,
  decodeSnapshotData,
  decodeSnapshotMeta,
  ENTRY_HEADER_BYTES,
  encodeEntry,
  encodeHardState,
  encodeLogStart,
  encodeSnapshot,
  indexKey,
  keyIndex,
  logWhere,
  RAFT_STATE_KEYS,
  stateWhere,
} from "./raft-records.js";

/**
 * The newest entries kept decoded in memory, by their data bytes: a follower applies, and a
 * leader sends, what was just written, and reading it back from LMDB cost a decode and a CRC.
 */
export const RECENT_ENTRIES_BYTES_MAX_DEFAULT = 8 * 1024 * 1024;
/** Terms of recent entries kept in memory: the core asks for the same few terms again and again. */
export const TERM_CACHE_ENTRIES_DEFAULT = 4096;
/** An entry's data: one Raft entry is one frame (`frame.bytes_max`), less the entry header. */
export const ENTRY_DATA_BYTES_MAX_DEFAULT = FRAME_BYTES_MAX_DEFAULT - ENTRY_HEADER_BYTES;
/** A snapshot's data, held in one record for now (a later issue streams state snapshots). */
export const SNAPSHOT_DATA_BYTES_MAX_DEFAULT = 1024 * 1024 * 1024;

export interface LmdbRaftLogOptions {
  /** The membership of a log that has no snapshot record yet (MemoryStorage's constructor argument). */
  readonly confState?: ConfState;
  readonly termCacheEntries?: number;
  readonly recentEntriesBytesMax?: number;
  readonly entryDataBytesMax?: number;
  readonly snapshotDataBytesMax?: number;
}

/** One put (`value`) or delete (`value: null`) of a transaction, prepared before it runs. */
interface Write {
  readonly db: BinaryDb;
  readonly key: Buffer;
  readonly value: Buffer | null;
}

/** An entry written by a transaction that is not committed yet, and which transaction wrote it. */
interface PendingEntry {
  readonly entry: Entry;
  readonly txn: number;
}

/**
 * The Raft log in LMDB (`raftLog`, `raftState`; layout in raft-records.ts). It behaves exactly as
 * `MemoryStorage`: every call takes effect at once for the calls that follow it, and `save`
 * returns a promise that resolves once the update is durable. Writes go out as one LMDB
 * transaction per call, committed in call order, so a crash leaves the state after some prefix
 * of the calls. `createSnapshot` and `compact` are synchronous in the interface: their
 * transactions are queued like the others, durable at the latest when the next `save` resolves.
 *
 * Reads are synchronous LMDB reads. Entries written by a transaction that has not committed yet
 * are served from `#pending`, so a read between a `save` and its commit sees the save.
 *
 * Invariants (after every queued transaction has committed): `raftLog` holds exactly the keys
 * `#start.index + 1 ..= #last`; `#start.index <= #snapshot.meta.index`; `hardState.commit <= #last`.
 */
export class LmdbRaftLog implements RaftLogStore {
  readonly #env: StorageEnvironment;
  #ownsEnv = false;
  readonly #log: BinaryDb;
  readonly #state: BinaryDb;
  readonly #termCache: TermCache;
  readonly #entryDataBytesMax: number;
  readonly #snapshotDataBytesMax: number;

  /** The entry just before the first one kept (etcd's dummy entry). */
  #start: { readonly index: number; readonly term: number };
  #last: number;
  #hardState: HardState;
  #snapshot: Snapshot;
  /** False until the first transaction writes the snapshot and log start records of a new log. */
  #recorded: boolean;
  readonly #pending = new Map<number, PendingEntry>();
  /**
   * The newest entries, decoded: always a contiguous run ending at `#last` (appends extend it,
   * a rewrite cuts it where the rewrite starts, eviction takes the oldest), so holding the first
   * index of a range means holding the whole range.
   */
  readonly #recent = new Map<number, Entry>();
  #recentFirst = 0;
  #recentBytes = 0;
  readonly #recentBytesMax: number;
  #txnSeq = 0;
  /** Settles once every transaction queued so far has settled. */
  #queue: Promise<void> = Promise.resolve();
  #failure: Error | undefined;
  #closed = false;

  /** Opens a log in an environment the caller owns (and closes after the log). */
  constructor(env: StorageEnvironment, options: LmdbRaftLogOptions = {}) {
    this.#env = env;
    this.#log = env.dbs.raftLog;
    this.#state = env.dbs.raftState;
    this.#termCache = new TermCache(
      positive("termCacheEntries", options.termCacheEntries, TERM_CACHE_ENTRIES_DEFAULT),
    );
    this.#recentBytesMax = positive(
      "recentEntriesBytesMax",
      options.recentEntriesBytesMax,
      RECENT_ENTRIES_BYTES_MAX_DEFAULT,
    );
    this.#entryDataBytesMax = positive(
      "entryDataBytesMax",
      options.entryDataBytesMax,
      ENTRY_DATA_BYTES_MAX_DEFAULT,
    );
    this.#snapshotDataBytesMax = positive(
      "snapshotDataBytesMax",
      options.snapshotDataBytesMax,
      SNAPSHOT_DATA_BYTES_MAX_DEFAULT,
    );

    const recovered = this.#recover(options.confState ?? EMPTY_CONF_STATE);
    this.#start = recovered.start;
    this.#last = recovered.last;
    this.#hardState = recovered.hardState;
    this.#snapshot = recovered.snapshot;
    this.#recorded = recovered.recorded;
  }

  /** Opens the environment at `path` and a log in it; `close()` closes both. */
  static open(path: string, options: LmdbRaftLogOptions & EnvironmentOptions = {}): LmdbRaftLog {
    const env = openEnvironment(path, options);
    try {
      const log = new LmdbRaftLog(env, options);
      log.#ownsEnv = true;
      return log;
    } catch (error) {
      void env.close();
      throw error;
    }
  }

  // ---- RaftStorage: reads

  initialState(): { hardState: HardState; confState: ConfState } {
    this.#usable();
    return { hardState: this.#hardState, confState: this.#snapshot.meta.confState };
  }

  firstIndex(): number {
    this.#usable();
    return this.#start.index + 1;
  }

  lastIndex(): number {
    this.#usable();
    return this.#last;
  }

  term(index: number): number {
    this.#usable();
    if (index < this.#start.index) throw new MetaraftError("MR_ERR_LOG_COMPACTED", `term of ${index}`);
    if (index > this.#last) throw new MetaraftError("MR_ERR_LOG_UNAVAILABLE", `term of ${index}`);
    if (index === this.#start.index) return this.#start.term;
    return this.#termAt(index);
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    this.#usable();
    if (lo <= this.#start.index) throw new MetaraftError("MR_ERR_LOG_COMPACTED", `entries from ${lo}`);
    if (hi > this.#last + 1) throw new MetaraftError("MR_ERR_LOG_UNAVAILABLE", `entries to ${hi}`);
    const out: Entry[] = [];
    let bytes = 0;
    // Same limit as MemoryStorage's limitSize: stop before the entry that passes maxBytes, but
    // always return the first.
    const take = (entry: Entry): boolean => {
      bytes += entry.data.length;
      if (out.length > 0 && bytes > maxBytes) return false;
      out.push(entry);
      return true;
    };
    if (this.#recent.has(lo)) {
      for (let index = lo; index < hi; index++) if (!take(this.#recent.get(index)!)) break;
      return out;
    }
    if (this.#pending.size > 0) {
      // Rare (a read between a save and its commit): entry by entry, so pending ones win.
      for (let index = lo; index < hi; index++) if (!take(this.#entryAt(index))) break;
      return out;
    }
    let expected = lo;
    for (const { key, value } of this.#log.getRange({ start: indexKey(lo), end: indexKey(hi) })) {
      if (keyIndex(key) !== expected) throw corrupt(logWhere(expected), "missing");
      const entry = decodeEntry(value, expected);
      this.#termCache.set(expected, entry.term);
      if (!take(entry)) return out;
      expected++;
    }
    if (expected < hi) throw corrupt(logWhere(expected), "missing");
    return out;
  }

  snapshot(): Snapshot {
    this.#usable();
    return this.#snapshot;
  }

  /** The identity recorded at bootstrap, or undefined for a log that was never bootstrapped. */
  identity(): ClusterIdentity | undefined {
    this.#usable();
    const value = this.#state.get(RAFT_STATE_KEYS.identity);
    return value === undefined ? undefined : decodeIdentity(value);
  }

  /** True for a log nothing was ever written to: no entry, no hard state, no snapshot, no identity. */
  get blank(): boolean {
    this.#usable();
    return !this.#recorded && this.#last === 0 && this.#hardState.term === 0 && this.#state.getCount() === 0;
  }

  /**
   * Records a new cluster, in one durable transaction: its identity, and its initial membership
   * as committed entries 1..n of term 1, one membership change each (as etcd bootstraps), so
   * that a member that joins later and replicates the log from its start learns every voter.
   * Only a blank log can be bootstrapped: bootstrapping is done once.
   */
  bootstrap(identity: ClusterIdentity, entries: readonly Entry[]): Promise<void> {
    if (!this.blank) throw new MetaraftError("MR_ERR_INTERNAL", "bootstrap of a log that is not blank");
    this.#checkEntries(entries);
    if (entries.length > 0 && (entries[0]!.index !== 1 || entries[0]!.term !== 1)) {
      throw new MetaraftError("MR_ERR_INTERNAL", "bootstrap entries start at index 1, term 1");
    }
    const last = entries.length;
    const hardState: HardState = { term: last > 0 ? 1 : 0, vote: 0, commit: last };
    const writes: Write[] = [];
    this.#putSnapshot(writes, this.#snapshot);
    this.#putState(writes, "logStart", encodeLogStart({ index: 0, term: 0 }));
    for (const entry of entries)
      writes.push({ db: this.#log, key: indexKey(entry.index), value: encodeEntry(entry) });
    this.#putState(writes, "hardState", encodeHardState(hardState));
    this.#putState(writes, "identity", encodeIdentity(identity));
    const txn = ++this.#txnSeq;
    this.#last = last;
    for (const entry of entries) {
      this.#pending.set(entry.index, { entry, txn });
      this.#termCache.set(entry.index, entry.term);
    }
    this.#remember(entries);
    this.#hardState = hardState;
    return this.#commit(txn, writes);
  }

  /** Replaces the identity record (a forced new cluster, or data from before identities). */
  recordIdentity(identity: ClusterIdentity): Promise<void> {
    this.#usable();
    const writes: Write[] = [];
    this.#putState(writes, "identity", encodeIdentity(identity));
    return this.#commit(++this.#txnSeq, writes);
  }

  // ---- RaftLogStore: writes

  save(update: RaftUpdate): Promise<void> {
    this.#usable();
    const { snapshot, entries, hardState } = update;
    // Everything is checked before anything changes, so a rejected update leaves no trace.
    let start = this.#start;
    let last = this.#last;
    if (snapshot) {
      if (snapshot.meta.index < this.#snapshot.meta.index) {
        throw new MetaraftError(
          "MR_ERR_SNAPSHOT_OUT_OF_DATE",
          `${snapshot.meta.index} < ${this.#snapshot.meta.index}`,
        );
      }
      this.#checkSnapshot(snapshot);
      start = { index: snapshot.meta.index, term: snapshot.meta.term };
      last = snapshot.meta.index;
    }
    // Entries already compacted are committed, and so equal to what we had: skip them.
    let appended: readonly Entry[] = [];
    if (entries.length > 0) {
      this.#checkEntries(entries);
      const skip = Math.max(0, start.index + 1 - entries[0]!.index);
      if (skip < entries.length) {
        appended = skip === 0 ? entries : entries.slice(skip);
        const from = appended[0]!;
        if (from.index > last + 1) {
          throw new MetaraftError("MR_ERR_INTERNAL", `append at ${from.index} leaves a gap after ${last}`);
        }
        const previousTerm = from.index - 1 === start.index ? start.term : this.#termAt(from.index - 1);
        if (from.term < previousTerm) {
          throw new MetaraftError(
            "MR_ERR_INTERNAL",
            `entry ${from.index} has term ${from.term} < ${previousTerm}, the term of the entry before it`,
          );
        }
      }
    }
    const lastAfter = appended.length > 0 ? appended[appended.length - 1]!.index : last;
    if (hardState) checkHardState(hardState, this.#hardState);
    const commit = (hardState ?? this.#hardState).commit;
    if (commit > lastAfter) {
      throw new MetaraftError("MR_ERR_INTERNAL", `commit ${commit} beyond the last index ${lastAfter}`);
    }
    // Nothing to write: resolve once what was written before is durable.
    if (!snapshot && appended.length === 0 && !hardState) return this.flush();

    const writes: Write[] = [];
    if (snapshot) {
      // The snapshot replaces the whole log, entries after its index included.
      for (let index = this.#start.index + 1; index <= this.#last; index++) this.#delete(writes, index);
      this.#putSnapshot(writes, snapshot);
      this.#putState(writes, "logStart", encodeLogStart(start));
    }
    if (appended.length > 0) {
      for (let index = lastAfter + 1; index <= last; index++) this.#delete(writes, index);
      for (const entry of appended)
        writes.push({ db: this.#log, key: indexKey(entry.index), value: encodeEntry(entry) });
    }
    if (hardState) this.#putState(writes, "hardState", encodeHardState(hardState));

    const txn = ++this.#txnSeq;
    if (snapshot) {
      this.#snapshot = snapshot;
      this.#start = start;
    }
    this.#last = lastAfter;
    this.#dropPendingOutside();
    if (snapshot) this.#clearRecent();
    for (const entry of appended) {
      this.#pending.set(entry.index, { entry, txn });
      this.#termCache.set(entry.index, entry.term);
    }
    this.#remember(appended);
    if (hardState) this.#hardState = { term: hardState.term, vote: hardState.vote, commit: hardState.commit };
    return this.#commit(txn, writes);
  }

  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    this.#usable();
    if (index <= this.#snapshot.meta.index) {
      throw new MetaraftError("MR_ERR_SNAPSHOT_OUT_OF_DATE", `${index} <= ${this.#snapshot.meta.index}`);
    }
    if (index > this.#last) throw new MetaraftError("MR_ERR_LOG_UNAVAILABLE", `snapshot at ${index}`);
    const snapshot: Snapshot = { meta: { index, term: this.term(index), confState }, data };
    this.#checkSnapshot(snapshot);
    const writes: Write[] = [];
    this.#putSnapshot(writes, snapshot);
    this.#snapshot = snapshot;
    this.#background(writes);
    return snapshot;
  }

  compact(index: number): void {
    this.#usable();
    if (index <= this.#start.index) return;
    if (index > this.#snapshot.meta.index + 1) {
      throw new MetaraftError(
        "MR_ERR_INTERNAL",
        `compact to ${index} passes the snapshot at ${this.#snapshot.meta.index}`,
      );
    }
    const start = { index: index - 1, term: this.term(index - 1) };
    const writes: Write[] = [];
    for (let i = this.#start.index + 1; i < index; i++) this.#delete(writes, i);
    this.#putState(writes, "logStart", encodeLogStart(start));
    this.#start = start;
    this.#dropPendingOutside();
    this.#dropRecentThrough(start.index);
    this.#background(writes);
  }

  /** Resolves once every write made so far is durable (or rejects if one failed). */
  flush(): Promise<void> {
    return this.#queue.then(() => {
      if (this.#failure) throw this.#failed();
    });
  }

  /** Waits for queued writes, then closes the environment if this log opened it. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#queue;
    if (this.#ownsEnv) await this.#env.close();
  }

  // ---- internals

  #usable(): void {
    if (this.#failure) throw this.#failed();
    if (this.#closed) throw new MetaraftError("MR_ERR_INTERNAL", "the Raft log is closed");
  }

  #failed(): MetaraftError {
    return new MetaraftError("MR_ERR_INTERNAL", `the Raft log failed to write: ${this.#failure?.message}`, {
      cause: this.#failure,
    });
  }

  #termAt(index: number): number {
    const cached = this.#termCache.get(index);
    if (cached !== undefined) return cached;
    const term = this.#entryAt(index).term;
    this.#termCache.set(index, term);
    return term;
  }

  /** The entry at `index`, known to be in [first, last]. */
  #entryAt(index: number): Entry {
    const pending = this.#pending.get(index);
    if (pending) return pending.entry;
    const recent = this.#recent.get(index);
    if (recent) return recent;
    const value = this.#log.get(indexKey(index));
    if (value === undefined) throw corrupt(logWhere(index), "missing");
    return decodeEntry(value, index);
  }

  #delete(writes: Write[], index: number): void {
    writes.push({ db: this.#log, key: indexKey(index), value: null });
  }

  #putState(writes: Write[], record: keyof typeof RAFT_STATE_KEYS, value: Buffer): void {
    writes.push({ db: this.#state, key: RAFT_STATE_KEYS[record], value });
  }

  #putSnapshot(writes: Write[], snapshot: Snapshot): void {
    const records = encodeSnapshot(snapshot);
    this.#putState(writes, "snapshotMeta", records.meta);
    this.#putState(writes, "snapshotData", records.data);
  }

  /** Pending entries outside [first, last] can never be read again: a rewrite would replace them. */
  #dropPendingOutside(): void {
    for (const index of this.#pending.keys()) {
      if (index <= this.#start.index || index > this.#last) this.#pending.delete(index);
    }
  }

  /** Adds what a save appended to the recent run (cutting it where they start), then evicts. */
  #remember(appended: readonly Entry[]): void {
    const from = appended[0]?.index;
    if (from === undefined) return;
    // A rewrite replaces everything from its first entry on; one that starts before the run, or
    // after a gap, starts a new run.
    if (from < this.#recentFirst || from > this.#recentFirst + this.#recent.size) this.#clearRecent();
    else this.#cutRecentFrom(from);
    if (this.#recent.size === 0) this.#recentFirst = from;
    for (const entry of appended) {
      this.#recent.set(entry.index, entry);
      this.#recentBytes += entry.data.length;
    }
    while (this.#recentBytes > this.#recentBytesMax && this.#recent.size > 0) {
      this.#dropRecentThrough(this.#recentFirst);
    }
  }

  /** Drops the recent entries at `from` and after (the newest end of the run). */
  #cutRecentFrom(from: number): void {
    for (
      let index = this.#recentFirst + this.#recent.size - 1;
      index >= from && this.#recent.size > 0;
      index--
    ) {
      this.#recentBytes -= this.#recent.get(index)!.data.length;
      this.#recent.delete(index);
    }
  }

  /** Drops the recent entries up to `through` (the oldest end of the run). */
  #dropRecentThrough(through: number): void {
    while (this.#recent.size > 0 && this.#recentFirst <= through) {
      this.#recentBytes -= this.#recent.get(this.#recentFirst)!.data.length;
      this.#recent.delete(this.#recentFirst);
      this.#recentFirst++;
    }
  }

  #clearRecent(): void {
    this.#recent.clear();
    this.#recentBytes = 0;
  }

  #background(writes: Write[]): void {
    // A failure is kept in #failure and reported by every later call; nothing awaits this one.
    this.#commit(++this.#txnSeq, writes).catch(() => {});
  }

  /** Queues one transaction; it commits after every earlier one (lmdb runs them in order). */
  #commit(txn: number, writes: Write[]): Promise<void> {
    if (!this.#recorded) {
      // A new log's first transaction records its initial snapshot and log start, so that a
      // restart recovers the membership it was created with.
      this.#recorded = true;
      const initial: Write[] = [];
      if (!writes.some((w) => w.key === RAFT_STATE_KEYS.snapshotMeta))
        this.#putSnapshot(initial, this.#snapshot);
      if (!writes.some((w) => w.key === RAFT_STATE_KEYS.logStart)) {
        this.#putState(initial, "logStart", encodeLogStart(this.#start));
      }
      writes = [...initial, ...writes];
    }
    let committed: Promise<void>;
    try {
      committed = this.#env.transaction(() => {
        for (const { db, key, value } of writes) {
          if (value === null) db.remove(key);
          else db.put(key, value);
        }
      });
    } catch (error) {
      // lmdb throws at once when it cannot even queue (a closed environment): same path.
      committed = Promise.reject(error);
    }
    // The in-memory state already has this write: once one fails, memory and disk disagree, and
    // every later call throws rather than serve what the disk does not have.
    const done = committed.then(
      () => {
        for (const [index, pending] of this.#pending) if (pending.txn <= txn) this.#pending.delete(index);
      },
      (error: unknown) => {
        this.#failure ??= error instanceof Error ? error : new Error(String(error));
        throw this.#failed();
      },
    );
    this.#queue = done.catch(() => {});
    return done;
  }

  #checkEntries(entries: readonly Entry[]): void {
    let previous: Entry | undefined;
    for (const entry of entries) {
      if (!Number.isSafeInteger(entry.index) || entry.index < 1) {
        throw new MetaraftError("MR_ERR_INTERNAL", `entry index ${entry.index} is not an integer >= 1`);
      }
      if (!Number.isSafeInteger(entry.term) || entry.term < 0) {
        throw new MetaraftError(
          "MR_ERR_INTERNAL",
          `entry ${entry.index}: term ${entry.term} is not an integer >= 0`,
        );
      }
      if (entry.type !== "normal" && entry.type !== "confChange") {
        throw new MetaraftError(
          "MR_ERR_INTERNAL",
          `entry ${entry.index}: unknown type ${String(entry.type)}`,
        );
      }
      if (entry.data.length > this.#entryDataBytesMax) {
        throw new MetaraftError(
          "MR_ERR_FRAME_TOO_LARGE",
          `entry ${entry.index}: ${entry.data.length} bytes of data > ${this.#entryDataBytesMax}`,
        );
      }
      if (previous) {
        if (entry.index !== previous.index + 1) {
          throw new MetaraftError("MR_ERR_INTERNAL", `entry ${entry.index} follows entry ${previous.index}`);
        }
        if (entry.term < previous.term) {
          throw new MetaraftError(
            "MR_ERR_INTERNAL",
            `entry ${entry.index} has term ${entry.term} < ${previous.term}, the term of entry ${previous.index}`,
          );
        }
      }
      previous = entry;
    }
  }

  #checkSnapshot(snapshot: Snapshot): void {
    const { index, term, confState } = snapshot.meta;
    if (!Number.isSafeInteger(index) || index < 0 || !Number.isSafeInteger(term) || term < 0) {
      throw new MetaraftError("MR_ERR_INTERNAL", `snapshot at index ${index}, term ${term}`);
    }
    for (const id of [...confState.voters, ...confState.learners]) {
      if (!Number.isSafeInteger(id) || id < 1) {
        throw new MetaraftError("MR_ERR_INTERNAL", `snapshot ${index}: node id ${id} is not an integer >= 1`);
      }
    }
    if (snapshot.data.length > this.#snapshotDataBytesMax) {
      throw new MetaraftError(
        "MR_ERR_FRAME_TOO_LARGE",
        `snapshot ${index}: ${snapshot.data.length} bytes of data > ${this.#snapshotDataBytesMax}`,
      );
    }
  }

  /** Reads the stored state back, checking every record it reads and the log's shape. */
  #recover(confState: ConfState): {
    start: { index: number; term: number };
    last: number;
    hardState: HardState;
    snapshot: Snapshot;
    recorded: boolean;
  } {
    const read = (record: keyof typeof RAFT_STATE_KEYS) => this.#state.get(RAFT_STATE_KEYS[record]);
    const hardStateValue = read("hardState");
    const startValue = read("logStart");
    const metaValue = read("snapshotMeta");
    const dataValue = read("snapshotData");
    const hardState = hardStateValue === undefined ? EMPTY_HARD_STATE : decodeHardState(hardStateValue);

    let start = { index: 0, term: 0 };
    let snapshot: Snapshot = { meta: { index: 0, term: 0, confState }, data: new Uint8Array(0) };
    const recorded = startValue !== undefined || metaValue !== undefined || dataValue !== undefined;
    if (recorded) {
      if (startValue === undefined) throw corrupt(stateWhere("logStart"), "missing");
      if (metaValue === undefined) throw corrupt(stateWhere("snapshotMeta"), "missing");
      if (dataValue === undefined) throw corrupt(stateWhere("snapshotData"), "missing");
      start = decodeLogStart(startValue);
      const stored = decodeSnapshotMeta(metaValue);
      snapshot = { meta: stored.meta, data: decodeSnapshotData(dataValue, stored) };
      if (start.index > snapshot.meta.index) {
        throw corrupt(
          stateWhere("logStart"),
          `index ${start.index} passes the snapshot at ${snapshot.meta.index}`,
        );
      }
      if (start.index === snapshot.meta.index && start.term !== snapshot.meta.term) {
        throw corrupt(
          stateWhere("logStart"),
          `term ${start.term} but the snapshot's is ${snapshot.meta.term}`,
        );
      }
    } else if (hardStateValue !== undefined) {
      throw corrupt(stateWhere("logStart"), "missing");
    }

    let last = start.index;
    const firstKey = first(this.#log.getKeys({ limit: 1 }));
    if (firstKey !== undefined) {
      if (!recorded) throw corrupt(stateWhere("logStart"), "missing");
      const lastKey = first(this.#log.getKeys({ reverse: true, limit: 1 }))!;
      const firstIndex = keyIndex(firstKey);
      const lastIndex = keyIndex(lastKey);
      if (firstIndex === null) throw corrupt("raftLog", `key ${Buffer.from(firstKey).toString("hex")}`);
      if (lastIndex === null) throw corrupt("raftLog", `key ${Buffer.from(lastKey).toString("hex")}`);
      if (firstIndex !== start.index + 1) {
        throw corrupt("raftLog", `first record ${firstIndex}, but the log starts at ${start.index + 1}`);
      }
      const count = this.#log.getCount();
      if (count !== lastIndex - start.index) {
        throw corrupt("raftLog", `${count} records for indexes ${start.index + 1} to ${lastIndex}`);
      }
      last = lastIndex;
      const value = this.#log.get(lastKey);
      if (value === undefined) throw corrupt(logWhere(last), "missing");
      const entry = decodeEntry(value, last);
      this.#termCache.set(last, entry.term);
      if (entry.term < start.term) {
        throw corrupt(logWhere(last), `term ${entry.term} < ${start.term}, the term of the log start`);
      }
    }
    if (hardState.commit > last) {
      throw corrupt(stateWhere("hardState"), `commit ${hardState.commit} beyond the last index ${last}`);
    }
    return { start, last, hardState, snapshot, recorded };
  }
}

function checkHardState(next: HardState, previous: HardState): void {
  for (const field of ["term", "vote", "commit"] as const) {
    if (!Number.isSafeInteger(next[field]) || next[field] < 0) {
      throw new MetaraftError("MR_ERR_INTERNAL", `hard state ${field} ${next[field]} is not an integer >= 0`);
    }
  }
  // A term that went back would let this node vote twice in one term.
  if (next.term < previous.term) {
    throw new MetaraftError("MR_ERR_INTERNAL", `hard state term ${next.term} < ${previous.term}`);
  }
}

function positive(name: string, value: number | undefined, fallback: number): number {
  const chosen = value ?? fallback;
  if (!Number.isSafeInteger(chosen) || chosen < 1) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${name} ${chosen} is not an integer >= 1`);
  }
  return chosen;
}

function first<T>(items: Iterable<T>): T | undefined {
  for (const item of items) return item;
  return undefined;
}

/**
 * The terms of recently written or read entries, in a direct-mapped table of `size` slots (slot
 * = index mod size). Every write of an index goes through `set`, so a slot never holds a stale
 * term for the index it names.
 */
class TermCache {
  readonly #indexes: Float64Array;
  readonly #terms: Float64Array;

  constructor(size: number) {
    this.#indexes = new Float64Array(size).fill(-1);
    this.#terms = new Float64Array(size);
  }

  get(index: number): number | undefined {
    const slot = index % this.#indexes.length;
    return this.#indexes[slot] === index ? this.#terms[slot] : undefined;
  }

  set(index: number, term: number): void {
    const slot = index % this.#indexes.length;
    this.#indexes[slot] = index;
    this.#terms[slot] = term;
  }
}
