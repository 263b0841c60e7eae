import type { CoreSync } from "../core/index.js";
import { framePayloads } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type { Request, RequestSpec, StateReader, Write } from "../execution/types.js";
import { SETTINGS } from "../settings.js";
import {
  cutError,
  DEAD_LETTERS_MAX,
  type DeadLetter,
  dataKey,
  deadLetterKey,
  deadLetterPrefix,
  decodeDeadLetter,
  encodeDeadLetter,
  encodeMeta,
  frameBytesOf,
  listMetas,
  metaKey,
  QUEUE_ADD_BYTES_MAX,
  QUEUE_ADD_EVENTS_MAX,
  QUEUE_EVENT_BYTES_MAX,
  QUEUE_NAME,
  QUEUES_MAX,
  type QueueMeta,
  readMeta,
  rowEventBytes,
  rowHeaderFrame,
  segmentOf,
  segmentPrefix,
} from "./records.js";

/**
 * The queues' requests, replicated through the write path like any other: the leader's executor
 * (or, in the replicated-request mode, every node at apply) runs them against the state and the
 * request alone, so every node writes the same rows. `queueAdd` assigns offsets and refuses what
 * would overfill the queue; the tail's `queueTruncate` and `queueDeadLetter` move the restart
 * point forward only, and delete truncated segments in bounded steps (LMDB has no range delete),
 * the tail sending truncations at the same point until none is left.
 */

/** Data rows one request deletes at most: a truncated segment goes over several entries, never stalling one. */
export const QUEUE_DELETE_ROWS_PER_REQUEST = 256;
/** Dead letters one retry or purge moves at most (the CLI repeats until none are left). */
export const DEAD_LETTERS_PER_REQUEST_MAX = 1000;
/** Dead letters one `queueDeadLetters` read lists at most, and their event bytes at most. */
export const DEAD_LETTERS_LIST_MAX = 1000;
export const DEAD_LETTERS_LIST_BYTES_MAX = 2 * 1024 * 1024;
/** The bounds of a queue's maxOutstandingBytes (the settings' bounds of its default). */
export const QUEUE_OUTSTANDING_BYTES = {
  min: SETTINGS.queue.outstandingBytesMax.min,
  max: SETTINGS.queue.outstandingBytesMax.max,
} as const;

/** The tail's own requests: the node refuses them from clients (their offsets are trusted to be event boundaries). */
export const QUEUE_INTERNAL_OPS: ReadonlySet<string> = new Set(["queueTruncate", "queueDeadLetter"]);

function field<T>(raw: Request, name: string, check: (v: unknown) => v is T, what: string): T {
  const value = raw[name];
  if (!check(value)) throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${name} must be ${what}`);
  return value;
}
const isString = (v: unknown): v is string => typeof v === "string";
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isBytes = (v: unknown): v is Uint8Array => v instanceof Uint8Array;

export function checkQueueName(name: unknown): string {
  if (typeof name !== "string" || !QUEUE_NAME.test(name)) {
    throw new MetaraftError(
      "MR_ERR_INVALID_NAME",
      `queue name ${JSON.stringify(name)}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  return name;
}

const queueOf = (raw: Request): string => checkQueueName(raw.queue);

function within(raw: Request, name: string, min: number, max: number): number {
  const value = field(raw, name, isCount, "a non-negative integer");
  if (value < min || value > max) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${name} must be ${min} to ${max}: ${value}`);
  }
  return value;
}

function limitOf(raw: Request, max: number): number {
  return raw.limit === undefined ? max : within(raw, "limit", 1, max);
}

function requireMeta(reader: StateReader, queue: string): QueueMeta {
  const meta = readMeta(reader, queue);
  if (!meta) throw new MetaraftError("MR_ERR_QUEUE_NOT_FOUND", `queue ${queue}`);
  return meta;
}

const metaWrite = (meta: QueueMeta): Write => ({
  table: "queues",
  key: metaKey(meta.name),
  value: encodeMeta(meta),
});

/** What a queue's summary adds to its meta record: what is outstanding. */
export function summaryOf(
  meta: QueueMeta,
): QueueMeta & { outstandingBytes: number; outstandingEvents: number } {
  return {
    ...meta,
    outstandingBytes: meta.appended - meta.truncated,
    outstandingEvents: meta.appendedEvents - meta.truncatedEvents,
  };
}

function queueFull(meta: QueueMeta, adding: number, what = "the queue"): MetaraftError {
  const outstanding = meta.appended - meta.truncated;
  return new MetaraftError(
    "MR_ERR_QUEUE_FULL",
    `${what} ${meta.name}: ${outstanding} bytes outstanding + ${adding} would pass its maxOutstandingBytes of ${meta.maxOutstandingBytes}`,
    {
      details: {
        queue: meta.name,
        outstandingBytes: outstanding,
        maxOutstandingBytes: meta.maxOutstandingBytes,
      },
    },
  );
}

/**
 * Appends event frames (concatenated, `lengths` each) as rows, cut where an event starts in a
 * new segment: a row never holds events of two segments.
 */
function appendFrames(
  meta: QueueMeta,
  frames: Uint8Array,
  lengths: readonly number[],
  header: Uint8Array,
): { writes: Write[]; meta: QueueMeta } {
  const writes: Write[] = [];
  let { segments, rows, lastSegment } = meta;
  let offset = meta.appended;
  let position = 0;
  let rowStart = offset;
  let rowPosition = 0;
  let rowSegment = segmentOf(offset, meta.segmentBytes);
  const cut = (): void => {
    if (position === rowPosition) return;
    const value = new Uint8Array(header.length + position - rowPosition);
    value.set(header, 0);
    value.set(frames.subarray(rowPosition, position), header.length);
    writes.push({ table: "queues", key: dataKey(meta.name, rowSegment, rowStart), value });
    rows++;
    if (rowSegment > lastSegment) {
      segments++;
      lastSegment = rowSegment;
    }
  };
  for (const length of lengths) {
    const segment = segmentOf(offset, meta.segmentBytes);
    if (segment !== rowSegment) {
      cut();
      rowSegment = segment;
      rowStart = offset;
      rowPosition = position;
    }
    offset += length;
    position += length;
  }
  cut();
  if (position !== frames.length) {
    throw new MetaraftError(
      "MR_ERR_INTERNAL",
      `frames of ${frames.length} bytes, lengths sum to ${position}`,
    );
  }
  return {
    writes,
    meta: {
      ...meta,
      appended: offset,
      appendedEvents: meta.appendedEvents + lengths.length,
      segments,
      rows,
      lastSegment,
    },
  };
}

/**
 * Deletes the rows of segments wholly below the truncation point, oldest first, at most
 * `QUEUE_DELETE_ROWS_PER_REQUEST` (an empty segment number visited counts as one); the rest goes
 * with the queue's next truncation. Only the tail's requests delete, one in flight per queue, so
 * an entry carries a bounded number of deletes however many adds ride in it. Each scan covers one
 * old segment's prefix: the leader's overlay of adds in flight (in the newest segment) stays out.
 */
function compact(
  reader: StateReader,
  meta: QueueMeta,
): { writes: Write[]; meta: QueueMeta; deleted: number } {
  const below = segmentOf(meta.truncated, meta.segmentBytes);
  if (meta.firstSegment >= below) return { writes: [], meta, deleted: 0 };
  const writes: Write[] = [];
  let budget = QUEUE_DELETE_ROWS_PER_REQUEST;
  let segment = meta.firstSegment;
  let emptied = 0;
  while (segment < below && budget > 0) {
    // One more than the budget: whether rows are left in the segment after these.
    const found = reader.scan("queues", segmentPrefix(meta.name, segment), undefined, budget + 1);
    const taken = found.slice(0, budget);
    for (const row of taken) writes.push({ table: "queues", key: row.key, value: null });
    if (found.length > budget) break;
    if (found.length > 0) emptied++;
    budget -= Math.max(1, taken.length);
    segment++;
  }
  if (writes.length > meta.rows || emptied > meta.segments) {
    throw new MetaraftError(
      "MR_ERR_LOG_CORRUPT",
      `queue ${meta.name}: deleting ${writes.length} rows of ${emptied} segments, but it counts ${meta.rows} rows in ${meta.segments}`,
    );
  }
  return {
    writes,
    deleted: writes.length,
    meta: {
      ...meta,
      firstSegment: segment,
      rows: meta.rows - writes.length,
      segments: meta.segments - emptied,
    },
  };
}

/** Checks that `rowOffset` names a row that holds `offset` (or both are the end of the queue). */
function checkRow(
  reader: StateReader,
  meta: QueueMeta,
  rowOffset: number,
  offset: number,
  what: string,
): number {
  if (offset === meta.appended) {
    if (rowOffset !== offset) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `${what} ${offset} is the queue's end: its row must be ${offset}, not ${rowOffset}`,
      );
    }
    return offset;
  }
  const key = dataKey(meta.name, segmentOf(rowOffset, meta.segmentBytes), rowOffset);
  const row = reader.get("queues", key);
  const end = row ? rowOffset + rowEventBytes(row) : -1;
  if (!row || !(rowOffset <= offset && offset < end)) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `queue ${meta.name}: no row at ${rowOffset} holds offset ${offset}`,
    );
  }
  return end;
}

interface QueueRegisterRequest extends Request {
  readonly op: "queueRegister";
  readonly queue: string;
  readonly maxOutstandingBytes: number;
  readonly segmentBytes: number;
}

/**
 * Creates a queue, or changes its maxOutstandingBytes. A queue's segmentBytes is fixed when it
 * is created (segment numbers derive from it); a later value is ignored, and the reply says
 * which one the queue keeps.
 */
export const queueRegisterSpec: RequestSpec<QueueRegisterRequest> = {
  op: "queueRegister",
  kind: "write",
  validate: (raw) => ({
    op: "queueRegister",
    queue: queueOf(raw),
    maxOutstandingBytes: within(
      raw,
      "maxOutstandingBytes",
      QUEUE_OUTSTANDING_BYTES.min,
      QUEUE_OUTSTANDING_BYTES.max,
    ),
    segmentBytes: within(
      raw,
      "segmentBytes",
      SETTINGS.queue.segmentBytes.min,
      SETTINGS.queue.segmentBytes.max,
    ),
  }),
  execute(request, { txid, reader }) {
    const before = readMeta(reader, request.queue);
    if (before) {
      if (before.maxOutstandingBytes === request.maxOutstandingBytes) {
        return { writes: [], reply: { queue: summaryOf(before), created: false } };
      }
      const meta = { ...before, maxOutstandingBytes: request.maxOutstandingBytes };
      return { writes: [metaWrite(meta)], reply: { queue: summaryOf(meta), created: false } };
    }
    if (listMetas(reader).length >= QUEUES_MAX) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${QUEUES_MAX} queues exist already`);
    }
    const meta: QueueMeta = {
      name: request.queue,
      segmentBytes: request.segmentBytes,
      maxOutstandingBytes: request.maxOutstandingBytes,
      appended: 0,
      appendedEvents: 0,
      truncated: 0,
      truncatedEvents: 0,
      truncatedRow: 0,
      firstSegment: 0,
      lastSegment: -1,
      segments: 0,
      rows: 0,
      deadLetters: 0,
      deadLetterBytes: 0,
      deadLettered: 0,
      createdTxid: txid,
    };
    return { writes: [metaWrite(meta)], reply: { queue: summaryOf(meta), created: true } };
  },
};

interface QueueAddRequest extends Request {
  readonly op: "queueAdd";
  readonly queue: string;
  readonly events: readonly Uint8Array[];
}

interface QueueTruncateRequest extends Request {
  readonly op: "queueTruncate";
  readonly queue: string;
  /** Every event before this offset was processed. */
  readonly offset: number;
  /** The row holding the event at `offset`. */
  readonly rowOffset: number;
  /** The index of the event at `offset`: the events before it, ever. */
  readonly events: number;
}

interface QueueDeadLetterRequest extends Request {
  readonly op: "queueDeadLetter";
  readonly queue: string;
  /** The event's offset, its row, its index, and its payload as the tail read it. */
  readonly offset: number;
  readonly rowOffset: number;
  readonly index: number;
  readonly event: Uint8Array;
  readonly error: string;
  readonly attempts: number;
}

interface DeadLettersRequest extends Request {
  readonly op: "queueRetryDeadLetters" | "queuePurgeDeadLetters";
  readonly queue: string;
  readonly limit: number;
}

interface ListDeadLettersRequest extends Request {
  readonly op: "queueDeadLetters";
  readonly queue: string;
  readonly afterOffset: number | undefined;
  readonly limit: number;
}

/** Every queue request; `queueAdd` and `queueDeadLetter` frame events with the core. */
export function queueSpecs(core: CoreSync): readonly RequestSpec[] {
  const crc = (data: Uint8Array) => core.crc32c(data);

  const queueAddSpec: RequestSpec<QueueAddRequest> = {
    op: "queueAdd",
    kind: "write",
    validate(raw) {
      const queue = queueOf(raw);
      const events = raw.events;
      if (!Array.isArray(events) || events.length === 0 || events.length > QUEUE_ADD_EVENTS_MAX) {
        throw new MetaraftError(
          "MR_ERR_INVALID_ARGUMENT",
          `events must be a list of 1 to ${QUEUE_ADD_EVENTS_MAX} byte strings`,
        );
      }
      let bytes = 0;
      for (const [i, event] of events.entries()) {
        if (!isBytes(event)) {
          throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `events[${i}] must be bytes`);
        }
        if (event.length === 0) {
          throw new MetaraftError(
            "MR_ERR_INVALID_ARGUMENT",
            `events[${i}] is empty: an event holds 1 byte at least`,
          );
        }
        if (event.length > QUEUE_EVENT_BYTES_MAX) {
          throw new MetaraftError(
            "MR_ERR_REQUEST_TOO_LARGE",
            `events[${i}] is ${event.length} bytes, over the ${QUEUE_EVENT_BYTES_MAX} an event may hold`,
          );
        }
        bytes += event.length;
      }
      if (bytes > QUEUE_ADD_BYTES_MAX) {
        throw new MetaraftError(
          "MR_ERR_REQUEST_TOO_LARGE",
          `the events are ${bytes} bytes, over the ${QUEUE_ADD_BYTES_MAX} one add may carry`,
        );
      }
      return { op: "queueAdd", queue, events: events as Uint8Array[] };
    },
    execute(request, { time, reader }) {
      const before = requireMeta(reader, request.queue);
      const lengths = request.events.map((e) => frameBytesOf(e.length));
      const adding = lengths.reduce((sum, n) => sum + n, 0);
      if (before.appended - before.truncated + adding > before.maxOutstandingBytes) {
        throw queueFull(before, adding);
      }
      const frames = core.encodeFrames(request.events, QUEUE_EVENT_BYTES_MAX);
      const appended = appendFrames(before, frames, lengths, rowHeaderFrame(time, crc));
      const meta = appended.meta;
      return {
        writes: [...appended.writes, metaWrite(meta)],
        reply: {
          offset: before.appended,
          index: before.appendedEvents,
          events: lengths.length,
          appended: meta.appended,
          outstandingBytes: meta.appended - meta.truncated,
          outstandingEvents: meta.appendedEvents - meta.truncatedEvents,
        },
      };
    },
  };

  /** Forward only: a truncation at or before the current one only continues the deletes. */
  const queueTruncateSpec: RequestSpec<QueueTruncateRequest> = {
    op: "queueTruncate",
    kind: "write",
    validate: (raw) => ({
      op: "queueTruncate",
      queue: queueOf(raw),
      offset: field(raw, "offset", isCount, "an offset"),
      rowOffset: field(raw, "rowOffset", isCount, "an offset"),
      events: field(raw, "events", isCount, "an event count"),
    }),
    execute(request, { reader }) {
      const before = requireMeta(reader, request.queue);
      let meta = before;
      if (request.offset > before.truncated) {
        if (request.offset > before.appended) {
          throw new MetaraftError(
            "MR_ERR_INVALID_ARGUMENT",
            `queue ${before.name}: truncation at ${request.offset} is past its end, ${before.appended}`,
          );
        }
        if (request.events < before.truncatedEvents || request.events > before.appendedEvents) {
          throw new MetaraftError(
            "MR_ERR_INVALID_ARGUMENT",
            `queue ${before.name}: events ${request.events} outside ${before.truncatedEvents}..${before.appendedEvents}`,
          );
        }
        checkRow(reader, before, request.rowOffset, request.offset, "truncation");
        meta = {
          ...before,
          truncated: request.offset,
          truncatedEvents: request.events,
          truncatedRow: request.rowOffset,
        };
      }
      const compacted = compact(reader, meta);
      // compact() hands back the record it was given when it had nothing to do.
      const changed = compacted.meta !== before;
      return {
        writes: changed ? [...compacted.writes, metaWrite(compacted.meta)] : [],
        reply: {
          truncated: compacted.meta.truncated,
          truncatedEvents: compacted.meta.truncatedEvents,
          deletedRows: compacted.deleted,
          firstSegment: compacted.meta.firstSegment,
        },
      };
    },
  };

  /**
   * Moves the event at `offset` (the head of the tail, so every event before it was processed)
   * to the dead letters, and truncates past it. Ignored when the queue is truncated past it
   * already (a deposed leader's late request).
   */
  const queueDeadLetterSpec: RequestSpec<QueueDeadLetterRequest> = {
    op: "queueDeadLetter",
    kind: "write",
    validate(raw) {
      const event = field(raw, "event", isBytes, "bytes");
      if (event.length === 0 || event.length > QUEUE_EVENT_BYTES_MAX) {
        throw new MetaraftError(
          "MR_ERR_INVALID_ARGUMENT",
          `event must be 1 to ${QUEUE_EVENT_BYTES_MAX} bytes`,
        );
      }
      return {
        op: "queueDeadLetter",
        queue: queueOf(raw),
        offset: field(raw, "offset", isCount, "an offset"),
        rowOffset: field(raw, "rowOffset", isCount, "an offset"),
        index: field(raw, "index", isCount, "an event index"),
        event,
        error: cutError(field(raw, "error", isString, "a string")),
        attempts: field(raw, "attempts", isCount, "a count"),
      };
    },
    execute(request, { txid, time, reader }) {
      const before = requireMeta(reader, request.queue);
      if (request.offset < before.truncated) {
        return { writes: [], reply: { ignored: true, truncated: before.truncated } };
      }
      if (request.offset >= before.appended) {
        throw new MetaraftError(
          "MR_ERR_INVALID_ARGUMENT",
          `queue ${before.name}: no event at ${request.offset}, its end is ${before.appended}`,
        );
      }
      if (request.index < before.truncatedEvents || request.index >= before.appendedEvents) {
        throw new MetaraftError(
          "MR_ERR_INVALID_ARGUMENT",
          `queue ${before.name}: event index ${request.index} outside ${before.truncatedEvents}..${before.appendedEvents - 1}`,
        );
      }
      const rowEnd = checkRow(reader, before, request.rowOffset, request.offset, "dead letter");
      const frame = core.encodeFrames([request.event], QUEUE_EVENT_BYTES_MAX);
      const after = request.offset + frame.length;
      if (after > rowEnd) {
        throw new MetaraftError(
          "MR_ERR_INVALID_ARGUMENT",
          `queue ${before.name}: an event of ${frame.length} bytes at ${request.offset} passes its row's end, ${rowEnd}`,
        );
      }
      if (before.deadLetters >= DEAD_LETTERS_MAX) {
        throw new MetaraftError(
          "MR_ERR_QUEUE_FULL",
          `the dead letters of queue ${before.name} hold ${DEAD_LETTERS_MAX} events; retry or purge them`,
          { details: { queue: before.name, deadLetters: before.deadLetters } },
        );
      }
      if (before.deadLetterBytes + frame.length > before.maxOutstandingBytes) {
        throw new MetaraftError(
          "MR_ERR_QUEUE_FULL",
          `the dead letters of queue ${before.name} hold ${before.deadLetterBytes} bytes; ${frame.length} more would pass its maxOutstandingBytes of ${before.maxOutstandingBytes}; retry or purge them`,
          { details: { queue: before.name, deadLetterBytes: before.deadLetterBytes } },
        );
      }
      const letter: DeadLetter = {
        offset: request.offset,
        index: request.index,
        error: request.error,
        attempts: request.attempts,
        time,
        txid,
        frame,
      };
      const compacted = compact(reader, {
        ...before,
        truncated: after,
        truncatedEvents: request.index + 1,
        truncatedRow: after === rowEnd ? rowEnd : request.rowOffset,
        deadLetters: before.deadLetters + 1,
        deadLetterBytes: before.deadLetterBytes + frame.length,
        deadLettered: before.deadLettered + 1,
      });
      return {
        writes: [
          {
            table: "queues",
            key: deadLetterKey(before.name, request.offset),
            value: encodeDeadLetter(letter),
          },
          ...compacted.writes,
          metaWrite(compacted.meta),
        ],
        reply: {
          ignored: false,
          truncated: compacted.meta.truncated,
          deadLetters: compacted.meta.deadLetters,
        },
      };
    },
  };

  const deadLettersRequest = (op: DeadLettersRequest["op"]): ((raw: Request) => DeadLettersRequest) => {
    return (raw) => ({ op, queue: queueOf(raw), limit: limitOf(raw, DEAD_LETTERS_PER_REQUEST_MAX) });
  };

  /** Appends dead letters to the queue's end again, oldest first, as many as fit. */
  const queueRetryDeadLettersSpec: RequestSpec<DeadLettersRequest> = {
    op: "queueRetryDeadLetters",
    kind: "write",
    validate: deadLettersRequest("queueRetryDeadLetters"),
    execute(request, { time, reader }) {
      const before = requireMeta(reader, request.queue);
      const rows = reader.scan("queues", deadLetterPrefix(before.name), undefined, request.limit);
      const frames: Uint8Array[] = [];
      const writes: Write[] = [];
      let adding = 0;
      for (const row of rows) {
        const letter = decodeDeadLetter(row.value, row.key);
        const length = letter.frame.length;
        if (before.appended - before.truncated + adding + length > before.maxOutstandingBytes) break;
        if (adding + length > QUEUE_ADD_BYTES_MAX && frames.length > 0) break;
        frames.push(letter.frame);
        adding += length;
        writes.push({ table: "queues", key: row.key, value: null });
      }
      if (rows.length > 0 && frames.length === 0) {
        throw queueFull(before, decodeDeadLetter(rows[0]!.value, rows[0]!.key).frame.length);
      }
      if (frames.length === 0) return { writes: [], reply: { retried: 0, deadLetters: before.deadLetters } };
      const appended = appendFrames(
        {
          ...before,
          deadLetters: before.deadLetters - frames.length,
          deadLetterBytes: before.deadLetterBytes - adding,
        },
        Buffer.concat(frames),
        frames.map((f) => f.length),
        rowHeaderFrame(time, crc),
      );
      const meta = appended.meta;
      return {
        writes: [...writes, ...appended.writes, metaWrite(meta)],
        reply: {
          retried: frames.length,
          offset: before.appended,
          deadLetters: meta.deadLetters,
          outstandingBytes: meta.appended - meta.truncated,
        },
      };
    },
  };

  const queuePurgeDeadLettersSpec: RequestSpec<DeadLettersRequest> = {
    op: "queuePurgeDeadLetters",
    kind: "write",
    validate: deadLettersRequest("queuePurgeDeadLetters"),
    execute(request, { reader }) {
      const before = requireMeta(reader, request.queue);
      const rows = reader.scan("queues", deadLetterPrefix(before.name), undefined, request.limit);
      if (rows.length === 0) return { writes: [], reply: { purged: 0, deadLetters: before.deadLetters } };
      let bytes = 0;
      for (const row of rows) bytes += decodeDeadLetter(row.value, row.key).frame.length;
      const meta = {
        ...before,
        deadLetters: before.deadLetters - rows.length,
        deadLetterBytes: before.deadLetterBytes - bytes,
      };
      return {
        writes: [
          ...rows.map((row): Write => ({ table: "queues", key: row.key, value: null })),
          metaWrite(meta),
        ],
        reply: { purged: rows.length, deadLetters: meta.deadLetters },
      };
    },
  };

  const queuesSpec: RequestSpec<Request & { op: "queues" }> = {
    op: "queues",
    kind: "read",
    validate: () => ({ op: "queues" }),
    execute: (_request, { reader }) => ({ writes: [], reply: { queues: listMetas(reader).map(summaryOf) } }),
  };

  /** The dead letters, oldest first, each with its event (or why it cannot be read). */
  const queueDeadLettersSpec: RequestSpec<ListDeadLettersRequest> = {
    op: "queueDeadLetters",
    kind: "read",
    validate: (raw) => ({
      op: "queueDeadLetters",
      queue: queueOf(raw),
      afterOffset:
        raw.afterOffset === undefined ? undefined : field(raw, "afterOffset", isCount, "an offset"),
      limit: limitOf(raw, DEAD_LETTERS_LIST_MAX),
    }),
    execute(request, { reader }) {
      const meta = requireMeta(reader, request.queue);
      const prefix = deadLetterPrefix(meta.name);
      const startAfter =
        request.afterOffset === undefined ? undefined : deadLetterKey(meta.name, request.afterOffset);
      const rows = reader.scan("queues", prefix, startAfter, request.limit + 1);
      const letters: Record<string, unknown>[] = [];
      let bytes = 0;
      let more = rows.length > request.limit;
      for (const row of rows.slice(0, request.limit)) {
        if (bytes >= DEAD_LETTERS_LIST_BYTES_MAX) {
          more = true;
          break;
        }
        const { frame, ...letter } = decodeDeadLetter(row.value, row.key);
        bytes += frame.length;
        let event: Record<string, unknown>;
        try {
          const split = core.splitFrames(frame, QUEUE_EVENT_BYTES_MAX);
          if (split.count !== 1) throw new MetaraftError("MR_ERR_FRAME_CORRUPT", `${split.count} frames`);
          event = { event: framePayloads(frame, split)[0]! };
        } catch (error) {
          if (!(error instanceof MetaraftError)) throw error;
          event = { corrupt: `dead letter ${row.key}: ${error.message}` };
        }
        letters.push({ ...letter, bytes: frame.length, ...event });
      }
      const last = letters.at(-1)?.offset as number | undefined;
      return {
        writes: [],
        reply: {
          queue: meta.name,
          deadLetters: letters,
          total: meta.deadLetters,
          truncated: more,
          ...(more && last !== undefined ? { nextAfterOffset: last } : {}),
        },
      };
    },
  };

  return [
    queueRegisterSpec,
    queueAddSpec,
    queueTruncateSpec,
    queueDeadLetterSpec,
    queueRetryDeadLettersSpec,
    queuePurgeDeadLettersSpec,
    queuesSpec,
    queueDeadLettersSpec,
  ] as readonly RequestSpec[];
}
