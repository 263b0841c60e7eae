/**
 * What the leader knows of each follower's log, as in etcd's tracker package.
 * Invariant: match < next.
 */

export type ProgressState = "probe" | "replicate" | "snapshot";

/**
 * A bounded ring of the appends in flight to one follower: the last index and the entry bytes
 * of each. Full at `capacity` messages or at `bytesMax` entry bytes, whichever comes first, as
 * etcd's MaxInflightMsgs and MaxInflightBytes. Invariant: 0 <= count <= capacity, and `bytes`
 * is the sum of the entry bytes of the `count` appends held.
 */
export class Inflights {
  readonly #indexes: Float64Array;
  readonly #sizes: Float64Array;
  #start = 0;
  #count = 0;
  #bytes = 0;

  constructor(
    readonly capacity: number,
    readonly bytesMax: number,
  ) {
    if (!(capacity >= 1)) throw new Error("raft: inflights capacity must be at least 1");
    if (!(bytesMax >= 1)) throw new Error("raft: inflights bytesMax must be at least 1");
    this.#indexes = new Float64Array(capacity);
    this.#sizes = new Float64Array(capacity);
  }

  get count(): number {
    return this.#count;
  }

  /** Entry bytes of the appends in flight. */
  get bytes(): number {
    return this.#bytes;
  }

  /** Entry bytes that may still go out before the window is full (0 when full). */
  get bytesRemaining(): number {
    return Math.max(0, this.bytesMax - this.#bytes);
  }

  full(): boolean {
    return this.#count === this.capacity || this.#bytes >= this.bytesMax;
  }

  add(lastIndex: number, bytes: number): void {
    if (this.full()) throw new Error("raft: inflights overflow");
    if (this.#count > 0 && this.#indexes[(this.#start + this.#count - 1) % this.capacity]! >= lastIndex) {
      throw new Error("raft: inflights indexes must increase");
    }
    const at = (this.#start + this.#count) % this.capacity;
    this.#indexes[at] = lastIndex;
    this.#sizes[at] = bytes;
    this.#count++;
    this.#bytes += bytes;
  }

  /** Frees every append whose last index is at or below `index`: the follower has it. */
  freeLE(index: number): void {
    while (this.#count > 0 && this.#indexes[this.#start]! <= index) this.#freeFirst();
  }

  /** A heartbeat answered while the window is full: let one more append out. */
  freeFirstOne(): void {
    if (this.#count > 0) this.#freeFirst();
  }

  #freeFirst(): void {
    this.#bytes -= this.#sizes[this.#start]!;
    this.#start = (this.#start + 1) % this.capacity;
    this.#count--;
    if (this.#count === 0) this.#bytes = 0;
  }

  reset(): void {
    this.#start = 0;
    this.#count = 0;
    this.#bytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In `snapshot` state: the index of the snapshot being sent. */
  pendingSnapshot = 0;
  /** In `snapshot` state: leader ticks since it was sent, so a lost snapshot is sent again. */
  snapshotTicks = 0;
  /** Heard from since the last CheckQuorum round. */
  recentActive = false;
  /**
   * In `probe` state: an append is out and unanswered. Only an answer (or a rejection of that
   * very probe) clears it; a heartbeat answered meanwhile sends an empty probe instead of the
   * entries again, so a slow follower is not sent the same tail once per heartbeat.
   */
  probeSent = false;
  readonly inflights: Inflights;

  constructor(
    next: number,
    inflightsMax: number,
    inflightBytesMax: number,
    public isLearner: boolean,
  ) {
    this.next = next;
    this.inflights = new Inflights(inflightsMax, inflightBytesMax);
  }

  #resetState(state: ProgressState): void {
    this.state = state;
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.snapshotTicks = 0;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.#resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.#resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.#resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number): void {
    this.#resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
  }

  /** An acknowledgement up to `index`; false if it tells nothing new. */
  maybeUpdate(index: number): boolean {
    let updated = false;
    if (this.match < index) {
      this.match = index;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, index + 1);
    return updated;
  }

  /** Pipelining: assume the append of entries up to `lastIndex` will succeed. */
  optimisticUpdate(lastIndex: number): void {
    this.next = lastIndex + 1;
  }

  /**
   * A rejected append probing `rejected`; `matchHint` is the follower's estimate of the last
   * index that may match. False when the rejection is stale.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    // The follower holds everything up to `match` durably: a rejection at or below it is old.
    if (rejected <= this.match) return false;
    if (this.state === "replicate") {
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1);
    this.probeSent = false;
    return true;
  }

  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
