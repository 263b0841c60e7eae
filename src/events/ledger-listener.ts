import { Counter, Gauge, type Registry } from "prom-client";
import { MetaraftError } from "../errors.js";
import type { Timer } from "../runtime.js";
import type {
  EventListener,
  LedgerRead,
  ListenerContext,
  ListenerState,
  ListenerStatus,
} from "./listener.js";
import {
  type OptionTable,
  type OptionValues,
  optionError,
  parseOptions,
  type RawOptions,
} from "./options.js";
import type { LedgerEvent } from "./types.js";

/**
 * The options every `LedgerListener` takes, beside its own. A subclass changes their defaults
 * with `defaults()` (a webhook may want smaller batches than a file).
 */
export const LEDGER_LISTENER_OPTIONS = {
  batch_events_max: {
    type: "integer",
    default: 1000,
    min: 1,
    // The ledger's own bound on one read (`READ_EVENTS_LIMIT_MAX` of readEvents).
    max: 10_000,
    help: "events one onEvents call receives at most (more only to finish a txid)",
  },
  checkpoint_events: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 10_000_000,
    help: "a checkpoint is replicated once this many events were delivered since the last",
  },
  checkpoint_ms: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 3_600_000,
    help: "or once this long passed since the last, whichever comes first",
  },
  retry_initial_ms: {
    type: "integer",
    default: 100,
    min: 1,
    max: 600_000,
    help: "the first wait after a failed delivery; it doubles per failure",
  },
  retry_max_ms: {
    type: "integer",
    default: 30_000,
    min: 1,
    max: 3_600_000,
    help: "the longest wait between retries",
  },
  stop_timeout_ms: {
    type: "integer",
    default: 5000,
    min: 0,
    max: 600_000,
    help: "how long stop (or a loss of leadership) waits for a running onEvents after aborting it",
  },
  poll_ms: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 600_000,
    help: "when caught up, the ledger is read again after this long even if no append was announced",
  },
} as const satisfies OptionTable;

export type LedgerListenerOptions = OptionValues<typeof LEDGER_LISTENER_OPTIONS>;

/** Metric names (with a `listener` label, the registered name). */
export const LISTENER_METRICS = {
  eventsDelivered: "metaraft_listener_events_delivered_total",
  errors: "metaraft_listener_errors_total",
  lagTxids: "metaraft_listener_lag_txids",
} as const;

const ABORTED: unique symbol = Symbol("aborted");

/** One term of leadership: the delivery loop that runs while this node is its ready leader. */
interface Session {
  readonly term: number;
  readonly controller: AbortController;
  /** The delivery loop; it settles once no call into the plugin is running. */
  loop: Promise<void>;
  /** Set once the session is told to end: the bounded wait for the loop, then the last checkpoint. */
  ended: Promise<void> | undefined;
  /** An append was announced since the last read began. */
  notified: boolean;
  wake: (() => void) | undefined;
  /** `runtime.elapsed()` at the last checkpoint attempt. */
  checkpointAt: number;
  eventsSinceCheckpoint: number;
}

interface Metrics {
  readonly delivered: { inc(value?: number): void };
  readonly errors: { inc(value?: number): void };
  readonly lag: { set(value: number): void };
}

/**
 * The base of most listener plugins (DESIGN.md, "The event ledger and plugins"). A subclass
 * writes `onEvents`; the base delivers the ledger to it:
 * - only while this node is the ready leader (`leaderReady` .. `notLeader`), from the replicated
 *   checkpoint, so a new leader resumes near where the old one stopped;
 * - in txid order, in batches of at most `batch_events_max`, waiting on the ledger's append
 *   notification when caught up (and reading every `poll_ms` anyway, should one be lost);
 * - at least once: a batch is retried until `onEvents` resolves, with exponential backoff,
 *   and the checkpoint (every `checkpoint_events` events or `checkpoint_ms`) only ever names a
 *   txid whose events were all delivered. A consumer deduplicates by txid.
 * - a range pruned before it was delivered is reported to `onMissed`, never skipped silently.
 *
 * Nothing a plugin does crashes the host: a throw or a rejection is counted, logged, and retried;
 * an `onEvents` that hangs is aborted through its signal on stop and waited for at most
 * `stop_timeout_ms` (after which a call that ignores its signal may overlap the next leader
 * term's first call; a plugin should honour the signal).
 */
export abstract class LedgerListener implements EventListener {
  abstract readonly name: string;
  abstract readonly version: string;

  #context: ListenerContext | undefined;
  #options: LedgerListenerOptions | undefined;
  #metrics: Metrics | undefined;
  #state: ListenerState = "idle";
  #started = false;
  #stopped: Promise<void> | undefined;
  #unsubscribe: (() => void) | undefined;
  #session: Session | undefined;
  #checkpoint = 0;
  #delivered = 0;
  #lastTxid = 0;
  /** The time of the oldest event fetched and not yet delivered (0: none). */
  #pendingTime = 0;
  #eventsDelivered = 0;
  #errors = 0;
  #lastError: string | undefined;

  /**
   * Delivers `events` (txid order, all of a txid together). Resolve once they are durable
   * wherever they go; reject to have the same events offered again after a backoff. `signal`
   * aborts when this node stops leading or the listener stops: give up then.
   */
  abstract onEvents(events: readonly LedgerEvent[], signal: AbortSignal): Promise<void>;

  /** Txids `fromTxid`..`toTxid` may have had events that were pruned before delivery. */
  onMissed(fromTxid: number, toTxid: number): void | Promise<void> {
    this.context.log.warn("events were pruned before this listener delivered them", {
      listener: this.context.name,
      fromTxid,
      toTxid,
    });
  }

  /**
   * The options that are not the common ones (`LEDGER_LISTENER_OPTIONS`): check them here and
   * throw on a bad one (`parseOptions` names the listener and the option). By default a
   * listener takes no options of its own, and any is refused.
   */
  protected configure(options: RawOptions): void | Promise<void> {
    parseOptions(this.context.name, {}, options);
  }

  /** Defaults of the common options for this kind of listener, in place of the table's. */
  protected defaults(): Partial<LedgerListenerOptions> {
    return {};
  }

  /** Called once at the end of `stop()`: release what `onEvents` opened (a file, connections). */
  protected onStop(): void | Promise<void> {}

  protected get context(): ListenerContext {
    if (!this.#context) throw new MetaraftError("MR_ERR_INTERNAL", `listener ${this.name}: used before init`);
    return this.#context;
  }

  protected get options(): LedgerListenerOptions {
    if (!this.#options) throw new MetaraftError("MR_ERR_INTERNAL", `listener ${this.name}: used before init`);
    return this.#options;
  }

  async init(context: ListenerContext, options: RawOptions): Promise<void> {
    if (this.#context) {
      throw new MetaraftError("MR_ERR_INTERNAL", `listener ${context.name}: init was called twice`);
    }
    const rest: Record<string, unknown> = {};
    const parsed = parseOptions(
      context.name,
      LEDGER_LISTENER_OPTIONS,
      { ...this.defaults(), ...options },
      rest,
    );
    if (parsed.retry_initial_ms > parsed.retry_max_ms) {
      throw optionError(
        context.name,
        "retry_initial_ms",
        `must be at most retry_max_ms (${parsed.retry_initial_ms} > ${parsed.retry_max_ms})`,
      );
    }
    this.#context = context;
    this.#options = parsed;
    await this.configure(rest);
    this.#metrics = listenerMetrics(context.metrics, context.name);
  }

  start(): void {
    const context = this.context;
    if (this.#stopped)
      throw new MetaraftError("MR_ERR_INTERNAL", `listener ${context.name}: started after stop`);
    if (this.#started) return;
    this.#started = true;
    // leaderChanged alone neither starts nor stops delivery: only a ready leader delivers.
    this.#unsubscribe = context.leadership.subscribe({
      leaderReady: (term) => this.#lead(term),
      notLeader: (term) => this.#follow(term),
    });
  }

  stop(): Promise<void> {
    this.#stopped ??= this.#stop();
    return this.#stopped;
  }

  status(): ListenerStatus {
    const now = this.#context?.runtime.now() ?? 0;
    return {
      state: this.#state,
      checkpoint: this.#checkpoint,
      delivered: this.#delivered,
      lagTxids: Math.max(0, this.#lastTxid - this.#delivered),
      lagMs: this.#pendingTime > 0 ? Math.max(0, now - this.#pendingTime) : 0,
      eventsDelivered: this.#eventsDelivered,
      errors: this.#errors,
      ...(this.#lastError === undefined ? {} : { lastError: this.#lastError }),
    };
  }

  async #stop(): Promise<void> {
    this.#unsubscribe?.();
    this.#unsubscribe = undefined;
    const session = this.#session;
    if (session) await this.#end(session);
    this.#state = "stopped";
    if (!this.#context) return;
    const closed = await this.#within(
      Promise.resolve().then(() => this.onStop()),
      this.options.stop_timeout_ms,
    ).catch((error: unknown) => {
      this.context.log.error("listener onStop failed", {
        listener: this.context.name,
        error: message(error),
      });
      return true;
    });
    if (!closed)
      this.context.log.warn("listener onStop did not finish within stop_timeout_ms", this.#fields());
  }

  #lead(term: number): void {
    if (this.#stopped) return;
    const current = this.#session;
    if (current && !current.ended && current.term === term) return;
    // A newer term's leaderReady without a notLeader between: end the old term's work first.
    const previous = current ? this.#end(current) : Promise.resolve();
    const session: Session = {
      term,
      controller: new AbortController(),
      loop: Promise.resolve(),
      ended: undefined,
      notified: false,
      wake: undefined,
      checkpointAt: 0,
      eventsSinceCheckpoint: 0,
    };
    this.#session = session;
    // The previous term's calls are waited for (bounded) so that two never overlap.
    session.loop = previous
      .then(() => (session.controller.signal.aborted ? undefined : this.#run(session)))
      .catch((error: unknown) => {
        // #run handles every error a plugin or the node can raise; reaching here is a bug.
        this.#state = "failed";
        this.#lastError = `internal: ${message(error)}`;
        this.context.log.error("listener delivery loop failed", { ...this.#fields(), error: message(error) });
      });
  }

  #follow(term: number): void {
    const session = this.#session;
    if (!session || session.ended || session.term > term) return;
    void this.#end(session);
    if (this.#state !== "failed") this.#state = "idle";
  }

  /** Aborts `session`, waits for its loop at most `stop_timeout_ms`, then checkpoints what it delivered. */
  #end(session: Session): Promise<void> {
    if (session.ended) return session.ended;
    session.controller.abort(
      new MetaraftError("MR_ERR_NOT_LEADER", `listener ${this.context.name}: delivery stopped`),
    );
    session.wake?.();
    const timeoutMs = this.options.stop_timeout_ms;
    const start = this.context.runtime.elapsed();
    session.ended = (async () => {
      if (!(await this.#within(session.loop, timeoutMs))) {
        this.context.log.warn(
          "onEvents did not return within stop_timeout_ms after its signal aborted; no longer waiting for it",
          { ...this.#fields(), stopTimeoutMs: timeoutMs },
        );
      }
      // Best effort: a deposed leader's checkpoint may be refused, and the next leader then
      // redelivers from the last one (at-least-once).
      const delivered = this.#delivered;
      if (delivered <= this.#checkpoint) return;
      const left = Math.max(0, timeoutMs - (this.context.runtime.elapsed() - start));
      try {
        if (await this.#within(this.context.checkpoint(delivered), left)) {
          this.#checkpoint = Math.max(this.#checkpoint, delivered);
        }
      } catch (error) {
        this.context.log.info("the last checkpoint of a leader term was not taken", {
          ...this.#fields(),
          txid: delivered,
          error: message(error),
        });
      }
    })();
    return session.ended;
  }

  async #run(session: Session): Promise<void> {
    const context = this.context;
    const { signal } = session.controller;
    const checkpoint = await this.#attempt(session, "readCheckpoint", () => context.readCheckpoint());
    if (checkpoint === ABORTED) return;
    let cursor = checkpoint;
    this.#checkpoint = checkpoint;
    this.#delivered = checkpoint;
    this.#state = "running";
    session.checkpointAt = context.runtime.elapsed();
    const unsubscribe = context.ledger.onAppended((lastTxid) => {
      this.#noteLast(lastTxid);
      session.notified = true;
      session.wake?.();
    });
    try {
      while (!signal.aborted) {
        session.notified = false;
        const read = await this.#attempt(session, "read", () => this.#read(cursor));
        if (read === ABORTED) return;
        this.#noteLast(read.lastTxid);
        if (read.missed && read.missed.toTxid > cursor) {
          const { fromTxid, toTxid } = read.missed;
          if ((await this.#attempt(session, "onMissed", () => this.onMissed(fromTxid, toTxid))) === ABORTED)
            return;
          cursor = toTxid;
          this.#delivered = Math.max(this.#delivered, cursor);
        }
        const events = read.events.filter((event) => event.txid > cursor);
        if (events.length === 0) {
          this.#pendingTime = 0;
          await this.#maybeCheckpoint(session, cursor);
          if (signal.aborted) return;
          await this.#idle(session, cursor);
          continue;
        }
        this.#pendingTime = events[0]!.time;
        if ((await this.#attempt(session, "onEvents", () => this.onEvents(events, signal))) === ABORTED)
          return;
        cursor = events[events.length - 1]!.txid;
        this.#delivered = cursor;
        this.#eventsDelivered += events.length;
        this.#metrics?.delivered.inc(events.length);
        this.#metrics?.lag.set(Math.max(0, this.#lastTxid - cursor));
        session.eventsSinceCheckpoint += events.length;
        if (cursor >= this.#lastTxid) this.#pendingTime = 0;
        await this.#maybeCheckpoint(session, cursor);
      }
    } finally {
      unsubscribe();
    }
  }

  /** One read, checked: a view that returns events out of order is a bug to surface, not to deliver. */
  async #read(afterTxid: number): Promise<LedgerRead> {
    const read = await this.context.ledger.read(afterTxid, this.options.batch_events_max);
    let previous = afterTxid;
    for (const event of read.events) {
      if (event.txid < previous) {
        throw new MetaraftError(
          "MR_ERR_INTERNAL",
          `the ledger returned txid ${event.txid} after ${previous}, reading after ${afterTxid}`,
        );
      }
      previous = event.txid;
    }
    return read;
  }

  async #maybeCheckpoint(session: Session, cursor: number): Promise<void> {
    if (cursor <= this.#checkpoint) return;
    const { checkpoint_events, checkpoint_ms } = this.options;
    const runtime = this.context.runtime;
    const due =
      session.eventsSinceCheckpoint >= checkpoint_events ||
      runtime.elapsed() - session.checkpointAt >= checkpoint_ms;
    if (!due) return;
    // A failed checkpoint is retried when the next one is due, not at once: it is progress
    // bookkeeping, and delivery goes on meanwhile.
    session.eventsSinceCheckpoint = 0;
    session.checkpointAt = runtime.elapsed();
    try {
      await this.context.checkpoint(cursor);
      this.#checkpoint = Math.max(this.#checkpoint, cursor);
    } catch (error) {
      if (session.controller.signal.aborted) return;
      this.#countError("checkpoint", error);
    }
  }

  /** Waits for an append, the poll interval, a due checkpoint, or the end of the session. */
  #idle(session: Session, cursor: number): Promise<void> {
    if (session.notified) return Promise.resolve();
    const { poll_ms, checkpoint_ms } = this.options;
    const runtime = this.context.runtime;
    let ms = poll_ms;
    if (cursor > this.#checkpoint) {
      ms = Math.min(ms, Math.max(0, session.checkpointAt + checkpoint_ms - runtime.elapsed()));
    }
    return new Promise<void>((resolve) => {
      const timer = runtime.after(ms, () => done());
      const done = () => {
        timer.cancel();
        session.wake = undefined;
        resolve();
      };
      session.wake = done;
    });
  }

  /**
   * Runs `fn` until it succeeds, backing off exponentially between failures (each wait drawn
   * from [d/2, d] with the runtime's random, so that listeners failing together spread out).
   */
  async #attempt<T>(session: Session, what: string, fn: () => T | Promise<T>): Promise<T | typeof ABORTED> {
    const { signal } = session.controller;
    const { retry_initial_ms, retry_max_ms } = this.options;
    let delay = retry_initial_ms;
    for (let attempt = 1; ; attempt++) {
      if (signal.aborted) return ABORTED;
      try {
        const value = await fn();
        if (signal.aborted) return ABORTED;
        if (this.#state === "retrying") this.#state = "running";
        return value;
      } catch (error) {
        // A rejection caused by the abort is the plugin giving up as asked, not a failure.
        if (signal.aborted) return ABORTED;
        this.#countError(what, error);
        this.#state = "retrying";
        const wait = Math.round(delay / 2 + (this.context.runtime.random() * delay) / 2);
        this.context.log.warn(`listener ${what} failed; retrying`, {
          ...this.#fields(),
          attempt,
          retryMs: wait,
          error: message(error),
        });
        await this.#sleep(session, wait);
        delay = Math.min(delay * 2, retry_max_ms);
      }
    }
  }

  #sleep(session: Session, ms: number): Promise<void> {
    const { signal } = session.controller;
    return new Promise<void>((resolve) => {
      const timer = this.context.runtime.after(ms, () => done());
      const done = () => {
        timer.cancel();
        signal.removeEventListener("abort", done);
        resolve();
      };
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Whether `promise` settled within `ms` (its rejection is thrown). */
  async #within(promise: Promise<unknown>, ms: number): Promise<boolean> {
    let timer: Timer | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = this.context.runtime.after(ms, () => resolve(false));
    });
    try {
      return await Promise.race([promise.then(() => true as const), timeout]);
    } finally {
      timer?.cancel();
    }
  }

  #countError(what: string, error: unknown): void {
    this.#errors++;
    this.#lastError = `${what}: ${message(error)}`;
    this.#metrics?.errors.inc();
  }

  #noteLast(lastTxid: number): void {
    if (lastTxid <= this.#lastTxid) return;
    this.#lastTxid = lastTxid;
    this.#metrics?.lag.set(Math.max(0, lastTxid - this.#delivered));
  }

  #fields(): Record<string, unknown> {
    return { listener: this.context.name, plugin: this.name };
  }
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * The listener's metrics, registered once per registry and shared by every listener in it
 * (one plugin host may run many), each listener its own `listener` label.
 */
function listenerMetrics(registry: Registry, listener: string): Metrics {
  const counter = (name: string, help: string): Counter<"listener"> => {
    const existing = registry.getSingleMetric(name);
    if (existing instanceof Counter) return existing as Counter<"listener">;
    if (existing)
      throw new MetaraftError("MR_ERR_INTERNAL", `metric ${name} is registered, not as a counter`);
    return new Counter({ name, help, labelNames: ["listener"], registers: [registry] });
  };
  const existingLag = registry.getSingleMetric(LISTENER_METRICS.lagTxids);
  if (existingLag && !(existingLag instanceof Gauge)) {
    throw new MetaraftError(
      "MR_ERR_INTERNAL",
      `metric ${LISTENER_METRICS.lagTxids} is registered, not as a gauge`,
    );
  }
  const lag =
    (existingLag as Gauge<"listener"> | undefined) ??
    new Gauge({
      name: LISTENER_METRICS.lagTxids,
      help: "Txids between the ledger's last and the last a listener delivered",
      labelNames: ["listener"],
      registers: [registry],
    });
  return {
    delivered: counter(
      LISTENER_METRICS.eventsDelivered,
      "Events a listener delivered (at-least-once: a redelivered event counts again)",
    ).labels(listener),
    errors: counter(
      LISTENER_METRICS.errors,
      "Failed deliveries, reads and checkpoints of a listener (each retried)",
    ).labels(listener),
    lag: lag.labels(listener),
  };
}
