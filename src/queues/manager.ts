import { randomUUID } from "node:crypto";
import { Counter, exponentialBuckets, Gauge, Histogram, Registry } from "prom-client";
import type { CoreSync } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type { Request, StateReader } from "../execution/types.js";
import type { Leadership } from "../host/index.js";
import type { Runtime } from "../runtime.js";
import { loadQueueHandler, type QueueDeclaration } from "./declarations.js";
import {
  type ConsumerOptions,
  parseConsumerOptions,
  QUEUE_SETTINGS_DEFAULT,
  type QueueHandler,
  type QueueLog,
  type QueueSettings,
} from "./options.js";
import { listMetas, QUEUES_MAX, type QueueMeta } from "./records.js";
import { checkQueueName } from "./requests.js";
import { QueueTail, type TailState } from "./tail.js";

/** Metric names; each has a `queue` label. */
export const QUEUE_METRICS = {
  outstandingBytes: "metaraft_queue_outstanding_bytes",
  outstandingEvents: "metaraft_queue_outstanding_events",
  segments: "metaraft_queue_segments",
  deadLetters: "metaraft_queue_dead_letters",
  processed: "metaraft_queue_events_processed_total",
  latency: "metaraft_queue_processing_latency_seconds",
  retries: "metaraft_queue_retries_total",
  corrupt: "metaraft_queue_corrupt",
} as const;

/**
 * The processing latency's buckets: 0.5 ms to about 2.4 minutes, each 1.5 times the last, fine
 * enough that `queue ls` can estimate p50 and p99 from them.
 */
const LATENCY_BUCKETS_S = exponentialBuckets(0.0005, 1.5, 32);

/** What `add` resolves with. */
export interface QueueAddReply {
  /** The first event's offset and index. */
  readonly offset: number;
  readonly index: number;
  readonly events: number;
  readonly appended: number;
  /** Bytes added and not yet truncated, this add's included. */
  readonly outstandingBytes: number;
  readonly outstandingEvents: number;
}

/** A queue to append to (`forDurableQueue`); only the leader's write path takes adds. */
export interface DurableQueue {
  readonly name: string;
  /** Appends events (1 byte to 1 MiB each) in order; fails at once with MR_ERR_QUEUE_FULL when the queue is full. */
  add(events: Uint8Array | readonly Uint8Array[]): Promise<QueueAddReply>;
}

/** A registered consumer (`forConsumer`); it consumes whenever this node is the ready leader. */
export interface QueueConsumer extends DurableQueue {
  readonly options: ConsumerOptions;
  /** Stops its tail (for good); a last truncation is replicated first if this node leads. */
  close(): Promise<void>;
}

/** One row of `metaraft queue ls`: the queue's replicated state and, on the leader, its tail's. */
export interface QueueStatusRow {
  readonly name: string;
  /** `running`, `retrying`, `corrupt`, ...: the tail's state here; `no-consumer` or `failed` without one. */
  readonly state: TailState | "no-consumer" | "failed";
  readonly outstandingBytes: number;
  readonly outstandingEvents: number;
  readonly maxOutstandingBytes: number;
  readonly appended: number;
  readonly appendedEvents: number;
  /** The tail's position on this node (the truncation where no tail runs). */
  readonly processed: number;
  readonly processedEvents: number;
  readonly truncated: number;
  readonly truncatedEvents: number;
  readonly segments: number;
  readonly firstSegment: number;
  readonly segmentBytes: number;
  readonly rows: number;
  /** Estimated from the histogram's buckets (null: nothing processed here yet). */
  readonly latencyP50Ms: number | null;
  readonly latencyP99Ms: number | null;
  readonly retries: number;
  readonly deadLetters: number;
  readonly deadLettered: number;
  readonly lastError?: string;
}

export interface QueueManagerParts {
  /** The applied state (the node's StateStore). */
  readonly store: StateReader;
  readonly core: CoreSync;
  readonly leadership: Leadership;
  readonly runtime: Runtime;
  /** The write path: the node's pipeline. */
  readonly pipeline: {
    submit(clientId: string, callId: number, request: Request): Promise<Record<string, unknown>>;
  };
  /** The node's `queue.*` settings; the defaults unless given. */
  readonly settings?: Partial<QueueSettings>;
  /** Relative module paths of declared consumers resolve against it. */
  readonly baseDir?: string;
  readonly log?: QueueLog;
}

const silent: QueueLog = { info: () => {}, warn: () => {}, error: () => {} };

/**
 * A node's durable queues (DESIGN.md, "Durable queues"): its consumers, each a tail loop that
 * runs while this node is the ready leader; appends through the write path; `queue ls`; and the
 * per-queue metrics, on `metrics` (merge it with the node's).
 */
export class QueueManager {
  readonly metrics = new Registry();
  readonly settings: QueueSettings;
  readonly #parts: QueueManagerParts;
  readonly #log: QueueLog;
  readonly #tails = new Map<string, QueueTail>();
  /** Declared consumers whose module could not be loaded, with why. */
  readonly #failed = new Map<string, string>();
  readonly #clientId = `queues-${randomUUID()}`;
  #callId = 0;
  #closed = false;
  readonly #unsubscribe: () => void;
  readonly #processed: Counter<"queue">;
  readonly #latency: Histogram<"queue">;
  readonly #retries: Counter<"queue">;
  readonly #corrupt: Gauge<"queue">;

  constructor(parts: QueueManagerParts) {
    this.#parts = parts;
    this.#log = parts.log ?? silent;
    this.settings = { ...QUEUE_SETTINGS_DEFAULT, ...parts.settings };
    const registers = [this.metrics];
    this.#processed = new Counter({
      name: QUEUE_METRICS.processed,
      help: "Events a queue's handler processed on this node (at-least-once: a redelivered event counts again)",
      labelNames: ["queue"],
      registers,
    });
    this.#latency = new Histogram({
      name: QUEUE_METRICS.latency,
      help: "From an event's add to its handler's success, on this node",
      labelNames: ["queue"],
      buckets: LATENCY_BUCKETS_S,
      registers,
    });
    this.#retries = new Counter({
      name: QUEUE_METRICS.retries,
      help: "Failed handler calls of a queue on this node (each is retried, or dead-lettered)",
      labelNames: ["queue"],
      registers,
    });
    this.#corrupt = new Gauge({
      name: QUEUE_METRICS.corrupt,
      help: "1 when a segment of the queue failed its checksum on this node, and its tail stopped here",
      labelNames: ["queue"],
      registers,
    });
    const store = parts.store;
    const replicated = (name: string, help: string, read: (meta: QueueMeta) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ["queue"],
        registers,
        collect() {
          this.reset();
          for (const meta of listMetas(store)) this.labels(meta.name).set(read(meta));
        },
      });
    };
    replicated(
      QUEUE_METRICS.outstandingBytes,
      "Bytes added to a queue and not yet truncated",
      (m) => m.appended - m.truncated,
    );
    replicated(
      QUEUE_METRICS.outstandingEvents,
      "Events added to a queue and not yet truncated",
      (m) => m.appendedEvents - m.truncatedEvents,
    );
    replicated(QUEUE_METRICS.segments, "Segments of a queue holding data", (m) => m.segments);
    replicated(QUEUE_METRICS.deadLetters, "Events in a queue's dead letters", (m) => m.deadLetters);
    this.#unsubscribe = parts.leadership.subscribe({
      leaderReady: (term) => {
        for (const tail of this.#tails.values()) tail.lead(term);
      },
      notLeader: (term) => {
        for (const tail of this.#tails.values()) tail.follow(term);
      },
    });
  }

  /**
   * Registers the consumer of queue `name`: whenever this node is the ready leader it creates
   * the queue (or updates its maxOutstandingBytes) and calls `handler` with its events.
   */
  forConsumer(
    name: string,
    handler: QueueHandler,
    options: Readonly<Record<string, unknown>> = {},
  ): QueueConsumer {
    checkQueueName(name);
    if (this.#closed)
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `queue ${name}: the manager is closed`);
    if (typeof handler !== "function") {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `queue ${name}: the handler must be a function`);
    }
    if (this.#tails.has(name)) throw new MetaraftError("MR_ERR_QUEUE_CONSUMER_EXISTS", `queue ${name}`);
    if (this.#tails.size >= QUEUES_MAX) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${QUEUES_MAX} consumers are registered already`);
    }
    const parsed = parseConsumerOptions(name, options, this.settings);
    const { runtime } = this.#parts;
    const labels = { queue: name };
    const tail = new QueueTail({
      queue: name,
      handler,
      options: parsed,
      segmentBytes: this.settings.segmentBytes,
      reader: this.#parts.store,
      core: this.#parts.core,
      runtime,
      submit: (request) => this.#submit(request),
      metrics: {
        processed: (n) => this.#processed.inc(labels, n),
        latencySeconds: (s) => this.#latency.observe(labels, s),
        retried: () => this.#retries.inc(labels),
        corrupt: (on) => this.#corrupt.set(labels, on ? 1 : 0),
      },
      log: this.#log,
    });
    this.#tails.set(name, tail);
    this.#failed.delete(name);
    const leadership = this.#parts.leadership;
    if (leadership.ready) tail.lead(leadership.state.term);
    const queue = this.forDurableQueue(name);
    return {
      ...queue,
      options: parsed,
      close: async () => {
        await tail.close();
        if (this.#tails.get(name) === tail) this.#tails.delete(name);
      },
    };
  }

  /** A handle that appends to queue `name` (it must be registered: MR_ERR_QUEUE_NOT_FOUND otherwise). */
  forDurableQueue(name: string): DurableQueue {
    checkQueueName(name);
    return {
      name,
      add: async (events) => {
        const list = events instanceof Uint8Array ? [events] : [...events];
        const reply = (await this.#submit({
          op: "queueAdd",
          queue: name,
          events: list,
        })) as unknown as QueueAddReply;
        this.appended(name);
        return reply;
      },
    };
  }

  /** Loads the consumers a node's config declares; one that fails shows as `failed` in `queue ls`. */
  async startDeclared(declared: readonly QueueDeclaration[]): Promise<void> {
    for (const declaration of declared) {
      try {
        const handler = await loadQueueHandler(declaration, {
          queue: declaration.name,
          baseDir: this.#parts.baseDir ?? process.cwd(),
          runtime: this.#parts.runtime,
          log: this.#log,
        });
        this.forConsumer(declaration.name, handler, declaration.consumer);
      } catch (error) {
        const text = error instanceof Error ? error.message : String(error);
        this.#failed.set(declaration.name, text);
        this.#log.error("a declared queue consumer could not be started", {
          queue: declaration.name,
          error: text,
        });
      }
    }
  }

  /** Wakes the tail of `queue` (every tail, without one): an add to it was applied here. */
  appended(queue?: string): void {
    if (queue === undefined) {
      for (const tail of this.#tails.values()) tail.wake();
      return;
    }
    this.#tails.get(queue)?.wake();
  }

  /** The node's hook for writes it takes from clients: an applied add wakes its queue's tail at once. */
  observe(raw: Record<string, unknown>, reply: Promise<unknown>): void {
    if (raw.op !== "queueAdd" && raw.op !== "queueRetryDeadLetters") return;
    const queue = typeof raw.queue === "string" ? raw.queue : undefined;
    reply.then(
      () => this.appended(queue),
      () => {},
    );
  }

  /** Every queue as this node sees it (on the leader, with its tails' progress): `queue ls`. */
  async statuses(): Promise<QueueStatusRow[]> {
    const metas = new Map(listMetas(this.#parts.store).map((m) => [m.name, m]));
    const names = [...new Set([...metas.keys(), ...this.#tails.keys(), ...this.#failed.keys()])].sort();
    const quantiles = await this.#latencyQuantiles();
    return names.map((name): QueueStatusRow => {
      const meta = metas.get(name);
      const tail = this.#tails.get(name)?.status();
      const failed = this.#failed.get(name);
      const truncated = meta?.truncated ?? 0;
      const truncatedEvents = meta?.truncatedEvents ?? 0;
      const running = tail !== undefined && tail.state !== "idle" && tail.state !== "stopped";
      const lastError = tail?.lastError ?? failed;
      return {
        name,
        state: tail?.state ?? (failed !== undefined ? "failed" : "no-consumer"),
        outstandingBytes: meta ? meta.appended - meta.truncated : 0,
        outstandingEvents: meta ? meta.appendedEvents - meta.truncatedEvents : 0,
        maxOutstandingBytes: meta?.maxOutstandingBytes ?? 0,
        appended: meta?.appended ?? 0,
        appendedEvents: meta?.appendedEvents ?? 0,
        processed: running ? Math.max(truncated, tail.processed) : truncated,
        processedEvents: running ? Math.max(truncatedEvents, tail.processedEvents) : truncatedEvents,
        truncated,
        truncatedEvents,
        segments: meta?.segments ?? 0,
        firstSegment: meta?.firstSegment ?? 0,
        segmentBytes: meta?.segmentBytes ?? this.settings.segmentBytes,
        rows: meta?.rows ?? 0,
        latencyP50Ms: quantiles.get(name)?.p50 ?? null,
        latencyP99Ms: quantiles.get(name)?.p99 ?? null,
        retries: tail?.retries ?? 0,
        deadLetters: meta?.deadLetters ?? 0,
        deadLettered: meta?.deadLettered ?? 0,
        ...(lastError === undefined ? {} : { lastError }),
      };
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe();
    await Promise.all([...this.#tails.values()].map((tail) => tail.close()));
    this.#tails.clear();
  }

  #submit(request: Request): Promise<Record<string, unknown>> {
    return this.#parts.pipeline.submit(this.#clientId, this.#callId++, request);
  }

  /** p50 and p99 in ms per queue, interpolated in the histogram's buckets (as Prometheus' histogram_quantile). */
  async #latencyQuantiles(): Promise<Map<string, { p50: number; p99: number }>> {
    const buckets = new Map<string, [number, number][]>();
    for (const value of (await this.#latency.get()).values) {
      if (value.metricName !== `${QUEUE_METRICS.latency}_bucket`) continue;
      const labels = value.labels as Record<string, string | number | undefined>;
      const queue = String(labels.queue);
      const le = labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(labels.le);
      let list = buckets.get(queue);
      if (!list) buckets.set(queue, (list = []));
      list.push([le, value.value]);
    }
    const out = new Map<string, { p50: number; p99: number }>();
    for (const [queue, list] of buckets) {
      list.sort((a, b) => a[0] - b[0]);
      const p50 = quantile(list, 0.5);
      const p99 = quantile(list, 0.99);
      if (p50 !== null && p99 !== null) out.set(queue, { p50: p50 * 1000, p99: p99 * 1000 });
    }
    return out;
  }
}

/** The q-quantile of cumulative buckets `[upper bound, count]`, linear within a bucket. */
export function quantile(buckets: readonly (readonly [number, number])[], q: number): number | null {
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total === 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const [le, count] of buckets) {
    if (count >= rank) {
      // The +Inf bucket has no upper bound: the largest finite one is the best estimate.
      if (!Number.isFinite(le)) return lower;
      const inBucket = count - below;
      return inBucket === 0 ? le : lower + ((le - lower) * (rank - below)) / inBucket;
    }
    lower = le;
    below = count;
  }
  return lower;
}
