import type { WriteOp } from "../core/index.js";
import type { EventDraft, LedgerEvent } from "../events/index.js";

/**
 * The request model of the write path. A handler runs once, on the leader (or, in the
 * `replicated-request` mode, on every node at apply time), against a `StateReader`, and
 * returns absolute writes and a reply: followers only apply the writes.
 */

/** Table ids in write-sets (u8). The names are the LMDB databases of src/storage. */
export const TABLE_IDS = {
  volumes: 1,
  buckets: 2,
  keys: 3,
  openKeys: 4,
  kv: 5,
  sessions: 6,
  serviceConfig: 7,
  checkpoints: 8,
  queues: 9,
  replies: 10,
  events: 11,
  meta: 12,
  /** Member records (id, peer and client addresses), written when a membership change applies. */
  members: 13,
} as const;

export type StateTable = keyof typeof TABLE_IDS;

export const TABLE_OF_ID: ReadonlyMap<number, StateTable> = new Map(
  Object.entries(TABLE_IDS).map(([name, id]) => [id, name as StateTable]),
);

export interface ScanEntry {
  readonly key: string;
  readonly value: Uint8Array;
}

/** What a handler may read: committed state, plus on the leader the overlay of executed writes. */
export interface StateReader {
  get(table: StateTable, key: string): Uint8Array | undefined;
  /** Keys starting with `prefix` and greater than `startAfter`, in key order (UTF-8 bytes), at most `limit`. */
  scan(table: StateTable, prefix: string, startAfter: string | undefined, limit: number): ScanEntry[];
}

export interface ExecutionContext {
  /** The request's transaction id (the managed index): unique across restarts and failovers. */
  readonly txid: number;
  /** Milliseconds since the epoch, fixed by the gatekeeper so that every node computes alike. */
  readonly time: number;
  readonly reader: StateReader;
}

/** A write of a handler, by table name; the executor turns it into a WriteOp. */
export interface Write {
  readonly table: StateTable;
  readonly key: string;
  /** Encoded record; `null` deletes. */
  readonly value: Uint8Array | null;
}

export interface Execution {
  readonly writes: readonly Write[];
  /**
   * What changed, for the event ledger: the executor stamps them with the request's txid and
   * time. Followers cannot derive them from merged write-sets, so they travel in the entry.
   */
  readonly events?: readonly EventDraft[];
  /** Sent back to the client (MessagePack), and kept in the replay cache. */
  readonly reply: Readonly<Record<string, unknown>>;
}

/** A request as the gatekeeper hands it on: decoded and validated, `op` known. */
export interface Request {
  readonly op: string;
  readonly [field: string]: unknown;
}

/**
 * A request kind: how to validate it, whether it writes, and how to execute it. Handlers throw
 * `MetaraftError` for a request that cannot be done (a missing bucket): that is the reply, and
 * nothing is written.
 */
export interface RequestSpec<R extends Request = Request> {
  readonly op: R["op"];
  /** Reads run outside the write path (after a ReadIndex barrier, or stale). */
  readonly kind: "read" | "write";
  /** Checks types, names and sizes; returns the typed request or throws INVALID_ARGUMENT / INVALID_NAME. */
  validate(raw: Request): R;
  execute(request: R, context: ExecutionContext): Execution;
}

const keyEncoder = new TextEncoder();

export function toWriteOp(write: Write): WriteOp {
  return { table: TABLE_IDS[write.table], key: keyEncoder.encode(write.key), value: write.value };
}

/** Object ids derive from the txid: `txid * 256 + k` (docs/core-formats.md, section 5). */
export function objectIdOf(txid: number, k = 0): number {
  return txid * 256 + k;
}

/** A handler's event drafts as the ledger keeps them: with the request's txid and time. */
export function stamp(
  drafts: readonly EventDraft[] | undefined,
  txid: number,
  time: number,
): readonly LedgerEvent[] {
  if (!drafts || drafts.length === 0) return [];
  // Whole milliseconds: the ledger delta-encodes times as integers.
  const ms = Math.floor(time);
  return drafts.map((draft) => ({ ...draft, txid, time: ms }));
}
