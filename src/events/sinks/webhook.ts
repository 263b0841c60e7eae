import { MetaraftError } from "../../errors.js";
import type { Timer } from "../../runtime.js";
import { formatRecords } from "../format.js";
import { LedgerListener } from "../ledger-listener.js";
import {
  type OptionTable,
  type OptionValues,
  optionError,
  parseOptions,
  type RawOptions,
} from "../options.js";
import type { LedgerEvent } from "../types.js";

/**
 * The webhook sink: POSTs the events as JSON to `url` — `native`: a JSON array of
 * `LedgerEvent`s; `s3`: one S3 event notification (`{"Records": [...]}`) per request. A 2xx
 * answer acknowledges the request; anything else, a timeout (`timeout_ms`) or a network error
 * fails the batch with `MR_ERR_LISTENER_DELIVERY_FAILED`, and the base retries it with backoff.
 *
 * A batch goes out in requests of at most `request_events_max` events (never splitting a txid),
 * at most `inflight_max` of them at once. With more than one in flight a receiver may see
 * requests out of order (sort and deduplicate by txid or `sequencer`); a batch is acknowledged
 * only once every request of it succeeded, so the checkpoint never passes an undelivered event.
 * The txids of a contiguous run of acknowledged requests are remembered, so a retry resends
 * only from the first request that failed.
 */

export const WEBHOOK_OPTIONS = {
  url: { type: "string", bytesMax: 4096, help: "where to POST (http or https)" },
  format: { type: "enum", values: ["native", "s3"], default: "native", help: "native or s3 records" },
  headers: {
    type: "strings",
    entriesMax: 64,
    bytesMax: 8192,
    help: "extra request headers (an Authorization header, say)",
  },
  timeout_ms: {
    type: "integer",
    default: 10_000,
    min: 1,
    max: 600_000,
    help: "a request not answered within this fails",
  },
  inflight_max: {
    type: "integer",
    default: 1,
    min: 1,
    max: 64,
    help: "requests in flight at most (1: receivers see requests strictly in txid order)",
  },
  request_events_max: {
    type: "integer",
    default: 1000,
    min: 1,
    max: 10_000,
    help: "events one request carries at most (more only to finish a txid)",
  },
} as const satisfies OptionTable;

export type WebhookOptions = OptionValues<typeof WEBHOOK_OPTIONS>;

export class WebhookSink extends LedgerListener {
  readonly name = "webhook";
  readonly version = "1.0.0";
  #sink: WebhookOptions | undefined;
  #url: URL | undefined;
  /** Every event up to this txid was acknowledged by the receiver (through this instance). */
  #ackedThrough = 0;

  protected override configure(options: RawOptions): void {
    const name = this.context.name;
    const sink = parseOptions(name, WEBHOOK_OPTIONS, options);
    let url: URL;
    try {
      url = new URL(sink.url);
    } catch {
      throw optionError(name, "url", `is not a URL (${JSON.stringify(sink.url)})`);
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") {
      throw optionError(name, "url", `must be http or https (got ${url.protocol})`);
    }
    try {
      new Headers(sink.headers);
    } catch (error) {
      throw optionError(name, "headers", `holds a header fetch refuses (${(error as Error).message})`);
    }
    this.#sink = sink;
    this.#url = url;
  }

  override async onEvents(events: readonly LedgerEvent[], signal: AbortSignal): Promise<void> {
    const sink = this.#sink!;
    const pending = events.filter((event) => event.txid > this.#ackedThrough);
    const requests = split(pending, sink.request_events_max);
    const done = requests.map(() => false);
    let next = 0;
    let acked = 0;
    let failure: { error: unknown } | undefined;
    // Each worker takes the next request in order; after a failure no new one starts, and the
    // call settles only once none is in flight, so nothing of it outlives onEvents.
    const worker = async (): Promise<void> => {
      while (!failure && next < requests.length) {
        const index = next++;
        const request = requests[index]!;
        try {
          await this.#post(request, signal);
        } catch (error) {
          failure ??= { error };
          return;
        }
        done[index] = true;
        while (acked < requests.length && done[acked]) {
          const last = requests[acked]![requests[acked]!.length - 1]!;
          this.#ackedThrough = Math.max(this.#ackedThrough, last.txid);
          acked++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(sink.inflight_max, requests.length) }, worker));
    if (failure) throw failure.error;
  }

  async #post(events: readonly LedgerEvent[], signal: AbortSignal): Promise<void> {
    const sink = this.#sink!;
    const url = this.#url!;
    const where = `${url.origin}${url.pathname}`;
    const listener = this.context.name;
    // One controller for both the delivery's signal and the timeout, on the runtime's timer
    // rather than AbortSignal.timeout (every clock goes through the runtime), and a listener
    // removed after each request rather than AbortSignal.any (whose dependents pile up on the
    // delivery's signal, one per request, on some Node versions).
    const controller = new AbortController();
    let timedOut = false;
    const timer: Timer = this.context.runtime.after(sink.timeout_ms, () => {
      timedOut = true;
      controller.abort();
    });
    const onAbort = () => controller.abort(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    try {
      signal.throwIfAborted();
      const response = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", ...sink.headers },
        body: JSON.stringify(formatRecords(events, sink.format)),
        signal: controller.signal,
      });
      // The body is not wanted; cancelling it frees the connection.
      await response.body?.cancel().catch(() => undefined);
      if (!response.ok) {
        throw new MetaraftError(
          "MR_ERR_LISTENER_DELIVERY_FAILED",
          `listener ${listener}: POST ${where} answered ${response.status} ${response.statusText}`.trim(),
          { details: { listener, url: where, status: response.status } },
        );
      }
    } catch (error) {
      if (error instanceof MetaraftError) throw error;
      if (signal.aborted) throw signal.reason;
      if (timedOut) {
        throw new MetaraftError(
          "MR_ERR_LISTENER_DELIVERY_FAILED",
          `listener ${listener}: POST ${where} timed out after ${sink.timeout_ms} ms`,
          { details: { listener, url: where, timeoutMs: sink.timeout_ms }, cause: error },
        );
      }
      const cause = (error as { cause?: { message?: string } }).cause?.message;
      throw new MetaraftError(
        "MR_ERR_LISTENER_DELIVERY_FAILED",
        `listener ${listener}: POST ${where} failed: ${(error as Error).message}${cause ? ` (${cause})` : ""}`,
        { details: { listener, url: where }, cause: error },
      );
    } finally {
      timer.cancel();
      signal.removeEventListener("abort", onAbort);
    }
  }
}

/** `events` in runs of at most `max` (more only to keep a txid's events together). */
function split(events: readonly LedgerEvent[], max: number): LedgerEvent[][] {
  const out: LedgerEvent[][] = [];
  let current: LedgerEvent[] = [];
  for (const event of events) {
    const last = current[current.length - 1];
    if (current.length >= max && last && last.txid !== event.txid) {
      out.push(current);
      current = [];
    }
    current.push(event);
  }
  if (current.length > 0) out.push(current);
  return out;
}
