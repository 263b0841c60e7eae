/**
 * The data the Raft core works on. Nothing here does IO: the host persists, sends and applies
 * what `Ready` hands it. Integers that count (term, index) are JavaScript numbers below 2^53,
 * stored as u64.
 */

export type NodeId = number;

/** No node: a vote not cast, a leader not known. Node ids start at 1. */
export const NONE: NodeId = 0;

export type EntryType = "normal" | "confChange";

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Empty for the no-op a new leader appends; for `confChange`, an encoded ConfChange. */
  readonly data: Uint8Array;
}

/** What must be durable before any message that depends on it is sent. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

export const EMPTY_HARD_STATE: HardState = { term: 0, vote: NONE, commit: 0 };

export interface ConfState {
  readonly voters: readonly NodeId[];
  /** Receive the log but neither vote nor count towards a quorum, until promoted. */
  readonly learners: readonly NodeId[];
}

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  readonly data: Uint8Array;
}

export type ConfChangeKind = "addVoter" | "addLearner" | "removeNode";

/** One server at a time: the single-server membership change of the Raft dissertation. */
export interface ConfChange {
  readonly kind: ConfChangeKind;
  readonly node: NodeId;
  /** Opaque to Raft (etcd's ConfChange.Context): the host's member record, such as its addresses. */
  readonly context?: Uint8Array;
}

/** A linearizable read: `ctx` is the host's request id, `index` the commit index to wait for. */
export interface ReadState {
  readonly index: number;
  readonly ctx: Uint8Array;
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/**
 * Messages between nodes, a discriminated union on `type`. PreVote messages carry the term
 * the candidate would campaign at, without having raised its own.
 */
export type Message =
  | (MessageBase & {
      readonly type: "vote" | "preVote";
      readonly lastIndex: number;
      readonly lastTerm: number;
      /** Set by leadership transfer: the receiver votes even though it has a live leader. */
      readonly transfer: boolean;
    })
  | (MessageBase & {
      readonly type: "voteResp" | "preVoteResp";
      readonly reject: boolean;
      /** On a refusal: the voter's commit index and the term of that entry (see Raft#learnCommit). */
      readonly commit?: number;
      readonly commitTerm?: number;
    })
  | (MessageBase & {
      readonly type: "app";
      readonly prevIndex: number;
      readonly prevTerm: number;
      readonly entries: readonly Entry[];
      readonly commit: number;
    })
  | (MessageBase & {
      readonly type: "appResp";
      readonly reject: boolean;
      /** On success the last index now matching; on reject the index that was probed. */
      readonly index: number;
      /** On reject: a hint for fast backtracking (the follower's last index, or the first index of the conflicting term). */
      readonly rejectHint: number;
      readonly hintTerm: number;
    })
  | (MessageBase & { readonly type: "heartbeat"; readonly commit: number; readonly ctx: Uint8Array | null })
  | (MessageBase & { readonly type: "heartbeatResp"; readonly ctx: Uint8Array | null })
  | (MessageBase & { readonly type: "snap"; readonly snapshot: Snapshot })
  | (MessageBase & { readonly type: "timeoutNow" });

export type MessageType = Message["type"];

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

/** Volatile state the host may show (status, metrics); changes are reported in `Ready`. */
export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

/**
 * What the host must do, in this order:
 * 1. Persist `snapshot` (if any), then `entries` (append, truncating any conflicting tail),
 *    then `hardState` (if any), durably (fsync).
 * 2. Send `messages`. (`eagerMessages` may be sent at once, before step 1 finishes: they are
 *    the leader's appends and heartbeats, whose safety does not depend on its own log being
 *    durable, because the leader counts itself towards a commit only after `advance`. Its term
 *    and vote must be durable, though: until a Ready that wrote them is advanced, its messages
 *    come in `messages`.)
 * 3. Apply `snapshot`, then `committedEntries`, to the state machine; for a committed
 *    `confChange` entry call `applyConfChange`.
 * 4. Serve `readStates` once the applied index reaches each one's `index`.
 * 5. Call `advance(ready)`.
 */
export interface Ready {
  readonly softState: SoftState | null;
  readonly hardState: HardState | null;
  readonly entries: readonly Entry[];
  readonly snapshot: Snapshot | null;
  readonly committedEntries: readonly Entry[];
  readonly messages: readonly Message[];
  readonly eagerMessages: readonly Message[];
  readonly readStates: readonly ReadState[];
}
