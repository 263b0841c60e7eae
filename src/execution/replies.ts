import { pack, unpack } from "msgpackr";
import type { StateReader, Write } from "./types.js";

/**
 * The replay cache, in the `replies` table so that it is replicated with the batch that made
 * the reply and survives failover: `c/<client>\0<call>` holds the reply, and
 * `e/<expiry as 16 hex digits>/<client>\0<call>` indexes it by expiry for cleanup.
 */
export const REPLY_TTL_MS = 10 * 60 * 1000;
/** Expired replies removed per batch (cleanup rides on writes, bounded so it never dominates). */
export const EXPIRED_REPLIES_PER_BATCH_MAX = 256;
/** How often the batcher looks for expired replies: a scan per batch cost a sixth of the leader's CPU. */
export const EXPIRED_REPLIES_CHECK_INTERVAL_MS = 1000;

export interface CachedReply {
  readonly txid: number;
  readonly expiresAt: number;
  readonly reply: Record<string, unknown>;
}

export const callKey = (clientId: string, callId: number): string => `${clientId}\u0000${callId}`;

const hex16 = (n: number): string => n.toString(16).padStart(16, "0");

export function replyWrites(clientId: string, callId: number, cached: CachedReply): Write[] {
  const call = callKey(clientId, callId);
  return [
    { table: "replies", key: `c/${call}`, value: pack(cached) },
    { table: "replies", key: `e/${hex16(cached.expiresAt)}/${call}`, value: new Uint8Array(0) },
  ];
}

export function lookupReply(
  reader: StateReader,
  clientId: string,
  callId: number,
  now: number,
): CachedReply | undefined {
  const raw = reader.get("replies", `c/${callKey(clientId, callId)}`);
  if (!raw) return undefined;
  const cached = unpack(raw) as CachedReply;
  return cached.expiresAt > now ? cached : undefined;
}

/**
 * Deletes for replies that expired by `now`, oldest first. `committed` should be the applied
 * state, not the leader's overlay: replies still in flight are minutes from expiring.
 * `scheduled` skips keys an earlier batch already deletes.
 */
export function expiredReplyDeletes(
  committed: StateReader,
  now: number,
  scheduled: (key: string) => boolean = () => false,
  max = EXPIRED_REPLIES_PER_BATCH_MAX,
): Write[] {
  const deletes: Write[] = [];
  for (const { key } of committed.scan("replies", "e/", undefined, max)) {
    if (scheduled(key)) continue;
    const expiresAt = Number.parseInt(key.slice(2, 18), 16);
    if (expiresAt > now) break;
    deletes.push(
      { table: "replies", key, value: null },
      { table: "replies", key: `c/${key.slice(19)}`, value: null },
    );
  }
  return deletes;
}
