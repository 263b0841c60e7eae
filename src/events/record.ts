import { pack, unpack } from "msgpackr";
import type { CoreSync } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { EVENT_TYPE_CODES, EVENT_TYPE_OF_CODE, type LedgerEvent } from "./types.js";

/**
 * One ledger record: the events of one Raft entry (a batch, or one replicated request), as
 * frames (docs/core-formats.md):
 *   [header {v, n}, delta-encoded txids, delta-encoded times, bodies]
 * The txids and times of a batch are close together, so the core's delta encoding keeps them
 * to a byte or two each; bodies are MessagePack tuples `[code, volume, bucket, key, toKey,
 * objectId, size, etag]`, positional to stay small. The record is stored as it travelled in
 * the entry: apply writes its bytes without decoding them.
 */

/** Events one record carries at most: a batch has at most this many requests' events. */
export const RECORD_EVENTS_MAX = 1_000_000;

type Body = [number, ...(string | number | null)[]];

export function encodeRecord(events: readonly LedgerEvent[], core: CoreSync): Uint8Array {
  if (events.length === 0) throw new MetaraftError("MR_ERR_INTERNAL", "a ledger record holds no events");
  if (events.length > RECORD_EVENTS_MAX) {
    throw new MetaraftError("MR_ERR_INTERNAL", `${events.length} events in one record`);
  }
  const txids = new Float64Array(events.length);
  const times = new Float64Array(events.length);
  const bodies: Body[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    if (i > 0 && !(e.txid >= txids[i - 1]!)) {
      throw new MetaraftError("MR_ERR_INTERNAL", `event txids go back: ${e.txid} after ${txids[i - 1]}`);
    }
    txids[i] = e.txid;
    times[i] = e.time;
    const body: Body = [
      EVENT_TYPE_CODES[e.type],
      e.volume ?? null,
      e.bucket ?? null,
      e.key ?? null,
      e.toKey ?? null,
      e.objectId ?? null,
      e.size ?? null,
      e.etag ?? null,
    ];
    // Trailing absent fields cost nothing.
    while (body.length > 1 && body[body.length - 1] === null) body.pop();
    bodies[i] = body;
  }
  return core.encodeFrames([
    pack({ v: 1, n: events.length }),
    core.encodeDeltas(txids),
    core.encodeDeltas(times),
    pack(bodies),
  ]);
}

export interface RecordHeader {
  readonly count: number;
  readonly firstTxid: number;
  readonly lastTxid: number;
}

function frames(data: Uint8Array, core: CoreSync, what: string): Uint8Array[] {
  let split: ReturnType<CoreSync["splitFrames"]>;
  try {
    split = core.splitFrames(data);
  } catch (error) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `${what}: ${(error as Error).message}`, { cause: error });
  }
  const parts: Uint8Array[] = [];
  for (let i = 0; i < split.starts.length; i++) {
    const start = split.starts[i]!;
    parts.push(data.subarray(start, start + split.lengths[i]!));
  }
  if (parts.length !== 4) throw new MetaraftError("MR_ERR_LOG_CORRUPT", `${what}: ${parts.length} frames`);
  return parts;
}

function header(part: Uint8Array, what: string): number {
  const h = unpack(part) as { v?: number; n?: number };
  if (h?.v !== 1) throw new MetaraftError("MR_ERR_LOG_CORRUPT", `${what}: version ${String(h?.v)}`);
  if (!(Number.isInteger(h.n) && h.n! > 0 && h.n! <= RECORD_EVENTS_MAX)) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `${what}: count ${String(h.n)}`);
  }
  return h.n!;
}

/** The record's count and txid range, without decoding its bodies (pruning reads only this). */
export function recordHeader(data: Uint8Array, core: CoreSync, what = "ledger record"): RecordHeader {
  const parts = frames(data, core, what);
  const count = header(parts[0]!, what);
  const txids = core.decodeDeltas(parts[1]!);
  if (txids.length !== count) throw new MetaraftError("MR_ERR_LOG_CORRUPT", `${what}: ${txids.length} txids`);
  return { count, firstTxid: txids[0]!, lastTxid: txids[count - 1]! };
}

export function decodeRecord(data: Uint8Array, core: CoreSync, what = "ledger record"): LedgerEvent[] {
  const parts = frames(data, core, what);
  const count = header(parts[0]!, what);
  const txids = core.decodeDeltas(parts[1]!);
  const times = core.decodeDeltas(parts[2]!);
  const bodies = unpack(parts[3]!) as Body[];
  if (txids.length !== count || times.length !== count || !Array.isArray(bodies) || bodies.length !== count) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `${what}: counts differ from ${count}`);
  }
  const out: LedgerEvent[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const body = bodies[i]!;
    const type = Array.isArray(body) ? EVENT_TYPE_OF_CODE.get(body[0] as number) : undefined;
    if (!type) throw new MetaraftError("MR_ERR_LOG_CORRUPT", `${what}: event ${i} has an unknown type`);
    const [, volume, bucket, key, toKey, objectId, size, etag] = body;
    const event: Record<string, unknown> = { txid: txids[i]!, time: times[i]!, type };
    if (volume != null) event.volume = volume;
    if (bucket != null) event.bucket = bucket;
    if (key != null) event.key = key;
    if (toKey != null) event.toKey = toKey;
    if (objectId != null) event.objectId = objectId;
    if (size != null) event.size = size;
    if (etag != null) event.etag = etag;
    out[i] = event as unknown as LedgerEvent;
  }
  return out;
}
