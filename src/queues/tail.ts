import { type CoreSync, framePayloads } from "../core/index.js";
import { hasCode, MetaraftError } from "../errors.js";
import type { Request, StateReader } from "../execution/types.js";
import { nextTurn, type Runtime, type Timer } from "../runtime.js";
import type { ConsumerOptions, QueueEvent, QueueHandler, QueueLog } from "./options.js";
import {
  dataKey,
  frameBytesOf,
  QUEUE_EVENT_BYTES_MAX,
  type QueueMeta,
  readMeta,
  rowEventBytes,
  rowHeaderTime,
  segmentOf,
} from "./records.js";

/** Event bytes one read hands the handler at most (it always hands at least one event). */
export const READ_BYTES_MAX = 2 * 1024 * 1024;

export type TailState = "idle" | "registering" | "running" | "retrying" | "corrupt" | "stopped";

export interface TailStatus {
  readonly state: TailState;
  /** The offset and index the handler has processed up to (this leader's view; the truncation lags it). */
  readonly processed: number;
  readonly processedEvents: number;
  /** Failed handler calls since this node started. */
  readonly retries: number;
  /** Events this tail moved to the dead letters since this node started. */
  readonly deadLettered: number;
  /** Failures of the event at the head, on its own. */
  readonly headAttempts: number;
  readonly lastError?: string;
}

/** Where the tail is: the event at `offset`, with index `index`, is in the row starting at `row`. */
interface Cursor {
  readonly row: number;
  readonly offset: number;
  readonly index: number;
}

/** A data row, split and checked once (a row may be read again event by event, after a failure). */
interface ParsedRow {
  readonly offset: number;
  readonly end: number;
  readonly time: number;
  readonly offsets: readonly number[];
  readonly payloads: readonly Uint8Array[];
}

export interface TailMetrics {
  processed(events: number): void;
  latencySeconds(seconds: number): void;
  retried(): void;
  corrupt(on: boolean): void;
}

export interface TailParts {
  readonly queue: string;
  readonly handler: QueueHandler;
  readonly options: ConsumerOptions;
  /** A new queue's segment size (`queue.segmentBytes`): the queue keeps the one it was created with. */
  readonly segmentBytes: number;
  /** The applied state: the tail reads only what is committed. */
  readonly reader: StateReader;
  readonly core: CoreSync;
  readonly runtime: Runtime;
  readonly submit: (request: Request) => Promise<Record<string, unknown>>;
  readonly metrics: TailMetrics;
  readonly log: QueueLog;
}

const ABORTED: unique symbol = Symbol("aborted");

/** One term of leadership. */
interface Session {
  readonly term: number;
  readonly controller: AbortController;
  loop: Promise<void>;
  ended: Promise<void> | undefined;
  /** An add was announced since the last read of the meta record. */
  notified: boolean;
  wake: (() => void) | undefined;
}

/**
 * A queue's tail loop (Pravega's event processor): on the ready leader only, from the replicated
 * truncation point; reads up to `maxItemsAtOnce` events (2 MiB at most), calls the handler, and
 * on success moves on; every `truncationBytes` processed (or `truncationMs`) it replicates a
 * truncation, the point the next leader resumes from, so delivery is at least once and in order.
 *
 * A failed call is retried with jittered exponential backoff. A batch that fails is taken apart:
 * its events go one at a time until past it, so that the event that fails is found; once it has
 * failed `maxAttempts` times on its own (0: never), it moves to the dead letters with its error,
 * which also truncates past it. A row that fails its checksum stops the tail on this node with
 * MR_ERR_LOG_CORRUPT naming the segment: an event is never skipped silently.
 */
export class QueueTail {
  readonly #parts: TailParts;
  #state: TailState = "idle";
  #session: Session | undefined;
  #closed = false;
  #processed: Cursor = { row: 0, offset: 0, index: 0 };
  #retries = 0;
  #deadLettered = 0;
  #headAttempts = 0;
  #lastError: string | undefined;
  /** Events before this offset are delivered one at a time (a batch failed there). */
  #singleUntil = -1;
  #cached: ParsedRow | undefined;
  #truncating = false;
  /** `runtime.elapsed()` of the last truncation proposed, and before when not to try again after a failure. */
  #truncatedAt = 0;
  #truncateRetryAt = 0;

  constructor(parts: TailParts) {
    this.#parts = parts;
  }

  get name(): string {
    return this.#parts.queue;
  }

  status(): TailStatus {
    return {
      state: this.#state,
      processed: this.#processed.offset,
      processedEvents: this.#processed.index,
      retries: this.#retries,
      deadLettered: this.#deadLettered,
      headAttempts: this.#headAttempts,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  /** This node became the ready leader of `term`. */
  lead(term: number): void {
    if (this.#closed) return;
    const current = this.#session;
    if (current && !current.ended && current.term === term) return;
    const previous = current ? this.#end(current, false) : Promise.resolve();
    const session: Session = {
      term,
      controller: new AbortController(),
      loop: Promise.resolve(),
      ended: undefined,
      notified: false,
      wake: undefined,
    };
    this.#session = session;
    // The previous term's handler call is waited for (bounded) so that two never overlap.
    session.loop = previous
      .then(() => (session.controller.signal.aborted ? undefined : this.#run(session)))
      .catch((error: unknown) => {
        // #run handles what a handler or the write path can raise: reaching here is a bug.
        this.#state = "stopped";
        this.#lastError = `internal: ${message(error)}`;
        this.#parts.log.error("queue tail failed", { queue: this.name, error: message(error) });
      });
  }

  /** This node stopped leading `term`: stop at once (what it would propose now may be lost). */
  follow(term: number): void {
    const session = this.#session;
    if (!session || session.ended || session.term > term) return;
    void this.#end(session, false);
    if (this.#state !== "corrupt") this.#state = "idle";
  }

  /** An add to this queue was applied here. */
  wake(): void {
    const session = this.#session;
    if (!session || session.ended) return;
    session.notified = true;
    session.wake?.();
  }

  /** Stops for good; as the leader, replicates a last truncation of what was processed. */
  async close(): Promise<void> {
    this.#closed = true;
    const session = this.#session;
    if (session) await this.#end(session, true);
    this.#state = "stopped";
  }

  #end(session: Session, truncate: boolean): Promise<void> {
    if (session.ended) return session.ended;
    session.controller.abort(new MetaraftError("MR_ERR_NOT_LEADER", `queue ${this.name}: tail stopped`));
    session.wake?.();
    const { runtime } = this.#parts;
    const timeoutMs = this.#parts.options.stopTimeoutMs;
    const start = runtime.elapsed();
    session.ended = (async () => {
      if (!(await within(runtime, session.loop, timeoutMs))) {
        this.#parts.log.warn("a queue handler did not return within stopTimeoutMs after its signal aborted", {
          queue: this.name,
          stopTimeoutMs: timeoutMs,
        });
      }
      if (!truncate) return;
      const meta = readMeta(this.#parts.reader, this.name);
      const p = this.#processed;
      if (!meta || p.offset <= meta.truncated) return;
      const left = Math.max(0, timeoutMs - (runtime.elapsed() - start));
      // Best effort: the next leader redelivers from the last truncation otherwise.
      await within(runtime, this.#truncate(p), left).catch(() => undefined);
    })();
    return session.ended;
  }

  #truncate(to: Cursor): Promise<Record<string, unknown>> {
    return this.#parts.submit({
      op: "queueTruncate",
      queue: this.name,
      offset: to.offset,
      rowOffset: to.row,
      events: to.index,
    });
  }

  #meta(): QueueMeta | undefined {
    return readMeta(this.#parts.reader, this.name);
  }

  async #run(session: Session): Promise<void> {
    const { options, runtime, metrics } = this.#parts;
    const { signal } = session.controller;
    this.#state = "registering";
    if ((await this.#attempt(session, "register", () => this.#register())) === ABORTED) return;
    let meta = this.#meta();
    if (!meta) throw new MetaraftError("MR_ERR_INTERNAL", `queue ${this.name}: registered, yet not found`);
    let cursor = cursorOf(meta);
    this.#processed = cursor;
    this.#singleUntil = -1;
    this.#headAttempts = 0;
    this.#truncatedAt = runtime.elapsed();
    this.#state = "running";
    let delay = options.retryInitialMs;
    while (!signal.aborted) {
      session.notified = false;
      meta = this.#meta()!;
      if (cursor.offset < meta.truncated) {
        // Truncated past us: a deposed leader's last truncation, or a dead letter, committed late.
        cursor = cursorOf(meta);
        this.#processed = cursor;
        this.#headAttempts = 0;
      }
      this.#maybeTruncate(session, meta);
      if (cursor.offset >= meta.appended) {
        await this.#idle(session, meta);
        continue;
      }
      const single = cursor.offset < this.#singleUntil;
      let read: { events: QueueEvent[]; next: Cursor };
      try {
        read = this.#read(meta, cursor, single ? 1 : options.maxItemsAtOnce);
      } catch (error) {
        if (!hasCode(error, "MR_ERR_LOG_CORRUPT")) throw error;
        this.#state = "corrupt";
        this.#lastError = (error as Error).message;
        metrics.corrupt(true);
        this.#parts.log.error("a queue segment is corrupt: the queue stops on this node", {
          queue: this.name,
          error: this.#lastError,
          ...(error as MetaraftError).details,
        });
        return;
      }
      const failure = await this.#deliver(session, read.events);
      if (signal.aborted) return;
      if (!failure) {
        const now = runtime.now();
        for (const event of read.events) metrics.latencySeconds(Math.max(0, now - event.time) / 1000);
        metrics.processed(read.events.length);
        cursor = read.next;
        this.#processed = cursor;
        this.#headAttempts = 0;
        this.#state = "running";
        delay = options.retryInitialMs;
        // A handler that resolves at once makes this loop all microtasks: without a turn of the
        // event loop between batches, a backlog would starve Raft's heartbeats and the clients.
        await nextTurn(runtime);
        continue;
      }
      this.#retries++;
      metrics.retried();
      this.#lastError = failure.message;
      this.#state = "retrying";
      if (read.events.length > 1) {
        this.#singleUntil = read.next.offset;
      } else {
        this.#headAttempts++;
        if (options.maxAttempts > 0 && this.#headAttempts >= options.maxAttempts) {
          const head = read.events[0]!;
          const moved = await this.#attempt(session, "dead-letter", () =>
            this.#parts.submit({
              op: "queueDeadLetter",
              queue: this.name,
              offset: head.offset,
              rowOffset: cursor.row,
              index: head.index,
              event: head.data,
              error: failure.message,
              attempts: this.#headAttempts,
            }),
          );
          if (moved === ABORTED) return;
          this.#deadLettered++;
          this.#parts.log.warn("a queue event moved to the dead letters", {
            queue: this.name,
            offset: head.offset,
            attempts: this.#headAttempts,
            error: failure.message,
          });
          cursor = read.next;
          this.#processed = cursor;
          this.#headAttempts = 0;
          this.#state = "running";
          delay = options.retryInitialMs;
          continue;
        }
      }
      const wait = Math.round(delay / 2 + (runtime.random() * delay) / 2);
      this.#parts.log.warn("a queue handler failed; retrying", {
        queue: this.name,
        offset: cursor.offset,
        events: read.events.length,
        attempt: this.#headAttempts,
        retryMs: wait,
        error: failure.message,
      });
      await this.#sleep(session, wait);
      delay = Math.min(delay * 2, options.retryMaxMs);
    }
  }

  /** Creates the queue, or brings its limit up to this consumer's. */
  async #register(): Promise<void> {
    const meta = this.#meta();
    if (meta && meta.maxOutstandingBytes === this.#parts.options.maxOutstandingBytes) return;
    await this.#parts.submit({
      op: "queueRegister",
      queue: this.name,
      maxOutstandingBytes: this.#parts.options.maxOutstandingBytes,
      segmentBytes: this.#parts.segmentBytes,
    });
  }

  /**
   * Replicates a truncation when `truncationBytes` were processed since the last, or
   * `truncationMs` passed with some; or one at the same point when segments below it are left
   * to delete. One at a time, and the tail goes on meanwhile.
   */
  #maybeTruncate(session: Session, meta: QueueMeta): void {
    if (this.#truncating) return;
    const { options, runtime } = this.#parts;
    const now = runtime.elapsed();
    if (now < this.#truncateRetryAt) return;
    const p = this.#processed;
    const pending = p.offset - meta.truncated;
    const deletes = meta.firstSegment < segmentOf(meta.truncated, meta.segmentBytes);
    const due =
      pending >= options.truncationBytes || (pending > 0 && now - this.#truncatedAt >= options.truncationMs);
    if (!due && !deletes) return;
    this.#truncating = true;
    this.#truncatedAt = now;
    const to = pending > 0 ? p : cursorOf(meta);
    this.#truncate(to)
      .catch((error: unknown) => {
        this.#truncateRetryAt = runtime.elapsed() + options.truncationMs;
        if (session.controller.signal.aborted) return;
        this.#parts.log.warn("a queue truncation failed; it is tried again later", {
          queue: this.name,
          offset: to.offset,
          error: message(error),
        });
      })
      .finally(() => {
        this.#truncating = false;
        session.wake?.();
      });
  }

  /** Waits for an add, a truncation to finish, the poll interval or a due truncation. */
  #idle(session: Session, meta: QueueMeta): Promise<void> {
    if (session.notified || session.controller.signal.aborted) return Promise.resolve();
    const { options, runtime } = this.#parts;
    let ms = options.pollMs;
    if (this.#processed.offset > meta.truncated) {
      ms = Math.min(ms, Math.max(0, this.#truncatedAt + options.truncationMs - runtime.elapsed()));
    }
    return new Promise<void>((resolve) => {
      const timer = runtime.after(ms, () => done());
      const done = (): void => {
        timer.cancel();
        session.wake = undefined;
        resolve();
      };
      session.wake = done;
    });
  }

  /** Up to `max` events from `cursor`, at most READ_BYTES_MAX of them (one at least). */
  #read(meta: QueueMeta, cursor: Cursor, max: number): { events: QueueEvent[]; next: Cursor } {
    const events: QueueEvent[] = [];
    let bytes = 0;
    let { row, offset, index } = cursor;
    while (events.length < max && offset < meta.appended) {
      let parsed: ParsedRow;
      try {
        parsed = this.#row(meta, row);
      } catch (error) {
        // The events before a corrupt row are delivered first: the next read stops at it.
        if (events.length > 0 && hasCode(error, "MR_ERR_LOG_CORRUPT")) break;
        throw error;
      }
      let i = position(parsed.offsets, offset);
      if (i < 0) {
        throw new MetaraftError(
          "MR_ERR_INTERNAL",
          `queue ${this.name}: offset ${offset} is no event's start in the row at ${row}`,
        );
      }
      for (; i < parsed.offsets.length && events.length < max; i++) {
        const payload = parsed.payloads[i]!;
        if (events.length > 0 && bytes + payload.length > READ_BYTES_MAX)
          return { events, next: { row, offset, index } };
        events.push({ offset: parsed.offsets[i]!, index, time: parsed.time, data: payload.slice() });
        bytes += payload.length;
        index++;
        offset = parsed.offsets[i]! + frameBytesOf(payload.length);
      }
      if (offset >= parsed.end) row = parsed.end;
    }
    return { events, next: { row, offset, index } };
  }

  /** The row at `rowOffset`, split with its checksums verified; a failure names the segment. */
  #row(meta: QueueMeta, rowOffset: number): ParsedRow {
    if (this.#cached?.offset === rowOffset) return this.#cached;
    const segment = segmentOf(rowOffset, meta.segmentBytes);
    const key = dataKey(this.name, segment, rowOffset);
    const corrupt = (why: string, cause?: unknown): MetaraftError =>
      new MetaraftError("MR_ERR_LOG_CORRUPT", `queue ${this.name}: segment ${segment} (row ${key}) ${why}`, {
        cause,
        details: { queue: this.name, segment, row: key },
      });
    const value = this.#parts.reader.get("queues", key);
    if (!value) throw corrupt(`is missing, yet the queue holds events up to ${meta.appended}`);
    let payloads: Uint8Array[];
    try {
      payloads = framePayloads(value, this.#parts.core.splitFrames(value, QUEUE_EVENT_BYTES_MAX));
    } catch (error) {
      if (!(error instanceof MetaraftError)) throw error;
      throw corrupt(`fails its checksum: ${error.message}`, error);
    }
    if (payloads.length < 2) throw corrupt("holds no event");
    let time: number;
    try {
      time = rowHeaderTime(payloads[0]!, key);
    } catch (error) {
      throw corrupt("has no valid header", error);
    }
    const offsets: number[] = [];
    let at = rowOffset;
    for (const payload of payloads.slice(1)) {
      offsets.push(at);
      at += frameBytesOf(payload.length);
    }
    if (at !== rowOffset + rowEventBytes(value))
      throw corrupt(`ends at ${at}, not ${rowOffset + rowEventBytes(value)}`);
    this.#cached = { offset: rowOffset, end: at, time, offsets, payloads: payloads.slice(1) };
    return this.#cached;
  }

  /** Calls the handler; resolves with its failure (undefined: it succeeded). */
  async #deliver(session: Session, events: readonly QueueEvent[]): Promise<Error | undefined> {
    const { runtime, options } = this.#parts;
    const controller = new AbortController();
    const onAbort = (): void => controller.abort(session.controller.signal.reason);
    session.controller.signal.addEventListener("abort", onAbort, { once: true });
    let timer: Timer | undefined;
    const timeout = new Promise<Error>((resolve) => {
      timer = runtime.after(options.handlerTimeoutMs, () => {
        const error = new MetaraftError(
          "MR_ERR_QUEUE_HANDLER_TIMEOUT",
          `queue ${this.name}: ${events.length} events from offset ${events[0]?.offset} for ${options.handlerTimeoutMs} ms`,
        );
        controller.abort(error);
        resolve(error);
      });
    });
    try {
      const call = Promise.resolve()
        .then(() => this.#parts.handler(events, controller.signal))
        .then(
          () => undefined,
          (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
        );
      return await Promise.race([call, timeout]);
    } finally {
      timer?.cancel();
      session.controller.signal.removeEventListener("abort", onAbort);
    }
  }

  /** Runs `fn` until it succeeds, with the same backoff as handler calls. */
  async #attempt<T>(session: Session, what: string, fn: () => Promise<T>): Promise<T | typeof ABORTED> {
    const { signal } = session.controller;
    const { options, runtime } = this.#parts;
    let delay = options.retryInitialMs;
    for (;;) {
      if (signal.aborted) return ABORTED;
      try {
        const value = await fn();
        return signal.aborted ? ABORTED : value;
      } catch (error) {
        if (signal.aborted) return ABORTED;
        this.#lastError = `${what}: ${message(error)}`;
        this.#parts.log.warn(`queue ${what} failed; retrying`, { queue: this.name, error: message(error) });
        await this.#sleep(session, Math.round(delay / 2 + (runtime.random() * delay) / 2));
        delay = Math.min(delay * 2, options.retryMaxMs);
      }
    }
  }

  #sleep(session: Session, ms: number): Promise<void> {
    const { signal } = session.controller;
    return new Promise<void>((resolve) => {
      const timer = this.#parts.runtime.after(ms, () => done());
      const done = (): void => {
        timer.cancel();
        signal.removeEventListener("abort", done);
        resolve();
      };
      signal.addEventListener("abort", done, { once: true });
    });
  }
}

const cursorOf = (meta: QueueMeta): Cursor => ({
  row: meta.truncatedRow,
  offset: meta.truncated,
  index: meta.truncatedEvents,
});

/** The index of `offset` in the sorted `offsets` (-1: not there). */
function position(offsets: readonly number[], offset: number): number {
  let lo = 0;
  let hi = offsets.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const at = offsets[mid]!;
    if (at === offset) return mid;
    if (at < offset) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/** Whether `promise` settled within `ms` (its rejection is thrown). */
async function within(runtime: Runtime, promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: Timer | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = runtime.after(ms, () => resolve(false));
  });
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    timer?.cancel();
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
