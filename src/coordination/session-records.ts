import { createHash } from "node:crypto";
import { pack, unpack } from "msgpackr";
import type { StateReader } from "../execution/types.js";

/**
 * What the `sessions` table holds, under one-letter prefixes so that each kind scans alone:
 * - `s/<id>`: an open session (`SessionRecord`);
 * - `e/<id>/<sha1 of key>`: one of its ephemeral entries, the value being the kv key (a hash,
 *   because a kv key may already be as long as LMDB allows a key to be);
 * - `x/<id>`: a session that ended (`SessionTombstone`), the newest `SESSION_TOMBSTONES_KEPT`;
 * - `m/count`, `m/tombstones`: how many of each there are (limits are checked without scans).
 * `<id>` is the session id in 16 hex digits, so that keys sort as ids do.
 */

/** A session's id is the txid of its create: unique across restarts and failovers. */
export type SessionId = number;

export interface SessionRecord {
  readonly ttlMs: number;
  /**
   * The TTL left when the leader last checkpointed it (the TTL itself until then). A new
   * leader gives each session this plus the election timeout, so that time a dead session has
   * already spent is not handed back to it at each leader change.
   */
  readonly remainingMs: number;
  /** The create's time (the gatekeeper's clock, ms since the epoch). */
  readonly createdAt: number;
  /** Ephemeral entries it holds (bounded by `session.ephemeralKeysMax`). */
  readonly ephemeralCount: number;
}

export type SessionEnd = "expired" | "closed";

export interface SessionTombstone {
  readonly ttlMs: number;
  readonly createdAt: number;
  readonly endedAt: number;
  /** The leader's last heartbeat from it (0 if that leader saw none). */
  readonly lastHeartbeatAt: number;
  readonly reason: SessionEnd;
}

/** Ended sessions kept for `agents ls` and `session ls --ended`; the oldest go first. */
export const SESSION_TOMBSTONES_KEPT = 10_000;

export const SESSION_TTL_MIN_MS = 2_000;

export function sessionHex(id: SessionId): string {
  return id.toString(16).padStart(16, "0");
}

export const sessionKey = (id: SessionId): string => `s/${sessionHex(id)}`;
export const tombstoneKey = (id: SessionId): string => `x/${sessionHex(id)}`;
export const ephemeralPrefix = (id: SessionId): string => `e/${sessionHex(id)}/`;
export const SESSION_COUNT_KEY = "m/count";
export const TOMBSTONE_COUNT_KEY = "m/tombstones";

export function ephemeralKey(id: SessionId, key: string): string {
  return `${ephemeralPrefix(id)}${createHash("sha1").update(key, "utf8").digest("hex")}`;
}

/** The id in a `s/`, `x/` or `e/` key. */
export function idOfKey(key: string): SessionId {
  return Number.parseInt(key.slice(2, 18), 16);
}

export function encodeSession(record: SessionRecord): Uint8Array {
  return pack([record.ttlMs, record.remainingMs, record.createdAt, record.ephemeralCount]);
}

export function decodeSession(bytes: Uint8Array): SessionRecord {
  const [ttlMs, remainingMs, createdAt, ephemeralCount] = unpack(bytes) as number[];
  return { ttlMs: ttlMs!, remainingMs: remainingMs!, createdAt: createdAt!, ephemeralCount: ephemeralCount! };
}

export function encodeTombstone(t: SessionTombstone): Uint8Array {
  return pack([t.ttlMs, t.createdAt, t.endedAt, t.lastHeartbeatAt, t.reason]);
}

export function decodeTombstone(bytes: Uint8Array): SessionTombstone {
  const [ttlMs, createdAt, endedAt, lastHeartbeatAt, reason] = unpack(bytes) as [
    number,
    number,
    number,
    number,
    SessionEnd,
  ];
  return { ttlMs, createdAt, endedAt, lastHeartbeatAt, reason };
}

export function readSession(reader: StateReader, id: SessionId): SessionRecord | undefined {
  const bytes = reader.get("sessions", sessionKey(id));
  return bytes === undefined ? undefined : decodeSession(bytes);
}

export function readCount(reader: StateReader, key: string): number {
  const bytes = reader.get("sessions", key);
  return bytes === undefined ? 0 : (unpack(bytes) as number);
}

export function encodeCount(count: number): Uint8Array {
  return pack(count);
}
