import { Worker } from "node:worker_threads";
import type { CoreMode } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type { ListenerRecord, ListenerRunner, ListenerStatus } from "../events/index.js";
import type { LeadershipListener } from "../host/index.js";
import type { Runtime, Timer } from "../runtime.js";
import type { TransportLogger } from "../transport/index.js";
import type { HostToWorker, WireError, WorkerSpec, WorkerToHost } from "./listener-protocol.js";

/**
 * Runs the listener plugins of one runner (`node`: inside the node; `process`: in `metaraft
 * listeners run`), each in its own worker thread, while the node it serves is the ready leader.
 * It follows the replicated registry: a listener added, removed, stopped, started, changed or
 * restarted there is started, stopped or restarted here within `reconcileMs`, with no restart
 * of the node. A plugin that fails (throws from `init` or `start`, lets an exception escape,
 * runs out of its heap) is restarted with exponential backoff; one that hangs is terminated.
 */

/** What the host needs from the node it serves; the node and the separate runner each make one. */
export interface ListenerHostLink {
  /** The node's `state/` environment: each worker opens it read-only. */
  readonly stateDir: string;
  readonly baseDir: string;
  readonly coreMode: CoreMode;
  readonly leadership: { subscribe(listener: LeadershipListener): () => void };
  /** The registry as applied here. */
  registry(): readonly ListenerRecord[];
  /** A listener's replicated checkpoint as applied here (read once this node leads and is ready). */
  readCheckpoint(name: string): number;
  /** Replicates a listener's checkpoint (through the log: a new leader resumes after it). */
  checkpoint(name: string, txid: number): Promise<void>;
  /** Called each time this node becomes the ready leader, before the registry is read (seeding declared listeners). */
  onLeading?(): Promise<void>;
}

export interface ListenerHostOptions {
  readonly runner: ListenerRunner;
  readonly runtime: Runtime;
  readonly logger?: TransportLogger;
  readonly reconcileMs?: number;
  readonly restartInitialMs?: number;
  readonly restartMaxMs?: number;
  readonly stopTimeoutMs?: number;
  readonly workerHeapMb?: number;
}

export const LISTENER_HOST_DEFAULTS = {
  /** How often the registry is compared with what runs (and how soon a change takes effect). */
  reconcileMs: 250,
  /** The first restart after a failure; it doubles per failure in a row, with jitter. */
  restartInitialMs: 100,
  restartMaxMs: 30_000,
  /** A worker that ran this long before failing starts its backoff over. */
  restartStableMs: 60_000,
  /** How long a plugin's `stop` may take before its thread is terminated. */
  stopTimeoutMs: 5_000,
  /** A status or metrics query to a worker that does not answer in this long finds it unresponsive. */
  queryTimeoutMs: 1_000,
  /** Each plugin's old-space heap: a leaking plugin dies alone (and is restarted), the node does not. */
  workerHeapMb: 256,
} as const;

const WORKER_URL = new URL("./listener-worker-main.js", import.meta.url);

export type HostedState = "starting" | "running" | "backoff" | "stopping";

/** One listener as its host sees it: the thread's state, plus the plugin's own status. */
export interface HostedStatus {
  readonly name: string;
  readonly runner: ListenerRunner;
  readonly host: HostedState;
  readonly version?: string;
  readonly restarts: number;
  readonly lastError?: string;
  /** From the plugin (`status()`); `null` if it has none or did not answer. */
  readonly plugin: ListenerStatus | null;
}

interface Slot {
  record: ListenerRecord;
  worker: Worker | undefined;
  state: HostedState;
  version?: string;
  restarts: number;
  failuresInRow: number;
  startedAt: number;
  lastError?: string;
  backoff?: Timer;
  /** Set once the slot is removed: its worker's exit starts nothing. */
  retired: boolean;
  queries: Map<number, (value: unknown) => void>;
}

export class ListenerHost {
  readonly #link: ListenerHostLink;
  readonly #options: Required<Omit<ListenerHostOptions, "logger">> & { logger?: TransportLogger };
  readonly #slots = new Map<string, Slot>();
  /** Slots being stopped: still shown (`stopping`) until their thread has ended. */
  readonly #retiring = new Set<Slot>();
  #leading: { term: number } | undefined;
  #unsubscribe: (() => void) | undefined;
  #reconcile: Timer | undefined;
  #appended = 0;
  #appendScheduled = false;
  #nextQuery = 1;
  #closed = false;

  constructor(link: ListenerHostLink, options: ListenerHostOptions) {
    this.#link = link;
    this.#options = {
      reconcileMs: LISTENER_HOST_DEFAULTS.reconcileMs,
      restartInitialMs: LISTENER_HOST_DEFAULTS.restartInitialMs,
      restartMaxMs: LISTENER_HOST_DEFAULTS.restartMaxMs,
      stopTimeoutMs: LISTENER_HOST_DEFAULTS.stopTimeoutMs,
      workerHeapMb: LISTENER_HOST_DEFAULTS.workerHeapMb,
      ...options,
    };
  }

  start(): void {
    this.#unsubscribe = this.#link.leadership.subscribe({
      leaderReady: (term) => {
        this.#leading = { term };
        this.#broadcast({ kind: "leaderReady", term });
        const onLeading = this.#link.onLeading?.();
        if (onLeading) {
          onLeading.then(
            () => this.reconcile(),
            (error: unknown) => {
              this.#options.logger?.warn(
                { error: String(error) },
                "could not register the declared listeners",
              );
              this.reconcile();
            },
          );
        } else this.reconcile();
      },
      notLeader: (term) => {
        this.#leading = undefined;
        // Told first, so each plugin stops delivering at once, even if its thread is slow to go.
        this.#broadcast({ kind: "notLeader", term });
        this.reconcile();
      },
      leaderChanged: (term, leader) => this.#broadcast({ kind: "leaderChanged", term, leader }),
    });
    this.#reconcile = this.#options.runtime.every(this.#options.reconcileMs, () => this.reconcile()).unref();
  }

  /** The ledger grew to `lastTxid`: wakes the plugins (once per turn, however many batches applied). */
  appended(lastTxid: number): void {
    this.#appended = lastTxid;
    if (this.#appendScheduled || this.#slots.size === 0) return;
    this.#appendScheduled = true;
    this.#options.runtime.defer(() => {
      this.#appendScheduled = false;
      this.#broadcast({ kind: "appended", lastTxid: this.#appended });
    });
  }

  /** Makes what runs match the registry (and this node's leadership). */
  reconcile(): void {
    if (this.#closed) return;
    const wanted = new Map<string, ListenerRecord>();
    if (this.#leading) {
      for (const record of this.#link.registry()) {
        if (record.enabled && record.runner === this.#options.runner) wanted.set(record.name, record);
      }
    }
    for (const [name, slot] of this.#slots) {
      const record = wanted.get(name);
      if (!record) {
        this.#retire(slot);
        this.#slots.delete(name);
      } else if (changed(slot.record, record)) {
        // A new module, new options or `listeners restart`: a fresh thread, a fresh backoff.
        this.#retire(slot);
        this.#slots.delete(name);
      }
    }
    for (const [name, record] of wanted) {
      if (!this.#slots.has(name)) this.#spawn(this.#newSlot(record));
    }
  }

  async statuses(): Promise<HostedStatus[]> {
    return Promise.all(
      [...this.#slots.values(), ...this.#retiring].map(async (slot) => ({
        name: slot.record.name,
        runner: this.#options.runner,
        host: slot.state,
        ...(slot.version ? { version: slot.version } : {}),
        restarts: slot.restarts,
        ...(slot.lastError ? { lastError: slot.lastError } : {}),
        plugin:
          slot.state === "running" ? ((await this.#query(slot, "status")) as ListenerStatus | null) : null,
      })),
    );
  }

  /** Every running plugin's metrics (prom-client's JSON), for the node to report with its own. */
  async metrics(): Promise<unknown[][]> {
    const running = [...this.#slots.values()].filter((s) => s.state === "running");
    const all = await Promise.all(running.map((slot) => this.#query(slot, "metrics")));
    return all.filter((m): m is unknown[] => Array.isArray(m));
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    this.#reconcile?.cancel();
    await Promise.all([...this.#slots.values()].map((slot) => this.#retire(slot)));
    this.#slots.clear();
  }

  #newSlot(record: ListenerRecord): Slot {
    const slot: Slot = {
      record,
      worker: undefined,
      state: "starting",
      restarts: 0,
      failuresInRow: 0,
      startedAt: 0,
      retired: false,
      queries: new Map(),
    };
    this.#slots.set(record.name, slot);
    return slot;
  }

  #spawn(slot: Slot): void {
    const { record } = slot;
    const spec: WorkerSpec = {
      name: record.name,
      module: record.module,
      options: record.options,
      stateDir: this.#link.stateDir,
      baseDir: this.#link.baseDir,
      coreMode: this.#link.coreMode,
    };
    slot.state = "starting";
    slot.startedAt = this.#options.runtime.elapsed();
    const worker = new Worker(WORKER_URL, {
      workerData: spec,
      resourceLimits: { maxOldGenerationSizeMb: this.#options.workerHeapMb },
      // The plugin's output is the node's: it reaches the node's stdout and stderr, not a pipe.
      stdout: false,
      stderr: false,
    });
    slot.worker = worker;
    worker.on("message", (message: WorkerToHost) => this.#onMessage(slot, worker, message));
    worker.on("error", (error) => {
      slot.lastError = `${error.name}: ${error.message}`;
    });
    worker.on("exit", (code) => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      for (const answer of slot.queries.values()) answer(null);
      slot.queries.clear();
      if (slot.retired || this.#closed) return;
      slot.lastError ??= `the worker exited with code ${code}`;
      this.#failed(slot);
    });
  }

  #onMessage(slot: Slot, worker: Worker, message: WorkerToHost): void {
    switch (message.kind) {
      case "started":
        slot.state = "running";
        slot.version = message.version;
        this.#options.logger?.info(
          { listener: slot.record.name, version: message.version, runner: this.#options.runner },
          "listener started",
        );
        if (this.#leading) this.#post(worker, { kind: "leaderReady", term: this.#leading.term });
        if (this.#appended > 0) this.#post(worker, { kind: "appended", lastTxid: this.#appended });
        return;
      case "failed":
        slot.lastError = `${message.error.code}: ${message.error.message}`;
        // The exit handler schedules the restart.
        void worker.terminate();
        return;
      case "call":
        this.#answer(worker, message);
        return;
      case "log": {
        const fields = { listener: slot.record.name, ...message.fields };
        const log = this.#options.logger;
        if (message.severity === "error") {
          slot.lastError = message.message;
          log?.error(fields, message.message);
        } else if (message.severity === "warn") log?.warn(fields, message.message);
        else log?.info(fields, message.message);
        return;
      }
      case "status":
      case "metrics": {
        const answer = slot.queries.get(message.id);
        slot.queries.delete(message.id);
        answer?.(message.kind === "status" ? message.status : message.metrics);
        return;
      }
      case "stopped":
        return;
    }
  }

  #answer(worker: Worker, message: Extract<WorkerToHost, { kind: "call" }>): void {
    const reply = (value: number | undefined, error?: unknown): void =>
      this.#post(worker, {
        kind: "reply",
        id: message.id,
        ...(value === undefined ? {} : { value }),
        ...(error === undefined ? {} : { error: wire(error) }),
      });
    const name = this.#nameOf(worker);
    if (name === undefined) return;
    if (!this.#leading) {
      reply(undefined, new MetaraftError("MR_ERR_NOT_LEADER", "this node no longer leads"));
      return;
    }
    if (message.method === "readCheckpoint") {
      try {
        reply(this.#link.readCheckpoint(name));
      } catch (error) {
        reply(undefined, error);
      }
      return;
    }
    this.#link.checkpoint(name, message.txid).then(
      () => reply(message.txid),
      (error: unknown) => reply(undefined, error),
    );
  }

  #nameOf(worker: Worker): string | undefined {
    for (const slot of this.#slots.values()) if (slot.worker === worker) return slot.record.name;
    return undefined;
  }

  #failed(slot: Slot): void {
    const ranMs = this.#options.runtime.elapsed() - slot.startedAt;
    if (ranMs >= LISTENER_HOST_DEFAULTS.restartStableMs) slot.failuresInRow = 0;
    const base = Math.min(
      this.#options.restartMaxMs,
      this.#options.restartInitialMs * 2 ** Math.min(slot.failuresInRow, 30),
    );
    slot.failuresInRow++;
    slot.restarts++;
    slot.state = "backoff";
    // Jitter, so that plugins failing together do not restart together.
    const delayMs = Math.round(base * (0.5 + this.#options.runtime.random() / 2));
    this.#options.logger?.warn(
      { listener: slot.record.name, error: slot.lastError, restartInMs: delayMs, restarts: slot.restarts },
      "listener failed; restarting",
    );
    slot.backoff = this.#options.runtime
      .after(delayMs, () => {
        slot.backoff = undefined;
        if (!slot.retired && !this.#closed) this.#spawn(slot);
      })
      .unref();
  }

  /** Stops a slot's plugin (its `stop`, bounded by stopTimeoutMs) and ends its thread. */
  async #retire(slot: Slot): Promise<void> {
    slot.retired = true;
    slot.backoff?.cancel();
    const worker = slot.worker;
    if (!worker) return;
    slot.state = "stopping";
    this.#retiring.add(slot);
    await new Promise<void>((resolve) => {
      const timer = this.#options.runtime.after(this.#options.stopTimeoutMs, () => resolve());
      worker.on("message", (message: WorkerToHost) => {
        if (message.kind === "stopped") {
          timer.cancel();
          resolve();
        }
      });
      worker.once("exit", () => {
        timer.cancel();
        resolve();
      });
      this.#post(worker, { kind: "stop" });
    });
    await worker.terminate();
    this.#retiring.delete(slot);
  }

  #query(slot: Slot, kind: "status" | "metrics"): Promise<unknown> {
    const worker = slot.worker;
    if (!worker) return Promise.resolve(null);
    const id = this.#nextQuery++;
    return new Promise((resolve) => {
      const timer = this.#options.runtime.after(LISTENER_HOST_DEFAULTS.queryTimeoutMs, () => {
        slot.queries.delete(id);
        resolve(null);
      });
      slot.queries.set(id, (value) => {
        timer.cancel();
        resolve(value);
      });
      this.#post(worker, { kind, id });
    });
  }

  #broadcast(message: HostToWorker): void {
    for (const slot of this.#slots.values()) {
      if (slot.worker && slot.state === "running") this.#post(slot.worker, message);
    }
  }

  #post(worker: Worker, message: HostToWorker): void {
    try {
      worker.postMessage(message);
    } catch {
      // A worker that is exiting: its exit handler takes over.
    }
  }
}

function changed(a: ListenerRecord, b: ListenerRecord): boolean {
  return (
    a.module !== b.module ||
    a.generation !== b.generation ||
    a.runner !== b.runner ||
    JSON.stringify(a.options) !== JSON.stringify(b.options)
  );
}

function wire(error: unknown): WireError {
  return error instanceof MetaraftError
    ? { code: error.code, message: error.message }
    : { code: "MR_ERR_INTERNAL", message: error instanceof Error ? error.message : String(error) };
}
