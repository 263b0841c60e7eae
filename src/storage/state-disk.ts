import type { StorageEnvironment, TableName } from "./environment.js";

/**
 * What the state machine's store needs from its disk: tables of raw-byte keys in byte order,
 * batches committed in order, and a sync that lags the commits. The LMDB environment is the
 * production disk; `MemoryStateDisk` is its twin for the simulator, which also chooses what a
 * crash keeps. Keys are 1 to `STATE_KEY_BYTES_MAX` bytes (LMDB's limit).
 */
export interface StateDisk {
  /** The committed value of `key`, or undefined. The bytes may be the disk's: copy them before handing them out. */
  get(table: TableName, key: Uint8Array): Uint8Array | undefined;
  /**
   * Committed rows with `start <= key < end` in key order (bytewise, as LMDB orders them), at
   * most `limit`. Read the rows before the next commit resolves; they may be the disk's bytes.
   */
  range(table: TableName, start: Uint8Array, end: Uint8Array, limit: number): Iterable<StateDiskRow>;
  /** A consistent copy of every table as committed now, read lazily; `done()` releases it. */
  view(): StateDiskView;
  /**
   * Commits `batch` atomically, after every batch committed before it. Resolves once it is
   * visible to `get` and `range` (it may be visible a little earlier); it may not be synced yet,
   * so a crash may lose it (see `flushed`). The disk may read `batch` until the promise settles:
   * the caller must not change it.
   */
  commit(batch: StateDiskBatch): Promise<void>;
  /** Resolves once every batch committed so far (resolved or not) is synced: a crash keeps them. */
  flushed(): Promise<void>;
}

export interface StateDiskRow {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
}

export interface StateDiskView {
  /** Every row of `table` at the view's moment, in key order. */
  rows(table: TableName): Iterable<StateDiskRow>;
  /** Releases the view (LMDB: its read transaction). Idempotent. */
  done(): void;
}

export interface StateDiskWrite {
  readonly table: TableName;
  readonly key: Uint8Array;
  /** `null` removes the key (nothing happens if it is absent). */
  readonly value: Uint8Array | null;
}

export interface StateDiskBatch {
  /** Tables emptied first, in the same commit (a snapshot replacing the state). */
  readonly clear?: readonly TableName[];
  /** Puts and removes, applied in order after `clear`. */
  readonly writes: Iterable<StateDiskWrite>;
}

/** LMDB's maximum key size with the default page size (lmdb-js README). */
export const STATE_KEY_BYTES_MAX = 1978;

/** The production disk: the node's `state/` environment, which overlaps commits with their fsync. */
export class LmdbStateDisk implements StateDisk {
  readonly #env: StorageEnvironment;

  constructor(env: StorageEnvironment) {
    this.#env = env;
  }

  get(table: TableName, key: Uint8Array): Uint8Array | undefined {
    return this.#env.dbs[table].getBinary(key);
  }

  range(table: TableName, start: Uint8Array, end: Uint8Array, limit: number): Iterable<StateDiskRow> {
    return this.#env.dbs[table].getRange({ start, end, limit });
  }

  view(): StateDiskView {
    const txn = this.#env.root.useReadTransaction();
    const dbs = this.#env.dbs;
    let open = true;
    return {
      rows: (table) => dbs[table].getRange({ transaction: txn }),
      done: () => {
        if (open) txn.done();
        open = false;
      },
    };
  }

  commit(batch: StateDiskBatch): Promise<void> {
    const dbs = this.#env.dbs;
    // The writes run inside the transaction, when LMDB starts it: nothing is copied before.
    return this.#env.transaction(() => {
      for (const name of batch.clear ?? []) {
        for (const { key } of dbs[name].getRange({})) dbs[name].remove(key);
      }
      for (const w of batch.writes) {
        if (w.value === null) dbs[w.table].remove(w.key);
        else dbs[w.table].put(w.key, asBuffer(w.value));
      }
    });
  }

  flushed(): Promise<void> {
    return this.#env.flushed();
  }
}

const asBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
