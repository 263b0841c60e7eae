import type { Message, NodeId, Raft } from "../../src/raft/index.js";

/**
 * The catch-up bound as a simulator property: a follower that comes back missing M bytes of
 * the leader's log is sent at most 2·M + overhead bytes of entries until it has caught up, where
 * the overhead (catchUpOverheadBytes) is what the follower holds unbeknown to the leader, at
 * most one in-flight window, plus CATCH_UP_MESSAGES_OVERHEAD messages. It is checked at every
 * append the leader sends, so a leader that never stops resending fails too.
 *
 * Bytes are entry data bytes (the sum of `entry.data.length`), not encoded message bytes: they
 * are what the core's own limits count (messageBytesMax, inflightBytesMax), so the property and
 * the limits that produce it speak the same unit, and a fixed per-entry header (index, term,
 * type) would only blur "sent twice" into "sent twice plus a constant per entry".
 *
 * An episode is one (leader, term, follower) from the moment the follower comes back to this
 * leader (it restarts, a partition heals, it is added as a learner, or the leader is elected)
 * until the leader knows it holds everything the leader held at that moment. Its M is:
 * - the bytes of the leader's entries after the last index where the two logs agree (the true
 *   divergence point, not the leader's possibly stale `match`), up to the leader's last index
 *   at the start; entries already compacted into the leader's snapshot are not counted, as
 *   they can only go as a snapshot; plus
 * - the bytes of each entry the leader appended after the start and sent to the follower, each
 *   index once: sending those is legitimate too, but sending one twice is charged like any
 *   other duplicate.
 *
 * The bound is the promise of a link that behaves as TCP does, which is what production
 * replicates over: an episode is judged only while both directions of its link lose nothing,
 * duplicate nothing and deliver in order. A lost or reordered append legitimately makes the
 * leader rewind and resend up to a window, once per loss, which no constant covers; such
 * episodes are abandoned, not judged (and the sim still checks safety under them).
 */

export interface CatchUpLimits {
  readonly messageBytesMax: number;
  readonly inflightMessagesMax: number;
  readonly inflightBytesMax: number;
}

/** The replication limits, and the largest entry the workload writes. */
export interface CatchUpConfig extends CatchUpLimits {
  readonly entryBytesMax: number;
}

/**
 * What a correct leader may send on a FIFO, lossless link beyond 2·M, as a function of the
 * limits; its largest value, with `unacknowledgedBytes` a whole window, is the constant of the
 * bound. The only entries a correct leader sends that are not in M are:
 * - entries the follower holds past what the leader knows it holds (their acknowledgements
 *   were lost, or are still on their way, when the episode began): the first rejection rewinds
 *   `next` to `match + 1` and sends them again. The monitor sees both logs, so it allows
 *   exactly those bytes, capped at one in-flight window (they were in flight when they went
 *   unacknowledged): inflightMessagesMax appends, and inflightBytesMax bytes overshot by at
 *   most one append;
 * - CATCH_UP_MESSAGES_OVERHEAD appends: the one that finds the gap (when a heartbeat answer
 *   frees a slot of a full window, one append goes out past the follower's log and is
 *   rejected) and the probe that follows. Their entries are in M, but a follower missing less
 *   than a message must not be judged on the 2·M slack alone.
 * An append carries at most messageBytesMax, or a single larger entry alone: a "message" here
 * is the larger of the two. Rejected probes while backtracking carry entries of M only (the
 * hint never falls below the divergence point), as do appends sent past the gap before its
 * rejection arrives; each such entry goes at most once more, which is what the factor 2 pays for.
 */
export function catchUpOverheadBytes(config: CatchUpConfig, unacknowledgedBytes: number): number {
  const message = Math.max(config.messageBytesMax, config.entryBytesMax);
  const window = Math.min(config.inflightBytesMax + message, config.inflightMessagesMax * message);
  return Math.min(unacknowledgedBytes, window) + CATCH_UP_MESSAGES_OVERHEAD * message;
}

export const CATCH_UP_MESSAGES_OVERHEAD = 2;

/** A directed link `from -> to` as a map key (node ids are far below 2^20). */
export const linkKey = (from: NodeId, to: NodeId): number => from * 0x100000 + to;

/** The simulator's view of a node that the monitor needs. */
export interface CatchUpNode {
  readonly id: NodeId;
  readonly raft: Raft | null;
  readonly incarnation: number;
}

interface Episode {
  readonly leader: NodeId;
  readonly term: number;
  readonly leaderIncarnation: number;
  readonly follower: NodeId;
  readonly followerIncarnation: number;
  readonly reason: string;
  readonly began: number;
  /** The leader's last index when the episode began: caught up once the follower matches it. */
  readonly startIndex: number;
  /** The last index at which the two logs agreed when the episode began. */
  readonly agreedIndex: number;
  readonly missedBytes: number;
  /** What a correct leader may send beyond 2·M (see catchUpOverheadBytes). */
  readonly overheadBytes: number;
  /** Bytes of entries past `startIndex` sent so far, each index once. */
  appendedBytes: number;
  /** The highest index past `startIndex` counted into `appendedBytes`. */
  appendedThrough: number;
  sentBytes: number;
  /** Link faults on either direction when it began: any new one abandons the episode. */
  readonly linkFaults: number;
}

export interface CatchUpStats {
  readonly begun: number;
  /** Episodes that ran to the end on a clean link: the ones the bound was checked on to the end. */
  readonly judged: number;
  readonly abandoned: number;
  /** Of the judged: the largest M, and the largest sent − 2·M (the overhead actually used). */
  readonly missedBytesMax: number;
  readonly excessBytesMax: number;
  /** Of the judged: the most bytes sent again (sent − M). */
  readonly resentBytesMax: number;
  readonly sentBytesTotal: number;
  readonly missedBytesTotal: number;
}

export class CatchUpMonitor {
  readonly #episodes = new Map<number, Episode>();
  /** Faults per directed link (see linkKey). */
  readonly #linkFaults = new Map<number, number>();
  #begun = 0;
  #judged = 0;
  #abandoned = 0;
  #missedBytesMax = 0;
  #excessBytesMax = Number.NEGATIVE_INFINITY;
  #resentBytesMax = 0;
  #sentBytesTotal = 0;
  #missedBytesTotal = 0;

  constructor(
    readonly config: CatchUpConfig,
    readonly node: (id: NodeId) => CatchUpNode | undefined,
    /** The term of a committed entry, for indices the leader has compacted. */
    readonly committedTerm: (index: number) => number | undefined,
    readonly fail: (message: string) => never,
  ) {}

  stats(): CatchUpStats {
    return {
      begun: this.#begun,
      judged: this.#judged,
      abandoned: this.#abandoned,
      missedBytesMax: this.#missedBytesMax,
      excessBytesMax: this.#judged === 0 ? 0 : this.#excessBytesMax,
      resentBytesMax: this.#resentBytesMax,
      sentBytesTotal: this.#sentBytesTotal,
      missedBytesTotal: this.#missedBytesTotal,
    };
  }

  /** A message on `from -> to` was lost, duplicated or delivered out of order. */
  linkFault(from: NodeId, to: NodeId): void {
    const key = linkKey(from, to);
    this.#linkFaults.set(key, (this.#linkFaults.get(key) ?? 0) + 1);
  }

  #faultsBetween(a: NodeId, b: NodeId): number {
    return (this.#linkFaults.get(linkKey(a, b)) ?? 0) + (this.#linkFaults.get(linkKey(b, a)) ?? 0);
  }

  /** `follower` comes back to `leader` (or `leader` is newly elected): a catch-up begins. */
  begin(leaderId: NodeId, followerId: NodeId, reason: string, now: number): void {
    const leader = this.node(leaderId);
    const follower = this.node(followerId);
    const raft = leader?.raft;
    if (!leader || !raft || raft.role !== "leader" || !follower?.raft || leaderId === followerId) return;
    if (!raft.progress.has(followerId)) return;
    const key = linkKey(leaderId, followerId);
    const running = this.#episodes.get(key);
    // A running episode is still valid (it is dropped at the first fault): keep its larger M.
    if (running && this.#valid(running)) return;
    const agreedIndex = this.#agreedIndex(raft, follower.raft);
    const startIndex = raft.log.lastIndex();
    const lo = Math.max(agreedIndex + 1, raft.log.firstIndex());
    const missed = this.#entryBytes(raft, lo, startIndex);
    // The follower holds these, but the leader does not know it: they may go again.
    const match = raft.progress.get(followerId)!.match;
    const unacknowledged = this.#entryBytes(raft, Math.max(match + 1, raft.log.firstIndex()), agreedIndex);
    this.#begun++;
    this.#episodes.set(key, {
      leader: leaderId,
      term: raft.term,
      leaderIncarnation: leader.incarnation,
      follower: followerId,
      followerIncarnation: follower.incarnation,
      reason,
      began: now,
      startIndex,
      agreedIndex,
      missedBytes: missed,
      overheadBytes: catchUpOverheadBytes(this.config, unacknowledged),
      appendedBytes: 0,
      appendedThrough: startIndex,
      sentBytes: 0,
      linkFaults: this.#faultsBetween(leaderId, followerId),
    });
  }

  /** Bytes of the leader's entries in [lo, hi]. */
  #entryBytes(raft: Raft, lo: number, hi: number): number {
    if (lo > hi) return 0;
    const entries = raft.log.slice(lo, hi + 1, Number.MAX_SAFE_INTEGER) ?? [];
    return entries.reduce((sum, e) => sum + e.data.length, 0);
  }

  /** The last index at which the two logs hold the same entry (by log matching, a common prefix). */
  #agreedIndex(leader: Raft, follower: Raft): number {
    for (let i = Math.min(leader.log.lastIndex(), follower.log.lastIndex()); i > 0; i--) {
      const ours = follower.log.term(i);
      // Compacted by the follower: applied there, so committed, so the leader's entry too.
      if (ours === undefined) return i;
      if ((leader.log.term(i) ?? this.committedTerm(i)) === ours) return i;
    }
    return 0;
  }

  #valid(e: Episode): boolean {
    const leader = this.node(e.leader);
    const follower = this.node(e.follower);
    return (
      leader?.raft?.role === "leader" &&
      leader.incarnation === e.leaderIncarnation &&
      leader.raft.term === e.term &&
      leader.raft.progress.has(e.follower) &&
      follower?.raft !== null &&
      follower?.raft !== undefined &&
      follower.incarnation === e.followerIncarnation &&
      this.#faultsBetween(e.leader, e.follower) === e.linkFaults
    );
  }

  /** Every message the leader hands the network, before the network decides its fate. */
  sent(m: Message): void {
    if (m.type !== "app" || m.entries.length === 0 || this.#episodes.size === 0) return;
    const e = this.#episodes.get(linkKey(m.from, m.to));
    if (!e || m.term !== e.term) return;
    if (!this.#valid(e)) {
      this.#abandon(e);
      return;
    }
    for (const entry of m.entries) {
      e.sentBytes += entry.data.length;
      if (entry.index > e.appendedThrough) {
        e.appendedBytes += entry.data.length;
        e.appendedThrough = entry.index;
      }
    }
    const missed = e.missedBytes + e.appendedBytes;
    if (e.sentBytes > 2 * missed + e.overheadBytes) {
      this.fail(
        `catch-up bound: leader ${e.leader} (term ${e.term}) sent follower ${e.follower} ${e.sentBytes} bytes of entries ` +
          `since it came back (${e.reason}) at ${e.began}, missing ${e.missedBytes} bytes after index ${e.agreedIndex} ` +
          `up to ${e.startIndex} plus ${e.appendedBytes} appended since: more than 2 x ${missed} + ${e.overheadBytes}`,
      );
    }
  }

  /** Ends the episodes whose follower has caught up, and drops those no longer valid. */
  poll(): void {
    if (this.#episodes.size === 0) return;
    for (const e of this.#episodes.values()) {
      if (!this.#valid(e)) {
        this.#abandon(e);
        continue;
      }
      const progress = this.node(e.leader)!.raft!.progress.get(e.follower)!;
      if (progress.match < e.startIndex) continue;
      this.#episodes.delete(linkKey(e.leader, e.follower));
      this.#judged++;
      const missed = e.missedBytes + e.appendedBytes;
      this.#missedBytesMax = Math.max(this.#missedBytesMax, missed);
      this.#excessBytesMax = Math.max(this.#excessBytesMax, e.sentBytes - 2 * missed);
      this.#resentBytesMax = Math.max(this.#resentBytesMax, e.sentBytes - missed);
      this.#sentBytesTotal += e.sentBytes;
      this.#missedBytesTotal += missed;
    }
  }

  #abandon(e: Episode): void {
    this.#episodes.delete(linkKey(e.leader, e.follower));
    this.#abandoned++;
  }
}
