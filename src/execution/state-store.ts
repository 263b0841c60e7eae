import { pack, unpackMultiple } from "msgpackr";
import { MetaraftError } from "../errors.js";
import { systemRuntime } from "../runtime.js";
import {
  LmdbStateDisk,
  type StateDisk,
  type StateDiskRow,
  type StorageEnvironment,
} from "../storage/index.js";
import { type ScanEntry, type StateReader, type StateTable, TABLE_IDS, TABLE_OF_ID } from "./types.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A pending value (`null`: deleted) and the log index or txid that wrote it. */
export interface LayerValue {
  readonly value: Uint8Array | null;
  readonly tag: number;
}

/** Writes not yet visible in LMDB, by table then key: the apply pipeline's and the leader's overlay. */
export class Layer {
  readonly #tables = new Map<StateTable, Map<string, LayerValue>>();
  #size = 0;

  get size(): number {
    return this.#size;
  }

  lookup(table: StateTable, key: string): LayerValue | undefined {
    const entries = this.#tables.get(table);
    // An empty map still hashes the key, which for a 2 KB row key is most of a get's time.
    return entries === undefined || entries.size === 0 ? undefined : entries.get(key);
  }

  set(table: StateTable, key: string, value: Uint8Array | null, tag: number): void {
    let entries = this.#tables.get(table);
    if (!entries) {
      entries = new Map();
      this.#tables.set(table, entries);
    }
    if (!entries.has(key)) this.#size++;
    entries.set(key, { value, tag });
  }

  /** Drops every value written at or before `tag`: it is now visible below this layer. */
  pruneUpTo(tag: number): void {
    for (const entries of this.#tables.values()) {
      for (const [key, entry] of entries) {
        if (entry.tag <= tag) {
          entries.delete(key);
          this.#size--;
        }
      }
    }
  }

  clear(): void {
    this.#tables.clear();
    this.#size = 0;
  }

  /** Keys of `table` with `prefix` and above `startAfter`. */
  keysWithPrefix(table: StateTable, prefix: string, startAfter: string | undefined): string[] {
    const entries = this.#tables.get(table);
    if (!entries) return [];
    const keys: string[] = [];
    for (const key of entries.keys()) {
      if (key.startsWith(prefix) && (startAfter === undefined || compareUtf8(key, startAfter) > 0))
        keys.push(key);
    }
    return keys;
  }
}

/** Orders strings as their UTF-8 bytes (LMDB's order), which differs from UTF-16 code unit order. */
export function compareUtf8(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}

/** Reads through layers (top first) down to a base reader. */
export class LayeredReader implements StateReader {
  constructor(
    readonly layers: readonly Layer[],
    readonly base: StateReader,
  ) {}

  get(table: StateTable, key: string): Uint8Array | undefined {
    for (const layer of this.layers) {
      const hit = layer.lookup(table, key);
      if (hit) return hit.value ?? undefined;
    }
    return this.base.get(table, key);
  }

  scan(table: StateTable, prefix: string, startAfter: string | undefined, limit: number): ScanEntry[] {
    // Top layer wins: walk bottom up and let later layers overwrite.
    const layered = new Map<string, Uint8Array | null>();
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i]!;
      for (const key of layer.keysWithPrefix(table, prefix, startAfter)) {
        layered.set(key, layer.lookup(table, key)!.value);
      }
    }
    if (layered.size === 0) return this.base.scan(table, prefix, startAfter, limit);
    // The layers can hide or replace base entries, so read enough from the base to fill
    // `limit` after that; layers are small (bounded by the writes in flight).
    const base = this.base.scan(table, prefix, startAfter, limit + layered.size);
    const top = [...layered]
      .map(([key, value]) => ({ key, raw: Buffer.from(key), value }))
      .sort((a, b) => Buffer.compare(a.raw, b.raw));
    // Both lists are in key order: merge them.
    const out: ScanEntry[] = [];
    let i = 0;
    let j = 0;
    while (out.length < limit && (i < base.length || j < top.length)) {
      const order =
        i >= base.length ? 1 : j >= top.length ? -1 : Buffer.compare(Buffer.from(base[i]!.key), top[j]!.raw);
      if (order < 0) {
        out.push(base[i++]!);
        continue;
      }
      if (order === 0) i++; // The layer's value replaces the base's.
      const { key, value } = top[j++]!;
      if (value !== null) out.push({ key, value });
    }
    return out;
  }
}

/** Rows per slice of a state snapshot: the leader yields to its event loop between slices. */
export const SNAPSHOT_SLICE_ROWS = 4096;

const META_APPLIED = Buffer.from(encoder.encode("appliedIndex"));
const META_LAST_TXID = Buffer.from(encoder.encode("lastTxid"));

/** Every table but meta: what a snapshot replaces. */
const SNAPSHOT_TABLES: readonly StateTable[] = (Object.keys(TABLE_IDS) as StateTable[]).filter(
  (name) => name !== "meta",
);

export interface ApplyMeta {
  readonly index: number;
  readonly lastTxid: number;
}

export interface StateStoreOptions {
  /**
   * Runs `fn` on a later turn of the event loop: it commits the entries applied in this turn,
   * and spaces the slices of `snapshotStream`. Default the system runtime's; a simulator passes its
   * scheduler, so that the production code runs on its clock.
   */
  readonly defer?: (fn: () => void) => void;
}

const deferImmediate = (fn: () => void): void => systemRuntime.defer(fn);

/**
 * The state machine's tables on a `StateDisk` (LMDB in the node, `MemoryStateDisk` in the
 * simulator). `apply` makes a write-set visible at once (through the pending layer) and commits it
 * with the applied index and last txid in one transaction; the layer forgets an entry's writes
 * once that transaction is committed. After a crash the applied index on disk says where to
 * resume, and write-sets are absolute, so applying again is harmless: which is why the node lets
 * these commits resolve before their fsync (`overlappingSync`).
 */
export class StateStore implements StateReader {
  readonly #disk: StateDisk;
  readonly #defer: (fn: () => void) => void;
  readonly pending = new Layer();
  #appliedIndex: number;
  #lastTxid: number;
  #committedIndex: number;
  #durableIndex: number;
  #lastCommit: Promise<unknown> = Promise.resolve();
  #failure: Error | undefined;
  /** Applied, not yet handed to the disk: the writes of this turn, then the meta records. */
  #unwritten: { table: StateTable; key: Buffer; value: Uint8Array | null }[] = [];
  #flushScheduled = false;
  /** Restores under way: their commit is in flight. */
  #restoring = 0;

  constructor(disk: StateDisk, options: StateStoreOptions = {}) {
    this.#disk = disk;
    this.#defer = options.defer ?? deferImmediate;
    this.#appliedIndex = readU64(disk.get("meta", META_APPLIED));
    this.#lastTxid = readU64(disk.get("meta", META_LAST_TXID));
    this.#committedIndex = this.#appliedIndex;
    this.#durableIndex = this.#appliedIndex;
  }

  /** The store over the node's `state/` environment. */
  static open(env: StorageEnvironment, options: StateStoreOptions = {}): StateStore {
    return new StateStore(new LmdbStateDisk(env), options);
  }

  get appliedIndex(): number {
    return this.#appliedIndex;
  }

  get lastTxid(): number {
    return this.#lastTxid;
  }

  /**
   * A snapshot is being restored: `lastTxid` and `appliedIndex` are the snapshot's already, the
   * tables not yet (see `restore`). A reader that pairs the two (a watch) waits it out.
   */
  get restoring(): boolean {
    return this.#restoring > 0;
  }

  /** The applied index already committed to the disk (and synced, unless the disk overlaps syncs). */
  get committedIndex(): number {
    return this.#committedIndex;
  }

  /** The applied index known to be synced to disk: a crash cannot take the state below it. */
  get durableIndex(): number {
    return this.#durableIndex;
  }

  get(table: StateTable, key: string): Uint8Array | undefined {
    const hit = this.pending.lookup(table, key);
    if (hit) return hit.value ?? undefined;
    const value = this.#disk.get(table, Buffer.from(key));
    return value ? new Uint8Array(value) : undefined;
  }

  scan(table: StateTable, prefix: string, startAfter: string | undefined, limit: number): ScanEntry[] {
    return new LayeredReader([this.pending], {
      get: () => undefined,
      scan: (t, p, s, l) => this.#scanDisk(t, p, s, l),
    }).scan(table, prefix, startAfter, limit);
  }

  #scanDisk(table: StateTable, prefix: string, startAfter: string | undefined, limit: number): ScanEntry[] {
    const start =
      startAfter !== undefined && compareUtf8(startAfter, prefix) >= 0
        ? Buffer.concat([Buffer.from(startAfter), Buffer.from([0])])
        : Buffer.from(prefix);
    // 0xff never occurs in UTF-8, so it bounds every key with the prefix.
    const end = Buffer.concat([Buffer.from(prefix), Buffer.from([0xff])]);
    const out: ScanEntry[] = [];
    for (const { key, value } of this.#disk.range(table, start, end, limit)) {
      out.push({ key: decoder.decode(key), value: new Uint8Array(value) });
    }
    return out;
  }

  /** Applies one committed entry's writes. Synchronous for readers; committed when `flushed` resolves. */
  apply(
    writes: readonly { table: number; key: Uint8Array; value: Uint8Array | null }[],
    meta: ApplyMeta,
  ): void {
    if (this.#failure) throw this.#failure;
    if (meta.index <= this.#appliedIndex) return;
    if (meta.lastTxid < this.#lastTxid) {
      throw new MetaraftError("MR_ERR_INTERNAL", `txid went back: ${meta.lastTxid} after ${this.#lastTxid}`);
    }
    const named = writes.map((w) => {
      const table = TABLE_OF_ID.get(w.table);
      if (!table)
        throw new MetaraftError("MR_ERR_LOG_CORRUPT", `entry ${meta.index}: unknown table ${w.table}`);
      return { table, key: Buffer.from(w.key), value: w.value };
    });
    for (const w of named) this.pending.set(w.table, decoder.decode(w.key), w.value, meta.index);
    this.#appliedIndex = meta.index;
    this.#lastTxid = meta.lastTxid;
    // Entries applied in one turn of the event loop share one transaction (and one fsync):
    // a transaction per entry made more, smaller batches slower.
    this.#unwritten.push(...named);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      // flushed() or restore() may have written them already: then there is nothing to commit.
      this.#defer(() => {
        if (this.#flushScheduled) this.#writeUnwritten();
      });
    }
  }

  #writeUnwritten(): void {
    this.#flushScheduled = false;
    const writes = this.#unwritten;
    this.#unwritten = [];
    const index = this.#appliedIndex;
    writes.push(
      { table: "meta", key: META_APPLIED, value: u64(index) },
      { table: "meta", key: META_LAST_TXID, value: u64(this.#lastTxid) },
    );
    this.#track(index, this.#disk.commit({ writes }));
  }

  /** Follows the transaction that brings the tables to `index`: committed, then synced. */
  #track(index: number, commit: Promise<unknown>): void {
    this.#lastCommit = commit.then(
      () => {
        this.#committedIndex = Math.max(this.#committedIndex, index);
        this.pending.pruneUpTo(index);
        void this.#disk.flushed().then(
          () => {
            this.#durableIndex = Math.max(this.#durableIndex, index);
          },
          () => {}, // A failed sync fails a later commit too, which reports it.
        );
      },
      (error: unknown) => {
        this.#failure = new MetaraftError("MR_ERR_INTERNAL", `applying up to entry ${index} failed`, {
          cause: error,
        });
      },
    );
  }

  /** Resolves when every apply so far is committed to the disk (not necessarily synced). */
  flushed(): Promise<void> {
    if (this.#flushScheduled) this.#writeUnwritten();
    return this.#lastCommit.then(() => {
      if (this.#failure) throw this.#failure;
    });
  }

  /**
   * Every state table: a consistent copy for a Raft snapshot, as a sequence of MessagePack
   * values (`unpackMultiple`): a header `{ v: 2, appliedIndex, lastTxid }`, then slices
   * `[tableId, [[key, value], ...]]` of at most `sliceRows` rows each, tables and keys in order.
   */
  snapshot(sliceRows = SNAPSHOT_SLICE_ROWS): Uint8Array {
    const parts: Uint8Array[] = [];
    for (const part of this.#snapshotParts(sliceRows)) parts.push(part);
    return Buffer.concat(parts);
  }

  /**
   * The same copy, built a slice at a time with the event loop free in between: a large state
   * copied in one go would stall the leader past its followers' election timeout. The copy is
   * of the state when it is called (a read view of the disk plus the pending writes of then).
   */
  async snapshotAsync(sliceRows = SNAPSHOT_SLICE_ROWS): Promise<Uint8Array> {
    const parts: Uint8Array[] = [];
    for await (const part of this.snapshotStream(sliceRows)) parts.push(part);
    return Buffer.concat(parts);
  }

  /** The same copy as its parts (their concatenation is the snapshot), one per turn of the event loop. */
  async *snapshotStream(sliceRows = SNAPSHOT_SLICE_ROWS): AsyncGenerator<Uint8Array> {
    for (const part of this.#snapshotParts(sliceRows)) {
      yield part;
      await new Promise<void>((resolve) => this.#defer(resolve));
    }
  }

  *#snapshotParts(sliceRows: number): Generator<Uint8Array> {
    // Taken together, before the first yield: the disk as committed now, plus what is pending
    // now (applied, not yet committed) is exactly the applied state of now.
    const view = this.#disk.view();
    const pending = new Map<StateTable, { raw: Buffer; value: Uint8Array | null }[]>();
    for (const name of Object.keys(TABLE_IDS) as StateTable[]) {
      pending.set(
        name,
        this.pending
          .keysWithPrefix(name, "", undefined)
          .map((key) => ({ raw: Buffer.from(key), value: this.pending.lookup(name, key)!.value }))
          .sort((a, b) => Buffer.compare(a.raw, b.raw)),
      );
    }
    const header = pack({ v: 2, appliedIndex: this.#appliedIndex, lastTxid: this.#lastTxid });
    try {
      yield header;
      for (const [name, id] of Object.entries(TABLE_IDS) as [StateTable, number][]) {
        let rows: [Uint8Array, Uint8Array][] = [];
        // Sliced by count whichever side a row comes from, so that the bytes do not depend on
        // how much of the state was committed when the copy began.
        for (const row of overlaid(view.rows(name), pending.get(name)!)) {
          rows.push(row);
          if (rows.length >= sliceRows) {
            yield pack([id, rows]);
            rows = [];
          }
        }
        if (rows.length > 0) yield pack([id, rows]);
      }
    } finally {
      view.done();
    }
  }

  /**
   * Replaces every table with a snapshot's. Until the returned promise resolves, reads still see
   * the old tables: the caller must wait before it applies anything else.
   */
  restore(data: Uint8Array, index: number): Promise<void> {
    if (this.#flushScheduled) this.#writeUnwritten();
    const [header, ...slices] = unpackMultiple(data) as [
      { v: number; appliedIndex: number; lastTxid: number },
      ...[number, [Uint8Array, Uint8Array][]][],
    ];
    if (header?.v !== 2) {
      throw new MetaraftError("MR_ERR_LOG_CORRUPT", `state snapshot version ${String(header?.v)}`);
    }
    const snapshot = { ...header, tables: slices };
    this.pending.clear();
    // A copy taken when it was sent may be ahead of the snapshot's index: entries up to its own
    // applied index are in it already, and apply skips them.
    index = Math.max(index, snapshot.appliedIndex ?? index);
    this.#appliedIndex = index;
    this.#lastTxid = snapshot.lastTxid;
    this.#restoring++;
    const commit = this.#disk.commit({
      clear: SNAPSHOT_TABLES,
      writes: restoreWrites(snapshot.tables, index, snapshot.lastTxid),
    });
    this.#track(index, commit);
    const done = () => {
      this.#restoring--;
    };
    commit.then(done, done);
    return this.flushed();
  }
}

/** A table's rows on disk with the pending writes over them, in key order; deleted rows left out. */
function* overlaid(
  disk: Iterable<StateDiskRow>,
  overlay: readonly { raw: Buffer; value: Uint8Array | null }[],
): Generator<[Uint8Array, Uint8Array]> {
  let o = 0;
  for (const { key, value } of disk) {
    // Pending keys before this one, then this one unless pending replaces it.
    for (; o < overlay.length && Buffer.compare(overlay[o]!.raw, key) < 0; o++) {
      const p = overlay[o]!;
      if (p.value !== null) yield [p.raw, p.value];
    }
    if (o < overlay.length && Buffer.compare(overlay[o]!.raw, key) === 0) {
      const p = overlay[o++]!;
      if (p.value !== null) yield [p.raw, p.value];
    } else yield [key, value];
  }
  for (; o < overlay.length; o++) {
    const p = overlay[o]!;
    if (p.value !== null) yield [p.raw, p.value];
  }
}

/** A snapshot's rows (but meta's), then the meta records: read by the disk as it commits them. */
function* restoreWrites(
  slices: readonly (readonly [number, readonly (readonly [Uint8Array, Uint8Array])[]])[],
  index: number,
  lastTxid: number,
): Generator<{ table: StateTable; key: Buffer; value: Uint8Array }> {
  for (const [id, rows] of slices) {
    const table = TABLE_OF_ID.get(id);
    if (!table || table === "meta") continue;
    for (const [key, value] of rows) yield { table, key: Buffer.from(key), value };
  }
  yield { table: "meta", key: META_APPLIED, value: u64(index) };
  yield { table: "meta", key: META_LAST_TXID, value: u64(lastTxid) };
}

const asBuffer = (bytes: Uint8Array): Buffer => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);

function u64(value: number): Buffer {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(BigInt(value));
  return out;
}

function readU64(value: Uint8Array | undefined): number {
  if (!value) return 0;
  if (value.length !== 8) throw new MetaraftError("MR_ERR_LOG_CORRUPT", "meta record is not a u64");
  return Number(asBuffer(value).readBigUInt64BE(0));
}
