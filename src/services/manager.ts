import { MetaraftError } from "../errors.js";
import type { Leadership } from "../host/index.js";
import type { Runtime, Timer } from "../runtime.js";
import type { Service, ServiceRun, ServiceState, ServiceStatus } from "./service.js";

/** Services one node's manager holds at most. */
export const SERVICES_PER_NODE_MAX = 64;
/** Runs of each service kept for `service ls` (and for tests of who ran when). */
export const SERVICE_RUNS_KEPT = 16;

export const SERVICE_MANAGER_DEFAULTS = {
  /** How often `shouldRun` is asked again (a `service start|stop` takes effect within it). */
  reconcileMs: 250,
  /** After a start that threw, the next try waits this long, doubling to `retryMaxMs`. */
  retryInitialMs: 500,
  retryMaxMs: 30_000,
} as const;

interface Entry {
  readonly service: Service;
  state: ServiceState;
  /** A start or stop in progress: the next change waits for it. */
  busy: Promise<void> | undefined;
  since?: number;
  lastError?: string;
  failures: number;
  retryAt: number;
  runs: ServiceRun[];
}

/**
 * Starts and stops the node's services as leadership changes (Ozone's `OMServiceManager`):
 * every service is told of each change; a service runs only while this node is the ready
 * leader (its term's no-op applied) and it says it should; `notLeader` stops every one at
 * once. A start that throws is retried with backoff; nothing a service throws stops the node.
 */
export class ServiceManager {
  readonly #leadership: Leadership;
  readonly #runtime: Runtime;
  readonly #nodeId: number;
  readonly #entries = new Map<string, Entry>();
  #unsubscribe: (() => void) | undefined;
  #timer: Timer | undefined;
  #closed = false;

  constructor(parts: { leadership: Leadership; runtime: Runtime; nodeId: number }) {
    this.#leadership = parts.leadership;
    this.#runtime = parts.runtime;
    this.#nodeId = parts.nodeId;
  }

  register(service: Service): void {
    if (this.#entries.has(service.name)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `a service named ${service.name} is registered already`,
      );
    }
    if (this.#entries.size >= SERVICES_PER_NODE_MAX) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `${SERVICES_PER_NODE_MAX} services are registered already`,
      );
    }
    this.#entries.set(service.name, {
      service,
      state: "stopped",
      busy: undefined,
      failures: 0,
      retryAt: 0,
      runs: [],
    });
  }

  get(name: string): Service | undefined {
    return this.#entries.get(name)?.service;
  }

  start(): void {
    const notify = (): void => {
      const state = this.#leadership.state;
      for (const entry of this.#entries.values()) {
        try {
          entry.service.notifyStatusChanged(state);
        } catch (error) {
          entry.lastError = String(error);
        }
      }
      this.reconcile();
    };
    this.#unsubscribe = this.#leadership.subscribe({
      leaderReady: notify,
      notLeader: notify,
      leaderChanged: notify,
    });
    this.#timer = this.#runtime.every(SERVICE_MANAGER_DEFAULTS.reconcileMs, () => this.reconcile()).unref();
  }

  /** Starts what should run here and stops what should not. */
  reconcile(): void {
    if (this.#closed) return;
    const ready = this.#leadership.ready;
    for (const entry of this.#entries.values()) {
      let want = false;
      if (ready) {
        try {
          want = entry.service.shouldRun();
        } catch (error) {
          entry.lastError = String(error);
        }
      }
      if (want && entry.state !== "running" && this.#runtime.now() >= entry.retryAt) this.#start(entry);
      else if (!want && entry.state === "running") this.#stop(entry);
    }
  }

  statuses(): ServiceStatus[] {
    return [...this.#entries.values()].map((entry) => {
      const report = entry.service.report?.();
      let shouldRun = false;
      try {
        shouldRun = entry.service.shouldRun();
      } catch {
        // Reported through lastError by reconcile.
      }
      const runs = entry.runs.map((run, i) =>
        i === entry.runs.length - 1 && entry.state === "running" && report?.lastActiveAt !== undefined
          ? { ...run, lastActiveAt: report.lastActiveAt }
          : run,
      );
      const lastError = report?.lastError ?? entry.lastError;
      return {
        name: entry.service.name,
        state: entry.state,
        shouldRun,
        ...(entry.state === "running" ? { node: this.#nodeId } : {}),
        ...(entry.since === undefined ? {} : { since: entry.since }),
        ...(lastError ? { lastError } : {}),
        ...(report?.progress === undefined ? {} : { progress: report.progress }),
        runs,
      };
    });
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#timer?.cancel();
    await Promise.all([...this.#entries.values()].map((e) => e.busy));
    await Promise.all(
      [...this.#entries.values()].filter((e) => e.state === "running").map((e) => this.#stop(e)),
    );
  }

  #start(entry: Entry): void {
    if (entry.busy) return;
    const term = this.#leadership.state.term;
    entry.state = "running";
    entry.since = this.#runtime.now();
    entry.runs.push({ term, startedAt: entry.since });
    if (entry.runs.length > SERVICE_RUNS_KEPT) entry.runs.shift();
    const starting: Promise<void> = Promise.resolve()
      .then(() => entry.service.start())
      .then(
        () => {
          entry.failures = 0;
          entry.lastError = undefined;
        },
        (error: unknown) => {
          entry.lastError = error instanceof Error ? error.message : String(error);
          entry.failures++;
          const backoff = Math.min(
            SERVICE_MANAGER_DEFAULTS.retryMaxMs,
            SERVICE_MANAGER_DEFAULTS.retryInitialMs * 2 ** Math.min(entry.failures - 1, 20),
          );
          entry.retryAt = this.#runtime.now() + backoff;
          this.#endRun(entry, "failed");
          // A half-started service is stopped, so it holds no timers.
          return Promise.resolve(entry.service.stop()).catch(() => undefined);
        },
      )
      .finally(() => {
        if (entry.busy === starting) entry.busy = undefined;
        // Leadership may have gone while it started.
        if (entry.state === "running" && !this.#leadership.ready) this.#stop(entry);
      });
    entry.busy = starting;
  }

  #stop(entry: Entry): Promise<void> {
    const previous = entry.busy ?? Promise.resolve();
    this.#endRun(entry, "stopped");
    const stopping = previous
      .then(() => entry.service.stop())
      .catch((error: unknown) => {
        entry.lastError = error instanceof Error ? error.message : String(error);
      })
      .finally(() => {
        if (entry.busy === stopping) entry.busy = undefined;
      });
    entry.busy = stopping;
    return stopping;
  }

  #endRun(entry: Entry, state: ServiceState): void {
    entry.state = state;
    entry.since = this.#runtime.now();
    const run = entry.runs.at(-1);
    if (run && run.stoppedAt === undefined) {
      const lastActiveAt = entry.service.report?.().lastActiveAt;
      entry.runs[entry.runs.length - 1] = {
        ...run,
        stoppedAt: entry.since,
        ...(lastActiveAt === undefined ? {} : { lastActiveAt }),
      };
    }
  }
}
