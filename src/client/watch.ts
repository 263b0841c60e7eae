import { MetaraftError } from "../errors.js";
import type { LedgerEvent } from "../events/index.js";
import { parseWatchFrame, type WatchReply } from "../protocol/index.js";
import { type Runtime, sleep, systemRuntime } from "../runtime.js";
import type { RpcClient, StreamHandle } from "./rpc-client.js";

export interface WatchOptions {
  /** Only events under this path (`volume`, `volume/bucket`, `volume/bucket/key` or any start of one). */
  readonly prefix?: string;
  /**
   * The first txid whose events to deliver (0 or 1: from the ledger's start). Absent: the events
   * after the serving node's last applied txid. A txid the ledger has pruned fails the watch with
   * MR_ERR_COMPACTED, whose `details.firstTxid` is the first it holds.
   */
  readonly fromTxid?: number;
  /**
   * Called with a txid when every matching event up to it has been delivered: the server's
   * progress notifications to an idle watch, in order with the events.
   */
  readonly onProgress?: (txid: number) => void;
  /**
   * Events received and not yet taken from the iterator, at most (about: a read may bring a few
   * frames more). At this many the watch stops reading its connection, so the server stops
   * sending and reads the ledger for it later instead; it reads on when half are taken.
   */
  readonly queueEventsMax?: number;
}

export const WATCH_CLIENT_DEFAULTS = {
  queueEventsMax: 10_000,
  /** The wait before reopening after a lost connection, doubled per failed reopen up to the max. */
  reopenDelayMs: 20,
  reopenDelayMaxMs: 500,
} as const;

type Item =
  | { readonly kind: "events"; readonly events: readonly LedgerEvent[]; readonly txid: number; index: number }
  | { readonly kind: "progress"; txid: number };

/**
 * A watch of the event ledger: an async iterator of the matching events in txid order, first
 * those from `fromTxid` on, then the live ones. It has a connection of its own (so that a slow
 * consumer holds back only its own stream) to any member: every member serves watches from
 * what it has applied. When the connection is lost (the node died, froze or was cut off) it
 * reopens on another member after the last txid it received, so it delivers every event once,
 * with no gap: a txid's events never span frames, and events at or below the resume point are
 * dropped should a server send them again.
 *
 * Each reopen has the client's call deadline (`timeoutMs`); a watch that cannot reopen in it,
 * or that the server ends (MR_ERR_COMPACTED), throws that error from `next()` once the events
 * received before it are delivered. `return()` (a `break` out of `for await`) cancels it on the
 * server and closes its connection.
 */
export class Watch implements AsyncIterableIterator<LedgerEvent> {
  readonly prefix: string;
  readonly #rpc: RpcClient;
  readonly #runtime: Runtime;
  readonly #onProgress: ((txid: number) => void) | undefined;
  readonly #queueMax: number;
  /** Every matching event up to this txid has been received (queued or delivered): the resume point. */
  #received: number;
  /** Every matching event up to this txid has been delivered. */
  #delivered: number;
  /** Whether `#received` is known: false until the first open when no `fromTxid` was given. */
  #positioned: boolean;
  readonly #queue: Item[] = [];
  #queued = 0;
  readonly #wakers: (() => void)[] = [];
  #watchId = 0;
  #stream: StreamHandle | undefined;
  #paused = false;
  #node: number | undefined;
  #reopens = 0;
  /** Set once the watch ends: by the consumer (`return`), by the server, or by a failed reopen. */
  #end: { error?: MetaraftError } | undefined;
  #thrown = false;
  readonly #opened: Promise<{ txid: number; node: number }>;
  #openedSettle:
    | { resolve: (v: { txid: number; node: number }) => void; reject: (e: Error) => void }
    | undefined;

  constructor(rpc: RpcClient, options: WatchOptions = {}, runtime: Runtime = systemRuntime) {
    const prefix = options.prefix ?? "";
    if (typeof prefix !== "string")
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "prefix must be a string");
    const from = options.fromTxid;
    if (from !== undefined && !(Number.isSafeInteger(from) && from >= 0)) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "fromTxid must be a txid (an integer >= 0)");
    }
    const queueMax = options.queueEventsMax ?? WATCH_CLIENT_DEFAULTS.queueEventsMax;
    if (!(Number.isSafeInteger(queueMax) && queueMax >= 1)) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "queueEventsMax must be an integer >= 1");
    }
    this.prefix = prefix;
    this.#rpc = rpc;
    this.#runtime = runtime;
    this.#onProgress = options.onProgress;
    this.#queueMax = queueMax;
    this.#positioned = from !== undefined;
    this.#received = Math.max(0, (from ?? 0) - 1);
    this.#delivered = this.#received;
    this.#opened = new Promise((resolve, reject) => {
      this.#openedSettle = { resolve, reject };
    });
    // Observed by `opened()`, or by nobody: never an unhandled rejection.
    this.#opened.catch(() => undefined);
    void this.#run();
  }

  /** Every matching event up to this txid has been delivered by the iterator. */
  get txid(): number {
    return this.#delivered;
  }

  /** The node serving the watch now (undefined while it (re)opens). */
  get node(): number | undefined {
    return this.#node;
  }

  /** Events received and not yet taken from the iterator (see `queueEventsMax`). */
  get buffered(): number {
    return this.#queued;
  }

  /** Times the watch reopened after losing its connection. */
  get reopens(): number {
    return this.#reopens;
  }

  /** Resolves once a member first accepted the watch (with where it starts); rejects if it never does. */
  opened(): Promise<{ txid: number; node: number }> {
    return this.#opened;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  async next(): Promise<IteratorResult<LedgerEvent>> {
    for (;;) {
      const item = this.#queue[0];
      if (!item) {
        if (this.#end) {
          if (this.#end.error && !this.#thrown) {
            this.#thrown = true;
            throw this.#end.error;
          }
          return { done: true, value: undefined };
        }
        await new Promise<void>((resolve) => this.#wakers.push(resolve));
        continue;
      }
      if (item.kind === "progress") {
        this.#queue.shift();
        if (item.txid > this.#delivered) this.#delivered = item.txid;
        this.#onProgress?.(item.txid);
        continue;
      }
      const event = item.events[item.index++]!;
      const next = item.events[item.index];
      // Every txid before the next event's is complete; after the frame's last, its position is.
      const through = next ? next.txid - 1 : item.txid;
      if (through > this.#delivered) this.#delivered = through;
      if (!next) this.#queue.shift();
      this.#queued--;
      if (this.#paused && this.#queued <= this.#queueMax / 2) {
        this.#paused = false;
        this.#stream?.resume();
      }
      return { done: false, value: event };
    }
  }

  /** Ends the watch: cancels it on the server and closes its connection. */
  async return(): Promise<IteratorResult<LedgerEvent>> {
    await this.close();
    return { done: true, value: undefined };
  }

  async close(): Promise<void> {
    if (this.#end) {
      this.#rpc.close();
      return;
    }
    this.#finish({});
    const stream = this.#stream;
    if (stream && !this.#paused) {
      // Courtesy: the connection's close ends the watch on the server anyway.
      await this.#rpc
        .call("cancelWatch", { watchId: this.#watchId }, CANCEL_TIMEOUT_MS)
        .catch(() => undefined);
    }
    this.#rpc.close();
  }

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#end) {
      let stream: StreamHandle;
      try {
        stream = await this.#open();
      } catch (error) {
        this.#finish({ error: asMetaraftError(error) });
        break;
      }
      failures = 0;
      await stream.closed;
      this.#stream = undefined;
      this.#node = undefined;
      if (this.#end) break;
      this.#reopens++;
      failures++;
      const delay = Math.min(
        WATCH_CLIENT_DEFAULTS.reopenDelayMs * 2 ** Math.min(failures - 1, 8),
        WATCH_CLIENT_DEFAULTS.reopenDelayMaxMs,
      );
      await sleep(this.#runtime, delay);
    }
    this.#rpc.close();
  }

  async #open(): Promise<StreamHandle> {
    const watchId = ++this.#watchId;
    const fields = {
      watchId,
      prefix: this.prefix,
      ...(this.#positioned ? { fromTxid: this.#received + 1 } : {}),
    };
    const stream = await this.#rpc.openStream("watch", fields, (body) => {
      const frame = parseWatchFrame(body);
      if (frame.watchId === watchId && !this.#end) this.#onFrame(frame);
    });
    const reply = stream.reply as unknown as WatchReply;
    if (typeof reply.txid !== "number" || typeof reply.node !== "number") {
      throw new MetaraftError("MR_ERR_PEER_PROTOCOL", "the watch reply lacks txid or node");
    }
    if (!this.#positioned) {
      this.#positioned = true;
      if (reply.txid > this.#received) this.#received = reply.txid;
      if (reply.txid > this.#delivered) this.#delivered = reply.txid;
    }
    this.#node = reply.node;
    this.#stream = stream;
    if (this.#end) {
      this.#rpc.close();
    } else if (this.#paused) {
      stream.pause();
    }
    this.#openedSettle?.resolve({ txid: reply.txid, node: reply.node });
    this.#openedSettle = undefined;
    return stream;
  }

  #onFrame(frame: ReturnType<typeof parseWatchFrame>): void {
    if (frame.kind === "cancelled") {
      this.#finish({ error: MetaraftError.fromJSON(frame.error) });
      this.#rpc.close();
      return;
    }
    if (frame.kind === "progress") {
      if (frame.txid <= this.#received) return;
      this.#received = frame.txid;
      const last = this.#queue[this.#queue.length - 1];
      if (last?.kind === "progress") last.txid = frame.txid;
      else this.#queue.push({ kind: "progress", txid: frame.txid });
      this.#wake();
      return;
    }
    // A resumed stream starts after #received; anything at or below it is a repeat.
    const events = frame.events.filter((e) => e.txid > this.#received);
    if (frame.txid > this.#received) this.#received = frame.txid;
    if (events.length === 0) return;
    this.#queue.push({ kind: "events", events, txid: frame.txid, index: 0 });
    this.#queued += events.length;
    if (!this.#paused && this.#queued >= this.#queueMax) {
      this.#paused = true;
      this.#stream?.pause();
    }
    this.#wake();
  }

  #finish(end: { error?: MetaraftError }): void {
    if (this.#end) return;
    this.#end = end;
    this.#openedSettle?.reject(
      end.error ?? new MetaraftError("MR_ERR_CONNECTION_CLOSED", "the watch was closed"),
    );
    this.#openedSettle = undefined;
    this.#wake();
  }

  #wake(): void {
    for (const wake of this.#wakers.splice(0)) wake();
  }
}

/** How long `close()` waits for the server to confirm the cancel; the close follows regardless. */
const CANCEL_TIMEOUT_MS = 1_000;

function asMetaraftError(error: unknown): MetaraftError {
  return error instanceof MetaraftError
    ? error
    : new MetaraftError("MR_ERR_INTERNAL", String(error), { cause: error });
}
