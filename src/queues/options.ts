import { MetaraftError } from "../errors.js";
import type { Runtime } from "../runtime.js";
import { SETTINGS, type Settings } from "../settings.js";
import { QUEUE_OUTSTANDING_BYTES } from "./requests.js";

/** What a consumer's handler is given: events in offset order, at least once. */
export interface QueueEvent {
  /** Where the event starts in its queue: unique and increasing, so a consumer can deduplicate by it. */
  readonly offset: number;
  /** The event's index: the events added to the queue before it. */
  readonly index: number;
  /** When its add was executed (ms since the epoch). */
  readonly time: number;
  /** The event's bytes (a copy: the handler may keep it). */
  readonly data: Uint8Array;
}

/**
 * Processes a batch of events. Resolve once they are processed; reject (or throw) to have the
 * batch offered again after a backoff. `signal` aborts when this node stops leading, the
 * consumer is closed, or the call passed its `handlerTimeoutMs`: give up then.
 */
export type QueueHandler = (events: readonly QueueEvent[], signal: AbortSignal) => Promise<void> | void;

export interface QueueLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What a consumer module's factory is given besides its options. */
export interface QueueConsumerContext {
  readonly queue: string;
  /** Relative paths in its options are taken from here (the node's config file's directory). */
  readonly baseDir: string;
  readonly runtime: Runtime;
  readonly log: QueueLog;
}

/** A consumer module's default export (the `queues:` list of a node's config names modules). */
export type QueueHandlerFactory = (
  options: Readonly<Record<string, unknown>>,
  context: QueueConsumerContext,
) => QueueHandler | Promise<QueueHandler>;

/** The queue settings of a node (`queue.*` in `SETTINGS`). */
export type QueueSettings = Settings["queue"];

export const QUEUE_SETTINGS_DEFAULT: QueueSettings = {
  segmentBytes: SETTINGS.queue.segmentBytes.default,
  truncationBytes: SETTINGS.queue.truncationBytes.default,
  outstandingBytesMax: SETTINGS.queue.outstandingBytesMax.default,
};

interface OptionSpec {
  readonly min: number;
  readonly max: number;
  /** Absent: the node's `queue.*` setting gives it. */
  readonly default?: number;
  readonly help: string;
}

/**
 * A consumer's options (`forConsumer`, or an entry of `queues:`), with Pravega's event
 * processor's names where it has them. Every one has a limit.
 */
export const CONSUMER_OPTIONS = {
  maxItemsAtOnce: {
    min: 1,
    max: 10_000,
    default: 100,
    help: "events one handler call receives at most (a read also stops at 2 MiB)",
  },
  maxOutstandingBytes: {
    ...QUEUE_OUTSTANDING_BYTES,
    help: "bytes added and not yet truncated at most: an add past it fails with MR_ERR_QUEUE_FULL (default: queue.outstandingBytesMax)",
  },
  truncationBytes: {
    min: SETTINGS.queue.truncationBytes.min,
    max: SETTINGS.queue.truncationBytes.max,
    help: "a truncation (the durable restart point) is replicated each time this many bytes were processed (default: queue.truncationBytes)",
  },
  truncationMs: {
    min: 1,
    max: 3_600_000,
    default: 1000,
    help: "or once this long passed with processed events not yet truncated",
  },
  maxAttempts: {
    min: 0,
    max: 100_000,
    default: 0,
    help: "failures of an event on its own before it moves to the dead letters; 0: retried for ever (Pravega's default)",
  },
  retryInitialMs: {
    min: 1,
    max: 600_000,
    default: 100,
    help: "the first wait after a failed handler call; it doubles per failure",
  },
  retryMaxMs: { min: 1, max: 3_600_000, default: 30_000, help: "the longest wait between retries" },
  handlerTimeoutMs: {
    min: 1,
    max: 3_600_000,
    default: 30_000,
    help: "a handler call that has not settled by then is aborted and counts as a failure",
  },
  pollMs: {
    min: 1,
    max: 600_000,
    default: 1000,
    help: "when caught up, the queue is read again after this long even if no add was seen",
  },
  stopTimeoutMs: {
    min: 0,
    max: 600_000,
    default: 5000,
    help: "how long a loss of leadership or close waits for a running handler call after aborting it",
  },
} as const satisfies Record<string, OptionSpec>;

export type ConsumerOptions = { readonly [K in keyof typeof CONSUMER_OPTIONS]: number };

/** Checks a consumer's options, naming the queue and the option; the node's settings fill the rest. */
export function parseConsumerOptions(
  queue: string,
  raw: Readonly<Record<string, unknown>>,
  settings: QueueSettings,
  where = `queue ${queue}`,
): ConsumerOptions {
  const out: Record<string, number> = {};
  for (const [key, value] of Object.entries(raw)) {
    if (value !== undefined && !Object.hasOwn(CONSUMER_OPTIONS, key)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `${where}: unknown consumer option "${key}" (options: ${Object.keys(CONSUMER_OPTIONS).join(", ")})`,
      );
    }
  }
  const fallback: Partial<Record<keyof ConsumerOptions, number>> = {
    maxOutstandingBytes: settings.outstandingBytesMax,
    truncationBytes: settings.truncationBytes,
  };
  for (const [name, spec] of Object.entries(CONSUMER_OPTIONS) as [keyof ConsumerOptions, OptionSpec][]) {
    const value = raw[name] ?? spec.default ?? fallback[name];
    if (typeof value !== "number" || !Number.isSafeInteger(value) || value < spec.min || value > spec.max) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `${where}: ${name} must be an integer from ${spec.min} to ${spec.max}, not ${JSON.stringify(value)}`,
      );
    }
    out[name] = value;
  }
  if (out.retryInitialMs! > out.retryMaxMs!) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `${where}: retryInitialMs (${out.retryInitialMs}) is above retryMaxMs (${out.retryMaxMs})`,
    );
  }
  return out as ConsumerOptions;
}
