import { type IntervalHistogram, monitorEventLoopDelay } from "node:perf_hooks";
import { type Runtime, systemRuntime } from "../runtime.js";

/**
 * The node process's event-loop delay, from Node's `monitorEventLoopDelay` (a libuv timer every
 * `resolutionMs`; each sample is the time between two firings). A leader whose loop stalls sends
 * no heartbeats and answers no one, so `status` shows how late the loop ran, over a window the
 * reader opens and closes: `status` with `eventLoopReset: true` answers with the window that
 * ends and starts the next one, numbered by `window`.
 */
export interface EventLoopDelay {
  /** The sampling interval. Every figure below has it subtracted: an idle loop shows about 0. */
  readonly resolutionMs: number;
  /** How late the monitor's timer fired at worst: the loop was blocked at least this long, at most `resolutionMs` more. */
  readonly delayMaxMs: number;
  readonly delayP99Ms: number;
  readonly delayMeanMs: number;
  /** Timer firings in the window. */
  readonly samples: number;
  /** Resets since the node started (the first window is 0): a reader sees whether another one reset it meanwhile. */
  readonly window: number;
  /** How long the window has been open. */
  readonly windowMs: number;
}

const NS_PER_MS = 1e6;

export class EventLoopMonitor {
  readonly #resolutionMs: number;
  readonly #histogram: IntervalHistogram;
  #window = 0;
  #windowStart: number;

  /** `runtime`: the clock the window is timed with (the delay itself is the real event loop's). */
  constructor(
    resolutionMs: number,
    readonly runtime: Runtime = systemRuntime,
  ) {
    this.#windowStart = runtime.elapsed();
    if (!Number.isInteger(resolutionMs) || resolutionMs < 1) {
      throw new RangeError(`event-loop resolution must be an integer >= 1 ms: ${resolutionMs}`);
    }
    this.#resolutionMs = resolutionMs;
    this.#histogram = monitorEventLoopDelay({ resolution: resolutionMs });
    this.#histogram.enable();
  }

  /**
   * The current window's figures; with `reset`, a new window starts after them. Node skips the
   * first interval after a reset, so a stall that begins within `resolutionMs` of one is not
   * counted in either window.
   */
  read(reset: boolean): EventLoopDelay {
    const h = this.#histogram;
    const late = (ns: number) =>
      h.count === 0 ? 0 : round(Math.max(0, ns / NS_PER_MS - this.#resolutionMs));
    const figures: EventLoopDelay = {
      resolutionMs: this.#resolutionMs,
      delayMaxMs: late(h.max),
      delayP99Ms: late(h.percentile(99)),
      delayMeanMs: late(h.mean),
      samples: h.count,
      window: this.#window,
      windowMs: Math.round(this.runtime.elapsed() - this.#windowStart),
    };
    if (reset) {
      h.reset();
      this.#window++;
      this.#windowStart = this.runtime.elapsed();
    }
    return figures;
  }

  close(): void {
    this.#histogram.disable();
  }
}

const round = (ms: number) => Math.round(ms * 10) / 10;
