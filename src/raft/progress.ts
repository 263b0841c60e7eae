/**
 * What the leader knows of each follower's log, as in etcd's tracker package.
 * Invariant: match < next.
 */

export type ProgressState = "probe" | "replicate" | "snapshot";

/** A bounded ring of the last index of each append in flight to one follower. */
export class Inflights {
  readonly #buffer: Float64Array;
  #start = 0;
  #count = 0;

  constructor(readonly capacity: number) {
    this.#buffer = new Float64Array(capacity);
  }

  get count(): number {
    return this.#count;
  }

  full(): boolean {
    return this.#count === this.capacity;
  }

  add(lastIndex: number): void {
    if (this.full()) throw new Error("raft: inflights overflow");
    this.#buffer[(this.#start + this.#count) % this.capacity] = lastIndex;
    this.#count++;
  }

  /** Frees every append whose last index is at or below `index`: the follower has it. */
  freeLE(index: number): void {
    while (this.#count > 0 && this.#buffer[this.#start]! <= index) {
      this.#start = (this.#start + 1) % this.capacity;
      this.#count--;
    }
  }

  /** A heartbeat answered while the window is full: let one more append out. */
  freeFirstOne(): void {
    if (this.#count === 0) return;
    this.#start = (this.#start + 1) % this.capacity;
    this.#count--;
  }

  reset(): void {
    this.#start = 0;
    this.#count = 0;
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
  /** In `probe` state: one append is out; wait for its answer or the next heartbeat. */
  probeSent = false;
  readonly inflights: Inflights;

  constructor(
    next: number,
    inflightsMax: number,
    public isLearner: boolean,
  ) {
    this.next = next;
    this.inflights = new Inflights(inflightsMax);
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
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
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
