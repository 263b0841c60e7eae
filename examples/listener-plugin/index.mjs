// An example listener plugin: counts the ledger's events per bucket and event type, logs a
// summary every `log_every_events` events, and exports the counts as a Prometheus counter.
// See README.md beside this file for the plugin contract and how to declare it.
import { LedgerListener, parseOptions } from "metaraft/events";
import { Counter } from "prom-client";

/** This plugin's own options, declared like the base's (`LEDGER_LISTENER_OPTIONS`). */
const OPTIONS = {
  log_every_events: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 1_000_000,
    help: "a summary is logged after this many events",
  },
  buckets_max: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 100_000,
    help: "buckets counted by name at most; the rest are counted as (other), to bound the metric's labels",
  },
};

const OTHER = "(other)";

export default class BucketCounter extends LedgerListener {
  name = "bucket-counter";
  version = "1.0.0";
  /** "volume/bucket" -> event type -> events. */
  counts = new Map();
  #options;
  #metric;
  /** The last txid counted: delivery is at-least-once, so a redelivered event is skipped by txid. */
  #lastTxid = 0;
  #sinceLog = 0;

  configure(options) {
    this.#options = parseOptions(this.context.name, OPTIONS, options);
    const name = "metaraft_example_bucket_events_total";
    this.#metric =
      this.context.metrics.getSingleMetric(name) ??
      new Counter({
        name,
        help: "Events per bucket and type, as the example listener plugin counted them",
        labelNames: ["listener", "bucket", "type"],
        registers: [this.context.metrics],
      });
  }

  // Counting is instant, so `signal` (aborted on loss of leadership or stop) is not needed
  // here; a plugin that waits on the network passes it on (fetch(url, { signal })).
  async onEvents(events, _signal) {
    for (const event of events) {
      if (event.txid <= this.#lastTxid) continue;
      const bucket = this.#bucketOf(event);
      const byType = this.counts.get(bucket) ?? new Map();
      byType.set(event.type, (byType.get(event.type) ?? 0) + 1);
      this.counts.set(bucket, byType);
      this.#metric.inc({ listener: this.context.name, bucket, type: event.type });
      this.#sinceLog++;
    }
    // Only after the whole batch: a txid's events come in one batch, all of them or none.
    this.#lastTxid = Math.max(this.#lastTxid, events[events.length - 1]?.txid ?? 0);
    if (this.#sinceLog >= this.#options.log_every_events) {
      this.#sinceLog = 0;
      this.context.log.info("events per bucket", { listener: this.context.name, counts: this.summary() });
    }
  }

  /** The counts as plain JSON: { "volume/bucket": { "ObjectCreated:Put": 3 } }. */
  summary() {
    return Object.fromEntries(
      [...this.counts].map(([bucket, byType]) => [bucket, Object.fromEntries(byType)]),
    );
  }

  #bucketOf(event) {
    const bucket = event.bucket === undefined ? event.volume : `${event.volume}/${event.bucket}`;
    if (this.counts.has(bucket) || this.counts.size < this.#options.buckets_max) return bucket;
    return OTHER;
  }
}
