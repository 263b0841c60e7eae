import type { NodeId } from "../raft/index.js";

/**
 * What a node knows of leadership, as Ozone's OM and SCM tell their services
 * (`notifyLeaderReady`, `notifyNotLeader`, `notifyLeaderChanged`). The write path, and later the
 * listeners, services, queue tails and session expiry, subscribe to it instead of reading Raft.
 */
export interface LeadershipListener {
  /**
   * This node leads `term` and has applied its term's first entry (the no-op), so its state
   * holds everything any earlier leader committed: leader-only work may start.
   */
  leaderReady?(term: number): void;
  /**
   * This node stopped leading `term` (stepped down, lost an election, was removed) before or
   * after it was ready. Leader-only work must stop at once: what it proposes now may be lost.
   */
  notLeader?(term: number): void;
  /** The leader this node knows changed: `leader` of `term` (0 while none is known). */
  leaderChanged?(term: number, leader: NodeId): void;
}

export interface LeadershipState {
  readonly term: number;
  /** 0 while none is known. */
  readonly leader: NodeId;
  /** This node leads `term` and its no-op is applied. */
  readonly ready: boolean;
}

/** Listeners at most; a subscription beyond it is refused (each service or listener takes one). */
export const LEADERSHIP_LISTENERS_MAX = 256;

/**
 * The host's side: it reports what it sees, and this turns that into the three notifications,
 * each exactly once per change, in order (notLeader before the leaderChanged that follows it).
 */
export class Leadership {
  readonly #self: NodeId;
  readonly #listeners = new Set<LeadershipListener>();
  #term = 0;
  #leader: NodeId = 0;
  #ready = false;
  /** The index of this leader's no-op; ready once it is applied. */
  #readyAt = Number.POSITIVE_INFINITY;

  constructor(self: NodeId) {
    this.#self = self;
  }

  get state(): LeadershipState {
    return { term: this.#term, leader: this.#leader, ready: this.#ready };
  }

  get ready(): boolean {
    return this.#ready;
  }

  /**
   * Adds a listener; returns its unsubscribe. A listener that joins while this node is the
   * ready leader is told `leaderReady` at once, so a late subscriber misses nothing.
   */
  subscribe(listener: LeadershipListener): () => void {
    if (this.#listeners.size >= LEADERSHIP_LISTENERS_MAX) {
      throw new RangeError(`at most ${LEADERSHIP_LISTENERS_MAX} leadership listeners`);
    }
    this.#listeners.add(listener);
    if (this.#leader !== 0) listener.leaderChanged?.(this.#term, this.#leader);
    if (this.#ready) listener.leaderReady?.(this.#term);
    return () => this.#listeners.delete(listener);
  }

  /**
   * The host saw Raft's leader or term change. `lastIndex` is the log's last index then: on
   * becoming leader, that is the new term's no-op.
   */
  observe(term: number, leader: NodeId, lastIndex: number): void {
    if (term === this.#term && leader === this.#leader) return;
    const wasLeader = this.#leader === this.#self;
    const oldTerm = this.#term;
    const oldLeader = this.#leader;
    this.#term = term;
    this.#leader = leader;
    if (wasLeader && (leader !== this.#self || term !== oldTerm)) {
      this.#ready = false;
      this.#readyAt = Number.POSITIVE_INFINITY;
      for (const l of [...this.#listeners]) l.notLeader?.(oldTerm);
    }
    if (leader === this.#self && !(wasLeader && term === oldTerm)) this.#readyAt = lastIndex;
    // A term that passes with no leader known (an election under way) is no change of leader.
    if (leader === 0 && oldLeader === 0) return;
    for (const l of [...this.#listeners]) l.leaderChanged?.(term, leader);
  }

  /** The host applied up to `index`: a leader whose no-op is now applied becomes ready. */
  applied(index: number): void {
    if (this.#ready || index < this.#readyAt) return;
    this.#ready = true;
    for (const l of [...this.#listeners]) l.leaderReady?.(this.#term);
  }
}
