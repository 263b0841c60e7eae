import { parentPort, workerData } from "node:worker_threads";
import { Registry } from "prom-client";
import { createCore } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import {
  type EventListener,
  type LedgerRead,
  type ListenerContext,
  loadPlugin,
  readLedger,
  readSummary,
} from "../events/index.js";
import { StateStore } from "../execution/state-store.js";
import type { LeadershipListener } from "../host/index.js";
import { systemRuntime } from "../runtime.js";
import { openEnvironment } from "../storage/index.js";
import type { HostToWorker, WireError, WorkerSpec, WorkerToHost } from "./listener-protocol.js";

/**
 * A worker thread that runs one listener plugin (DESIGN.md, "The event ledger and plugins").
 * The plugin cannot take the node down: an exception that escapes it ends this thread only, and
 * the host restarts it with backoff. It reads the ledger from the state environment opened
 * read-only, so delivery costs the node's thread only a message per appended batch.
 */

/** How long a call to the host (the checkpoint read, a checkpoint) may take before it fails. */
const HOST_CALL_TIMEOUT_MS = 15_000;
/** Calls to the host in flight at most; a plugin that checkpoints faster waits for the rejection. */
const HOST_CALLS_MAX = 64;

const port = parentPort;
if (!port) throw new Error("listener-worker-main.ts runs as a worker thread");
const spec = workerData as WorkerSpec;
const send = (message: WorkerToHost): void => port.postMessage(message);
const wire = (error: unknown): WireError =>
  error instanceof MetaraftError
    ? { code: error.code, message: error.message }
    : { code: "MR_ERR_INTERNAL", message: error instanceof Error ? error.message : String(error) };

const env = openEnvironment(spec.stateDir, { readOnly: true });
const store = StateStore.open(env);
const core = createCore({ mode: spec.coreMode });

const appended = new Set<(lastTxid: number) => void>();
const leadershipListeners = new Set<LeadershipListener>();
let leadership: { term: number; ready: boolean } = { term: 0, ready: false };

let nextCall = 1;
const calls = new Map<number, { resolve: (value: number) => void; reject: (error: Error) => void }>();
function call(
  message: { method: "readCheckpoint" } | { method: "checkpoint"; txid: number },
): Promise<number> {
  if (calls.size >= HOST_CALLS_MAX) {
    return Promise.reject(
      new MetaraftError("MR_ERR_UNAVAILABLE", `${HOST_CALLS_MAX} calls to the host in flight`),
    );
  }
  const id = nextCall++;
  return new Promise<number>((resolve, reject) => {
    const timer = systemRuntime.after(HOST_CALL_TIMEOUT_MS, () => {
      calls.delete(id);
      reject(new MetaraftError("MR_ERR_TIMEOUT", `the host did not answer ${message.method}`));
    });
    calls.set(id, {
      resolve: (value) => {
        timer.cancel();
        resolve(value);
      },
      reject: (error) => {
        timer.cancel();
        reject(error);
      },
    });
    send({ kind: "call", id, ...message });
  });
}

const context: ListenerContext = {
  name: spec.name,
  ledger: {
    read: async (afterTxid: number, limit: number): Promise<LedgerRead> => {
      const read = readLedger(store, core.sync, afterTxid, limit);
      return read.missed
        ? { events: read.events, firstTxid: read.firstTxid, lastTxid: read.lastTxid, missed: read.missed }
        : { events: read.events, firstTxid: read.firstTxid, lastTxid: read.lastTxid };
    },
    onAppended(fn) {
      appended.add(fn);
      return () => appended.delete(fn);
    },
  },
  leadership: {
    subscribe(listener) {
      leadershipListeners.add(listener);
      // As the node's own interface does: a listener that joins under a ready leader is told at once.
      if (leadership.ready) listener.leaderReady?.(leadership.term);
      return () => leadershipListeners.delete(listener);
    },
  },
  readCheckpoint: () => call({ method: "readCheckpoint" }),
  checkpoint: async (txid) => {
    await call({ method: "checkpoint", txid });
  },
  runtime: systemRuntime,
  metrics: new Registry(),
  log: {
    info: (message, fields) =>
      send({ kind: "log", severity: "info", message, ...(fields ? { fields } : {}) }),
    warn: (message, fields) =>
      send({ kind: "log", severity: "warn", message, ...(fields ? { fields } : {}) }),
    error: (message, fields) =>
      send({ kind: "log", severity: "error", message, ...(fields ? { fields } : {}) }),
  },
};
context.metrics.setDefaultLabels({ listener: spec.name });

let plugin: EventListener | undefined;

/**
 * The node announces a batch when it applies it, which is before its LMDB commit is visible to
 * this thread's reads: told at once, a plugin would read nothing and sleep until its poll (1 s
 * by default; a benchmark at light load saw exactly that). So the plugin is woken only once the
 * ledger read here has reached the announced txid, checking again every `VISIBLE_CHECK_MS`.
 */
const VISIBLE_CHECK_MS = 2;
let announced = 0;
let checking = false;
function announce(lastTxid: number): void {
  announced = Math.max(announced, lastTxid);
  if (!checking) checkVisible();
}
function checkVisible(): void {
  const visible = readSummary(store).lastTxid;
  if (visible >= announced) {
    checking = false;
    for (const fn of appended) fn(visible);
    return;
  }
  checking = true;
  systemRuntime.after(VISIBLE_CHECK_MS, checkVisible);
}

port.on("message", (message: HostToWorker) => {
  switch (message.kind) {
    case "leaderReady":
      leadership = { term: message.term, ready: true };
      for (const l of leadershipListeners) l.leaderReady?.(message.term);
      return;
    case "notLeader":
      leadership = { term: message.term, ready: false };
      for (const l of leadershipListeners) l.notLeader?.(message.term);
      return;
    case "leaderChanged":
      for (const l of leadershipListeners) l.leaderChanged?.(message.term, message.leader);
      return;
    case "appended":
      announce(message.lastTxid);
      return;
    case "reply": {
      const waiting = calls.get(message.id);
      calls.delete(message.id);
      if (!waiting) return;
      if (message.error) waiting.reject(MetaraftError.fromJSON(message.error));
      else waiting.resolve(message.value ?? 0);
      return;
    }
    case "status":
      send({ kind: "status", id: message.id, status: plugin?.status?.() ?? null });
      return;
    case "metrics":
      context.metrics.getMetricsAsJSON().then(
        (metrics) => send({ kind: "metrics", id: message.id, metrics }),
        () => send({ kind: "metrics", id: message.id, metrics: [] }),
      );
      return;
    case "stop":
      Promise.resolve(plugin?.stop())
        .catch(() => undefined)
        .finally(async () => {
          await env.close().catch(() => undefined);
          send({ kind: "stopped" });
        });
      return;
  }
});

try {
  plugin = await loadPlugin(
    { name: spec.name, module: spec.module, options: spec.options },
    { baseDir: spec.baseDir },
  );
  await plugin.init(context, spec.options);
  await plugin.start();
  // The summary is read once here so a plugin that starts under a long ledger sees the tail at once.
  const tail = readSummary(store).lastTxid;
  if (tail > 0) for (const fn of appended) fn(tail);
  send({ kind: "started", version: plugin.version });
} catch (error) {
  send({ kind: "failed", error: wire(error) });
}
