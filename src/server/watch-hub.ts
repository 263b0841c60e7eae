import type { CoreSync } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import {
  decodeRecord,
  eventPaths,
  type LedgerEvent,
  type LedgerReader,
  readLedger,
  readSummary,
} from "../events/index.js";
import {
  type CancelWatchReply,
  parseCancelWatch,
  parseWatchRequest,
  type WatchFrame,
  type WatchReply,
} from "../protocol/index.js";
import type { Runtime, Timer } from "../runtime.js";
import { SETTINGS } from "../settings.js";
import type { RpcConnection } from "./rpc-server.js";

/**
 * Watches: the event ledger streamed to clients (DESIGN.md, "The event ledger and plugins";
 * docs/watches.md). Every member serves them: a node streams only what it has applied, and a
 * client resumes by txid, so which node serves a watch changes its lag, never what it sees.
 *
 * Each watch is `live` or `catching up`:
 * - live: the state machine hands every applied record to `onEventsApplied`, which decodes it
 *   once and appends the matching events to each live watch's buffer. Appending is all the
 *   apply path pays; frames go out in a later turn.
 * - catching up: the watch reads the ledger from its position, a bounded read at a time, as fast
 *   as its connection takes the frames, until it reaches the last applied txid; then it is live.
 *
 * A watch starts catching up (from `fromTxid`, or from the node's last txid: then it is live at
 * once). A live watch whose buffer would pass `bufferBytesMax` or `bufferEventsMax` drops back to
 * catching up: a slow watcher costs the ledger reads it does, never the writes' memory or time.
 * A connection holding `socketBytesMax` unsent bytes gets nothing more until it drains, so the
 * memory of a watcher that never reads is its buffer plus that socket share. A watch whose
 * position falls behind the ledger's pruning ends with MR_ERR_COMPACTED.
 */

export const WATCH_DEFAULTS = {
  progressMs: SETTINGS.watch.progressMs.default,
  bufferBytesMax: SETTINGS.watch.bufferBytesMax.default,
  watchersMax: SETTINGS.watch.watchersMax.default,
  /** Watches one connection holds at most (a client wanting more opens another connection). */
  watchersPerConnectionMax: 64,
  /** Events one watch buffers at most, besides their bytes: many tiny events still cost objects. */
  bufferEventsMax: 10_000,
  /**
   * Unsent bytes a connection may hold (its write batch and socket buffer) before its watches
   * stop writing until it drains: the socket's share of a slow watcher's memory.
   */
  socketBytesMax: 256 * 1024,
  /** Events one frame carries at most, and their estimated bytes: far below any frame limit. */
  frameEventsMax: 1_000,
  frameBytesMax: 256 * 1024,
  /** Record bytes one catch-up read decodes at most, so each read is a short step of the event loop. */
  catchUpReadBytesMax: 1024 * 1024,
  /** Frames one watch sends in one turn before it yields the event loop to the others. */
  pumpFramesMax: 16,
} as const;

export type WatchLimits = { -readonly [K in keyof typeof WATCH_DEFAULTS]: number };

export interface WatchHubOptions extends Partial<WatchLimits> {
  /**
   * The node's tables: the ledger, the last applied txid, and whether a snapshot is being
   * restored (its txid is set before its tables are readable: nothing is read meanwhile).
   */
  readonly store: LedgerReader & { readonly lastTxid: number; readonly restoring?: boolean };
  readonly core: CoreSync;
  readonly runtime: Runtime;
  /** This node's id, in each watch's reply. */
  readonly nodeId: number;
}

/** How often the hub looks for idle watches at most: a quarter of progressMs, or this. */
const PROGRESS_TICK_MS_MIN = 10;
/** A watch's sent events are dropped from its array once there are this many and they are most of it. */
const COMPACT_EVENTS_MIN = 1024;

/** About what an event costs as MessagePack sends it: field names and fixed-size values, strings a byte a character. */
const EVENT_FIXED_BYTES = 100;

export function estimateEventBytes(e: LedgerEvent): number {
  return (
    EVENT_FIXED_BYTES +
    e.type.length +
    (e.volume?.length ?? 0) +
    (e.bucket?.length ?? 0) +
    (e.key?.length ?? 0) +
    (e.toKey?.length ?? 0) +
    (e.etag?.length ?? 0)
  );
}

export type WatchMode = "live" | "catch-up";

/** One watch as `stats` reports it. */
export interface WatcherStats {
  readonly connection: number;
  readonly watchId: number;
  readonly prefix: string;
  readonly mode: WatchMode;
  /** Every matching event up to this txid is buffered or sent. */
  readonly position: number;
  readonly bufferedEvents: number;
  /** Estimated bytes of the buffered events; never above bufferBytesMax but for one txid's events. */
  readonly bufferedBytes: number;
  readonly bufferedBytesPeak: number;
  /** Unsent bytes of its connection (shared with the connection's other watches and replies). */
  readonly socketBytes: number;
  readonly eventsSent: number;
  readonly framesSent: number;
  /** Times it dropped from live to catching up, and the ledger reads it did. */
  readonly catchUps: number;
  readonly ledgerReads: number;
}

export interface WatchHubStats {
  readonly watchers: number;
  readonly connections: number;
  readonly live: number;
  readonly catchingUp: number;
  readonly bufferedEvents: number;
  readonly bufferedBytes: number;
  /** The most any one watch has buffered, and the most unsent bytes any watch connection held. */
  readonly bufferedBytesPeak: number;
  readonly socketBytesPeak: number;
  readonly opened: number;
  readonly ended: number;
  /** Ended because they fell behind the ledger's start. */
  readonly compacted: number;
  readonly catchUps: number;
  readonly ledgerReads: number;
  readonly framesSent: number;
  readonly eventsSent: number;
  readonly limits: WatchLimits;
}

class Watcher {
  mode: WatchMode = "catch-up";
  /** Events in txid order; `head` is the first not yet sent (the array is compacted now and then). */
  events: LedgerEvent[] = [];
  sizes: number[] = [];
  head = 0;
  bytes = 0;
  bytesPeak = 0;
  lastFrameAt: number;
  removed = false;
  waitingDrain = false;
  /** Its catch-up waits for a snapshot's restore to finish. */
  waitingRestore = false;
  eventsSent = 0;
  framesSent = 0;
  catchUps = 0;
  ledgerReads = 0;

  constructor(
    readonly group: ConnectionWatches,
    readonly watchId: number,
    readonly prefix: string,
    /** Every matching event up to this txid is buffered or sent. */
    public position: number,
    now: number,
  ) {
    this.lastFrameAt = now;
  }

  get buffered(): number {
    return this.events.length - this.head;
  }

  append(event: LedgerEvent, size: number): void {
    this.events.push(event);
    this.sizes.push(size);
    this.bytes += size;
    if (this.bytes > this.bytesPeak) this.bytesPeak = this.bytes;
  }

  /** Drops what was sent, once it is most of the array (amortised O(1) per event). */
  compact(): void {
    if (this.head === this.events.length) {
      this.events = [];
      this.sizes = [];
      this.head = 0;
    } else if (this.head > COMPACT_EVENTS_MIN && this.head * 2 > this.events.length) {
      this.events = this.events.slice(this.head);
      this.sizes = this.sizes.slice(this.head);
      this.head = 0;
    }
  }
}

/** The watches of one connection. */
interface ConnectionWatches {
  readonly connection: RpcConnection;
  readonly watchers: Map<number, Watcher>;
  drainRequested: boolean;
}

export class WatchHub {
  readonly limits: WatchLimits;
  readonly #store: WatchHubOptions["store"];
  readonly #core: CoreSync;
  readonly #runtime: Runtime;
  readonly #nodeId: number;
  readonly #groups = new Map<RpcConnection, ConnectionWatches>();
  #count = 0;
  /** Events ever written to the ledger, as far as this hub has seen them applied (see #sync). */
  #written = 0;
  #timer: Timer | undefined;
  /** Watches with work to do in the next turn. */
  readonly #dirty = new Set<Watcher>();
  #pumpScheduled = false;
  #closed = false;
  #socketBytesPeak = 0;
  #bufferedBytesPeak = 0;
  #opened = 0;
  #ended = 0;
  #compacted = 0;
  #catchUps = 0;
  #ledgerReads = 0;
  #framesSent = 0;
  #eventsSent = 0;

  constructor(options: WatchHubOptions) {
    const limits = { ...WATCH_DEFAULTS } as WatchLimits;
    for (const name of Object.keys(WATCH_DEFAULTS) as (keyof WatchLimits)[]) {
      const value = options[name];
      if (value === undefined) continue;
      if (!(Number.isSafeInteger(value) && value > 0)) {
        throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `watch limit ${name} must be an integer >= 1`);
      }
      limits[name] = value;
    }
    this.limits = limits;
    this.#store = options.store;
    this.#core = options.core;
    this.#runtime = options.runtime;
    this.#nodeId = options.nodeId;
  }

  get size(): number {
    return this.#count;
  }

  /** The `watch` op: checks the request, registers the watch, and starts it in a later turn. */
  open(connection: RpcConnection, raw: Readonly<Record<string, unknown>>): WatchReply {
    const request = parseWatchRequest(raw);
    if (this.#closed || connection.closed) {
      throw new MetaraftError("MR_ERR_CONNECTION_CLOSED", "the node is closing, or the connection closed");
    }
    if (this.#count >= this.limits.watchersMax) {
      throw new MetaraftError("MR_ERR_WATCH_LIMIT", `this node serves ${this.#count} watches, its most`);
    }
    let group = this.#groups.get(connection);
    if (group?.watchers.has(request.watchId)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `watchId ${request.watchId} is open on this connection already`,
      );
    }
    if (group && group.watchers.size >= this.limits.watchersPerConnectionMax) {
      throw new MetaraftError(
        "MR_ERR_WATCH_LIMIT",
        `this connection holds ${group.watchers.size} watches, its most; open another connection`,
      );
    }
    const summary = readSummary(this.#store);
    const position =
      request.fromTxid === undefined ? this.#store.lastTxid : Math.max(0, request.fromTxid - 1);
    if (summary.prunedThrough > position) throw compacted(position, summary);
    if (this.#count === 0) this.#written = summary.written;
    if (!group) {
      const created: ConnectionWatches = { connection, watchers: new Map(), drainRequested: false };
      this.#groups.set(connection, created);
      connection.onClose(() => this.#dropConnection(created));
      group = created;
    }
    const watcher = new Watcher(group, request.watchId, request.prefix, position, this.#runtime.now());
    group.watchers.set(request.watchId, watcher);
    this.#count++;
    this.#opened++;
    this.#timer ??= this.#runtime
      .every(Math.max(PROGRESS_TICK_MS_MIN, Math.floor(this.limits.progressMs / 4)), () => this.#tick())
      .unref();
    // Not now: the reply goes out first (frames may precede it safely, but need not).
    this.#schedule(watcher);
    return { watchId: request.watchId, txid: position, node: this.#nodeId };
  }

  /** The `cancelWatch` op. */
  cancel(connection: RpcConnection, raw: Readonly<Record<string, unknown>>): CancelWatchReply {
    const { watchId } = parseCancelWatch(raw);
    const watcher = this.#groups.get(connection)?.watchers.get(watchId);
    if (!watcher) return { cancelled: false };
    this.#remove(watcher);
    return { cancelled: true };
  }

  /**
   * The state machine applied a record (the events of one entry): fan it out to the live
   * watches. Runs inside apply, so it only appends and schedules; it never throws into apply.
   */
  onEventsApplied(record: Uint8Array, _lastTxid: number): void {
    if (this.#count === 0) return;
    try {
      const written = readSummary(this.#store).written;
      const live = this.#all().filter((w) => w.mode === "live");
      if (live.length === 0) {
        this.#written = written;
        return;
      }
      const events = decodeRecord(record, this.#core, "an applied ledger record");
      if (written !== this.#written + events.length) {
        // Events this hub never saw reached the ledger (a snapshot was restored), or this
        // record was not appended (an entry applied again): the live watches read the ledger.
        this.#written = written;
        for (const w of live) this.#toCatchUp(w);
        return;
      }
      this.#written = written;
      const last = events[events.length - 1]!.txid;
      const sizes = events.map(estimateEventBytes);
      // Once per event, not per event and watch: the paths a prefix is matched against.
      const paths = events.map(eventPaths);
      const matches = (i: number, prefix: string) =>
        prefix === "" || paths[i]!.some((path) => path.startsWith(prefix));
      for (const w of live) {
        let count = 0;
        let bytes = 0;
        for (let i = 0; i < events.length; i++) {
          const e = events[i]!;
          if (e.txid > w.position && matches(i, w.prefix)) {
            count++;
            bytes += sizes[i]!;
          }
        }
        if (count > 0) {
          if (
            w.buffered + count > this.limits.bufferEventsMax ||
            w.bytes + bytes > this.limits.bufferBytesMax
          ) {
            // Its position stays before this record: the ledger has it, and so will the watch.
            this.#toCatchUp(w);
            continue;
          }
          for (let i = 0; i < events.length; i++) {
            const e = events[i]!;
            if (e.txid > w.position && matches(i, w.prefix)) w.append(e, sizes[i]!);
          }
          if (w.bytes > this.#bufferedBytesPeak) this.#bufferedBytesPeak = w.bytes;
          this.#schedule(w);
        }
        if (last > w.position) w.position = last;
      }
    } catch (error) {
      const failure =
        error instanceof MetaraftError
          ? error
          : new MetaraftError("MR_ERR_INTERNAL", String(error), { cause: error });
      for (const w of this.#all()) this.#end(w, failure);
    }
  }

  stats(): WatchHubStats {
    const all = this.#all();
    return {
      watchers: this.#count,
      connections: [...this.#groups.values()].filter((g) => g.watchers.size > 0).length,
      live: all.filter((w) => w.mode === "live").length,
      catchingUp: all.filter((w) => w.mode === "catch-up").length,
      bufferedEvents: all.reduce((n, w) => n + w.buffered, 0),
      bufferedBytes: all.reduce((n, w) => n + w.bytes, 0),
      bufferedBytesPeak: this.#bufferedBytesPeak,
      socketBytesPeak: this.#socketBytesPeak,
      opened: this.#opened,
      ended: this.#ended,
      compacted: this.#compacted,
      catchUps: this.#catchUps,
      ledgerReads: this.#ledgerReads,
      framesSent: this.#framesSent,
      eventsSent: this.#eventsSent,
      limits: { ...this.limits },
    };
  }

  /** Every open watch, one row each. */
  watchers(): WatcherStats[] {
    return this.#all().map((w) => ({
      connection: w.group.connection.id,
      watchId: w.watchId,
      prefix: w.prefix,
      mode: w.mode,
      position: w.position,
      bufferedEvents: w.buffered,
      bufferedBytes: w.bytes,
      bufferedBytesPeak: w.bytesPeak,
      socketBytes: w.group.connection.bufferedBytes,
      eventsSent: w.eventsSent,
      framesSent: w.framesSent,
      catchUps: w.catchUps,
      ledgerReads: w.ledgerReads,
    }));
  }

  /** Ends every watch without a frame (the node is closing: its connections close next). */
  close(): void {
    this.#closed = true;
    this.#timer?.cancel();
    this.#timer = undefined;
    for (const w of this.#all()) this.#remove(w);
  }

  #all(): Watcher[] {
    const out: Watcher[] = [];
    for (const group of this.#groups.values()) for (const w of group.watchers.values()) out.push(w);
    return out;
  }

  /**
   * Whether the hub has seen every event the ledger holds; if not (a snapshot was restored
   * since), the live watches read the ledger to find what they missed.
   */
  #sync(): void {
    const written = readSummary(this.#store).written;
    if (written === this.#written) return;
    this.#written = written;
    for (const w of this.#all()) if (w.mode === "live") this.#toCatchUp(w);
  }

  #toCatchUp(w: Watcher): void {
    w.mode = "catch-up";
    w.catchUps++;
    this.#catchUps++;
    this.#schedule(w);
  }

  #schedule(w: Watcher): void {
    this.#dirty.add(w);
    if (this.#pumpScheduled) return;
    this.#pumpScheduled = true;
    this.#runtime.defer(() => {
      this.#pumpScheduled = false;
      const dirty = [...this.#dirty];
      this.#dirty.clear();
      for (const watcher of dirty) this.#pump(watcher);
    });
  }

  /** Sends what `w` has buffered, and reads on while it catches up, as far as its connection takes it. */
  #pump(w: Watcher): void {
    if (w.removed) return;
    const connection = w.group.connection;
    for (let frames = 0; ; frames++) {
      if (w.removed) return;
      if (frames >= this.limits.pumpFramesMax) {
        this.#schedule(w);
        return;
      }
      if (connection.bufferedBytes >= this.limits.socketBytesMax) {
        this.#waitDrain(w);
        return;
      }
      if (w.buffered > 0) {
        this.#sendEvents(w);
        continue;
      }
      if (w.mode === "live") return;
      if (!this.#catchUpRead(w)) return;
    }
  }

  #waitDrain(w: Watcher): void {
    w.waitingDrain = true;
    const group = w.group;
    if (group.drainRequested) return;
    group.drainRequested = true;
    group.connection.onDrain(() => {
      group.drainRequested = false;
      for (const watcher of group.watchers.values()) {
        if (!watcher.waitingDrain) continue;
        watcher.waitingDrain = false;
        this.#schedule(watcher);
      }
    });
  }

  /** One frame from the head of the buffer: whole txids, within the frame's bounds. */
  #sendEvents(w: Watcher): void {
    const start = w.head;
    let end = start;
    let bytes = 0;
    while (end < w.events.length) {
      // The next txid's events, all of them or none.
      const txid = w.events[end]!.txid;
      let groupEnd = end;
      let groupBytes = 0;
      while (groupEnd < w.events.length && w.events[groupEnd]!.txid === txid) {
        groupBytes += w.sizes[groupEnd]!;
        groupEnd++;
      }
      const fits =
        groupEnd - start <= this.limits.frameEventsMax && bytes + groupBytes <= this.limits.frameBytesMax;
      if (!fits && end > start) break;
      end = groupEnd;
      bytes += groupBytes;
      if (!fits) break;
    }
    const events = w.events.slice(start, end);
    w.head = end;
    w.bytes -= bytes;
    const txid = w.buffered === 0 ? w.position : events[events.length - 1]!.txid;
    w.compact();
    this.#send(w, { push: "watch", watchId: w.watchId, kind: "events", events, txid });
    w.eventsSent += events.length;
    this.#eventsSent += events.length;
  }

  /**
   * One bounded read of the ledger after `w.position` into its buffer. Returns whether there is
   * more to do; a watch that reached the last applied txid is live again.
   */
  #catchUpRead(w: Watcher): boolean {
    if (this.#store.restoring) {
      // The last txid is the snapshot's, the ledger not yet: reading now would skip its events.
      w.waitingRestore = true;
      return false;
    }
    const tail = this.#store.lastTxid;
    if (w.position >= tail) {
      // Every event up to the last applied txid is buffered or sent, and the next record is
      // fanned out to it: live, once the hub has seen what the ledger holds.
      this.#sync();
      w.mode = "live";
      return false;
    }
    const read = readLedger(this.#store, this.#core, w.position, this.limits.bufferEventsMax, {
      prefix: w.prefix,
      throughTxid: tail,
      // Record bytes are about the events' bytes: reading much past the buffer's room is waste.
      bytesMax: Math.min(this.limits.catchUpReadBytesMax, this.limits.bufferBytesMax),
      withinRecord: true,
    });
    w.ledgerReads++;
    this.#ledgerReads++;
    if (read.missed) {
      this.#compacted++;
      this.#end(w, compacted(w.position, { firstTxid: read.firstTxid, prunedThrough: read.missed.toTxid }));
      return false;
    }
    const before = w.position;
    let kept = 0;
    for (let i = 0; i < read.events.length; ) {
      const txid = read.events[i]!.txid;
      let j = i;
      let bytes = 0;
      while (j < read.events.length && read.events[j]!.txid === txid)
        bytes += estimateEventBytes(read.events[j++]!);
      if (kept > 0 && w.bytes + bytes > this.limits.bufferBytesMax) break;
      for (let k = i; k < j; k++) w.append(read.events[k]!, estimateEventBytes(read.events[k]!));
      kept = j;
      i = j;
    }
    if (w.bytes > this.#bufferedBytesPeak) this.#bufferedBytesPeak = w.bytes;
    if (kept < read.events.length) {
      // The buffer is full: the dropped events' txid is read again next time.
      w.position = read.events[kept]!.txid - 1;
    } else {
      // A read that reached the ledger's end covered every txid up to the tail: the ones after
      // the ledger's last had no events.
      w.position =
        read.scannedThrough >= read.lastTxid ? Math.max(read.scannedThrough, tail) : read.scannedThrough;
    }
    return w.position > before || w.buffered > 0;
  }

  #send(w: Watcher, frame: WatchFrame): void {
    const connection = w.group.connection;
    connection.push(frame);
    w.lastFrameAt = this.#runtime.now();
    w.framesSent++;
    this.#framesSent++;
    const unsent = connection.bufferedBytes;
    if (unsent > this.#socketBytesPeak) this.#socketBytesPeak = unsent;
  }

  /** Progress for idle watches, a new look at the ledger's continuity, and drains that were missed. */
  #tick(): void {
    // Mid-restore, the last txid runs ahead of the ledger: no position may be taken from it.
    if (this.#store.restoring) return;
    try {
      this.#sync();
    } catch (error) {
      const failure = new MetaraftError("MR_ERR_INTERNAL", String(error), { cause: error });
      for (const w of this.#all()) this.#end(w, failure);
      return;
    }
    const now = this.#runtime.now();
    const tail = this.#store.lastTxid;
    const summary = readSummary(this.#store);
    for (const w of this.#all()) {
      if (w.mode === "catch-up" && w.position < summary.prunedThrough) {
        // It can never catch up: end it now, and free its buffer, rather than when its reader
        // comes back for the events it has buffered (they end where the gap begins anyway).
        this.#compacted++;
        this.#end(w, compacted(w.position, summary));
        continue;
      }
      if (w.waitingRestore) {
        w.waitingRestore = false;
        this.#schedule(w);
      }
      const room = w.group.connection.bufferedBytes < this.limits.socketBytesMax;
      if (w.waitingDrain && room) {
        w.waitingDrain = false;
        this.#schedule(w);
      }
      if (!room || w.buffered > 0 || now - w.lastFrameAt < this.limits.progressMs) continue;
      // A live watch has every event up to the last applied txid (the hub is in sync, above).
      if (w.mode === "live" && tail > w.position) w.position = tail;
      this.#send(w, { push: "watch", watchId: w.watchId, kind: "progress", txid: w.position });
    }
  }

  #end(w: Watcher, error: MetaraftError): void {
    if (w.removed) return;
    this.#send(w, { push: "watch", watchId: w.watchId, kind: "cancelled", error: error.toJSON() });
    this.#remove(w);
  }

  #remove(w: Watcher): void {
    if (w.removed) return;
    w.removed = true;
    w.events = [];
    w.sizes = [];
    w.head = 0;
    w.bytes = 0;
    const group = w.group;
    group.watchers.delete(w.watchId);
    this.#dirty.delete(w);
    this.#count--;
    this.#ended++;
    // The group stays until its connection closes: it holds the one close callback registered.
    if (this.#count === 0) {
      this.#timer?.cancel();
      this.#timer = undefined;
    }
  }

  #dropConnection(group: ConnectionWatches): void {
    for (const w of [...group.watchers.values()]) this.#remove(w);
    this.#groups.delete(group.connection);
  }
}

function compacted(
  position: number,
  ledger: { readonly firstTxid: number; readonly prunedThrough: number },
): MetaraftError {
  const firstTxid = ledger.firstTxid > 0 ? ledger.firstTxid : ledger.prunedThrough + 1;
  return new MetaraftError(
    "MR_ERR_COMPACTED",
    `events after txid ${position} were pruned through txid ${ledger.prunedThrough}; the ledger starts at ${firstTxid}`,
    { details: { firstTxid, prunedThrough: ledger.prunedThrough, fromTxid: position + 1 } },
  );
}
