import { type CoreSync, encodeWriteSet } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { encodeRecord, type LedgerEvent, planPrune, type RetentionLimits } from "../events/index.js";
import type { RaftHost } from "../host/index.js";
import { type Runtime, systemRuntime } from "../runtime.js";
import { type ExecutionMode, SETTINGS } from "../settings.js";
import { encodeEntry } from "./entry-codec.js";
import { callKey, lookupReply, REPLY_TTL_MS, replyWrite, SweepSchedule } from "./replies.js";
import type { ApplyResult } from "./state-machine.js";
import { Layer, LayeredReader, type StateStore } from "./state-store.js";
import { type Request, type RequestSpec, stamp, toWriteOp, type Write } from "./types.js";

export type { ExecutionMode };

/** A refusal's write-set: it changes nothing. */
const EMPTY_WRITE_SET = encodeWriteSet([]);
const NO_EVENTS: readonly LedgerEvent[] = Object.freeze([]);

export interface PipelineOptions {
  /** Unless given, the mode, batchers and batchBytesMax default to `SETTINGS.execution`'s. */
  readonly mode?: ExecutionMode;
  /** Batches in flight at once. */
  readonly batchers?: number;
  /** Write-set bytes a batch takes at most (a single larger request still goes alone). */
  readonly batchBytesMax?: number;
  /** Executed requests waiting for a batcher; more are refused with PROPOSAL_DROPPED. */
  readonly queueMax?: number;
  /** The clock and timers (the simulator passes a virtual runtime). */
  readonly runtime?: Runtime;
  /** The clock the gatekeeper stamps requests with, if not the runtime's (tests of expiry). */
  readonly clock?: () => number;
  /** The event ledger's settings; unless given, `SETTINGS.events`'s defaults. */
  readonly events?: Partial<EventSettings>;
}

export interface EventSettings {
  /** No events are recorded (to measure what the ledger costs). */
  readonly disabled: boolean;
  /** Retention: `events.max` and `events.hardMax`. */
  readonly max: number;
  readonly hardMax: number;
}

export const PIPELINE_DEFAULTS = {
  queueMax: 65_536,
} as const;

interface Executed {
  /** The request's txid; a refusal takes none. */
  readonly txid: number;
  /**
   * The request was refused (KEY_EXISTS, NOT_FOUND, ...). The refusal read the overlay, so it
   * may rest on writes not yet committed, or on a leadership already lost: it is answered only
   * when its batch commits, after every write it saw, like any other reply.
   */
  readonly refusal?: MetaraftError;
  readonly executedAt: number;
  readonly writeSet: Uint8Array;
  /** Stamped with the txid and time; empty for a refusal. */
  readonly events: readonly LedgerEvent[];
  readonly reply: Record<string, unknown>;
  readonly resolve: (reply: Record<string, unknown>) => void;
  readonly reject: (error: Error) => void;
}

/**
 * The write path on the leader: gatekeeper (validate, replay cache, txid), executor (run the
 * handler against committed state plus the overlay of executed but unapplied writes), and
 * batcher (up to `batchers` Raft entries in flight, each carrying everything queued when a
 * slot freed up: a lone request goes at once, a storm rides in big batches).
 */
export class WritePipeline {
  readonly mode: ExecutionMode;
  readonly #host: RaftHost<ApplyResult>;
  readonly #store: StateStore;
  readonly #specs: ReadonlyMap<string, RequestSpec>;
  readonly #core: CoreSync;
  readonly #clock: () => number;
  readonly #runtime: Runtime;
  readonly #batchers: number;
  readonly #batchBytesMax: number;
  readonly #queueMax: number;
  readonly #eventsDisabled: boolean;
  readonly #retention: RetentionLimits;
  readonly #overlay = new Layer();
  readonly #reader: LayeredReader;
  readonly #queue: Executed[] = [];
  /** Calls executed or proposed and not yet answered: a retry joins the first attempt. */
  readonly #inflight = new Map<string, Promise<Record<string, unknown>>>();
  #batchesInFlight = 0;
  #nextTxid = 0;
  /** This node leads and has applied its term's no-op: it serves writes. */
  #ready = false;
  /** After a dropped batch: no execution until the batches before it are applied. */
  #draining = false;
  readonly #sweeps = new SweepSchedule();
  /** The replicated-request mode's cleanup entry in flight (at most one). */
  #cleanupInFlight = false;
  /**
   * Counters for status and benchmarks. `queuedMs`: summed over requests, executed until a
   * batcher took them; `batchMs`: summed over batches, proposed until applied here.
   */
  readonly stats = { batches: 0, requestsBatched: 0, queuedMs: 0, batchMs: 0 };

  constructor(
    host: RaftHost<ApplyResult>,
    store: StateStore,
    specs: ReadonlyMap<string, RequestSpec>,
    core: CoreSync,
    options: PipelineOptions = {},
  ) {
    this.#host = host;
    this.#store = store;
    this.#specs = specs;
    this.#core = core;
    const settings = SETTINGS.execution;
    this.mode = options.mode ?? settings.mode.default;
    this.#runtime = options.runtime ?? systemRuntime;
    this.#clock = options.clock ?? (() => this.#runtime.now());
    this.#batchers = options.batchers ?? settings.batchers.default;
    const { min, max } = settings.batchers;
    if (!(Number.isInteger(this.#batchers) && this.#batchers >= min && this.#batchers <= max)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `batchers must be ${min} to ${max}: ${this.#batchers}`,
      );
    }
    this.#batchBytesMax = options.batchBytesMax ?? settings.batchBytesMax.default;
    this.#queueMax = options.queueMax ?? PIPELINE_DEFAULTS.queueMax;
    const events = SETTINGS.events;
    this.#eventsDisabled = options.events?.disabled ?? events.disabled.default;
    this.#retention = {
      eventsMax: options.events?.max ?? events.max.default,
      eventsHardMax: options.events?.hardMax ?? events.hardMax.default,
    };
    if (!(this.#retention.eventsHardMax >= this.#retention.eventsMax)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `events.hardMax (${this.#retention.eventsHardMax}) is below events.max (${this.#retention.eventsMax})`,
      );
    }
    this.#reader = new LayeredReader([this.#overlay], store);
    host.leadership.subscribe({
      leaderReady: () => {
        this.#ready = true;
      },
      notLeader: () => this.#onNotLeader(),
    });
  }

  /** The leader's view: committed state plus the overlay. */
  get reader(): LayeredReader {
    return this.#reader;
  }

  #onNotLeader(): void {
    // Nothing executed here may leak into state unless it was committed: drop the overlay.
    this.#ready = false;
    this.#overlay.clear();
    const error = new MetaraftError("MR_ERR_NOT_LEADER", undefined, {
      details: { leader: this.#host.leader },
    });
    for (const queued of this.#queue.splice(0)) queued.reject(error);
  }

  /** Called by the state machine after each batch is applied here. */
  onBatchApplied(lastTxid: number): void {
    this.#overlay.pruneUpTo(lastTxid);
  }

  #checkLeader(): void {
    if (!this.#host.isLeader) {
      throw new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader: this.#host.leader } });
    }
    if (!this.#ready || this.#draining) {
      throw new MetaraftError("MR_ERR_NOT_READY", "the leader is applying the entries before its term");
    }
    if (this.#nextTxid <= this.#store.lastTxid) this.#nextTxid = this.#store.lastTxid + 1;
  }

  /** Reads: after a ReadIndex barrier (linearizable) or at once from local state (`stale`). */
  async read(raw: Request, stale: boolean): Promise<Record<string, unknown>> {
    const spec = this.#spec(raw);
    if (spec.kind !== "read") throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${raw.op} is not a read`);
    const request = spec.validate(raw);
    if (!stale) await this.#host.readBarrier();
    const execution = spec.execute(request, {
      txid: this.#store.lastTxid,
      time: this.#clock(),
      reader: this.#store,
    });
    return stale ? { ...execution.reply, appliedIndex: this.#store.appliedIndex } : { ...execution.reply };
  }

  #spec(raw: Request): RequestSpec {
    const spec = this.#specs.get(raw.op);
    if (!spec) throw new MetaraftError("MR_ERR_UNKNOWN_OP", `unknown op "${String(raw.op)}"`);
    return spec;
  }

  isRead(op: string): boolean {
    return this.#specs.get(op)?.kind === "read";
  }

  /** A write request from a client; `callId` is unique per client and reused by its retries. */
  submit(clientId: string, callId: number, raw: Request): Promise<Record<string, unknown>> {
    const key = callKey(clientId, callId);
    const joined = this.#inflight.get(key);
    if (joined) return joined;
    let promise: Promise<Record<string, unknown>>;
    try {
      promise = this.#submit(clientId, callId, raw);
    } catch (error) {
      return Promise.reject(error);
    }
    this.#inflight.set(key, promise);
    const forget = () => this.#inflight.delete(key);
    promise.then(forget, forget);
    return promise;
  }

  #submit(clientId: string, callId: number, raw: Request): Promise<Record<string, unknown>> {
    const spec = this.#spec(raw);
    if (spec.kind !== "write") throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${raw.op} is a read`);
    const request = spec.validate(raw);
    this.#checkLeader();
    const time = this.#clock();
    const cached = lookupReply(this.#reader, clientId, callId, time);
    if (cached) return Promise.resolve({ ...cached.reply });
    if (this.mode === "replicated-request") {
      this.#maybeProposeCleanup(time);
      return this.#proposeRequest(clientId, callId, raw, time);
    }

    if (this.#queue.length >= this.#queueMax) {
      throw new MetaraftError("MR_ERR_PROPOSAL_DROPPED", `${this.#queueMax} requests are queued`);
    }
    const txid = this.#nextTxid;
    let execution: ReturnType<typeof spec.execute>;
    try {
      execution = spec.execute(request, { txid, time, reader: this.#reader });
    } catch (error) {
      if (!(error instanceof MetaraftError)) throw error;
      return new Promise((resolve, reject) => {
        this.#queue.push({
          txid: Number.NaN,
          refusal: error,
          executedAt: this.#runtime.elapsed(),
          writeSet: EMPTY_WRITE_SET,
          events: NO_EVENTS,
          reply: {},
          resolve,
          reject,
        });
        this.#cut();
      });
    }
    this.#nextTxid++;
    const writes: Write[] = [
      ...execution.writes,
      replyWrite(clientId, callId, { txid, expiresAt: time + REPLY_TTL_MS, reply: execution.reply }),
    ];
    for (const write of writes) this.#overlay.set(write.table, write.key, write.value, txid);
    const events = this.#eventsDisabled ? NO_EVENTS : stamp(execution.events, txid, time);
    return new Promise((resolve, reject) => {
      this.#queue.push({
        txid,
        executedAt: this.#runtime.elapsed(),
        writeSet: encodeWriteSet(writes.map(toWriteOp)),
        events,
        reply: execution.reply,
        resolve,
        reject,
      });
      this.#cut();
    });
  }

  async #proposeRequest(
    clientId: string,
    callId: number,
    request: Request,
    time: number,
  ): Promise<Record<string, unknown>> {
    const data = encodeEntry(
      {
        kind: "request",
        time,
        clientId,
        callId,
        request,
        pruneThrough: this.#pruneThrough(),
        ...(this.#eventsDisabled ? { noEvents: true } : {}),
      },
      this.#core,
    );
    const result = await this.#host.propose(data);
    if (result.kind === "error") throw result.error;
    if (result.kind !== "reply")
      throw new MetaraftError("MR_ERR_INTERNAL", "a request entry applied as a batch");
    return result.reply;
  }

  /** Deletes of expired replay records, when a sweep is due after `writes` new ones. */
  #expiredReplies(writes: number, now = this.#clock()): Write[] {
    const budget = this.#sweeps.due(now, writes);
    if (budget === 0) return [];
    return this.#sweeps.sweeper.sweep(
      this.#store,
      now,
      budget,
      // Skip what a batch in flight already deletes, or writes afresh (an expired call retried);
      // the replicated-request mode has no overlay, so nothing is skipped there.
      (key) => this.#overlay.lookup("replies", key) !== undefined,
    );
  }

  /**
   * The replicated-request mode executes at apply time, so the leader cannot slip deletes into
   * a request's writes: a due sweep goes out as an entry of its own (a batch of deletes, no txid).
   * A call retried after its record expired, and applied between this sweep and its entry, loses
   * its fresh record: its next retry executes again, which past the TTL is the contract anyway.
   */
  #maybeProposeCleanup(time: number): void {
    if (this.#cleanupInFlight) return;
    const deletes = this.#expiredReplies(1, time);
    if (deletes.length === 0) return;
    const data = encodeEntry(
      {
        kind: "batch",
        time,
        txids: new Float64Array(0),
        writeSet: encodeWriteSet(deletes.map(toWriteOp)),
      },
      this.#core,
    );
    this.#cleanupInFlight = true;
    let proposed: Promise<ApplyResult>;
    try {
      proposed = this.#host.propose(data);
    } catch {
      this.#cleanupInFlight = false;
      return; // The next sweep finds the same records.
    }
    const done = () => {
      this.#cleanupInFlight = false;
    };
    proposed.then(done, done);
  }

  /** A free batcher takes everything queued, up to `batchBytesMax`, as one Raft entry. */
  #cut(): void {
    // A batcher that is late (a busy loop, a slow proposal): requests pile up and go together.
    if (this.#queue.length > 0 && this.#runtime.buggify?.("pipeline.cut.late")) {
      this.#runtime.defer(() => this.#cut());
      return;
    }
    while (this.#batchesInFlight < this.#batchers && this.#queue.length > 0) {
      let bytes = 0;
      let count = 0;
      while (count < this.#queue.length) {
        const size = this.#queue[count]!.writeSet.length;
        if (count > 0 && bytes + size > this.#batchBytesMax) break;
        bytes += size;
        count++;
      }
      const batch = this.#queue.splice(0, count);
      const executed = batch.filter((b) => b.refusal === undefined);
      // A batch of refusals only carries no txid; its clean-up writes are tagged with the last
      // txid handed out, which is applied by the time this batch is.
      const lastTxid = executed[executed.length - 1]?.txid ?? this.#nextTxid - 1;
      const cleanup = this.#expiredReplies(batch.length);
      for (const write of cleanup) this.#overlay.set(write.table, write.key, null, lastTxid);
      const writeSets = batch.map((b) => b.writeSet);
      if (cleanup.length > 0) writeSets.push(encodeWriteSet(cleanup.map(toWriteOp)));
      const events = executed.flatMap((b) => b.events);
      const data = encodeEntry(
        {
          kind: "batch",
          time: this.#clock(),
          txids: Float64Array.from(executed, (b) => b.txid),
          writeSet: this.#core.mergeWriteSets(writeSets),
          ...(events.length > 0 ? { events: encodeRecord(events, this.#core) } : {}),
          pruneThrough: this.#pruneThrough(),
        },
        this.#core,
      );
      this.#batchesInFlight++;
      const cutAt = this.#runtime.elapsed();
      this.stats.batches++;
      this.stats.requestsBatched += batch.length;
      for (const b of batch) this.stats.queuedMs += cutAt - b.executedAt;
      let proposed: Promise<ApplyResult>;
      try {
        proposed = this.#host.propose(data);
      } catch (error) {
        // Refused at once (too much uncommitted, a transfer): nothing after it may go out.
        this.#batchesInFlight--;
        this.#batchFailed(batch, error);
        return;
      }
      proposed
        .then(
          () => {
            this.stats.batchMs += this.#runtime.elapsed() - cutAt;
            for (const b of batch) {
              if (b.refusal) b.reject(b.refusal);
              else b.resolve({ ...b.reply });
            }
          },
          (error: unknown) => this.#batchFailed(batch, error),
        )
        .finally(() => {
          this.#batchesInFlight--;
          this.#maybeFinishDraining();
          this.#cut();
        });
    }
  }

  /**
   * The ledger records the next entry prunes, from the applied state: entries in flight may
   * prune the same records again, which finds them gone, and each prunes a bounded number.
   */
  #pruneThrough(): number {
    return planPrune(this.#store, this.#core, this.#retention);
  }

  #batchFailed(batch: Executed[], error: unknown): void {
    const failure = error instanceof Error ? error : new Error(String(error));
    for (const b of batch) b.reject(failure);
    if (this.#host.isLeader) {
      // Requests executed after this batch read its writes through the overlay: they must not
      // commit without it. Refuse them, and start again from applied state once the batches
      // ahead of this one are in.
      for (const queued of this.#queue.splice(0)) queued.reject(failure);
      this.#draining = true;
      this.#maybeFinishDraining();
    }
  }

  #maybeFinishDraining(): void {
    if (!this.#draining || this.#batchesInFlight > 0) return;
    this.#overlay.clear();
    this.#nextTxid = this.#store.lastTxid + 1;
    this.#draining = false;
  }
}
