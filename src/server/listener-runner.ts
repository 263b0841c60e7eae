import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { MetaraftClient } from "../client/client.js";
import type { CoreMode } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { listListeners, readListener, readSummary } from "../events/index.js";
import { StateStore } from "../execution/state-store.js";
import type { LeadershipListener } from "../host/index.js";
import { type Runtime, sleep, type Timer } from "../runtime.js";
import { SETTINGS } from "../settings.js";
import { openEnvironment, type StorageEnvironment } from "../storage/index.js";
import type { TransportLogger } from "../transport/index.js";
import { ListenerHost } from "./listener-host.js";
import { NODE_INFO_FILE } from "./node.js";

/**
 * `metaraft listeners run --data DIR`: runs every `process` listener of the node whose data
 * directory this is, beside it, each in its own worker thread. It reads the registry and the
 * ledger from the node's state environment, opened read-only (it writes nothing there), asks
 * its node every `pollMs` whether it is the ready leader, checkpoints through the node's client
 * port, and reports its listeners' statuses and metrics there for `listeners ls`. On a follower
 * it stays idle; when its node becomes leader, it takes over from the replicated checkpoints.
 */

export interface RunnerOptions {
  readonly dataDir: string;
  readonly runtime: Runtime;
  readonly baseDir?: string;
  readonly coreMode?: CoreMode;
  readonly logger?: TransportLogger;
  readonly pollMs?: number;
  readonly reportMs?: number;
  /** How long to wait for the node to write its `node.json` before giving up. */
  readonly startTimeoutMs?: number;
}

export const RUNNER_DEFAULTS = {
  /**
   * How often the runner asks its node whether it leads. A deposed leader's runner may deliver
   * for up to this long after the node stepped down: at-least-once allows it, and the new
   * leader's listener resumes from the replicated checkpoint, so nothing is lost.
   */
  pollMs: 200,
  /** How often the ledger's last txid is read, to wake the plugins (one LMDB read). */
  appendPollMs: 20,
  reportMs: 1_000,
  startTimeoutMs: 30_000,
  callTimeoutMs: 5_000,
} as const;

export interface NodeInfo {
  readonly id: number;
  readonly clusterId: string;
  readonly client: string;
}

export function readNodeInfo(dataDir: string): NodeInfo | undefined {
  const file = join(dataDir, NODE_INFO_FILE);
  if (!existsSync(file)) return undefined;
  const info = JSON.parse(readFileSync(file, "utf8")) as Partial<NodeInfo>;
  if (typeof info.id !== "number" || typeof info.clusterId !== "string" || typeof info.client !== "string") {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${file} is not a node's info file`);
  }
  return info as NodeInfo;
}

export class ListenerRunner {
  readonly host: ListenerHost;
  readonly node: NodeInfo;
  readonly #env: StorageEnvironment;
  /** Status and reports: answered by this node (a reply from another member is ignored). */
  readonly #client: MetaraftClient;
  /** Checkpoints: writes, which follow NOT_LEADER to whoever leads. */
  readonly #writer: MetaraftClient;
  readonly #timers: Timer[] = [];
  readonly #listeners = new Set<LeadershipListener>();
  #leading: { term: number } | undefined;
  #known = { term: 0, leader: 0 };
  #lastTxid = 0;
  #closed = false;

  private constructor(options: RunnerOptions, node: NodeInfo) {
    this.node = node;
    this.#env = openEnvironment(join(options.dataDir, "state"), { readOnly: true });
    const store = StateStore.open(this.#env);
    const at = node.client.lastIndexOf(":");
    const endpoint = { host: node.client.slice(0, at), port: Number(node.client.slice(at + 1)) };
    const clientOptions = {
      endpoints: [endpoint],
      clusterId: node.clusterId,
      timeoutMs: RUNNER_DEFAULTS.callTimeoutMs,
    };
    this.#client = new MetaraftClient(clientOptions);
    this.#writer = new MetaraftClient({ ...clientOptions, clientId: `runner-${node.id}-${randomUUID()}` });
    this.host = new ListenerHost(
      {
        stateDir: this.#env.path,
        baseDir: options.baseDir ?? process.cwd(),
        coreMode: options.coreMode ?? SETTINGS.core.mode.default,
        leadership: {
          subscribe: (listener) => {
            this.#listeners.add(listener);
            if (this.#leading) listener.leaderReady?.(this.#leading.term);
            return () => this.#listeners.delete(listener);
          },
        },
        registry: () => listListeners(store),
        readCheckpoint: (name) => readListener(store, name)?.checkpoint ?? 0,
        checkpoint: async (name, txid) => {
          await this.#writer.listenerCheckpoint(name, txid);
        },
      },
      { runner: "process", runtime: options.runtime, ...(options.logger ? { logger: options.logger } : {}) },
    );
    const runtime = options.runtime;
    this.#timers.push(
      runtime.every(options.pollMs ?? RUNNER_DEFAULTS.pollMs, () => void this.#poll()),
      runtime.every(RUNNER_DEFAULTS.appendPollMs, () => {
        if (!this.#leading) return;
        const last = readSummary(store).lastTxid;
        if (last > this.#lastTxid) {
          this.#lastTxid = last;
          this.host.appended(last);
        }
      }),
      runtime.every(options.reportMs ?? RUNNER_DEFAULTS.reportMs, () => void this.#report()),
    );
  }

  /** Waits for the node's info file (the node writes it once it listens), then starts. */
  static async start(options: RunnerOptions): Promise<ListenerRunner> {
    const deadline = options.runtime.elapsed() + (options.startTimeoutMs ?? RUNNER_DEFAULTS.startTimeoutMs);
    let info = readNodeInfo(options.dataDir);
    while (!info) {
      if (options.runtime.elapsed() > deadline) {
        throw new MetaraftError(
          "MR_ERR_UNAVAILABLE",
          `no node has started on ${options.dataDir} (${NODE_INFO_FILE} is missing): start the node first`,
        );
      }
      await sleep(options.runtime, 100);
      info = readNodeInfo(options.dataDir);
    }
    const runner = new ListenerRunner(options, info);
    runner.host.start();
    await runner.#poll();
    return runner;
  }

  get leading(): boolean {
    return this.#leading !== undefined;
  }

  async #poll(): Promise<void> {
    if (this.#closed) return;
    let status: { node?: unknown; role?: unknown; ready?: unknown; term?: unknown; leader?: unknown };
    try {
      status = await this.#client.status();
    } catch {
      // An unreachable node cannot say it leads: stop delivering until it answers again.
      status = {};
    }
    // The client moves to another member when its node is down: that member's word is not ours.
    if (status.node !== this.node.id) status = {};
    if (this.#closed) return;
    const term = typeof status.term === "number" ? status.term : this.#known.term;
    const leader = typeof status.leader === "number" ? status.leader : 0;
    const ready = status.role === "leader" && status.ready === true;
    if (this.#leading && (!ready || this.#leading.term !== term)) {
      const was = this.#leading.term;
      this.#leading = undefined;
      for (const l of this.#listeners) l.notLeader?.(was);
    }
    if (term !== this.#known.term || leader !== this.#known.leader) {
      this.#known = { term, leader };
      for (const l of this.#listeners) l.leaderChanged?.(term, leader);
    }
    if (ready && !this.#leading) {
      this.#leading = { term };
      for (const l of this.#listeners) l.leaderReady?.(term);
    }
  }

  async #report(): Promise<void> {
    if (this.#closed) return;
    try {
      const [statuses, metrics] = await Promise.all([this.host.statuses(), this.host.metrics()]);
      await this.#client.listenerReport({ node: this.node.id, statuses, metrics });
    } catch {
      // The node is down or busy: the next report carries the news.
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#timers) timer.cancel();
    await this.host.close();
    this.#client.close();
    this.#writer.close();
    await this.#env.close();
  }
}
