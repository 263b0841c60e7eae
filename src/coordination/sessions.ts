import { MetaraftError } from "../errors.js";
import type { Execution, Request, RequestSpec, StateReader } from "../execution/types.js";
import { SETTINGS, type Settings } from "../settings.js";
import { KvChanges } from "./kv.js";
import {
  decodeSession,
  decodeTombstone,
  encodeCount,
  encodeTombstone,
  ephemeralPrefix,
  idOfKey,
  readCount,
  readSession,
  SESSION_COUNT_KEY,
  SESSION_TOMBSTONES_KEPT,
  SESSION_TTL_MIN_MS,
  type SessionEnd,
  type SessionId,
  type SessionRecord,
  type SessionTombstone,
  sessionKey,
  TOMBSTONE_COUNT_KEY,
  tombstoneKey,
} from "./session-records.js";

/**
 * Sessions (DESIGN.md, "Sessions and the control plane"): a create, a close and the leader's
 * own expiry and checkpoint entries, as requests of the write path. Heartbeats are not here:
 * they never reach the log (see `SessionTracker`).
 */

export type SessionLimits = Settings["session"];

export const SESSION_LIMITS_DEFAULT: SessionLimits = {
  ttlMaxMs: SETTINGS.session.ttlMaxMs.default,
  expiryCheckMs: SETTINGS.session.expiryCheckMs.default,
  checkpointMs: SETTINGS.session.checkpointMs.default,
  sessionsMax: SETTINGS.session.sessionsMax.default,
  ephemeralKeysMax: SETTINGS.session.ephemeralKeysMax.default,
};

/** Sessions one expiry or checkpoint entry names at most: a mass expiry spreads over a few entries. */
export const SESSION_BATCH_MAX = 1_000;
/**
 * Ephemeral entries one expiry deletes at most; the sessions past it are deferred to the next
 * entry (one session always fits: it holds at most `session.ephemeralKeysMax`).
 */
export const SESSION_EXPIRE_KEYS_MAX = 20_000;
/** Ephemeral keys `sessionGet` lists at most. */
export const SESSION_GET_KEYS_MAX = 100;
export const SESSION_LIST_LIMIT_MAX = 1_000;

/** The leader's own requests: a client may not send them. */
export const SESSION_INTERNAL_OPS: ReadonlySet<string> = new Set(["sessionExpire", "sessionCheckpoint"]);

function bad(message: string): MetaraftError {
  return new MetaraftError("MR_ERR_INVALID_ARGUMENT", message);
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function field(raw: Request, name: string): unknown {
  const value = Object.hasOwn(raw, name) ? raw[name] : undefined;
  return value === null ? undefined : value;
}

function checkId(value: unknown, name: string): SessionId {
  if (!isCount(value) || value < 1) throw bad(`${name} must be a session id (a positive integer)`);
  return value;
}

/** `[[id, n], ...]` with at most `SESSION_BATCH_MAX` pairs. */
function checkPairs(raw: Request, name: string): readonly (readonly [SessionId, number])[] {
  const value = field(raw, name);
  if (!Array.isArray(value) || value.length === 0 || value.length > SESSION_BATCH_MAX) {
    throw bad(`${name} must be a list of 1 to ${SESSION_BATCH_MAX} [session, number] pairs`);
  }
  return value.map((pair, i) => {
    if (!Array.isArray(pair) || pair.length !== 2 || !isCount(pair[1])) {
      throw bad(`${name}[${i}] must be a [session, number] pair`);
    }
    return [checkId(pair[0], `${name}[${i}][0]`), pair[1]] as const;
  });
}

/** A session as replies show it. */
export interface SessionInfo extends SessionRecord {
  readonly id: SessionId;
}

export interface EndedSessionInfo extends SessionTombstone {
  readonly id: SessionId;
}

/**
 * Ends sessions in one execution: deletes each one's ephemeral entries (with their ledger
 * events), its record and its index, and leaves a tombstone; keeps the counts and the
 * tombstones' bound.
 */
class SessionEnder {
  readonly changes: KvChanges;
  readonly #reader: StateReader;
  readonly #time: number;
  #ended = 0;

  constructor(reader: StateReader, txid: number, time: number, ephemeralKeysMax: number) {
    this.#reader = reader;
    this.#time = time;
    this.changes = new KvChanges(reader, txid, ephemeralKeysMax);
  }

  /** Ends the session; returns the ephemeral entries it deleted. */
  end(id: SessionId, record: SessionRecord, reason: SessionEnd, lastHeartbeatAt: number): number {
    const changes = this.changes;
    // The index is exact, so its count bounds the scan; one more row would be a bug, caught below.
    const rows = this.#reader.scan("sessions", ephemeralPrefix(id), undefined, record.ephemeralCount + 1);
    let deleted = 0;
    // In key order (the index is in hash order), so that the events read as a prefix delete's.
    const owned = rows
      .map((row) => ({ row, key: Buffer.from(row.value) }))
      .sort((a, b) => Buffer.compare(a.key, b.key));
    for (const { row, key: bytes } of owned) {
      const key = bytes.toString("utf8");
      if (changes.get(key)?.session === id) {
        changes.delete(key);
        deleted++;
      } else {
        changes.writes.push({ table: "sessions", key: row.key, value: null });
      }
    }
    changes.setSession(id, null);
    changes.writes.push({
      table: "sessions",
      key: tombstoneKey(id),
      value: encodeTombstone({
        ttlMs: record.ttlMs,
        createdAt: record.createdAt,
        endedAt: this.#time,
        lastHeartbeatAt,
        reason,
      }),
    });
    this.#ended++;
    return deleted;
  }

  execution(reply: Readonly<Record<string, unknown>>): Execution {
    const changes = this.changes;
    if (this.#ended > 0) {
      const open = readCount(this.#reader, SESSION_COUNT_KEY) - this.#ended;
      changes.writes.push({
        table: "sessions",
        key: SESSION_COUNT_KEY,
        value: encodeCount(Math.max(0, open)),
      });
      let tombstones = readCount(this.#reader, TOMBSTONE_COUNT_KEY) + this.#ended;
      if (tombstones > SESSION_TOMBSTONES_KEPT) {
        // The oldest (lowest ids) go; this entry's own are not in the reader, and are newer.
        const excess = tombstones - SESSION_TOMBSTONES_KEPT;
        for (const row of this.#reader.scan("sessions", "x/", undefined, excess)) {
          changes.writes.push({ table: "sessions", key: row.key, value: null });
          tombstones--;
        }
      }
      changes.writes.push({ table: "sessions", key: TOMBSTONE_COUNT_KEY, value: encodeCount(tombstones) });
    }
    return changes.execution(reply);
  }
}

export interface SessionCreateRequest extends Request {
  readonly op: "sessionCreate";
  readonly ttlMs: number;
}
export interface SessionCloseRequest extends Request {
  readonly op: "sessionClose";
  readonly sessionId: SessionId;
}
/** The leader's: these sessions missed their TTL (`[id, lastHeartbeatAt]`). */
export interface SessionExpireRequest extends Request {
  readonly op: "sessionExpire";
  readonly items: readonly (readonly [SessionId, number])[];
}
/** The leader's: the TTL these sessions have left (`[id, remainingMs]`). */
export interface SessionCheckpointRequest extends Request {
  readonly op: "sessionCheckpoint";
  readonly items: readonly (readonly [SessionId, number])[];
}
export interface SessionGetRequest extends Request {
  readonly op: "sessionGet";
  readonly sessionId: SessionId;
}
export interface SessionListRequest extends Request {
  readonly op: "sessionList";
  /** Ended sessions (their tombstones) instead of open ones. */
  readonly ended: boolean;
  readonly startAfter: SessionId | undefined;
  readonly limit: number;
}

/** Every open session in id order, a page at a time (for a new leader's tracker). */
export function* allSessions(reader: StateReader, pageRows = 4096): Generator<SessionInfo> {
  let after: string | undefined;
  for (;;) {
    const rows = reader.scan("sessions", "s/", after, pageRows);
    for (const row of rows) yield { id: idOfKey(row.key), ...decodeSession(row.value) };
    if (rows.length < pageRows) return;
    after = rows[rows.length - 1]!.key;
  }
}

export function readTombstone(reader: StateReader, id: SessionId): SessionTombstone | undefined {
  const bytes = reader.get("sessions", tombstoneKey(id));
  return bytes === undefined ? undefined : decodeTombstone(bytes);
}

function expiredError(id: SessionId): MetaraftError {
  return new MetaraftError("MR_ERR_SESSION_EXPIRED", `session ${id} has expired or was closed`, {
    details: { sessionId: id },
  });
}

/** The session requests, under the node's `session` and `kv` limits. */
export function sessionSpecs(limits: SessionLimits = SESSION_LIMITS_DEFAULT): readonly RequestSpec[] {
  const createSpec: RequestSpec<SessionCreateRequest> = {
    op: "sessionCreate",
    kind: "write",
    validate(raw) {
      const ttlMs = field(raw, "ttlMs");
      if (!isCount(ttlMs) || ttlMs < SESSION_TTL_MIN_MS || ttlMs > limits.ttlMaxMs) {
        throw bad(
          `ttlMs must be an integer from ${SESSION_TTL_MIN_MS} to ${limits.ttlMaxMs} (session.ttlMaxMs)`,
        );
      }
      return { op: "sessionCreate", ttlMs };
    },
    execute(request, { txid, time, reader }) {
      const open = readCount(reader, SESSION_COUNT_KEY);
      if (open >= limits.sessionsMax) {
        throw new MetaraftError(
          "MR_ERR_SESSION_LIMIT",
          `${open} sessions are open, session.sessionsMax ${limits.sessionsMax}`,
        );
      }
      const record: SessionRecord = {
        ttlMs: request.ttlMs,
        remainingMs: request.ttlMs,
        createdAt: Math.floor(time),
        ephemeralCount: 0,
      };
      const changes = new KvChanges(reader, txid, limits.ephemeralKeysMax);
      changes.setSession(txid, record);
      changes.writes.push({ table: "sessions", key: SESSION_COUNT_KEY, value: encodeCount(open + 1) });
      return changes.execution({ sessionId: txid, ttlMs: request.ttlMs, txid });
    },
  };

  const closeSpec: RequestSpec<SessionCloseRequest> = {
    op: "sessionClose",
    kind: "write",
    validate: (raw) => ({ op: "sessionClose", sessionId: checkId(field(raw, "sessionId"), "sessionId") }),
    execute(request, { txid, time, reader }) {
      const record = readSession(reader, request.sessionId);
      if (!record) throw expiredError(request.sessionId);
      const ender = new SessionEnder(reader, txid, time, limits.ephemeralKeysMax);
      const deleted = ender.end(request.sessionId, record, "closed", 0);
      return ender.execution({ txid, deleted });
    },
  };

  const expireSpec: RequestSpec<SessionExpireRequest> = {
    op: "sessionExpire",
    kind: "write",
    validate: (raw) => ({ op: "sessionExpire", items: checkPairs(raw, "items") }),
    execute(request, { txid, time, reader }) {
      const ender = new SessionEnder(reader, txid, time, limits.ephemeralKeysMax);
      const expired: SessionId[] = [];
      const deferred: SessionId[] = [];
      const gone: SessionId[] = [];
      let keys = 0;
      for (const [id, lastHeartbeatAt] of request.items) {
        const record = ender.changes.session(id);
        if (!record) {
          gone.push(id);
          continue;
        }
        if (expired.length > 0 && keys + record.ephemeralCount > SESSION_EXPIRE_KEYS_MAX) {
          deferred.push(id);
          continue;
        }
        keys += ender.end(id, record, "expired", lastHeartbeatAt);
        expired.push(id);
      }
      return ender.execution({ txid, expired, deferred, gone, deleted: keys });
    },
  };

  const checkpointSpec: RequestSpec<SessionCheckpointRequest> = {
    op: "sessionCheckpoint",
    kind: "write",
    validate: (raw) => ({ op: "sessionCheckpoint", items: checkPairs(raw, "items") }),
    execute(request, { txid, reader }) {
      const changes = new KvChanges(reader, txid, limits.ephemeralKeysMax);
      let recorded = 0;
      for (const [id, remainingMs] of request.items) {
        const record = changes.session(id);
        if (!record) continue;
        changes.setSession(id, { ...record, remainingMs: Math.min(remainingMs, record.ttlMs) });
        recorded++;
      }
      return changes.execution({ txid, recorded });
    },
  };

  const getSpec: RequestSpec<SessionGetRequest> = {
    op: "sessionGet",
    kind: "read",
    validate: (raw) => ({ op: "sessionGet", sessionId: checkId(field(raw, "sessionId"), "sessionId") }),
    execute(request, { txid, reader }) {
      const id = request.sessionId;
      const record = readSession(reader, id);
      const ended = record ? undefined : readTombstone(reader, id);
      const keys = record
        ? reader
            .scan("sessions", ephemeralPrefix(id), undefined, SESSION_GET_KEYS_MAX)
            .map((row) => Buffer.from(row.value).toString("utf8"))
            .sort()
        : [];
      return {
        writes: [],
        reply: {
          session: record ? { id, ...record, keys } : null,
          ended: ended ? { id, ...ended } : null,
          appliedTxid: txid,
        },
      };
    },
  };

  const listSpec: RequestSpec<SessionListRequest> = {
    op: "sessionList",
    kind: "read",
    validate(raw) {
      const ended = field(raw, "ended") ?? false;
      if (typeof ended !== "boolean") throw bad("ended must be a boolean");
      const startAfter = field(raw, "startAfter");
      const limit = field(raw, "limit") ?? SESSION_LIST_LIMIT_MAX;
      if (!isCount(limit) || limit < 1 || limit > SESSION_LIST_LIMIT_MAX) {
        throw bad(`limit must be 1 to ${SESSION_LIST_LIMIT_MAX}`);
      }
      return {
        op: "sessionList",
        ended,
        startAfter: startAfter === undefined ? undefined : checkId(startAfter, "startAfter"),
        limit,
      };
    },
    execute(request, { txid, reader }) {
      const prefix = request.ended ? "x/" : "s/";
      const after =
        request.startAfter === undefined
          ? undefined
          : request.ended
            ? tombstoneKey(request.startAfter)
            : sessionKey(request.startAfter);
      const rows = reader.scan("sessions", prefix, after, request.limit + 1);
      const items = rows.slice(0, request.limit).map((row) => ({
        id: idOfKey(row.key),
        ...(request.ended ? decodeTombstone(row.value) : decodeSession(row.value)),
      }));
      const truncated = rows.length > request.limit;
      return {
        writes: [],
        reply: {
          items,
          truncated,
          ...(truncated ? { nextStartAfter: items[items.length - 1]!.id } : {}),
          open: readCount(reader, SESSION_COUNT_KEY),
          appliedTxid: txid,
        },
      };
    },
  };

  return [createSpec, closeSpec, expireSpec, checkpointSpec, getSpec, listSpec] as readonly RequestSpec[];
}
