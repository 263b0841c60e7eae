import type { Runtime, Timer } from "../../../src/runtime.js";
import { MinHeap } from "../heap.js";

interface Event {
  readonly time: number;
  readonly seq: number;
  readonly fn: () => void;
  cancelled: boolean;
}

/**
 * A virtual clock and timer queue: the production host, write path and namespace take this as
 * their `Runtime`, so one seed replays a whole run. Events run one at a time in (time, order of
 * scheduling); after each, every promise chain it started settles before the next event (a real
 * turn of the event loop, with no timers or I/O of its own), as Node runs microtasks after each
 * macrotask.
 */
export class SimRuntime implements Runtime {
  #now = 0;
  #seq = 0;
  readonly #heap = new MinHeap<Event>(before);
  /** Events run so far (a bound on a run's work, and a statistic). */
  events = 0;
  /** Fault points this run may fire, each with its chance; how often each fired. */
  readonly buggified = new Map<string, number>();
  #buggifyChance = new Map<string, number>();

  constructor(
    readonly random: () => number,
    /** Wall-clock time at virtual time 0. */
    readonly epochMs = 1_800_000_000_000,
  ) {}

  /** Enables each of `points` with chance 1/2 for the whole run, firing 5-30% of the times it is asked. */
  enableBuggify(points: readonly string[]): void {
    for (const point of points) {
      if (this.random() < 0.5) this.#buggifyChance.set(point, 0.05 + this.random() * 0.25);
    }
  }

  buggify(point: string): boolean {
    const chance = this.#buggifyChance.get(point);
    if (chance === undefined || this.random() >= chance) return false;
    this.buggified.set(point, (this.buggified.get(point) ?? 0) + 1);
    return true;
  }

  now(): number {
    return this.epochMs + this.#now;
  }

  elapsed(): number {
    return this.#now;
  }

  /** Virtual milliseconds since the start. */
  get time(): number {
    return this.#now;
  }

  after(ms: number, fn: () => void): Timer {
    const event = this.#push(this.#now + Math.max(0, ms), fn);
    const timer: Timer = {
      cancel: () => {
        event.cancelled = true;
      },
      unref: () => timer,
    };
    return timer;
  }

  every(ms: number, fn: () => void): Timer {
    let current: Event | undefined;
    let cancelled = false;
    const period = Math.max(1, ms);
    const schedule = () => {
      current = this.#push(this.#now + period, () => {
        if (cancelled) return;
        schedule();
        fn();
      });
    };
    schedule();
    const timer: Timer = {
      cancel: () => {
        cancelled = true;
        if (current) current.cancelled = true;
      },
      unref: () => timer,
    };
    return timer;
  }

  defer(fn: () => void): void {
    this.#push(this.#now, fn);
  }

  /** Runs every event due up to `until` (virtual ms), then sets the clock there. */
  async runUntil(until: number, eventsMax = Number.POSITIVE_INFINITY): Promise<void> {
    while (this.#heap.size > 0 && this.#heap.peek()!.time <= until) {
      const event = this.#heap.pop()!;
      if (event.cancelled) continue;
      this.#now = event.time;
      this.events++;
      if (this.events > eventsMax) throw new Error(`more than ${eventsMax} events: a livelock?`);
      event.fn();
      // Let every promise chain this event started settle: a real turn with nothing else queued.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.#now = Math.max(this.#now, until);
  }

  #push(time: number, fn: () => void): Event {
    const event: Event = { time, seq: this.#seq++, fn, cancelled: false };
    this.#heap.push(event);
    return event;
  }
}

const before = (a: Event, b: Event): boolean => a.time < b.time || (a.time === b.time && a.seq < b.seq);
