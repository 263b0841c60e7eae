import { MetaraftError } from "../errors.js";
import { decodeConfChange, encodeConfChange } from "./conf-change.js";
import { RaftLog } from "./log.js";
import { Progress } from "./progress.js";
import type { RaftStorage } from "./storage.js";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type HardState,
  type Message,
  NONE,
  type NodeId,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
} from "./types.js";

export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: RaftStorage;
  /** The random source for election timeouts, in [0, 1): injected so a seed replays a run. */
  readonly random: () => number;
  /** Voters of a new cluster, used only when the storage holds no configuration yet. */
  readonly peers?: readonly NodeId[];
  /** The host's applied index at start: committed entries up to it are not handed out again. */
  readonly applied?: number;
  /** Ticks without a leader before a follower campaigns (randomised in [n, 2n)). */
  readonly electionTicks?: number;
  readonly heartbeatTicks?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /** Entry data per append message; a single larger entry still goes alone. */
  readonly messageBytesMax?: number;
  /** Appends in flight to one follower before the leader waits for acknowledgements. */
  readonly inflightMessagesMax?: number;
  /**
   * Entry bytes in flight to one follower before the leader waits for acknowledgements (etcd's
   * MaxInflightBytes). Bounds both the memory a lagging follower costs the leader and the
   * appends one step can produce for it.
   */
  readonly inflightBytesMax?: number;
  /** Entries the leader holds uncommitted before `propose` refuses more. */
  readonly uncommittedEntriesMax?: number;
  /** Committed entry data handed out in one Ready. */
  readonly committedBytesMaxPerReady?: number;
  /** Linearizable reads waiting for their heartbeat round. */
  readonly pendingReadsMax?: number;
  /** A learner is promoted only once it is within this many entries of the leader. */
  readonly learnerLagEntriesMax?: number;
}

export const RAFT_DEFAULTS = {
  /** Also the default of the operator setting `raft.electionTicks`: src/settings.ts takes it from here. */
  electionTicks: 10,
  heartbeatTicks: 1,
  messageBytesMax: 1024 * 1024,
  inflightMessagesMax: 256,
  /**
   * 4 MiB: four full appends in flight per follower keep a fast link busy, while one step
   * never encodes more than this for a follower (256 x 1 MiB blocked the leader's event loop
   * for seconds when a restarted follower caught up).
   */
  inflightBytesMax: 4 * 1024 * 1024,
  uncommittedEntriesMax: 4096,
  committedBytesMaxPerReady: 16 * 1024 * 1024,
  pendingReadsMax: 4096,
  learnerLagEntriesMax: 1000,
} as const;

/** The outcome of a proposal: the entry it became. It committed if that index applies with that term. */
export interface Proposed {
  readonly index: number;
  readonly term: number;
}

interface PendingRead {
  readonly index: number;
  readonly ctx: Uint8Array;
  readonly acks: Set<NodeId>;
}

const EAGER_TYPES = new Set<Message["type"]>(["app", "heartbeat", "snap", "timeoutNow"]);

const ctxKey = (ctx: Uint8Array): string =>
  Buffer.from(ctx.buffer, ctx.byteOffset, ctx.length).toString("base64");

type Distribute<T> = T extends unknown ? Omit<T, "from" | "term"> & { term?: number } : never;
type Outgoing = Distribute<Message>;

/**
 * Raft as a pure state machine, after etcd's raft: inputs are `step`, `tick` and the proposal
 * methods; outputs leave through `ready()` and are acknowledged by `advance()`. No clock, no
 * randomness and no IO of its own.
 */
export class Raft {
  readonly id: NodeId;
  term = 0;
  vote: NodeId = NONE;
  leader: NodeId = NONE;
  role: Role = "follower";
  readonly log: RaftLog;
  readonly progress = new Map<NodeId, Progress>();
  readonly #voters = new Set<NodeId>();
  readonly #learners = new Set<NodeId>();

  readonly #random: () => number;
  readonly #electionTicks: number;
  readonly #heartbeatTicks: number;
  readonly #preVote: boolean;
  readonly #checkQuorum: boolean;
  readonly #messageBytesMax: number;
  readonly #inflightMessagesMax: number;
  readonly #inflightBytesMax: number;
  readonly #uncommittedEntriesMax: number;
  readonly #committedBytesMaxPerReady: number;
  readonly #pendingReadsMax: number;
  readonly #learnerLagEntriesMax: number;

  #electionElapsed = 0;
  #heartbeatElapsed = 0;
  #randomizedElectionTimeout = 0;
  #votes = new Map<NodeId, boolean>();
  #leadTransferee: NodeId = NONE;
  /** The index of the latest conf change proposed; another waits until it is applied. */
  #pendingConfIndex = 0;
  /**
   * The membership of a snapshot stepped while the Ready in flight hands the host conf changes
   * from before it: the host applies those to the membership they were committed in, so this
   * one replaces it only at that Ready's `advance`. No campaign meanwhile.
   */
  #restoredConfState: ConfState | null = null;

  #messages: Message[] = [];
  #eagerMessages: Message[] = [];
  #readStates: ReadState[] = [];
  #pendingReads: PendingRead[] = [];
  /** Reads asked before this leader committed an entry of its term: they wait for it. */
  #readsBeforeCommit: Uint8Array[] = [];

  #previousHardState: HardState;
  /** The hard state of the last Ready advanced: what the host has made durable. */
  #stableHardState: HardState;
  #previousSoftState: SoftState;
  /** The Ready handed out and not yet advanced: the next one waits for it. */
  #inFlight: Ready | null = null;
  /** Committed entries are handed out from here (applied + 1, or past the Ready in flight). */
  #nextToApply: number;

  constructor(config: RaftConfig) {
    this.id = config.id;
    this.#random = config.random;
    this.#electionTicks = config.electionTicks ?? RAFT_DEFAULTS.electionTicks;
    this.#heartbeatTicks = config.heartbeatTicks ?? RAFT_DEFAULTS.heartbeatTicks;
    this.#preVote = config.preVote ?? true;
    this.#checkQuorum = config.checkQuorum ?? true;
    this.#messageBytesMax = config.messageBytesMax ?? RAFT_DEFAULTS.messageBytesMax;
    this.#inflightMessagesMax = config.inflightMessagesMax ?? RAFT_DEFAULTS.inflightMessagesMax;
    this.#inflightBytesMax = config.inflightBytesMax ?? RAFT_DEFAULTS.inflightBytesMax;
    if (!(this.#inflightMessagesMax >= 1) || !(this.#inflightBytesMax >= 1)) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "raft: in-flight limits must be at least 1");
    }
    this.#uncommittedEntriesMax = config.uncommittedEntriesMax ?? RAFT_DEFAULTS.uncommittedEntriesMax;
    this.#committedBytesMaxPerReady =
      config.committedBytesMaxPerReady ?? RAFT_DEFAULTS.committedBytesMaxPerReady;
    this.#pendingReadsMax = config.pendingReadsMax ?? RAFT_DEFAULTS.pendingReadsMax;
    this.#learnerLagEntriesMax = config.learnerLagEntriesMax ?? RAFT_DEFAULTS.learnerLagEntriesMax;
    if (this.#heartbeatTicks >= this.#electionTicks) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        "raft: heartbeat ticks must be fewer than election ticks",
      );
    }

    const { hardState, confState } = config.storage.initialState();
    this.log = new RaftLog(config.storage, config.applied ?? 0);
    const bootstrap =
      confState.voters.length === 0 && confState.learners.length === 0 && config.peers
        ? { voters: config.peers, learners: [] }
        : confState;
    this.#setConfiguration(bootstrap);
    this.term = hardState.term;
    this.vote = hardState.vote;
    this.#previousHardState = hardState;
    this.#stableHardState = hardState;
    this.#nextToApply = this.log.applied + 1;
    this.#becomeFollower(this.term, NONE);
    this.#previousSoftState = this.softState();
  }

  // ---- inspection -------------------------------------------------------------------------

  softState(): SoftState {
    return { leader: this.leader, role: this.role };
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  confState(): ConfState {
    return {
      voters: [...this.#voters].sort((a, b) => a - b),
      learners: [...this.#learners].sort((a, b) => a - b),
    };
  }

  get #promotable(): boolean {
    return this.#voters.has(this.id);
  }

  get #quorum(): number {
    return Math.floor(this.#voters.size / 2) + 1;
  }

  // ---- inputs -----------------------------------------------------------------------------

  /** One tick of the host's clock. */
  tick(): void {
    if (this.role === "leader") {
      this.#tickHeartbeat();
    } else {
      this.#electionElapsed++;
      if (this.#promotable && this.#electionElapsed >= this.#randomizedElectionTimeout) {
        this.#electionElapsed = 0;
        this.#hup(false);
      }
    }
  }

  /** Starts an election now, as a timeout would (through PreVote when enabled). */
  campaign(): void {
    this.#hup(false);
  }

  /** Appends `data` as a new entry if this node is the leader. */
  propose(data: Uint8Array): Proposed {
    return this.#proposeEntry("normal", data);
  }

  proposeConfChange(change: ConfChange): Proposed {
    if (this.role === "leader") {
      if (this.#pendingConfIndex > this.log.applied) {
        throw new MetaraftError(
          "MR_ERR_CONF_CHANGE_REJECTED",
          "another membership change is still being applied",
        );
      }
      if (!this.#committedEntryInCurrentTerm()) {
        // The fix for single-server changes: the leader must first commit an entry of its term.
        throw new MetaraftError(
          "MR_ERR_CONF_CHANGE_REJECTED",
          "the leader has not committed an entry of its term yet",
        );
      }
      this.#validateConfChange(change);
    }
    const proposed = this.#proposeEntry("confChange", encodeConfChange(change));
    this.#pendingConfIndex = proposed.index;
    return proposed;
  }

  #validateConfChange(change: ConfChange): void {
    const reject = (why: string): never => {
      throw new MetaraftError("MR_ERR_CONF_CHANGE_REJECTED", why);
    };
    switch (change.kind) {
      case "addLearner":
        if (this.#voters.has(change.node)) reject(`node ${change.node} is already a voter`);
        break;
      case "addVoter": {
        if (this.#voters.has(change.node)) reject(`node ${change.node} is already a voter`);
        const learner = this.progress.get(change.node);
        if (!learner?.isLearner) reject(`node ${change.node} must join as a learner and catch up first`);
        if (learner!.match + this.#learnerLagEntriesMax < this.log.lastIndex()) {
          reject(`learner ${change.node} is at ${learner!.match}, the log at ${this.log.lastIndex()}`);
        }
        break;
      }
      case "removeNode":
        if (!this.#voters.has(change.node) && !this.#learners.has(change.node))
          reject(`node ${change.node} is not a member`);
        if (this.#voters.has(change.node) && this.#voters.size === 1) reject("cannot remove the last voter");
        break;
    }
  }

  #proposeEntry(type: Entry["type"], data: Uint8Array): Proposed {
    if (this.role !== "leader") {
      throw new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader: this.leader } });
    }
    if (this.#leadTransferee !== NONE) {
      throw new MetaraftError("MR_ERR_PROPOSAL_DROPPED", `leadership is moving to ${this.#leadTransferee}`);
    }
    if (this.log.lastIndex() - this.log.committed >= this.#uncommittedEntriesMax) {
      throw new MetaraftError(
        "MR_ERR_PROPOSAL_DROPPED",
        `${this.#uncommittedEntriesMax} entries are uncommitted`,
      );
    }
    const index = this.log.lastIndex() + 1;
    this.#appendEntries([{ term: this.term, index, type, data }]);
    this.#broadcastAppend();
    return { index, term: this.term };
  }

  /**
   * Asks for a linearizable read. On the leader the read is released into `Ready.readStates`
   * once a quorum confirms its leadership; elsewhere this fails with NOT_LEADER.
   */
  readIndex(ctx: Uint8Array): void {
    if (this.role !== "leader")
      throw new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader: this.leader } });
    if (this.#pendingReads.length + this.#readsBeforeCommit.length >= this.#pendingReadsMax) {
      throw new MetaraftError("MR_ERR_PROPOSAL_DROPPED", `${this.#pendingReadsMax} reads are pending`);
    }
    if (!this.#committedEntryInCurrentTerm()) {
      this.#readsBeforeCommit.push(ctx);
      return;
    }
    this.#startRead(ctx);
  }

  #startRead(ctx: Uint8Array): void {
    if (this.#voters.size === 1) {
      this.#readStates.push({ index: this.log.committed, ctx });
      return;
    }
    this.#pendingReads.push({ index: this.log.committed, ctx, acks: new Set([this.id]) });
    this.#broadcastHeartbeat(ctx);
  }

  /** Hands leadership to `to` once its log is up to date (leader only). */
  transferLeader(to: NodeId): void {
    if (this.role !== "leader")
      throw new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader: this.leader } });
    if (to === this.id || !this.#voters.has(to)) return;
    if (this.#leadTransferee === to) return;
    this.#leadTransferee = to;
    // The transfer must finish within an election timeout, or it is abandoned.
    this.#electionElapsed = 0;
    const progress = this.progress.get(to)!;
    if (progress.match === this.log.lastIndex()) this.#send({ type: "timeoutNow", to });
    else this.#sendAppend(to, true);
  }

  /** The host could not reach `to`: probe it again rather than pipelining into the void. */
  reportUnreachable(to: NodeId): void {
    const progress = this.progress.get(to);
    if (this.role === "leader" && progress?.state === "replicate") progress.becomeProbe();
  }

  /** The host finished (or failed) sending a snapshot to `to`. */
  reportSnapshot(to: NodeId, ok: boolean): void {
    const progress = this.progress.get(to);
    if (this.role !== "leader" || progress?.state !== "snapshot") return;
    if (!ok) progress.pendingSnapshot = 0;
    // Wait for the follower's answer (or a heartbeat) before sending more.
    progress.becomeProbe();
    progress.probeSent = true;
  }

  /** Applies a committed conf change; the host calls this when it applies the entry. */
  applyConfChange(change: ConfChange): ConfState {
    switch (change.kind) {
      case "addVoter":
        this.#learners.delete(change.node);
        this.#voters.add(change.node);
        this.#ensureProgress(change.node, false);
        break;
      case "addLearner":
        this.#voters.delete(change.node);
        this.#learners.add(change.node);
        this.#ensureProgress(change.node, true);
        break;
      case "removeNode": {
        const removed = this.progress.get(change.node);
        if (this.role === "leader" && removed && change.node !== this.id) {
          // The last word to a removed member: the commit of what it holds, so that it applies
          // its own removal (and stops campaigning) instead of never hearing from us again.
          this.#send({
            type: "heartbeat",
            to: change.node,
            commit: Math.min(removed.match, this.log.committed),
            ctx: null,
          });
        }
        this.#voters.delete(change.node);
        this.#learners.delete(change.node);
        this.progress.delete(change.node);
        if (this.#leadTransferee === change.node) this.#leadTransferee = NONE;
        break;
      }
    }
    if (this.role === "leader") {
      if (!this.#voters.has(this.id)) {
        // A removed leader steps down; the remaining voters elect a new one.
        this.#becomeFollower(this.term, NONE);
      } else if (this.#maybeCommit()) {
        this.#broadcastAppend();
      } else if (change.kind !== "removeNode" && change.node !== this.id) {
        // Start a new member's catch-up now rather than at the next proposal.
        this.#sendAppend(change.node, true);
      }
    }
    return this.confState();
  }

  #ensureProgress(node: NodeId, isLearner: boolean): void {
    const existing = this.progress.get(node);
    if (existing) {
      existing.isLearner = isLearner;
      return;
    }
    const progress = new Progress(
      this.log.lastIndex() + 1,
      this.#inflightMessagesMax,
      this.#inflightBytesMax,
      isLearner,
    );
    progress.recentActive = true;
    if (node === this.id) progress.match = this.#stableLastIndex();
    this.progress.set(node, progress);
  }

  #setConfiguration(confState: ConfState): void {
    this.#voters.clear();
    this.#learners.clear();
    this.progress.clear();
    for (const voter of confState.voters) {
      this.#voters.add(voter);
      this.#ensureProgress(voter, false);
    }
    for (const learner of confState.learners) {
      this.#learners.add(learner);
      this.#ensureProgress(learner, true);
    }
  }

  /** One message from a peer. */
  step(m: Message): void {
    if ((m.type === "voteResp" || m.type === "preVoteResp") && m.commit !== undefined) {
      this.#learnCommit(m.commit, m.commitTerm ?? 0);
    }
    if (m.term > this.term) {
      if (m.type === "vote" || m.type === "preVote") {
        const inLease =
          this.#checkQuorum && this.leader !== NONE && this.#electionElapsed < this.#electionTicks;
        // A node that still hears its leader ignores disruptive candidates (unless asked by a transfer).
        if (!m.transfer && inLease) return;
      }
      if (m.type === "preVote" || (m.type === "preVoteResp" && !m.reject)) {
        // PreVote does not move terms; a granted pre-vote carries the candidate's future term.
      } else if (m.type === "app" || m.type === "heartbeat" || m.type === "snap") {
        this.#becomeFollower(m.term, m.from);
      } else {
        this.#becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.#checkQuorum || this.#preVote) && (m.type === "heartbeat" || m.type === "app")) {
        // A stale leader (say, one that was partitioned) learns our term from this and steps down.
        this.#send({ type: "appResp", to: m.from, reject: false, index: 0, rejectHint: 0, hintTerm: 0 });
      } else if (m.type === "preVote") {
        this.#send({ type: "preVoteResp", to: m.from, reject: true });
      }
      return;
    }

    if (m.type === "vote" || m.type === "preVote") {
      const canVote =
        this.vote === m.from ||
        (this.vote === NONE && this.leader === NONE) ||
        (m.type === "preVote" && m.term > this.term);
      if (canVote && this.log.isUpToDate(m.lastIndex, m.lastTerm)) {
        const respType = m.type === "vote" ? "voteResp" : "preVoteResp";
        // The response carries the request's term, so a pre-candidate counts it.
        this.#send({ type: respType, to: m.from, term: m.term, reject: false });
        if (m.type === "vote") {
          this.#electionElapsed = 0;
          this.vote = m.from;
        }
      } else {
        // Our commit goes with the refusal: see #learnCommit.
        this.#send({
          type: m.type === "vote" ? "voteResp" : "preVoteResp",
          to: m.from,
          reject: true,
          commit: this.log.committed,
          commitTerm: this.log.term(this.log.committed) ?? 0,
        });
      }
      return;
    }

    switch (this.role) {
      case "leader":
        this.#stepLeader(m);
        break;
      case "candidate":
      case "preCandidate":
        this.#stepCandidate(m);
        break;
      case "follower":
        this.#stepFollower(m);
        break;
    }
  }

  /**
   * A voter that refused us its vote told us its commit index and that entry's term. If we hold
   * the same entry there, our log up to it is the voter's (log matching), so it is committed.
   * Without this a cluster can stall for good after a removal: a member that applied its own
   * removal no longer campaigns, and a voter that missed the commit of that removal still counts
   * it and needs its vote, which it refuses while its log is the longer (it holds entries that
   * reached no one else, or that the leader lost in a crash). Knowing the commit, the voter
   * applies the removal and is elected without it.
   */
  #learnCommit(index: number, term: number): void {
    if (this.role === "leader" || index <= this.log.committed || index > this.log.lastIndex()) return;
    if (this.log.term(index) !== term) return;
    this.log.commitTo(index);
  }

  #stepLeader(m: Message): void {
    const progress = this.progress.get(m.from);
    if (!progress) return;
    switch (m.type) {
      case "appResp": {
        progress.recentActive = true;
        if (m.reject) {
          const hint = m.hintTerm > 0 ? this.log.findConflictByTerm(m.rejectHint, m.hintTerm) : m.rejectHint;
          if (progress.maybeDecrTo(m.index, hint)) {
            if (progress.state === "replicate") progress.becomeProbe();
            this.#sendAppend(m.from, true);
          }
          return;
        }
        const wasPaused = progress.isPaused();
        // As etcd: a probe answered at exactly `match` (an empty probe) also ends probing.
        const probeAnswered = progress.state === "probe" && m.index === progress.match;
        if (!progress.maybeUpdate(m.index) && !probeAnswered) return;
        if (progress.state === "probe") progress.becomeReplicate();
        else if (progress.state === "snapshot" && progress.match >= progress.pendingSnapshot)
          progress.becomeReplicate();
        else if (progress.state === "replicate") progress.inflights.freeLE(m.index);

        if (this.#maybeCommit()) this.#broadcastAppend();
        else if (wasPaused) this.#sendAppend(m.from, true);
        // Pipelining: keep the window full. The window's byte limit bounds this loop's output.
        while (this.#sendAppend(m.from, false)) {}
        if (m.from === this.#leadTransferee && progress.match === this.log.lastIndex()) {
          this.#send({ type: "timeoutNow", to: m.from });
        }
        return;
      }
      case "heartbeatResp": {
        progress.recentActive = true;
        if (progress.state === "probe" && progress.probeSent) {
          // The probe is unanswered: lost, or slow because it is large or the follower busy.
          // Ask again with no entries, so the tail goes out again only on an answer (a lost
          // probe costs one round trip; a slow one is not resent once per heartbeat).
          this.#sendEmptyProbe(m.from, progress);
        } else {
          // A full window frees one slot, as etcd: appends that were all lost get a successor,
          // whose rejection starts probing. In-flight entries are never sent again here.
          if (progress.state === "replicate" && progress.inflights.full()) progress.inflights.freeFirstOne();
          if (progress.match < this.log.lastIndex() || progress.state === "probe")
            this.#sendAppend(m.from, true);
        }
        if (m.ctx) this.#ackRead(m.from, m.ctx);
        return;
      }
      default:
        return;
    }
  }

  #ackRead(from: NodeId, ctx: Uint8Array): void {
    const key = ctxKey(ctx);
    const at = this.#pendingReads.findIndex((read) => ctxKey(read.ctx) === key);
    if (at < 0) return;
    const read = this.#pendingReads[at]!;
    if (!this.#voters.has(from)) return;
    read.acks.add(from);
    if (read.acks.size < this.#quorum) return;
    // Leadership at this read's moment is confirmed, and so it is for every read before it.
    for (const released of this.#pendingReads.splice(0, at + 1)) {
      this.#readStates.push({ index: released.index, ctx: released.ctx });
    }
  }

  #stepCandidate(m: Message): void {
    switch (m.type) {
      case "app":
        this.#becomeFollower(m.term, m.from);
        this.#handleAppend(m);
        return;
      case "heartbeat":
        this.#becomeFollower(m.term, m.from);
        this.#handleHeartbeat(m);
        return;
      case "snap":
        this.#becomeFollower(m.term, m.from);
        this.#handleSnapshot(m);
        return;
      case "voteResp":
      case "preVoteResp": {
        const expected = this.role === "preCandidate" ? "preVoteResp" : "voteResp";
        if (m.type !== expected) return;
        const result = this.#poll(m.from, !m.reject);
        if (result === "won") {
          if (this.role === "preCandidate") this.#campaign("election", false);
          else {
            this.#becomeLeader();
            this.#broadcastAppend();
          }
        } else if (result === "lost") {
          this.#becomeFollower(this.term, NONE);
        }
        return;
      }
      default:
        return;
    }
  }

  #stepFollower(m: Message): void {
    switch (m.type) {
      case "app":
        this.#electionElapsed = 0;
        this.leader = m.from;
        this.#handleAppend(m);
        return;
      case "heartbeat":
        this.#electionElapsed = 0;
        this.leader = m.from;
        this.#handleHeartbeat(m);
        return;
      case "snap":
        this.#electionElapsed = 0;
        this.leader = m.from;
        this.#handleSnapshot(m);
        return;
      case "timeoutNow":
        if (this.#promotable) this.#hup(true);
        return;
      default:
        return;
    }
  }

  #handleAppend(m: Extract<Message, { type: "app" }>): void {
    if (m.prevIndex < this.log.committed) {
      this.#send({
        type: "appResp",
        to: m.from,
        reject: false,
        index: this.log.committed,
        rejectHint: 0,
        hintTerm: 0,
      });
      return;
    }
    const lastNew = this.log.maybeAppend(m.prevIndex, m.prevTerm, m.commit, m.entries);
    if (lastNew >= 0) {
      this.#send({ type: "appResp", to: m.from, reject: false, index: lastNew, rejectHint: 0, hintTerm: 0 });
      return;
    }
    // Fast backtracking: point the leader at the last entry that can possibly match.
    const hint = this.log.findConflictByTerm(Math.min(m.prevIndex, this.log.lastIndex()), m.prevTerm);
    this.#send({
      type: "appResp",
      to: m.from,
      reject: true,
      index: m.prevIndex,
      rejectHint: hint,
      hintTerm: this.log.term(hint) ?? 0,
    });
  }

  #handleHeartbeat(m: Extract<Message, { type: "heartbeat" }>): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.#send({ type: "heartbeatResp", to: m.from, ctx: m.ctx });
  }

  #handleSnapshot(m: Extract<Message, { type: "snap" }>): void {
    const index = this.#restore(m.snapshot) ? this.log.lastIndex() : this.log.committed;
    this.#send({ type: "appResp", to: m.from, reject: false, index, rejectHint: 0, hintTerm: 0 });
  }

  #restore(snapshot: Snapshot): boolean {
    const { index, term } = snapshot.meta;
    if (index <= this.log.committed) return false;
    if (this.log.matchTerm(index, term)) {
      // We hold the snapshot's last entry already: fast-forward the commit instead.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(snapshot);
    if (this.#inFlight?.committedEntries.some((entry) => entry.type === "confChange")) {
      this.#restoredConfState = snapshot.meta.confState;
    } else {
      this.#setConfiguration(snapshot.meta.confState);
    }
    return true;
  }

  // ---- roles ------------------------------------------------------------------------------

  #reset(term: number): void {
    if (this.term !== term) {
      this.term = term;
      this.vote = NONE;
    }
    this.leader = NONE;
    this.#electionElapsed = 0;
    this.#heartbeatElapsed = 0;
    this.#randomizedElectionTimeout = this.#electionTicks + Math.floor(this.#random() * this.#electionTicks);
    this.#votes = new Map();
    this.#leadTransferee = NONE;
    this.#pendingReads = [];
    this.#readsBeforeCommit = [];
    for (const [id, progress] of this.progress) {
      const fresh = new Progress(
        this.log.lastIndex() + 1,
        this.#inflightMessagesMax,
        this.#inflightBytesMax,
        progress.isLearner,
      );
      if (id === this.id) fresh.match = this.#stableLastIndex();
      this.progress.set(id, fresh);
    }
  }

  /** The last index the host has made durable: what the leader may count for itself. */
  #stableLastIndex(): number {
    return this.log.unstable.offset - 1;
  }

  #becomeFollower(term: number, leader: NodeId): void {
    this.#reset(term);
    this.role = "follower";
    this.leader = leader;
  }

  #becomePreCandidate(): void {
    // Neither the term nor the vote changes: a pre-election leaves no trace if it fails.
    this.role = "preCandidate";
    this.#votes = new Map();
    this.leader = NONE;
  }

  #becomeCandidate(): void {
    this.#reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  #becomeLeader(): void {
    this.#reset(this.term);
    this.role = "leader";
    this.leader = this.id;
    this.#pendingConfIndex = this.log.lastIndex();
    // The no-op of §8: entries of earlier terms commit only beneath one of this term.
    this.#appendEntries([
      { term: this.term, index: this.log.lastIndex() + 1, type: "normal", data: new Uint8Array(0) },
    ]);
  }

  #hup(transfer: boolean): void {
    if (this.role === "leader" || !this.#promotable) return;
    if (this.#hasUnappliedConfChanges()) return;
    this.#campaign(this.#preVote && !transfer ? "preElection" : "election", transfer);
  }

  #hasUnappliedConfChanges(): boolean {
    if (this.#restoredConfState) return true;
    if (this.log.committed <= this.log.applied) return false;
    const pending =
      this.log.slice(this.log.applied + 1, this.log.committed + 1, Number.MAX_SAFE_INTEGER) ?? [];
    return pending.some((entry) => entry.type === "confChange");
  }

  #campaign(kind: "preElection" | "election", transfer: boolean): void {
    let term: number;
    let type: "vote" | "preVote";
    if (kind === "preElection") {
      this.#becomePreCandidate();
      term = this.term + 1;
      type = "preVote";
    } else {
      this.#becomeCandidate();
      term = this.term;
      type = "vote";
    }
    if (this.#poll(this.id, true) === "won") {
      if (kind === "preElection") this.#campaign("election", transfer);
      else this.#becomeLeader();
      return;
    }
    const lastIndex = this.log.lastIndex();
    const lastTerm = this.log.lastTerm();
    for (const voter of this.#voters) {
      if (voter === this.id) continue;
      this.#send({ type, to: voter, term, lastIndex, lastTerm, transfer });
    }
  }

  #poll(from: NodeId, granted: boolean): "won" | "lost" | "pending" {
    if (!this.#voters.has(from)) return "pending";
    if (!this.#votes.has(from)) this.#votes.set(from, granted);
    let yes = 0;
    let no = 0;
    for (const [voter, vote] of this.#votes) {
      if (!this.#voters.has(voter)) continue;
      if (vote) yes++;
      else no++;
    }
    if (yes >= this.#quorum) return "won";
    if (no > this.#voters.size - this.#quorum) return "lost";
    return "pending";
  }

  #tickHeartbeat(): void {
    this.#heartbeatElapsed++;
    this.#electionElapsed++;
    for (const progress of this.progress.values()) {
      // A snapshot whose answer never came (lost, or the host never reported) is tried again.
      if (progress.state === "snapshot" && ++progress.snapshotTicks >= 2 * this.#electionTicks) {
        progress.pendingSnapshot = 0;
        progress.becomeProbe();
      }
    }
    if (this.#electionElapsed >= this.#electionTicks) {
      this.#electionElapsed = 0;
      if (this.#checkQuorum && !this.#quorumActive()) {
        this.#becomeFollower(this.term, NONE);
        return;
      }
      this.#leadTransferee = NONE;
    }
    if (this.#heartbeatElapsed >= this.#heartbeatTicks) {
      this.#heartbeatElapsed = 0;
      this.#broadcastHeartbeat(null);
    }
  }

  /** CheckQuorum: has a quorum been heard from since the last round? Resets the marks. */
  #quorumActive(): boolean {
    let active = 0;
    for (const [id, progress] of this.progress) {
      if (id === this.id) {
        if (this.#voters.has(id)) active++;
        continue;
      }
      if (progress.recentActive && this.#voters.has(id)) active++;
      progress.recentActive = false;
    }
    return active >= this.#quorum;
  }

  // ---- replication ------------------------------------------------------------------------

  #appendEntries(entries: Entry[]): void {
    this.log.append(entries);
    // The leader counts itself only for what is durable: see `advance`.
  }

  #committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  /** The commit rule: the highest index a quorum holds, if it is of the current term (Figure 8). */
  #maybeCommit(): boolean {
    const matches: number[] = [];
    for (const voter of this.#voters) matches.push(this.progress.get(voter)?.match ?? 0);
    matches.sort((a, b) => b - a);
    const quorumIndex = matches[this.#quorum - 1] ?? 0;
    if (quorumIndex <= this.log.committed || this.log.term(quorumIndex) !== this.term) return false;
    const hadCommitInTerm = this.#committedEntryInCurrentTerm();
    this.log.commitTo(quorumIndex);
    if (!hadCommitInTerm) {
      for (const ctx of this.#readsBeforeCommit.splice(0)) this.#startRead(ctx);
    }
    return true;
  }

  #broadcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.#sendAppend(id, true);
  }

  #broadcastHeartbeat(ctx: Uint8Array | null): void {
    for (const [id, progress] of this.progress) {
      if (id === this.id) continue;
      // A follower must not be told of a commit beyond what it holds.
      this.#send({ type: "heartbeat", to: id, commit: Math.min(progress.match, this.log.committed), ctx });
    }
  }

  /** Sends the next append (or the snapshot) to `to`; false when nothing was sent. */
  #sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const progress = this.progress.get(to);
    if (!progress || progress.isPaused()) return false;
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    // In replicate state an append takes no more than the window has left, so the bytes in
    // flight stay within inflightBytesMax (a single larger entry still goes alone).
    const bytesMax =
      progress.state === "replicate"
        ? Math.min(this.#messageBytesMax, progress.inflights.bytesRemaining)
        : this.#messageBytesMax;
    const entries =
      prevTerm === undefined ? undefined : this.log.slice(progress.next, this.log.lastIndex() + 1, bytesMax);
    if (prevTerm === undefined || entries === undefined) return this.#sendSnapshot(to, progress);
    if (entries.length === 0 && !sendIfEmpty) return false;
    this.#send({ type: "app", to, prevIndex, prevTerm, entries, commit: this.log.committed });
    if (entries.length > 0) {
      const last = entries[entries.length - 1]!.index;
      if (progress.state === "replicate") {
        progress.optimisticUpdate(last);
        progress.inflights.add(last, entryBytes(entries));
      } else if (progress.state === "probe") {
        progress.probeSent = true;
      }
    } else if (progress.state === "probe") {
      progress.probeSent = true;
    }
    return true;
  }

  /** Probes `to` again at the same index, with no entries: its answer releases the tail. */
  #sendEmptyProbe(to: NodeId, progress: Progress): void {
    const prevIndex = progress.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined) {
      // Compacted meanwhile: the follower needs a snapshot, which sendAppend decides on.
      progress.probeSent = false;
      this.#sendAppend(to, true);
      return;
    }
    this.#send({ type: "app", to, prevIndex, prevTerm, entries: [], commit: this.log.committed });
  }

  #sendSnapshot(to: NodeId, progress: Progress): boolean {
    if (!progress.recentActive) return false;
    let snapshot: Snapshot;
    try {
      snapshot = this.log.storage.snapshot();
    } catch (error) {
      if (error instanceof MetaraftError && error.code === "MR_ERR_SNAPSHOT_UNAVAILABLE") return false;
      throw error;
    }
    if (snapshot.meta.index === 0) return false;
    progress.becomeSnapshot(snapshot.meta.index);
    this.#send({ type: "snap", to, snapshot });
    return true;
  }

  #send(m: Outgoing): void {
    const message = { ...m, from: this.id, term: m.term ?? this.term } as Message;
    if (this.role === "leader" && this.#termDurable() && EAGER_TYPES.has(message.type))
      this.#eagerMessages.push(message);
    else this.#messages.push(message);
  }

  /**
   * Whether this leader's term and its vote for itself are durable. Until they are, its
   * messages wait for the Ready that writes them: a leader that crashed before that write could
   * restart in the previous term and win this one again (alone, a single voter needs nobody's
   * vote), appending other entries at the same indices, and a follower that had been sent the
   * first ones would keep them, having the same index and term.
   */
  #termDurable(): boolean {
    return this.#stableHardState.term === this.term && this.#stableHardState.vote === this.id;
  }

  // ---- Ready ------------------------------------------------------------------------------

  hasReady(): boolean {
    if (this.#inFlight) return false;
    const soft = this.softState();
    const hard = this.hardState();
    return (
      this.#messages.length > 0 ||
      this.#eagerMessages.length > 0 ||
      this.#readStates.length > 0 ||
      this.log.unstable.entries.length > 0 ||
      this.log.unstable.snapshot !== null ||
      this.log.committed >= this.#nextToApply ||
      soft.leader !== this.#previousSoftState.leader ||
      soft.role !== this.#previousSoftState.role ||
      !sameHardState(hard, this.#previousHardState)
    );
  }

  /**
   * The leader's appends and heartbeats produced since the last Ready, taken out now. They do
   * not depend on any local write but that of its term (see #termDurable, which holds them in
   * the Ready's `messages` until then), so a host that steps messages while a Ready is being
   * persisted sends them at once instead of holding them for the next Ready (which comes only
   * after that write): a follower's ack, or a proposal, need not wait for the leader's fsync.
   */
  takeEagerMessages(): Message[] {
    const messages = this.#eagerMessages;
    this.#eagerMessages = [];
    return messages;
  }

  /** What the host must do now; see `Ready`. Call `advance` before asking for the next one. */
  ready(): Ready {
    if (this.#inFlight) throw new MetaraftError("MR_ERR_INTERNAL", "raft: ready() before advance()");
    const soft = this.softState();
    const hard = this.hardState();
    const softChanged =
      soft.leader !== this.#previousSoftState.leader || soft.role !== this.#previousSoftState.role;
    const snapshot = this.log.unstable.snapshot;
    const committedEntries = snapshot
      ? []
      : this.log.nextCommittedEntries(this.#nextToApply, this.#committedBytesMaxPerReady);
    const ready: Ready = {
      softState: softChanged ? soft : null,
      hardState: sameHardState(hard, this.#previousHardState) ? null : hard,
      entries: [...this.log.unstable.entries],
      snapshot,
      committedEntries,
      messages: this.#messages,
      eagerMessages: this.#eagerMessages,
      readStates: this.#readStates,
    };
    this.#messages = [];
    this.#eagerMessages = [];
    this.#readStates = [];
    if (ready.softState) this.#previousSoftState = soft;
    if (ready.hardState) this.#previousHardState = hard;
    if (committedEntries.length > 0)
      this.#nextToApply = committedEntries[committedEntries.length - 1]!.index + 1;
    if (snapshot) this.#nextToApply = snapshot.meta.index + 1;
    this.#inFlight = ready;
    return ready;
  }

  /** The host has persisted, sent and applied `ready`. */
  advance(): void {
    const ready = this.#inFlight;
    if (!ready) throw new MetaraftError("MR_ERR_INTERNAL", "raft: advance() without ready()");
    this.#inFlight = null;
    if (ready.hardState) this.#stableHardState = ready.hardState;
    if (ready.snapshot) {
      this.log.stableSnapTo(ready.snapshot.meta.index);
      this.log.appliedTo(Math.max(this.log.applied, ready.snapshot.meta.index));
    }
    const last = ready.entries[ready.entries.length - 1];
    if (last) {
      this.log.stableTo(last.index, last.term);
      if (this.role === "leader") {
        // The leader's own durable log now counts towards a quorum.
        const self = this.progress.get(this.id);
        if (self?.maybeUpdate(this.#stableLastIndex()) && this.#maybeCommit()) this.#broadcastAppend();
      }
    }
    const applied = ready.committedEntries[ready.committedEntries.length - 1];
    if (applied) this.log.appliedTo(applied.index);
    if (this.#restoredConfState) {
      // The host has applied this Ready's conf changes: the restored snapshot's membership now.
      this.#setConfiguration(this.#restoredConfState);
      this.#restoredConfState = null;
    }
  }

  /** Decodes a committed conf change entry's data (for the host's apply loop). */
  static decodeConfChange(entry: Entry): ConfChange {
    return decodeConfChange(entry.data);
  }
}

function entryBytes(entries: readonly Entry[]): number {
  let bytes = 0;
  for (const entry of entries) bytes += entry.data.length;
  return bytes;
}

function sameHardState(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
