import { randomUUID } from "node:crypto";
import { AggregatorRegistry, Gauge, Registry } from "prom-client";
import type { CoreMode } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import {
  BUILTIN_PLUGINS,
  type LedgerSummary,
  type ListenerContext,
  type ListenerDeclaration,
  type ListenerRecord,
  listListeners,
  readListener,
  readSummary,
} from "../events/index.js";
import type { WritePipeline } from "../execution/pipeline.js";
import type { StateStore } from "../execution/state-store.js";
import type { Leadership } from "../host/index.js";
import type { Runtime } from "../runtime.js";
import type { TransportLogger } from "../transport/index.js";
import { type HostedStatus, ListenerHost } from "./listener-host.js";

/**
 * A node's side of the listener plugins: the host that runs the `node` runner's plugins in
 * worker threads, the declared listeners it registers when it leads, what `metaraft listeners
 * ls` shows (its own plugins and those the separate runner reports), and the node's metrics
 * with every plugin's.
 */

export interface NodeListenersParts {
  readonly nodeId: number;
  readonly stateDir: string;
  readonly baseDir: string;
  readonly coreMode: CoreMode;
  readonly store: StateStore;
  readonly pipeline: WritePipeline;
  readonly leadership: Leadership;
  readonly runtime: Runtime;
  readonly declared: readonly ListenerDeclaration[];
  readonly logger?: TransportLogger;
}

/** A runner's report is shown for this long; after that its listeners show as `unreported`. */
export const RUNNER_REPORT_TTL_MS = 5_000;
/** Listener statuses in one report at most (one per registered listener). */
const REPORT_STATUSES_MAX = 256;
/** Bytes of one report's metrics at most (MessagePack-decoded JSON; counted as its length in JSON). */
const REPORT_METRICS_BYTES_MAX = 1024 * 1024;

/** One row of `metaraft listeners ls`. */
export interface ListenerRow {
  readonly name: string;
  readonly module: string;
  readonly runner: ListenerRecord["runner"];
  readonly enabled: boolean;
  /** `stopped` (disabled), `unreported` (its runner is not reporting), else the host's or the plugin's state. */
  readonly state: string;
  readonly version?: string;
  readonly checkpoint: number;
  readonly checkpointTime: number;
  readonly delivered: number;
  readonly lagTxids: number;
  readonly lagMs: number;
  readonly errors: number;
  readonly restarts: number;
  readonly lastError?: string;
}

interface RunnerReport {
  readonly at: number;
  readonly statuses: HostedStatus[];
  readonly metrics: unknown[][];
}

export class NodeListeners {
  readonly host: ListenerHost;
  readonly #parts: NodeListenersParts;
  readonly #clientId = `listeners-${randomUUID()}`;
  #callId = 0;
  #report: RunnerReport | undefined;
  readonly #registry = new Registry();

  constructor(parts: NodeListenersParts) {
    this.#parts = parts;
    this.host = new ListenerHost(
      {
        stateDir: parts.stateDir,
        baseDir: parts.baseDir,
        coreMode: parts.coreMode,
        leadership: parts.leadership,
        registry: () => listListeners(parts.store),
        readCheckpoint: (name) => readListener(parts.store, name)?.checkpoint ?? 0,
        checkpoint: async (name, txid) => {
          await this.#submit({ op: "listenerCheckpoint", name, txid });
        },
        onLeading: () => this.#seed(),
      },
      { runner: "node", runtime: parts.runtime, ...(parts.logger ? { logger: parts.logger } : {}) },
    );
    this.#ledgerGauges();
  }

  start(): void {
    this.host.start();
  }

  appended(lastTxid: number): void {
    this.host.appended(lastTxid);
  }

  /** The separate runner's statuses and metrics (`listenerReport`, off the log: it is local news). */
  report(raw: Record<string, unknown>): Record<string, unknown> {
    if (raw.node !== this.#parts.nodeId) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `this report is for node ${String(raw.node)}, and this is node ${this.#parts.nodeId}`,
      );
    }
    const statuses = raw.statuses;
    const metrics = raw.metrics ?? [];
    if (!Array.isArray(statuses) || statuses.length > REPORT_STATUSES_MAX) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `statuses must be a list of at most ${REPORT_STATUSES_MAX}`,
      );
    }
    if (!Array.isArray(metrics) || JSON.stringify(metrics).length > REPORT_METRICS_BYTES_MAX) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `metrics must be a list of at most ${REPORT_METRICS_BYTES_MAX} bytes`,
      );
    }
    this.#report = {
      at: this.#parts.runtime.elapsed(),
      statuses: statuses as HostedStatus[],
      metrics: metrics as unknown[][],
    };
    return { accepted: statuses.length };
  }

  /** Every registered listener with what its host says of it: the leader's view (`listeners ls`). */
  async rows(): Promise<{ ledger: LedgerSummary; listeners: ListenerRow[] }> {
    const ledger = readSummary(this.#parts.store);
    const hosted = new Map((await this.host.statuses()).map((s) => [s.name, s]));
    const report = this.#freshReport();
    const reported = new Map((report?.statuses ?? []).map((s) => [s.name, s]));
    const now = this.#parts.runtime.now();
    const listeners = listListeners(this.#parts.store).map((record): ListenerRow => {
      const status = record.runner === "node" ? hosted.get(record.name) : reported.get(record.name);
      const plugin = status?.plugin ?? null;
      const delivered = Math.max(record.checkpoint, plugin?.delivered ?? 0);
      const lagTxids = Math.max(0, ledger.lastTxid - delivered);
      const state = !record.enabled
        ? "stopped"
        : record.runner === "process" && !report
          ? "unreported"
          : (plugin?.state ?? status?.host ?? "starting");
      return {
        name: record.name,
        module: record.module,
        runner: record.runner,
        enabled: record.enabled,
        state,
        ...(status?.version ? { version: status.version } : {}),
        checkpoint: record.checkpoint,
        checkpointTime: record.checkpointTime,
        delivered,
        lagTxids,
        // Without the plugin's own figure: since the checkpoint, if anything is behind it.
        lagMs: plugin
          ? plugin.lagMs
          : lagTxids > 0 && record.checkpointTime > 0
            ? now - record.checkpointTime
            : 0,
        errors: plugin?.errors ?? 0,
        restarts: status?.restarts ?? 0,
        ...((plugin?.lastError ?? status?.lastError)
          ? { lastError: plugin?.lastError ?? status?.lastError }
          : {}),
      };
    });
    return { ledger, listeners };
  }

  /** The node's metrics and every plugin's (in its worker here, or reported by the runner), as Prometheus text. */
  async metricsText(): Promise<string> {
    const plugins = [...(await this.host.metrics()), ...(this.#freshReport()?.metrics ?? [])];
    const registries = [this.#registry];
    if (plugins.length > 0) {
      registries.push(
        AggregatorRegistry.aggregate(plugins as Parameters<typeof AggregatorRegistry.aggregate>[0]),
      );
    }
    return Registry.merge(registries).metrics();
  }

  /**
   * Refuses a `listenerAdd` or `listenerUpdate` whose shipped sink would refuse its options, at
   * once and with the option named, rather than in its thread after the change committed. A
   * plugin of the operator's own checks its options when it starts (`listeners ls` shows it).
   */
  async precheck(raw: Record<string, unknown>): Promise<void> {
    if (typeof raw.name !== "string") return;
    const current = readListener(this.#parts.store, raw.name);
    // An add of a name that exists is the write path's to refuse (MR_ERR_LISTENER_EXISTS).
    if (raw.op === "listenerAdd" && current) return;
    const module = typeof raw.module === "string" ? raw.module : current?.module;
    const options = raw.options ?? (raw.op === "listenerUpdate" ? current?.options : undefined) ?? {};
    if (module === undefined || !Object.hasOwn(BUILTIN_PLUGINS, module)) return;
    const sink = BUILTIN_PLUGINS[module as keyof typeof BUILTIN_PLUGINS]({
      name: raw.name,
      baseDir: this.#parts.baseDir,
    });
    const inert: ListenerContext = {
      name: raw.name,
      ledger: {
        read: async () => ({ events: [], firstTxid: 0, lastTxid: 0 }),
        onAppended: () => () => {},
      },
      leadership: { subscribe: () => () => {} },
      readCheckpoint: async () => 0,
      checkpoint: async () => {},
      runtime: this.#parts.runtime,
      metrics: new Registry(),
      log: { info: () => {}, warn: () => {}, error: () => {} },
    };
    await sink.init(inert, options as Record<string, unknown>);
  }

  async close(): Promise<void> {
    await this.host.close();
  }

  #freshReport(): RunnerReport | undefined {
    const report = this.#report;
    return report && this.#parts.runtime.elapsed() - report.at <= RUNNER_REPORT_TTL_MS ? report : undefined;
  }

  #submit(request: { op: string; [field: string]: unknown }): Promise<Record<string, unknown>> {
    return this.#parts.pipeline.submit(this.#clientId, this.#callId++, request);
  }

  /** Registers the declared listeners this leader's registry lacks, and brings changed ones up to date. */
  async #seed(): Promise<void> {
    for (const d of this.#parts.declared) {
      const record = readListener(this.#parts.store, d.name);
      if (!record) {
        await this.#submit({
          op: "listenerAdd",
          name: d.name,
          module: d.module,
          options: d.options,
          runner: d.runner,
          from: d.from,
        }).catch((error: unknown) => {
          if (!(error instanceof MetaraftError && error.code === "MR_ERR_LISTENER_EXISTS")) throw error;
        });
      } else if (
        record.module !== d.module ||
        record.runner !== d.runner ||
        JSON.stringify(record.options) !== JSON.stringify(d.options)
      ) {
        // The config names it: the config wins over an earlier `listeners` change of it. Enabled
        // stays as the registry has it, so `listeners stop` outlives a restart.
        await this.#submit({
          op: "listenerUpdate",
          name: d.name,
          module: d.module,
          options: d.options,
          runner: d.runner,
        });
      }
    }
  }

  #ledgerGauges(): void {
    const store = this.#parts.store;
    const summary = (): LedgerSummary => readSummary(store);
    const gauge = (name: string, help: string, read: (s: LedgerSummary) => number): void => {
      new Gauge({
        name,
        help,
        registers: [this.#registry],
        collect() {
          this.set(read(summary()));
        },
      });
    };
    gauge(
      "metaraft_ledger_first_txid",
      "the first txid the event ledger holds (0: empty)",
      (s) => s.firstTxid,
    );
    gauge("metaraft_ledger_last_txid", "the last txid the event ledger holds (0: empty)", (s) => s.lastTxid);
    gauge("metaraft_ledger_events", "events the ledger holds", (s) => s.count);
    gauge("metaraft_ledger_events_written", "events written to the ledger", (s) => s.written);
    gauge("metaraft_ledger_events_pruned", "events pruned from the ledger", (s) => s.pruned);
  }
}
