import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { EventDraft } from "../events/index.js";
import type { Execution, Request, RequestSpec, StateReader, Write } from "../execution/types.js";
import { SETTINGS, type Settings } from "../settings.js";
import {
  directoryWrite,
  isLongKey,
  KV_SHORT_KEY_BYTES,
  kvRowWrite,
  longKey,
  memberIndex,
  readDirectory,
  readKvRow,
  readMember,
  scanKvRows,
} from "./kv-keys.js";
import {
  decodeSession,
  encodeSession,
  ephemeralKey,
  type SessionId,
  type SessionRecord,
  sessionKey,
} from "./session-records.js";

/**
 * The coordination keyspace: a flat map of UTF-8 string keys to values (strings or bytes), in
 * the `kv` state table, with etcd's put, get, delete, range and txn. Every entry carries the
 * txid that created it, the txid that last changed it and its version (puts since it was
 * created). Every change goes through the write path like a namespace change, and is a ledger
 * event (`KvPut:Put`, `KvDelete:Delete`) whose watch path is `_kv/<key>` (see `eventPaths`).
 */

/** A value: a string (kept and returned as a string) or bytes. */
export type KvValue = string | Uint8Array;

/** The stored record of a key (MessagePack, fields in this order). */
export interface KvRecord {
  readonly value: KvValue;
  /** The txid of the put that created the key (since it last did not exist). */
  readonly createTxid: number;
  /** The txid of the last put. */
  readonly modTxid: number;
  /** Puts since the key was created: 1 after the first. */
  readonly version: number;
  /** The session that owns it (an ephemeral entry, deleted when the session ends); absent if none. */
  readonly session?: SessionId;
}

/** An entry as replies carry it. */
export interface KvEntry extends KvRecord {
  readonly key: string;
}

/** The keyspace's limits (the `kv` settings). */
export type KvLimits = Settings["kv"];

export const KV_LIMITS_DEFAULT: KvLimits = {
  keyBytesMax: SETTINGS.kv.keyBytesMax.default,
  valueBytesMax: SETTINGS.kv.valueBytesMax.default,
  txnOpsMax: SETTINGS.kv.txnOpsMax.default,
  deleteKeysMax: SETTINGS.kv.deleteKeysMax.default,
  longKeyGroupMax: SETTINGS.kv.longKeyGroupMax.default,
};

/** Entries one `kvRange` returns, when the request does not say, and at most. */
export const KV_RANGE_LIMIT_DEFAULT = 1000;
export const KV_RANGE_LIMIT_MAX = 1000;
/**
 * Value bytes one `kvRange` reply carries at most (at least one entry is returned): 1,000
 * values of a MiB each would be a GiB reply. The reply is then truncated.
 */
export const KV_RANGE_REPLY_BYTES_MAX = 4 * 1024 * 1024;

export function encodeKvRecord(record: KvRecord): Uint8Array {
  // A persistent entry has no fifth field: records written before sessions existed read alike.
  return pack(
    !record.session
      ? [record.value, record.createTxid, record.modTxid, record.version]
      : [record.value, record.createTxid, record.modTxid, record.version, record.session],
  );
}

export function decodeKvRecord(bytes: Uint8Array): KvRecord {
  const [value, createTxid, modTxid, version, session] = unpack(bytes) as [
    KvValue,
    number,
    number,
    number,
    number | undefined,
  ];
  return {
    value: typeof value === "string" ? value : new Uint8Array(value),
    createTxid,
    modTxid,
    version,
    ...(session ? { session } : {}),
  };
}

/** The key's entry, or undefined when there is none. */
export function readKv(reader: StateReader, key: string): KvEntry | undefined {
  const bytes = readKvRow(reader, key);
  return bytes === undefined ? undefined : { key, ...decodeKvRecord(bytes) };
}

/** A value's bytes: a string's UTF-8. Values compare by these. */
export function kvValueBytes(value: KvValue): Uint8Array {
  return typeof value === "string" ? Buffer.from(value, "utf8") : value;
}

// ---- compares and ops ----

export const KV_COMPARE_TARGETS = ["exists", "value", "version", "create", "mod"] as const;
export type KvCompareTarget = (typeof KV_COMPARE_TARGETS)[number];
export const KV_COMPARE_OPS = ["=", "!=", "<", ">"] as const;
export type KvCompareOp = (typeof KV_COMPARE_OPS)[number];

/**
 * A txn's condition, as etcd's: `version`, `create` and `mod` of a missing key are 0; `value`
 * of a missing key compares false whatever the operator; `exists` takes `=` or `!=` and a
 * boolean. Values compare as bytes (a string's UTF-8), `<` and `>` lexicographically.
 */
export type KvCompare =
  | { readonly target: "exists"; readonly key: string; readonly op: "=" | "!="; readonly value: boolean }
  | { readonly target: "value"; readonly key: string; readonly op: KvCompareOp; readonly value: KvValue }
  | {
      readonly target: "version" | "create" | "mod";
      readonly key: string;
      readonly op: KvCompareOp;
      readonly value: number;
    };

/** An op of a txn branch; the branch's ops run in order, each seeing the ones before it. */
export type KvTxnOp =
  | { readonly op: "put"; readonly key: string; readonly value: KvValue; readonly session?: SessionId }
  | { readonly op: "delete"; readonly key: string }
  | { readonly op: "get"; readonly key: string };

/** What each txn op answers: a put its previous entry, a delete whether it deleted, a get the entry. */
export type KvTxnResponse =
  | { readonly op: "put"; readonly prevKv: KvEntry | null }
  | { readonly op: "delete"; readonly deleted: number; readonly prevKv: KvEntry | null }
  | { readonly op: "get"; readonly kv: KvEntry | null };

function orderOf(op: KvCompareOp, order: number): boolean {
  switch (op) {
    case "=":
      return order === 0;
    case "!=":
      return order !== 0;
    case "<":
      return order < 0;
    case ">":
      return order > 0;
  }
}

/** Whether `compare` holds of `entry` (undefined: the key does not exist). Pure, for the model tests too. */
export function kvCompareHolds(compare: KvCompare, entry: KvRecord | undefined): boolean {
  switch (compare.target) {
    case "exists":
      return (entry !== undefined) === (compare.op === "=" ? compare.value : !compare.value);
    case "value":
      if (entry === undefined) return false;
      return orderOf(
        compare.op,
        Buffer.compare(Buffer.from(kvValueBytes(entry.value)), Buffer.from(kvValueBytes(compare.value))),
      );
    case "version":
    case "create":
    case "mod": {
      const actual =
        entry === undefined
          ? 0
          : compare.target === "version"
            ? entry.version
            : compare.target === "create"
              ? entry.createTxid
              : entry.modTxid;
      return orderOf(compare.op, actual - compare.value);
    }
  }
}

// ---- validation ----

function bad(message: string): MetaraftError {
  return new MetaraftError("MR_ERR_INVALID_ARGUMENT", message);
}

/** Own fields only; null counts as absent, since MessagePack clients send nil for "not given". */
function fieldOf(raw: Readonly<Record<string, unknown>>, name: string): unknown {
  const value = Object.hasOwn(raw, name) ? raw[name] : undefined;
  return value === null ? undefined : value;
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

// A lone surrogate has no UTF-8: the store would write U+FFFD and two keys would collide.
const LONE_SURROGATE = /\p{Surrogate}/u;

function checkKey(value: unknown, name: string, limits: KvLimits, allowEmpty = false): string {
  if (typeof value !== "string") throw bad(`${name} must be a string`);
  if (value.length === 0 && !allowEmpty) throw bad(`${name} must not be empty`);
  if (LONE_SURROGATE.test(value)) throw bad(`${name} is not valid UTF-8 (a lone surrogate)`);
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > limits.keyBytesMax) {
    throw new MetaraftError(
      "MR_ERR_KV_KEY_TOO_LARGE",
      `${name} is ${bytes} bytes of UTF-8, over kv.keyBytesMax ${limits.keyBytesMax}`,
    );
  }
  return value;
}

function checkValue(value: unknown, name: string, limits: KvLimits): KvValue {
  if (typeof value === "string") {
    if (LONE_SURROGATE.test(value)) throw bad(`${name} is not valid UTF-8 (a lone surrogate)`);
  } else if (!(value instanceof Uint8Array)) {
    throw bad(`${name} must be a string or bytes`);
  }
  const bytes = typeof value === "string" ? Buffer.byteLength(value, "utf8") : value.length;
  if (bytes > limits.valueBytesMax) {
    throw new MetaraftError(
      "MR_ERR_KV_VALUE_TOO_LARGE",
      `${name} is ${bytes} bytes, over kv.valueBytesMax ${limits.valueBytesMax}`,
    );
  }
  // Bytes as a plain Uint8Array: MessagePack decodes them as Buffers, which pack alike.
  return typeof value === "string" ? value : new Uint8Array(value);
}

function checkBoolean(raw: Readonly<Record<string, unknown>>, name: string): boolean {
  const value = fieldOf(raw, name);
  if (value === undefined) return false;
  if (typeof value !== "boolean") throw bad(`${name} must be a boolean`);
  return value;
}

function asObject(value: unknown, name: string): Readonly<Record<string, unknown>> {
  if (typeof value !== "object" || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw bad(`${name} must be an object`);
  }
  return value as Record<string, unknown>;
}

function checkCompare(value: unknown, name: string, limits: KvLimits): KvCompare {
  const raw = asObject(value, name);
  const target = fieldOf(raw, "target");
  if (!KV_COMPARE_TARGETS.includes(target as KvCompareTarget)) {
    throw bad(`${name}.target must be one of ${KV_COMPARE_TARGETS.join(", ")}`);
  }
  const op = fieldOf(raw, "op");
  if (!KV_COMPARE_OPS.includes(op as KvCompareOp)) {
    throw bad(`${name}.op must be one of ${KV_COMPARE_OPS.join(" ")}`);
  }
  const key = checkKey(fieldOf(raw, "key"), `${name}.key`, limits);
  const operand = fieldOf(raw, "value");
  switch (target as KvCompareTarget) {
    case "exists":
      if (op !== "=" && op !== "!=") throw bad(`${name}: exists takes = or !=`);
      if (typeof operand !== "boolean") throw bad(`${name}.value must be a boolean for exists`);
      return { target: "exists", key, op, value: operand };
    case "value":
      return {
        target: "value",
        key,
        op: op as KvCompareOp,
        value: checkValue(operand, `${name}.value`, limits),
      };
    default:
      if (!isCount(operand)) throw bad(`${name}.value must be a non-negative integer`);
      return { target: target as "version" | "create" | "mod", key, op: op as KvCompareOp, value: operand };
  }
}

function checkTxnOp(value: unknown, name: string, limits: KvLimits): KvTxnOp {
  const raw = asObject(value, name);
  const op = fieldOf(raw, "op");
  const key = checkKey(fieldOf(raw, "key"), `${name}.key`, limits);
  switch (op) {
    case "put": {
      const session = checkSessionId(fieldOf(raw, "session"), `${name}.session`);
      return {
        op,
        key,
        value: checkValue(fieldOf(raw, "value"), `${name}.value`, limits),
        ...(session === 0 ? {} : { session }),
      };
    }
    case "delete":
    case "get":
      return { op, key };
    default:
      throw bad(`${name}.op must be put, delete or get`);
  }
}

/** A session id, or 0 when absent. */
export function checkSessionId(value: unknown, name: string): SessionId {
  if (value === undefined || value === null) return 0;
  if (!isCount(value) || value < 1) throw bad(`${name} must be a session id (a positive integer)`);
  return value;
}

function checkList<T>(raw: Request, name: string, check: (value: unknown, name: string) => T): readonly T[] {
  const value = fieldOf(raw, name);
  if (value === undefined) return [];
  if (!Array.isArray(value)) throw bad(`${name} must be a list`);
  return value.map((item, i) => check(item, `${name}[${i}]`));
}

// ---- execution ----

/**
 * The keyspace as one execution sees it: state before the request, plus its own writes so far
 * (a txn's later ops see its earlier ones). Collects the writes and events in order.
 */
class KvChanges {
  readonly #reader: StateReader;
  readonly #txid: number;
  readonly #ephemeralKeysMax: number;
  readonly #longKeyGroupMax: number;
  readonly #pending = new Map<string, KvRecord | null>();
  /** Directories of long-key groups as this execution changed them (see kv-keys.ts). */
  readonly #directories = new Map<string, Buffer[]>();
  /** Tails of the long keys this execution created, by row key: their rows are not yet written. */
  readonly #memberTails = new Map<string, string>();
  /** Session records as this execution changed them (their ephemeral counts); null: ended. */
  readonly #sessions = new Map<SessionId, SessionRecord | null>();
  readonly writes: Write[] = [];
  readonly events: EventDraft[] = [];

  constructor(
    reader: StateReader,
    txid: number,
    ephemeralKeysMax: number = SETTINGS.session.ephemeralKeysMax.default,
    longKeyGroupMax: number = SETTINGS.kv.longKeyGroupMax.default,
  ) {
    this.#reader = reader;
    this.#txid = txid;
    this.#ephemeralKeysMax = ephemeralKeysMax;
    this.#longKeyGroupMax = longKeyGroupMax;
  }

  /** A long key enters (or leaves) its group's directory when it is created (or deleted). */
  #enlist(key: string, present: boolean): void {
    const member = longKey(key);
    const digests = this.#directories.get(member.group) ?? readDirectory(this.#reader, member.group);
    const at = memberIndex(digests.length, (i) => this.#memberTail(member.group, digests[i]!), member.tail);
    if (present) {
      if (digests.length >= this.#longKeyGroupMax) {
        throw new MetaraftError(
          "MR_ERR_KV_KEY_GROUP_FULL",
          `${digests.length} keys longer than ${KV_SHORT_KEY_BYTES} bytes share this key's first ${KV_SHORT_KEY_BYTES}, kv.longKeyGroupMax`,
        );
      }
      digests.splice(at, 0, member.digest);
      this.#memberTails.set(member.rowKey, member.tail);
    } else if (at < digests.length && digests[at]!.equals(member.digest)) {
      digests.splice(at, 1);
    }
    // Written once, by execution(): a prefix delete of a group's members changes it each time.
    this.#directories.set(member.group, digests);
  }

  /** A member's tail: one this execution created, or else from its row. */
  #memberTail(group: string, digest: Buffer): string {
    return (
      this.#memberTails.get(group + digest.toString("hex")) ?? readMember(this.#reader, group, digest).tail
    );
  }

  /** The session's record as this execution sees it. */
  session(id: SessionId): SessionRecord | undefined {
    const pending = this.#sessions.get(id);
    if (pending === null) return undefined;
    if (pending !== undefined) return pending;
    const bytes = this.#reader.get("sessions", sessionKey(id));
    return bytes === undefined ? undefined : decodeSession(bytes);
  }

  /** Writes (or with null deletes) the session's record. */
  setSession(id: SessionId, record: SessionRecord | null): void {
    this.#sessions.set(id, record);
    this.writes.push({
      table: "sessions",
      key: sessionKey(id),
      value: record ? encodeSession(record) : null,
    });
  }

  #attach(id: SessionId, key: string): void {
    const record = this.session(id);
    if (!record) throw new MetaraftError("MR_ERR_SESSION_EXPIRED", `session ${id} has expired or was closed`);
    if (record.ephemeralCount >= this.#ephemeralKeysMax) {
      throw new MetaraftError(
        "MR_ERR_SESSION_LIMIT",
        `session ${id} holds ${record.ephemeralCount} ephemeral entries, session.ephemeralKeysMax`,
      );
    }
    this.setSession(id, { ...record, ephemeralCount: record.ephemeralCount + 1 });
    this.writes.push({ table: "sessions", key: ephemeralKey(id, key), value: Buffer.from(key, "utf8") });
  }

  #detach(id: SessionId, key: string): void {
    const record = this.session(id);
    // Its session may be ending in this very execution: the record is gone, the index entry too.
    if (record) this.setSession(id, { ...record, ephemeralCount: Math.max(0, record.ephemeralCount - 1) });
    this.writes.push({ table: "sessions", key: ephemeralKey(id, key), value: null });
  }

  get(key: string): KvEntry | undefined {
    const pending = this.#pending.get(key);
    if (pending === null) return undefined;
    if (pending !== undefined) return { key, ...pending };
    return readKv(this.#reader, key);
  }

  /**
   * With a session, the entry becomes that session's (ephemeral); without, a put makes it
   * persistent again, as etcd's put without a lease detaches the key from its lease.
   */
  put(key: string, value: KvValue, session: SessionId = 0): KvEntry | undefined {
    const before = this.get(key);
    const owner = before?.session ?? 0;
    if (session !== owner) {
      if (session !== 0) this.#attach(session, key);
      if (owner !== 0) this.#detach(owner, key);
    } else if (session !== 0 && !this.session(session)) {
      throw new MetaraftError("MR_ERR_SESSION_EXPIRED", `session ${session} has expired or was closed`);
    }
    if (!before && isLongKey(key)) this.#enlist(key, true);
    const record: KvRecord = {
      value,
      createTxid: before ? before.createTxid : this.#txid,
      modTxid: this.#txid,
      version: before ? before.version + 1 : 1,
      ...(session === 0 ? {} : { session }),
    };
    this.#pending.set(key, record);
    this.writes.push(kvRowWrite(key, encodeKvRecord(record)));
    this.events.push({ type: "KvPut:Put", key, size: kvValueBytes(value).length });
    return before;
  }

  delete(key: string): KvEntry | undefined {
    const before = this.get(key);
    if (!before) return undefined;
    this.#pending.set(key, null);
    if (before.session) this.#detach(before.session, key);
    if (isLongKey(key)) this.#enlist(key, false);
    this.writes.push(kvRowWrite(key, null));
    this.events.push({ type: "KvDelete:Delete", key });
    return before;
  }

  execution(reply: Readonly<Record<string, unknown>>): Execution {
    // A key written twice in one txn: only its last write goes to the store.
    const last = new Map<string, Write>();
    for (const [group, digests] of this.#directories) this.writes.push(directoryWrite(group, digests));
    for (const write of this.writes) {
      const id = `${write.table}\u0000${write.key}`;
      last.delete(id);
      last.set(id, write);
    }
    return { writes: [...last.values()], events: this.events, reply };
  }
}

// ---- the requests ----

export interface KvPutRequest extends Request {
  readonly op: "kvPut";
  readonly key: string;
  readonly value: KvValue;
  /** Reply with the entry the put replaced. */
  readonly prevKv: boolean;
  /** The owning session (an ephemeral entry), or 0. */
  readonly session: SessionId;
}
export interface KvGetRequest extends Request {
  readonly op: "kvGet";
  readonly key: string;
}
export interface KvDeleteRequest extends Request {
  readonly op: "kvDelete";
  /** The key, or with `prefix` the prefix of the keys to delete ("" deletes every key). */
  readonly key: string;
  readonly prefix: boolean;
  readonly prevKv: boolean;
}
export interface KvRangeRequest extends Request {
  readonly op: "kvRange";
  readonly prefix: string;
  readonly startAfter: string | undefined;
  readonly limit: number;
}
export interface KvTxnRequest extends Request {
  readonly op: "kvTxn";
  readonly compare: readonly KvCompare[];
  readonly success: readonly KvTxnOp[];
  readonly failure: readonly KvTxnOp[];
}

/** Runs a txn branch's ops in order against `changes`; pure apart from `changes`. */
export function runKvOps(changes: KvChanges, ops: readonly KvTxnOp[]): KvTxnResponse[] {
  return ops.map((op): KvTxnResponse => {
    if (op.op === "put") return { op: "put", prevKv: changes.put(op.key, op.value, op.session ?? 0) ?? null };
    if (op.op === "delete") {
      const before = changes.delete(op.key);
      return { op: "delete", deleted: before ? 1 : 0, prevKv: before ?? null };
    }
    return { op: "get", kv: changes.get(op.key) ?? null };
  });
}

/** The keyspace's request specs, under the node's `kv` limits. */
export function kvSpecs(
  limits: KvLimits = KV_LIMITS_DEFAULT,
  ephemeralKeysMax: number = SETTINGS.session.ephemeralKeysMax.default,
): readonly RequestSpec[] {
  const putSpec: RequestSpec<KvPutRequest> = {
    op: "kvPut",
    kind: "write",
    validate: (raw) => ({
      op: "kvPut",
      key: checkKey(fieldOf(raw, "key"), "key", limits),
      value: checkValue(fieldOf(raw, "value"), "value", limits),
      prevKv: checkBoolean(raw, "prevKv"),
      session: checkSessionId(fieldOf(raw, "session"), "session"),
    }),
    execute(request, { txid, reader }) {
      const changes = new KvChanges(reader, txid, ephemeralKeysMax, limits.longKeyGroupMax);
      const before = changes.put(request.key, request.value, request.session);
      return changes.execution({
        txid,
        ...(request.prevKv ? { prevKv: before ?? null } : {}),
      });
    },
  };

  const getSpec: RequestSpec<KvGetRequest> = {
    op: "kvGet",
    kind: "read",
    validate: (raw) => ({ op: "kvGet", key: checkKey(fieldOf(raw, "key"), "key", limits) }),
    execute: (request, { txid, reader }) => ({
      writes: [],
      reply: { kv: readKv(reader, request.key) ?? null, appliedTxid: txid },
    }),
  };

  const deleteSpec: RequestSpec<KvDeleteRequest> = {
    op: "kvDelete",
    kind: "write",
    validate(raw) {
      const prefix = checkBoolean(raw, "prefix");
      return {
        op: "kvDelete",
        key: checkKey(fieldOf(raw, "key"), "key", limits, prefix),
        prefix,
        prevKv: checkBoolean(raw, "prevKv"),
      };
    },
    execute(request, { txid, reader }) {
      const changes = new KvChanges(reader, txid, ephemeralKeysMax, limits.longKeyGroupMax);
      if (!request.prefix) {
        const before = changes.delete(request.key);
        return changes.execution({
          txid,
          deleted: before ? 1 : 0,
          truncated: false,
          ...(request.prevKv ? { prevKvs: before ? [before] : [] } : {}),
        });
      }
      // Bounded: one more than the limit tells whether keys remain for another delete.
      const rows = scanKvRows(reader, request.key, undefined, limits.deleteKeysMax + 1);
      const deleted: KvEntry[] = [];
      for (const row of rows.slice(0, limits.deleteKeysMax)) {
        deleted.push(changes.delete(row.key)!);
      }
      return changes.execution({
        txid,
        deleted: deleted.length,
        truncated: rows.length > limits.deleteKeysMax,
        ...(request.prevKv ? { prevKvs: deleted } : {}),
      });
    },
  };

  const rangeSpec: RequestSpec<KvRangeRequest> = {
    op: "kvRange",
    kind: "read",
    validate(raw) {
      const prefix = fieldOf(raw, "prefix");
      const startAfter = fieldOf(raw, "startAfter");
      const limit = fieldOf(raw, "limit") ?? KV_RANGE_LIMIT_DEFAULT;
      if (!isCount(limit) || limit < 1 || limit > KV_RANGE_LIMIT_MAX) {
        throw bad(`limit must be 1 to ${KV_RANGE_LIMIT_MAX}`);
      }
      return {
        op: "kvRange",
        prefix: prefix === undefined ? "" : checkKey(prefix, "prefix", limits, true),
        startAfter: startAfter === undefined ? undefined : checkKey(startAfter, "startAfter", limits, true),
        limit,
      };
    },
    execute(request, { txid, reader }) {
      const rows = scanKvRows(reader, request.prefix, request.startAfter, request.limit + 1);
      const items: KvEntry[] = [];
      let bytes = 0;
      let truncated = rows.length > request.limit;
      for (const row of rows.slice(0, request.limit)) {
        const entry = { key: row.key, ...decodeKvRecord(row.value) };
        const size = kvValueBytes(entry.value).length;
        if (items.length > 0 && bytes + size > KV_RANGE_REPLY_BYTES_MAX) {
          truncated = true;
          break;
        }
        bytes += size;
        items.push(entry);
      }
      return {
        writes: [],
        reply: {
          items,
          truncated,
          ...(truncated ? { nextStartAfter: items[items.length - 1]!.key } : {}),
          appliedTxid: txid,
        },
      };
    },
  };

  const txnSpec: RequestSpec<KvTxnRequest> = {
    op: "kvTxn",
    kind: "write",
    validate(raw) {
      const compare = checkList(raw, "compare", (v, name) => checkCompare(v, name, limits));
      const success = checkList(raw, "success", (v, name) => checkTxnOp(v, name, limits));
      const failure = checkList(raw, "failure", (v, name) => checkTxnOp(v, name, limits));
      const count = compare.length + success.length + failure.length;
      if (count > limits.txnOpsMax) {
        throw new MetaraftError(
          "MR_ERR_KV_TXN_TOO_LARGE",
          `the txn has ${count} compares and ops, over kv.txnOpsMax ${limits.txnOpsMax}`,
        );
      }
      return { op: "kvTxn", compare, success, failure };
    },
    execute(request, { txid, reader }) {
      // Every compare sees the state before the txn, none of its writes.
      const succeeded = request.compare.every((c) => kvCompareHolds(c, readKv(reader, c.key)));
      const changes = new KvChanges(reader, txid, ephemeralKeysMax, limits.longKeyGroupMax);
      const responses = runKvOps(changes, succeeded ? request.success : request.failure);
      return changes.execution({ txid, succeeded, responses });
    },
  };

  return [putSpec, getSpec, deleteSpec, rangeSpec, txnSpec] as readonly RequestSpec[];
}

export { KvChanges };
