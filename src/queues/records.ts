import { pack, unpack } from "msgpackr";
import { FRAME_HEADER_BYTES, FRAME_VERSION } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type { StateReader } from "../execution/types.js";

/**
 * The durable queues in the `queues` state table (DESIGN.md, "Durable queues"). Keys are UTF-8
 * strings ordered bytewise, with numbers as fixed-width hex so that they sort:
 * - `m/NAME`: the queue's meta record (offsets, limits, counters), rewritten by every request;
 * - `d/NAME/SEGMENT/OFFSET`: a data row, the events of one add that fall in one segment, keyed by
 *   the offset of its first event. Its value is frames (`core.encodeFrames`): a header frame (the
 *   add's time), then one frame per event, so a corrupted row fails its checksum when read;
 * - `x/NAME/OFFSET`: a dead letter, the event that was at OFFSET, with the error that sent it there.
 *
 * Offsets count the bytes of the event frames (header and payload) since the queue was created,
 * so they are also the queue's byte accounting. An event belongs to segment
 * `floor(offset / segmentBytes)` and rows never straddle two segments: every row in a segment
 * below the truncation point's holds only truncated events, so a segment is deleted whole.
 */

/** Names: letters, digits, `-`, `_` and `.`, 1 to 64 of them (no `/`: it separates the key's parts). */
export const QUEUE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Queues a cluster holds at most. */
export const QUEUES_MAX = 256;
/** An event's payload at most. */
export const QUEUE_EVENT_BYTES_MAX = 1024 * 1024;
/** Events one add carries at most. */
export const QUEUE_ADD_EVENTS_MAX = 10_000;
/** Payload bytes one add carries at most (a client's request is bounded by requestBytesMax too). */
export const QUEUE_ADD_BYTES_MAX = 4 * 1024 * 1024;
/** The bytes an event takes in the queue: its frame. */
export const frameBytesOf = (payloadBytes: number): number => FRAME_HEADER_BYTES + payloadBytes;
/** The smallest frame (a one-byte event): bounds how many events a byte range can hold. */
export const QUEUE_EVENT_FRAME_BYTES_MIN = frameBytesOf(1);
/** Dead letters a queue holds at most (their bytes are bounded by its maxOutstandingBytes too). */
export const DEAD_LETTERS_MAX = 65_536;
/** UTF-8 bytes of a dead letter's error text at most (longer is cut). */
export const DEAD_LETTER_ERROR_BYTES_MAX = 4096;

/** A row's header frame payload: a version byte, then the add's time (ms since the epoch, u64 LE). */
const ROW_HEADER_VERSION = 1;
const ROW_HEADER_PAYLOAD_BYTES = 9;
export const ROW_HEADER_FRAME_BYTES = frameBytesOf(ROW_HEADER_PAYLOAD_BYTES);

export const META_PREFIX = "m/";
export const metaKey = (queue: string): string => `${META_PREFIX}${queue}`;
export const dataPrefix = (queue: string): string => `d/${queue}/`;
export const hex16 = (n: number): string => n.toString(16).padStart(16, "0");
export const segmentPrefix = (queue: string, segment: number): string =>
  `${dataPrefix(queue)}${hex16(segment)}/`;
export const dataKey = (queue: string, segment: number, offset: number): string =>
  `${segmentPrefix(queue, segment)}${hex16(offset)}`;
export const deadLetterPrefix = (queue: string): string => `x/${queue}/`;
export const deadLetterKey = (queue: string, offset: number): string =>
  `${deadLetterPrefix(queue)}${hex16(offset)}`;

export const segmentOf = (offset: number, segmentBytes: number): number => Math.floor(offset / segmentBytes);

/** The segment and offset of a data row's key. */
export function parseDataKey(key: string): { segment: number; offset: number } {
  const parts = key.split("/");
  const segment = Number.parseInt(parts.at(-2) ?? "", 16);
  const offset = Number.parseInt(parts.at(-1) ?? "", 16);
  if (!(Number.isSafeInteger(segment) && Number.isSafeInteger(offset))) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `queue data row key ${key} is malformed`);
  }
  return { segment, offset };
}

/** A queue's replicated state; identical on every node. */
export interface QueueMeta {
  readonly name: string;
  /** Fixed when the queue is created: its segments' boundaries depend on it. */
  readonly segmentBytes: number;
  /** An add that would take the untruncated bytes past this is refused with QUEUE_FULL. */
  readonly maxOutstandingBytes: number;
  /** The offset after the last event, and the events ever appended. */
  readonly appended: number;
  readonly appendedEvents: number;
  /** The durable restart point: every event before it was processed. */
  readonly truncated: number;
  readonly truncatedEvents: number;
  /** The offset of the row holding the event at `truncated` (`truncated` itself when it is `appended`). */
  readonly truncatedRow: number;
  /** No data row is in a segment below this one. */
  readonly firstSegment: number;
  /** The segment of the last row written (-1: none yet). */
  readonly lastSegment: number;
  /** Segments and rows that hold data now. */
  readonly segments: number;
  readonly rows: number;
  /** Dead letters held now, their frame bytes, and the events ever dead-lettered. */
  readonly deadLetters: number;
  readonly deadLetterBytes: number;
  readonly deadLettered: number;
  readonly createdTxid: number;
}

export function encodeMeta(meta: QueueMeta): Uint8Array {
  return pack({ v: 1, ...meta });
}

export function decodeMeta(bytes: Uint8Array, key: string): QueueMeta {
  const m = unpack(bytes) as Partial<QueueMeta> & { v?: number };
  const counts = [
    m?.segmentBytes,
    m?.maxOutstandingBytes,
    m?.appended,
    m?.appendedEvents,
    m?.truncated,
    m?.truncatedEvents,
    m?.truncatedRow,
    m?.firstSegment,
    m?.segments,
    m?.rows,
    m?.deadLetters,
    m?.deadLetterBytes,
    m?.deadLettered,
    m?.createdTxid,
  ];
  if (
    m?.v !== 1 ||
    typeof m.name !== "string" ||
    !counts.every((n) => Number.isSafeInteger(n) && (n as number) >= 0) ||
    !Number.isSafeInteger(m.lastSegment)
  ) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `queue meta record ${key} is malformed`);
  }
  const meta = m as QueueMeta & { v?: number };
  if (!(meta.truncated <= meta.appended && meta.truncatedEvents <= meta.appendedEvents)) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `queue meta record ${key}: truncated past appended`);
  }
  const { v: _v, ...rest } = meta;
  return rest;
}

export function readMeta(reader: StateReader, queue: string): QueueMeta | undefined {
  const key = metaKey(queue);
  const bytes = reader.get("queues", key);
  return bytes ? decodeMeta(bytes, key) : undefined;
}

export function listMetas(reader: StateReader): QueueMeta[] {
  return reader
    .scan("queues", META_PREFIX, undefined, QUEUES_MAX + 1)
    .map((row) => decodeMeta(row.value, row.key));
}

/** A dead letter: the event as it was in the queue (one frame, checksummed) and why it left. */
export interface DeadLetter {
  readonly offset: number;
  /** The event's index in the queue (0 for the first event ever added). */
  readonly index: number;
  readonly error: string;
  /** How many times the handler failed on it alone. */
  readonly attempts: number;
  /** When it was dead-lettered (the request's time) and by which txid. */
  readonly time: number;
  readonly txid: number;
  /** The event's frame: `u32 length | u8 version | u32 crc32c | payload`. */
  readonly frame: Uint8Array;
}

export function encodeDeadLetter(letter: DeadLetter): Uint8Array {
  return pack({ v: 1, ...letter });
}

export function decodeDeadLetter(bytes: Uint8Array, key: string): DeadLetter {
  const d = unpack(bytes) as Partial<DeadLetter> & { v?: number };
  if (
    d?.v !== 1 ||
    !Number.isSafeInteger(d.offset) ||
    !Number.isSafeInteger(d.index) ||
    typeof d.error !== "string" ||
    !(d.frame instanceof Uint8Array) ||
    d.frame.length < QUEUE_EVENT_FRAME_BYTES_MIN
  ) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `dead letter ${key} is malformed`);
  }
  return {
    offset: d.offset!,
    index: d.index!,
    error: d.error,
    attempts: d.attempts ?? 0,
    time: d.time ?? 0,
    txid: d.txid ?? 0,
    frame: new Uint8Array(d.frame),
  };
}

/** A row's header frame: written by hand (it is one small frame) with the core's CRC. */
export function rowHeaderFrame(time: number, crc32c: (data: Uint8Array) => number): Uint8Array {
  const payload = new Uint8Array(ROW_HEADER_PAYLOAD_BYTES);
  const view = new DataView(payload.buffer);
  payload[0] = ROW_HEADER_VERSION;
  view.setBigUint64(1, BigInt(Math.max(0, Math.floor(time))), true);
  const frame = new Uint8Array(ROW_HEADER_FRAME_BYTES);
  const frameView = new DataView(frame.buffer);
  frameView.setUint32(0, ROW_HEADER_PAYLOAD_BYTES, true);
  frame[4] = FRAME_VERSION;
  frameView.setUint32(5, crc32c(payload), true);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** The time in a row header's payload (already checksummed by the split). */
export function rowHeaderTime(payload: Uint8Array, key: string): number {
  if (payload.length !== ROW_HEADER_PAYLOAD_BYTES || payload[0] !== ROW_HEADER_VERSION) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `queue data row ${key} has no valid header`);
  }
  return Number(new DataView(payload.buffer, payload.byteOffset, payload.byteLength).getBigUint64(1, true));
}

/** The event bytes of a row (all but its header): where the next row starts is its offset plus these. */
export const rowEventBytes = (value: Uint8Array): number => value.length - ROW_HEADER_FRAME_BYTES;

/** One UTF-8-safe cut of an error text to its limit. */
export function cutError(text: string): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.length <= DEAD_LETTER_ERROR_BYTES_MAX) return text;
  return `${bytes
    .subarray(0, DEAD_LETTER_ERROR_BYTES_MAX - 3)
    .toString("utf8")
    .replace(/\uFFFD$/, "")}...`;
}
