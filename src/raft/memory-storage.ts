import { MetaraftError } from "../errors.js";
import type { RaftLogStore, RaftUpdate } from "./storage.js";
import { type ConfState, EMPTY_HARD_STATE, type Entry, type HardState, type Snapshot } from "./types.js";

export const EMPTY_CONF_STATE: ConfState = { voters: [], learners: [] };

/**
 * The reference storage: the log in an array whose slot 0 is a dummy entry standing for the
 * snapshot (its index and term), as in etcd's MemoryStorage. Used by the simulator and as the
 * model every other storage is tested against.
 */
export class MemoryStorage implements RaftLogStore {
  #hardState: HardState = EMPTY_HARD_STATE;
  #snapshot: Snapshot;
  /** entries[0].index = snapshot index; entries[i].index = entries[0].index + i (invariant). */
  #entries: Entry[];

  constructor(confState: ConfState = EMPTY_CONF_STATE) {
    this.#snapshot = { meta: { index: 0, term: 0, confState }, data: new Uint8Array(0) };
    this.#entries = [{ term: 0, index: 0, type: "normal", data: new Uint8Array(0) }];
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.#hardState, confState: this.#snapshot.meta.confState };
  }

  get #offset(): number {
    return this.#entries[0]!.index;
  }

  firstIndex(): number {
    return this.#offset + 1;
  }

  lastIndex(): number {
    return this.#offset + this.#entries.length - 1;
  }

  term(index: number): number {
    if (index < this.#offset) throw new MetaraftError("MR_ERR_LOG_COMPACTED", `term of ${index}`);
    if (index > this.lastIndex()) throw new MetaraftError("MR_ERR_LOG_UNAVAILABLE", `term of ${index}`);
    return this.#entries[index - this.#offset]!.term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    if (lo <= this.#offset) throw new MetaraftError("MR_ERR_LOG_COMPACTED", `entries from ${lo}`);
    if (hi > this.lastIndex() + 1) throw new MetaraftError("MR_ERR_LOG_UNAVAILABLE", `entries to ${hi}`);
    return limitSize(this.#entries.slice(lo - this.#offset, hi - this.#offset), maxBytes);
  }

  snapshot(): Snapshot {
    return this.#snapshot;
  }

  save(update: RaftUpdate): void {
    if (update.snapshot) this.#applySnapshot(update.snapshot);
    if (update.entries.length > 0) this.#append(update.entries);
    if (update.hardState) this.#hardState = update.hardState;
  }

  #applySnapshot(snapshot: Snapshot): void {
    if (snapshot.meta.index < this.#snapshot.meta.index) {
      throw new MetaraftError(
        "MR_ERR_SNAPSHOT_OUT_OF_DATE",
        `${snapshot.meta.index} < ${this.#snapshot.meta.index}`,
      );
    }
    this.#snapshot = snapshot;
    this.#entries = [
      { term: snapshot.meta.term, index: snapshot.meta.index, type: "normal", data: new Uint8Array(0) },
    ];
  }

  #append(entries: readonly Entry[]): void {
    const first = entries[0]!.index;
    // Entries already compacted are committed, and so equal to what we had: skip them.
    const skip = Math.max(0, this.#offset + 1 - first);
    if (skip >= entries.length) return;
    const start = first + skip;
    if (start > this.lastIndex() + 1) {
      throw new MetaraftError("MR_ERR_INTERNAL", `append at ${start} leaves a gap after ${this.lastIndex()}`);
    }
    this.#entries.length = start - this.#offset;
    for (let i = skip; i < entries.length; i++) this.#entries.push(entries[i]!);
  }

  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.#snapshot.meta.index) {
      throw new MetaraftError("MR_ERR_SNAPSHOT_OUT_OF_DATE", `${index} <= ${this.#snapshot.meta.index}`);
    }
    if (index > this.lastIndex()) throw new MetaraftError("MR_ERR_LOG_UNAVAILABLE", `snapshot at ${index}`);
    this.#snapshot = { meta: { index, term: this.term(index), confState }, data };
    return this.#snapshot;
  }

  compact(index: number): void {
    if (index <= this.#offset) return;
    if (index > this.#snapshot.meta.index + 1) {
      throw new MetaraftError(
        "MR_ERR_INTERNAL",
        `compact to ${index} passes the snapshot at ${this.#snapshot.meta.index}`,
      );
    }
    const dummy = {
      term: this.term(index - 1),
      index: index - 1,
      type: "normal" as const,
      data: new Uint8Array(0),
    };
    this.#entries = [dummy, ...this.#entries.slice(index - this.#offset)];
  }

  close(): void {}
}

/** Keeps a prefix of `entries` whose data stays within `maxBytes`, but always the first entry. */
export function limitSize(entries: Entry[], maxBytes: number): Entry[] {
  let bytes = 0;
  for (let i = 0; i < entries.length; i++) {
    bytes += entries[i]!.data.length;
    if (i > 0 && bytes > maxBytes) return entries.slice(0, i);
  }
  return entries;
}
