import type { LedgerEvent, LedgerSummary, ListenerRecord } from "../events/index.js";
import type { BucketInfo, KeyInfo, ListReply, VolumeInfo } from "../namespace/index.js";

/**
 * The client protocol's ops (DESIGN.md, "Formats"): what a client may send on a client
 * connection, and what each answers. One table for the server's dispatch, the client's methods
 * and the docs; a reply type says what a successful response carries besides the envelope's
 * `id` and `ok`.
 */

/** The hello's `protocol`: a server refuses any other. */
export const PROTOCOL_VERSION = 1;

/**
 * Every op, by how it is served:
 * - `control`: answered by the connection itself, before any handler (`ping`);
 * - `write`: executed once on the leader (a follower answers NOT_LEADER); carries `clientId` and
 *   `callId`, so a retry is answered from the replay cache;
 * - `read`: on the leader after a ReadIndex round, or with `stale` on any node;
 * - `admin`: membership and status, each served where its comment in the server says;
 * - `stream`: opens or ends a server-pushed stream on this connection (watches); any node.
 */
export const OP_KINDS = {
  ping: "control",
  status: "admin",
  memberList: "admin",
  memberAdd: "admin",
  memberPromote: "admin",
  memberRemove: "admin",
  leaderTransfer: "admin",
  createVolume: "write",
  deleteVolume: "write",
  infoVolume: "read",
  listVolumes: "read",
  createBucket: "write",
  deleteBucket: "write",
  infoBucket: "read",
  listBuckets: "read",
  openKey: "write",
  commitKey: "write",
  deleteKey: "write",
  renameKey: "write",
  lookupKey: "read",
  listKeys: "read",
  listenerAdd: "write",
  listenerUpdate: "write",
  listenerRemove: "write",
  listenerCheckpoint: "write",
  listeners: "read",
  readEvents: "read",
  watch: "stream",
  cancelWatch: "stream",
} as const;

export type Op = keyof typeof OP_KINDS;
export type OpKind = (typeof OP_KINDS)[Op];

export function isOp(op: unknown): op is Op {
  return typeof op === "string" && Object.hasOwn(OP_KINDS, op);
}

/** A change's ids: the object's (fixed at creation) and the txid of this change. */
export interface ChangeReply {
  readonly objectId: number;
  readonly updateId: number;
}

/** `readEvents`: the ledger's read (`readLedger`), and the answering node's last applied txid. */
export interface ReadEventsReply {
  readonly events: readonly LedgerEvent[];
  readonly firstTxid: number;
  readonly lastTxid: number;
  /** The txid the read covered, matched or not: the next read goes after it. */
  readonly scannedThrough: number;
  /** Txids whose events were pruned before this reader saw them. */
  readonly missed?: { readonly fromTxid: number; readonly toTxid: number };
  readonly appliedTxid: number;
}

/** `watch`: the stream is open; its frames follow (see `WatchFrame`). */
export interface WatchReply {
  readonly watchId: number;
  /** The stream starts after this txid: `fromTxid - 1`, or the node's last applied txid. */
  readonly txid: number;
  /** The node serving it (any member serves watches: it streams what it has applied). */
  readonly node: number;
}

export interface CancelWatchReply {
  /** False when no such watch was open on this connection (it ended already). */
  readonly cancelled: boolean;
}

export interface MemberRow {
  readonly id: number;
  readonly role: "voter" | "learner";
  readonly peer: string | null;
  readonly client: string | null;
  /** On the leader: the member's match index and how far behind the leader's log it is. */
  readonly match?: number;
  readonly lag?: number;
  readonly reachable?: boolean;
}

export interface MembersReply {
  readonly members: { readonly voters: readonly number[]; readonly learners: readonly number[] };
}

/** What each op answers, by op. `status` is a node's report: its fields are documented where it is built. */
export interface OpReplies {
  readonly ping: { readonly pong: true };
  readonly status: Readonly<Record<string, unknown>>;
  readonly memberList: {
    readonly leader: number;
    readonly term: number;
    readonly from: number;
    readonly members: readonly MemberRow[];
  };
  readonly memberAdd: MembersReply;
  readonly memberPromote: MembersReply;
  readonly memberRemove: MembersReply;
  readonly leaderTransfer: { readonly leader: number };
  readonly createVolume: ChangeReply;
  readonly deleteVolume: Readonly<Record<string, never>>;
  readonly infoVolume: { readonly volume: VolumeInfo };
  readonly listVolumes: ListReply<VolumeInfo>;
  readonly createBucket: ChangeReply;
  readonly deleteBucket: Readonly<Record<string, never>>;
  readonly infoBucket: { readonly bucket: BucketInfo };
  readonly listBuckets: ListReply<BucketInfo>;
  readonly openKey: { readonly openKeyId: number; readonly expiresAt: number };
  readonly commitKey: ChangeReply;
  readonly deleteKey: Readonly<Record<string, never>>;
  readonly renameKey: ChangeReply;
  readonly lookupKey: { readonly key: KeyInfo };
  readonly listKeys: ListReply<KeyInfo>;
  readonly listenerAdd: { readonly listener: ListenerRecord };
  readonly listenerUpdate: { readonly listener: ListenerRecord };
  readonly listenerRemove: Readonly<Record<string, never>>;
  readonly listenerCheckpoint: { readonly checkpoint: number };
  readonly listeners: {
    readonly listeners: readonly ListenerRecord[];
    readonly ledger: LedgerSummary;
    readonly lastTxid: number;
  };
  readonly readEvents: ReadEventsReply;
  readonly watch: WatchReply;
  readonly cancelWatch: CancelWatchReply;
}

/** The reply of `op`. */
export type ReplyOf<O extends Op> = OpReplies[O];

// Every op has a reply type, and every reply type an op: a missing or stray entry fails to compile.
type Exact<A, B> = [A] extends [B] ? ([B] extends [A] ? true : never) : never;
export const OP_REPLIES_COMPLETE: Exact<keyof OpReplies, Op> = true;
