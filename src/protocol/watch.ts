import { MetaraftError } from "../errors.js";
import type { LedgerEvent } from "../events/index.js";

/**
 * Watches on the wire (docs/watches.md). A client opens one with `watch {watchId, prefix,
 * fromTxid?}`, choosing a `watchId` unique on its connection; the server answers with a
 * `WatchReply` and then pushes `WatchFrame`s, which carry no request `id` but `push: "watch"` and
 * the `watchId`. The client picks the id so that it can route frames that arrive before the
 * reply, and so that the reply and the frames need no ordering between them.
 *
 * Every frame's `txid` is the stream's position: every matching event up to it has been sent,
 * in this frame or an earlier one. A txid's events never span two frames, so a client that
 * resumes after the last `txid` it received gets no duplicate and misses nothing.
 */

/** UTF-8 bytes of a watch's prefix (a volume, bucket and key name fit: 63 + 63 + 1,024). */
export const WATCH_PREFIX_BYTES_MAX = 4096;

export type ErrorJson = ReturnType<MetaraftError["toJSON"]>;

/** Events in txid order, and the position after them. */
export interface WatchEventsFrame {
  readonly push: "watch";
  readonly watchId: number;
  readonly kind: "events";
  readonly events: readonly LedgerEvent[];
  readonly txid: number;
}

/** Sent to an idle watch every `watch.progressMs`: nothing more matched up to `txid`. */
export interface WatchProgressFrame {
  readonly push: "watch";
  readonly watchId: number;
  readonly kind: "progress";
  readonly txid: number;
}

/** The server ended the watch (MR_ERR_COMPACTED when it fell behind the ledger's start). */
export interface WatchCancelledFrame {
  readonly push: "watch";
  readonly watchId: number;
  readonly kind: "cancelled";
  readonly error: ErrorJson;
}

export type WatchFrame = WatchEventsFrame | WatchProgressFrame | WatchCancelledFrame;

/** Every server-pushed frame; `push` names the stream it belongs to. */
export type PushFrame = WatchFrame;

export interface WatchRequest {
  readonly op: "watch";
  readonly watchId: number;
  /** Only events under this path (`volume/bucket/key`, see `matchesPrefix`); "" for all. */
  readonly prefix: string;
  /** The first txid whose events to send; absent: those after the serving node's last applied one. */
  readonly fromTxid?: number;
}

export interface CancelWatchRequest {
  readonly op: "cancelWatch";
  readonly watchId: number;
}

const isSafeCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function watchIdOf(raw: Readonly<Record<string, unknown>>): number {
  const id = raw.watchId;
  if (!(isSafeCount(id) && id > 0)) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "watchId must be an integer >= 1");
  }
  return id;
}

/** A `watch` request's fields, checked; bad input is MR_ERR_INVALID_ARGUMENT naming the field. */
export function parseWatchRequest(raw: Readonly<Record<string, unknown>>): WatchRequest {
  const watchId = watchIdOf(raw);
  const prefix = raw.prefix ?? "";
  if (typeof prefix !== "string")
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "prefix must be a string");
  if (Buffer.byteLength(prefix) > WATCH_PREFIX_BYTES_MAX) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `prefix is over ${WATCH_PREFIX_BYTES_MAX} bytes`);
  }
  const from = raw.fromTxid;
  if (from !== undefined && from !== null && !isSafeCount(from)) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "fromTxid must be a txid (an integer >= 0)");
  }
  return { op: "watch", watchId, prefix, ...(isSafeCount(from) ? { fromTxid: from } : {}) };
}

export function parseCancelWatch(raw: Readonly<Record<string, unknown>>): CancelWatchRequest {
  return { op: "cancelWatch", watchId: watchIdOf(raw) };
}

export function isPushFrame(body: unknown): body is { readonly push: unknown } {
  return typeof body === "object" && body !== null && typeof (body as { push?: unknown }).push === "string";
}

function malformed(what: string): MetaraftError {
  return new MetaraftError("MR_ERR_PEER_PROTOCOL", `malformed watch frame: ${what}`);
}

/**
 * A pushed frame as the client checks it: a frame the protocol does not allow is
 * MR_ERR_PEER_PROTOCOL (the connection is then given up, like a broken frame).
 */
export function parseWatchFrame(
  body: { readonly push: unknown } & Readonly<Record<string, unknown>>,
): WatchFrame {
  if (body.push !== "watch") throw malformed(`push ${JSON.stringify(body.push)}`);
  const { watchId, kind } = body;
  if (!(isSafeCount(watchId) && watchId > 0)) throw malformed("watchId");
  if (kind === "cancelled") {
    return { push: "watch", watchId, kind, error: body.error as ErrorJson };
  }
  if (!isSafeCount(body.txid)) throw malformed("txid");
  if (kind === "progress") return { push: "watch", watchId, kind, txid: body.txid };
  if (kind !== "events") throw malformed(`kind ${JSON.stringify(kind)}`);
  const events = body.events;
  if (!Array.isArray(events)) throw malformed("events");
  let last = 0;
  for (const event of events as { txid?: unknown }[]) {
    const txid = event?.txid;
    if (!isSafeCount(txid) || txid < last || txid > body.txid) throw malformed("event txids");
    last = txid;
  }
  return { push: "watch", watchId, kind, events: events as LedgerEvent[], txid: body.txid };
}
