/**
 * The clock, the timers and the random source, as one value passed in. Production passes
 * `systemRuntime`; the simulator passes a virtual one, so the same host, write path and
 * namespace run under a seed and replay exactly (FoundationDB's and TigerBeetle's way). Nothing
 * under `src/` but this file and the process entry points (`src/cli/`, `*-main.ts`) touches
 * `Date.now`, `performance.now`, `Math.random` or the timer functions; `test/runtime.test.ts`
 * checks that.
 */

/** A scheduled callback; cancelling one that already ran (or was cancelled) does nothing. */
export interface Timer {
  cancel(): void;
  /** This timer alone does not keep the process alive (Node's `unref`); returns the timer. */
  unref(): Timer;
}

export interface Runtime {
  /** Wall-clock milliseconds since the epoch: stamps (key times, expiry) and deadlines. */
  now(): number;
  /** Monotonic milliseconds from an arbitrary origin, fractional: durations in stats. */
  elapsed(): number;
  /** In [0, 1). */
  random(): number;
  /** Runs `fn` once after `ms`. */
  after(ms: number, fn: () => void): Timer;
  /** Runs `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): Timer;
  /** Runs `fn` in a later turn of the event loop, after the I/O that is ready now. */
  defer(fn: () => void): void;
  /**
   * FoundationDB's BUGGIFY: a fault point in production code (`"host.save.slow"`) asks whether
   * to take its rare but legal path now. Absent in production, so never; the simulator answers
   * from its seed, so the paths that timing alone seldom takes are taken often.
   */
  buggify?(point: string): boolean;
}

export const systemRuntime: Runtime = {
  now: () => Date.now(),
  elapsed: () => performance.now(),
  random: () => Math.random(),
  after(ms, fn) {
    return nodeTimer(setTimeout(fn, ms));
  },
  every(ms, fn) {
    return nodeTimer(setInterval(fn, ms));
  },
  defer(fn) {
    setImmediate(fn);
  },
};

function nodeTimer(handle: NodeJS.Timeout): Timer {
  const timer: Timer = {
    // clearTimeout clears intervals too.
    cancel: () => clearTimeout(handle),
    unref: () => {
      handle.unref();
      return timer;
    },
  };
  return timer;
}

/** Resolves after `ms` on `runtime`'s clock. */
export function sleep(runtime: Runtime, ms: number): Promise<void> {
  return new Promise((resolve) => runtime.after(ms, resolve));
}

/** Resolves in a later turn of `runtime`'s event loop. */
export function nextTurn(runtime: Runtime): Promise<void> {
  return new Promise((resolve) => runtime.defer(resolve));
}
