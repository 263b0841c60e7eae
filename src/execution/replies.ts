import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { StateReader, Write } from "./types.js";

/**
 * The replay cache, in the `replies` table so that it is replicated with the batch that made
 * the reply and survives failover: one record per call, `c/<client>\0<call>`, whose value is the
 * expiry time (u64 big-endian milliseconds) followed by the MessagePack of `{ txid, reply }`.
 *
 * There is no index by expiry: it cost a second write per request on every node. Instead the
 * leader sweeps the records in key order from a cursor it keeps in memory, reading a budget
 * proportional to the writes it batches, and deletes (through the log) the records that expired.
 * Because a sweep reads at least twice as many records as are written, a record is reached
 * within about one TTL after it expires, so the table holds at most about twice a TTL's worth
 * of calls. A lookup checks the expiry itself, so a record the sweep has not reached yet is
 * never served late.
 */
export const REPLY_TTL_MS = 10 * 60 * 1000;
/** Records a sweep reads per request batched (at least 2, so that sweeping outpaces writing). */
export const EXPIRED_REPLIES_SCAN_PER_WRITE = 2;
/** Records a sweep reads on top of that, so that an idle cluster is swept too. */
export const EXPIRED_REPLIES_SCAN_BASE = 64;
/** Records one sweep reads at most (bounds the leader's time per sweep). */
export const EXPIRED_REPLIES_SCAN_MAX = 16_384;
/** The leader sweeps after this many new records, or after the interval, whichever comes first. */
export const EXPIRED_REPLIES_SWEEP_EVERY_WRITES = 2048;
export const EXPIRED_REPLIES_SWEEP_INTERVAL_MS = 1000;

const REPLY_PREFIX = "c/";
const EXPIRY_BYTES = 8;

export interface CachedReply {
  readonly txid: number;
  readonly expiresAt: number;
  readonly reply: Record<string, unknown>;
}

export const callKey = (clientId: string, callId: number): string => `${clientId}\u0000${callId}`;

const replyKey = (clientId: string, callId: number): string => `${REPLY_PREFIX}${callKey(clientId, callId)}`;

export function replyWrite(clientId: string, callId: number, cached: CachedReply): Write {
  const body = pack({ txid: cached.txid, reply: cached.reply });
  const value = new Uint8Array(EXPIRY_BYTES + body.length);
  new DataView(value.buffer).setBigUint64(0, BigInt(cached.expiresAt));
  value.set(body, EXPIRY_BYTES);
  return { table: "replies", key: replyKey(clientId, callId), value };
}

function expiryOf(value: Uint8Array, key: string): number {
  if (value.length < EXPIRY_BYTES) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `replies record ${JSON.stringify(key)} is too short`);
  }
  return Number(new DataView(value.buffer, value.byteOffset, EXPIRY_BYTES).getBigUint64(0));
}

export function lookupReply(
  reader: StateReader,
  clientId: string,
  callId: number,
  now: number,
): CachedReply | undefined {
  const key = replyKey(clientId, callId);
  const raw = reader.get("replies", key);
  if (!raw) return undefined;
  const expiresAt = expiryOf(raw, key);
  if (expiresAt <= now) return undefined;
  const { txid, reply } = unpack(raw.subarray(EXPIRY_BYTES)) as Omit<CachedReply, "expiresAt">;
  return { txid, expiresAt, reply };
}

/**
 * Walks the replay cache a budget at a time, wrapping around at the end. The cursor is the
 * leader's alone: a new leader starts from the beginning, which only costs it a re-read.
 */
export class ReplySweeper {
  #cursor: string | undefined;

  /**
   * Deletes for the records among the next `budget` that expired by `now`. `committed` should
   * be the applied state, not the leader's overlay (replies in flight are minutes from
   * expiring); `scheduled` skips keys an earlier batch already deletes.
   */
  sweep(
    committed: StateReader,
    now: number,
    budget: number,
    scheduled: (key: string) => boolean = () => false,
  ): Write[] {
    const limit = Math.max(1, Math.min(EXPIRED_REPLIES_SCAN_MAX, Math.floor(budget)));
    const entries = committed.scan("replies", REPLY_PREFIX, this.#cursor, limit);
    this.#cursor = entries.length < limit ? undefined : entries[entries.length - 1]!.key;
    const deletes: Write[] = [];
    for (const { key, value } of entries) {
      if (expiryOf(value, key) <= now && !scheduled(key))
        deletes.push({ table: "replies", key, value: null });
    }
    return deletes;
  }

  /** What a sweep should read after `writes` new records: enough to outpace them. */
  static budgetFor(writes: number): number {
    return EXPIRED_REPLIES_SCAN_BASE + EXPIRED_REPLIES_SCAN_PER_WRITE * writes;
  }
}

/**
 * When the leader sweeps: after `EXPIRED_REPLIES_SWEEP_EVERY_WRITES` new records or
 * `EXPIRED_REPLIES_SWEEP_INTERVAL_MS`, with a budget that outpaces the records written since.
 */
export class SweepSchedule {
  readonly sweeper = new ReplySweeper();
  #writes = 0;
  #next = 0;

  /** Counts `writes` new records; returns the budget of a sweep due now, or 0. */
  due(now: number, writes: number): number {
    this.#writes += writes;
    if (this.#writes < EXPIRED_REPLIES_SWEEP_EVERY_WRITES && now < this.#next) return 0;
    const budget = ReplySweeper.budgetFor(this.#writes);
    this.#writes = 0;
    this.#next = now + EXPIRED_REPLIES_SWEEP_INTERVAL_MS;
    return budget;
  }
}
