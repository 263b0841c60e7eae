import { pack, unpack } from "msgpackr";
import type { WriteOp } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { type ConfChange, decodeConfChange, type Entry } from "../raft/index.js";
import { type StateReader, toWriteOp } from "./types.js";

/**
 * A member's addresses, carried in the context of the membership change that added it and
 * kept in the replicated `members` table: a new node needs only one member's address to join,
 * and every node learns where a new member is from the log, not from its flags.
 */
export interface MemberRecord {
  readonly id: number;
  /** host:port of its Raft (peer) listener. */
  readonly peer: string;
  /** host:port of its client listener. */
  readonly client: string;
}

const ADDRESS = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:.]+\]:\d{1,5}$/;

export function checkAddress(what: string, value: unknown): string {
  if (
    typeof value !== "string" ||
    !ADDRESS.test(value) ||
    Number(value.slice(value.lastIndexOf(":") + 1)) > 65535
  ) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `${what} must be host:port, not ${JSON.stringify(value)}`,
    );
  }
  return value;
}

export function encodeMemberContext(record: MemberRecord): Uint8Array {
  return pack({ id: record.id, peer: record.peer, client: record.client });
}

export function decodeMemberContext(context: Uint8Array, node: number): MemberRecord {
  let value: Partial<MemberRecord>;
  try {
    value = unpack(context) as Partial<MemberRecord>;
  } catch {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `member ${node}: context is not MessagePack`);
  }
  if (value?.id !== node || typeof value.peer !== "string" || typeof value.client !== "string") {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `member ${node}: malformed context`);
  }
  return { id: node, peer: value.peer, client: value.client };
}

/** Keys sort by id: ten digits, zero-padded. */
const memberKey = (id: number): string => String(id).padStart(10, "0");

/** What applying a membership change writes to the `members` table. */
export function memberWrites(change: ConfChange): WriteOp[] {
  if (change.kind === "removeNode")
    return [toWriteOp({ table: "members", key: memberKey(change.node), value: null })];
  if (!change.context) return []; // A promotion keeps the record the learner was added with.
  const record = decodeMemberContext(change.context, change.node);
  return [toWriteOp({ table: "members", key: memberKey(change.node), value: encodeMemberContext(record) })];
}

export function confChangeOf(entry: Entry): ConfChange | undefined {
  return entry.type === "confChange" ? decodeConfChange(entry.data) : undefined;
}

/** Every member record, by id. */
export function readMembers(reader: StateReader): MemberRecord[] {
  const out: MemberRecord[] = [];
  let after: string | undefined;
  for (;;) {
    const page = reader.scan("members", "", after, 256);
    for (const row of page) out.push(decodeMemberContext(row.value, Number(row.key)));
    if (page.length < 256) return out;
    after = page[page.length - 1]!.key;
  }
}
