import { MetaraftError } from "../errors.js";
import { systemRuntime } from "../runtime.js";
import type { TableName } from "./environment.js";
import {
  STATE_KEY_BYTES_MAX,
  type StateDisk,
  type StateDiskBatch,
  type StateDiskRow,
  type StateDiskView,
} from "./state-disk.js";

export interface MemoryStateDiskOptions {
  /**
   * Runs `fn` later: when a commit lands (becomes visible and resolves) and when a sync that
   * `flushed()` asked for happens. Each commit and each sync gets its own call, so the order in
   * which a simulator runs them decides what a crash finds unsynced. Default the system runtime's.
   */
  readonly defer?: (fn: () => void) => void;
}

/**
 * The twin of `LmdbStateDisk` in memory, for the simulator and as the model the LMDB disk is
 * tested against. It keeps two states: the visible one (every landed commit) and the synced one
 * (what a crash cannot take). A commit lands on a later `defer` call, in submission order, then
 * waits, unsynced, until `sync()` (or a `flushed()`) makes it durable. `crash(n)` returns the disk
 * as a restart would find it: the synced state plus the first `n` commits that were not synced,
 * landed or not, as LMDB may have written any prefix of them before the process died.
 */
export class MemoryStateDisk implements StateDisk {
  readonly #defer: (fn: () => void) => void;
  #visible: Tables;
  #synced: Tables;
  /** Landed, not yet synced, in commit order. */
  #unsynced: Commit[] = [];
  /** Submitted, not yet landed, in commit order: the next `defer` call lands the first. */
  #queued: Commit[] = [];
  #submitted = 0;
  #landed = 0;
  /** `flushed()` callers: resolved once every commit submitted before the call is synced. */
  #waiters: { readonly submitted: number; readonly resolve: () => void }[] = [];
  #syncScheduled = false;
  #crashed = false;

  constructor(options: MemoryStateDiskOptions = {}) {
    this.#defer = options.defer ?? ((fn) => systemRuntime.defer(fn));
    this.#visible = new Tables();
    this.#synced = new Tables();
  }

  /** Commits a crash now may lose: landed and unsynced, then not landed yet. */
  get unsyncedCommits(): number {
    return this.#unsynced.length + this.#queued.length;
  }

  /** Commits submitted and not yet visible. */
  get queuedCommits(): number {
    return this.#queued.length;
  }

  get(table: TableName, key: Uint8Array): Uint8Array | undefined {
    return this.#visible.table(table).get(byteString(key));
  }

  range(table: TableName, start: Uint8Array, end: Uint8Array, limit: number): Iterable<StateDiskRow> {
    // Read now: a commit that lands later changes the live table under a lazy iterator.
    return [...this.#visible.table(table).range(byteString(start), byteString(end), limit)];
  }

  view(): StateDiskView {
    // The tables of now stay as they are: the next commit to touch one copies it first.
    const tables = this.#visible.freeze();
    let open = true;
    return {
      rows: (table) => {
        if (!open) throw new MetaraftError("MR_ERR_INTERNAL", "read view used after done()");
        return tables.table(table).range("", undefined, Number.POSITIVE_INFINITY);
      },
      done: () => {
        open = false;
      },
    };
  }

  commit(batch: StateDiskBatch): Promise<void> {
    if (this.#crashed) return new Promise(() => {}); // A dead process's commits never finish.
    let commit: Commit;
    try {
      commit = copyBatch(batch);
    } catch (error) {
      // LMDB rejects a bad key when the transaction runs: the promise rejects, nothing is written.
      return Promise.reject(error);
    }
    this.#queued.push(commit);
    this.#submitted++;
    return new Promise((resolve) => {
      commit.resolve = resolve;
      this.#defer(() => this.#landNext());
    });
  }

  #landNext(): void {
    if (this.#crashed) return;
    const commit = this.#queued.shift();
    if (!commit) throw new MetaraftError("MR_ERR_INTERNAL", "a commit landed twice");
    this.#visible.apply(commit);
    this.#unsynced.push(commit);
    this.#landed++;
    commit.resolve!();
    if (this.#waiters.length > 0) this.#scheduleSync();
  }

  flushed(): Promise<void> {
    if (this.#crashed) return new Promise(() => {});
    return new Promise((resolve) => {
      this.#waiters.push({ submitted: this.#submitted, resolve });
      this.#scheduleSync();
    });
  }

  #scheduleSync(): void {
    if (this.#syncScheduled) return;
    this.#syncScheduled = true;
    this.#defer(() => {
      this.#syncScheduled = false;
      if (this.#crashed) return;
      this.sync();
    });
  }

  /** Makes every landed commit durable now (an fsync), and resolves the `flushed()` calls it satisfies. */
  sync(): void {
    if (this.#crashed) throw new MetaraftError("MR_ERR_INTERNAL", "sync on a crashed disk");
    for (const commit of this.#unsynced) this.#synced.apply(commit);
    this.#unsynced = [];
    const waiting = this.#waiters;
    this.#waiters = [];
    for (const waiter of waiting) {
      if (waiter.submitted <= this.#landed) waiter.resolve();
      else this.#waiters.push(waiter);
    }
  }

  /**
   * The disk a restart after a crash now would open: everything synced, plus the first
   * `keepUnsynced` (0 to `unsyncedCommits`) of the commits not synced yet, which counts as synced
   * on the new disk. This disk is dead afterwards: nothing it had queued lands, and its pending
   * promises never settle, as with a process that died.
   */
  crash(keepUnsynced: number): MemoryStateDisk {
    if (this.#crashed) throw new MetaraftError("MR_ERR_INTERNAL", "the disk crashed already");
    const lost = [...this.#unsynced, ...this.#queued];
    if (!Number.isInteger(keepUnsynced) || keepUnsynced < 0 || keepUnsynced > lost.length) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `keepUnsynced ${keepUnsynced} outside [0, ${lost.length}] unsynced commits`,
      );
    }
    this.#crashed = true;
    const disk = new MemoryStateDisk({ defer: this.#defer });
    const survived = this.#synced.copy();
    for (const commit of lost.slice(0, keepUnsynced)) survived.apply(commit);
    disk.#visible = survived;
    disk.#synced = survived.copy();
    return disk;
  }
}

interface Commit {
  readonly clear: readonly TableName[];
  readonly writes: readonly {
    readonly table: TableName;
    readonly key: string;
    readonly row: StateDiskRow | null;
  }[];
  resolve?: () => void;
}

/** Copies the batch now: the caller's bytes may change once the commit resolves. */
function copyBatch(batch: StateDiskBatch): Commit {
  const writes: Commit["writes"][number][] = [];
  for (const w of batch.writes) {
    if (w.key.length === 0 || w.key.length > STATE_KEY_BYTES_MAX) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `a ${w.key.length}-byte key in ${w.table}: keys are 1 to ${STATE_KEY_BYTES_MAX} bytes`,
      );
    }
    const key = Buffer.from(w.key);
    writes.push({
      table: w.table,
      key: byteString(key),
      row: w.value === null ? null : { key, value: Buffer.from(w.value) },
    });
  }
  return { clear: [...(batch.clear ?? [])], writes };
}

/**
 * A key's bytes as a string of one code unit per byte (latin1): comparing two such strings
 * compares the bytes, which is LMDB's order. (Comparing the keys as decoded UTF-8 would not be:
 * UTF-16 puts U+E000..U+FFFF after the surrogates of characters above U+FFFF.)
 */
function byteString(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("latin1");
}

/** Every table, by name; a frozen table is shared with a read view and copied before it changes. */
class Tables {
  readonly #tables = new Map<TableName, SortedTable>();

  table(name: TableName): SortedTable {
    return this.#tables.get(name) ?? EMPTY_TABLE;
  }

  #writable(name: TableName): SortedTable {
    let table = this.#tables.get(name);
    if (!table || table.frozen) {
      table = table ? table.copy() : new SortedTable();
      this.#tables.set(name, table);
    }
    return table;
  }

  apply(commit: Commit): void {
    for (const name of commit.clear) this.#tables.delete(name);
    for (const w of commit.writes) {
      if (w.row === null) {
        if (this.table(w.table).get(w.key) !== undefined) this.#writable(w.table).remove(w.key);
      } else this.#writable(w.table).put(w.key, w.row);
    }
  }

  /** The tables as they are now, for a read view: later changes copy a table first. */
  freeze(): Tables {
    const view = new Tables();
    for (const [name, table] of this.#tables) {
      table.frozen = true;
      view.#tables.set(name, table);
    }
    return view;
  }

  copy(): Tables {
    const out = new Tables();
    for (const [name, table] of this.#tables) out.#tables.set(name, table.copy());
    return out;
  }
}

/** Rows in byte order of their keys: a sorted array of byte strings and a map to the rows. */
class SortedTable {
  frozen = false;
  #keys: string[] = [];
  #rows = new Map<string, StateDiskRow>();

  get(key: string): Uint8Array | undefined {
    return this.#rows.get(key)?.value;
  }

  put(key: string, row: StateDiskRow): void {
    if (this.frozen) throw new MetaraftError("MR_ERR_INTERNAL", "write to a frozen table");
    if (!this.#rows.has(key)) this.#keys.splice(lowerBound(this.#keys, key), 0, key);
    this.#rows.set(key, row);
  }

  remove(key: string): void {
    if (this.frozen) throw new MetaraftError("MR_ERR_INTERNAL", "write to a frozen table");
    if (!this.#rows.delete(key)) return;
    this.#keys.splice(lowerBound(this.#keys, key), 1);
  }

  /** Rows with `start <= key < end` (no `end`: to the last), at most `limit`. */
  *range(start: string, end: string | undefined, limit: number): Generator<StateDiskRow> {
    let count = 0;
    for (let i = lowerBound(this.#keys, start); i < this.#keys.length && count < limit; i++, count++) {
      const key = this.#keys[i]!;
      if (end !== undefined && key >= end) return;
      yield this.#rows.get(key)!;
    }
  }

  copy(): SortedTable {
    const out = new SortedTable();
    out.#keys = [...this.#keys];
    out.#rows = new Map(this.#rows);
    return out;
  }
}

const EMPTY_TABLE: SortedTable = (() => {
  const table = new SortedTable();
  table.frozen = true;
  return table;
})();

/** The first position whose key is not below `key`. */
function lowerBound(keys: readonly string[], key: string): number {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (keys[mid]! < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
