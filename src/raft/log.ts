import { MetaraftError } from "../errors.js";
import type { RaftStorage } from "./storage.js";
import type { Entry, Snapshot } from "./types.js";

/**
 * Entries and a snapshot the core has accepted but the host has not yet persisted.
 * Invariant: entries[i].index = offset + i.
 */
class Unstable {
  snapshot: Snapshot | null = null;
  entries: Entry[] = [];
  constructor(public offset: number) {}

  lastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1;
    return this.snapshot?.meta.index;
  }

  term(index: number): number | undefined {
    if (index >= this.offset && index < this.offset + this.entries.length) {
      return this.entries[index - this.offset]!.term;
    }
    if (this.snapshot && index === this.snapshot.meta.index) return this.snapshot.meta.term;
    return undefined;
  }

  truncateAndAppend(entries: readonly Entry[]): void {
    const after = entries[0]!.index;
    if (after === this.offset + this.entries.length) {
      for (const entry of entries) this.entries.push(entry);
    } else if (after <= this.offset) {
      // Replaces everything unstable; the host's save truncates the stored tail as well.
      this.offset = after;
      this.entries = [...entries];
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(entries);
    }
  }

  stableTo(index: number, term: number): void {
    if (index < this.offset || this.term(index) !== term) return;
    this.entries = this.entries.slice(index + 1 - this.offset);
    this.offset = index + 1;
  }
}

function isStorageGap(error: unknown): boolean {
  return (
    error instanceof MetaraftError &&
    (error.code === "MR_ERR_LOG_COMPACTED" || error.code === "MR_ERR_LOG_UNAVAILABLE")
  );
}

/**
 * The Raft log: stable entries in storage, then the unstable tail.
 * Invariants: applied <= committed <= lastIndex().
 */
export class RaftLog {
  readonly storage: RaftStorage;
  readonly unstable: Unstable;
  committed: number;
  applied: number;

  constructor(storage: RaftStorage, applied: number) {
    this.storage = storage;
    const first = storage.firstIndex();
    this.unstable = new Unstable(storage.lastIndex() + 1);
    // Everything up to the snapshot is committed and applied by construction.
    this.committed = Math.max(first - 1, storage.initialState().hardState.commit);
    this.applied = Math.max(first - 1, Math.min(applied, this.committed));
  }

  firstIndex(): number {
    const snapshot = this.unstable.snapshot;
    return snapshot ? snapshot.meta.index + 1 : this.storage.firstIndex();
  }

  lastIndex(): number {
    return this.unstable.lastIndex() ?? this.storage.lastIndex();
  }

  /** The term of `index`, or undefined when it is compacted or beyond the log. */
  term(index: number): number | undefined {
    if (index < this.firstIndex() - 1 || index > this.lastIndex()) return undefined;
    const unstable = this.unstable.term(index);
    if (unstable !== undefined) return unstable;
    try {
      return this.storage.term(index);
    } catch (error) {
      if (isStorageGap(error)) return undefined;
      throw error;
    }
  }

  lastTerm(): number {
    const term = this.term(this.lastIndex());
    if (term === undefined) throw new MetaraftError("MR_ERR_INTERNAL", "raft: the last entry has no term");
    return term;
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, lastTerm: number): boolean {
    const ourTerm = this.lastTerm();
    return lastTerm > ourTerm || (lastTerm === ourTerm && lastIndex >= this.lastIndex());
  }

  /** The index of the first entry that conflicts with the log, or 0 if none does. */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) if (!this.matchTerm(entry.index, entry.term)) return entry.index;
    return 0;
  }

  /** The last index at or below `index` whose term is at most `term` (fast backtracking). */
  findConflictByTerm(index: number, term: number): number {
    for (; index > 0; index--) {
      const ours = this.term(index);
      if (ours === undefined || ours <= term) return index;
    }
    return 0;
  }

  /** A follower's append: the new last index, or -1 if `prevIndex` does not match. */
  maybeAppend(prevIndex: number, prevTerm: number, commit: number, entries: readonly Entry[]): number {
    if (!this.matchTerm(prevIndex, prevTerm)) return -1;
    const lastNew = prevIndex + entries.length;
    const conflict = this.findConflict(entries);
    if (conflict !== 0) {
      if (conflict <= this.committed) {
        throw new MetaraftError(
          "MR_ERR_INTERNAL",
          `raft: entry ${conflict} conflicts with the committed log`,
        );
      }
      this.append(entries.slice(conflict - entries[0]!.index));
    }
    this.commitTo(Math.min(commit, lastNew));
    return lastNew;
  }

  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex();
    if (entries[0]!.index - 1 < this.committed) {
      throw new MetaraftError(
        "MR_ERR_INTERNAL",
        `raft: append at ${entries[0]!.index} is below commit ${this.committed}`,
      );
    }
    this.unstable.truncateAndAppend(entries);
    return this.lastIndex();
  }

  commitTo(index: number): void {
    if (index <= this.committed) return;
    if (index > this.lastIndex()) {
      throw new MetaraftError(
        "MR_ERR_INTERNAL",
        `raft: commit ${index} beyond the last index ${this.lastIndex()}`,
      );
    }
    this.committed = index;
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    if (index > this.committed || index < this.applied) {
      throw new MetaraftError(
        "MR_ERR_INTERNAL",
        `raft: applied ${index} outside [${this.applied}, ${this.committed}]`,
      );
    }
    this.applied = index;
  }

  /** Entries in [lo, hi) within `maxBytes` (at least one), or undefined if `lo` is compacted. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] | undefined {
    if (lo >= hi) return [];
    if (lo < this.firstIndex()) return undefined;
    const result: Entry[] = [];
    const unstableStart = this.unstable.offset;
    if (lo < unstableStart) {
      try {
        result.push(...this.storage.entries(lo, Math.min(hi, unstableStart), maxBytes));
      } catch (error) {
        if (isStorageGap(error)) return undefined;
        throw error;
      }
      if (result.length < Math.min(hi, unstableStart) - lo) return result;
    }
    let bytes = 0;
    for (const entry of result) bytes += entry.data.length;
    for (let i = Math.max(lo, unstableStart); i < hi; i++) {
      const entry = this.unstable.entries[i - unstableStart]!;
      bytes += entry.data.length;
      if (result.length > 0 && bytes > maxBytes) break;
      result.push(entry);
    }
    return result;
  }

  /** Committed entries not yet handed out for applying. */
  nextCommittedEntries(from: number, maxBytes: number): Entry[] {
    const lo = Math.max(from, this.firstIndex());
    return this.slice(lo, this.committed + 1, maxBytes) ?? [];
  }

  restore(snapshot: Snapshot): void {
    this.committed = snapshot.meta.index;
    this.unstable.offset = snapshot.meta.index + 1;
    this.unstable.entries = [];
    this.unstable.snapshot = snapshot;
  }

  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term);
  }

  stableSnapTo(index: number): void {
    if (this.unstable.snapshot?.meta.index === index) this.unstable.snapshot = null;
  }
}
