import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetaraftClient } from "../../src/client/client.js";
import type { ExecutionMode } from "../../src/execution/pipeline.js";
import { MetaraftNode, type NodeConfig } from "../../src/server/node.js";
import { freePort } from "./cluster.js";

export interface InProcessOptions {
  readonly nodes?: number;
  readonly mode?: ExecutionMode;
  readonly batchers?: number;
  readonly clock?: () => number;
  readonly snapshotEntries?: number;
  readonly snapshotTrailingEntries?: number;
  readonly events?: NodeConfig["events"];
  readonly listeners?: NodeConfig["listeners"];
  readonly lifecycle?: NodeConfig["lifecycle"];
  readonly watch?: NodeConfig["watch"];
  /** No fsync: for tests of memory and flow, never of durability. */
  readonly noSync?: boolean;
  readonly queue?: NodeConfig["queue"];
  readonly queues?: NodeConfig["queues"];
  readonly kv?: NodeConfig["kv"];
  readonly session?: NodeConfig["session"];
}

/** Nodes in this process: real LMDB files and real TCP on loopback, one event loop. */
export class InProcessCluster {
  readonly dir = mkdtempSync(join(tmpdir(), "metaraft-nodes-"));
  readonly nodes: (MetaraftNode | null)[] = [];
  readonly clusterId = "test-cluster";
  readonly #clients: MetaraftClient[] = [];
  #cluster: { id: number; host: string; raftPort: number; clientPort: number }[] = [];

  private constructor(readonly options: InProcessOptions) {}

  static async start(options: InProcessOptions = {}): Promise<InProcessCluster> {
    const cluster = new InProcessCluster(options);
    const count = options.nodes ?? 3;
    for (let id = 1; id <= count; id++) {
      cluster.#cluster.push({
        id,
        host: "127.0.0.1",
        raftPort: await freePort(),
        clientPort: await freePort(),
      });
    }
    for (let id = 1; id <= count; id++) await cluster.startNode(id);
    return cluster;
  }

  async startNode(id: number): Promise<MetaraftNode> {
    const node = await MetaraftNode.start({
      id,
      cluster: this.#cluster,
      dataDir: join(this.dir, `node-${id}`),
      clusterId: this.clusterId,
      secret: "test-secret-of-sixteen-bytes",
      tickMs: 20,
      electionTicks: 10,
      execution: { mode: this.options.mode ?? "leader-execution", batchers: this.options.batchers ?? 6 },
      ...(this.options.clock ? { clock: this.options.clock } : {}),
      ...(this.options.events ? { events: this.options.events } : {}),
      ...(this.options.listeners ? { listeners: this.options.listeners } : {}),
      ...(this.options.lifecycle ? { lifecycle: this.options.lifecycle } : {}),
      ...(this.options.watch ? { watch: this.options.watch } : {}),
      ...(this.options.noSync ? { noSync: true } : {}),
      ...(this.options.queue ? { queue: this.options.queue } : {}),
      ...(this.options.queues ? { queues: this.options.queues } : {}),
      ...(this.options.kv ? { kv: this.options.kv } : {}),
      ...(this.options.session ? { session: this.options.session } : {}),
      ...(this.options.snapshotEntries ? { snapshotEntries: this.options.snapshotEntries } : {}),
      ...(this.options.snapshotTrailingEntries === undefined
        ? {}
        : { snapshotTrailingEntries: this.options.snapshotTrailingEntries }),
    });
    this.nodes[id - 1] = node;
    return node;
  }

  async stopNode(id: number): Promise<void> {
    const node = this.nodes[id - 1];
    this.nodes[id - 1] = null;
    await node?.close();
  }

  client(clientId?: string): MetaraftClient {
    const client = new MetaraftClient({
      endpoints: this.#cluster.map((m) => ({ host: m.host, port: m.clientPort })),
      clusterId: this.clusterId,
      timeoutMs: 15_000,
      ...(clientId ? { clientId } : {}),
    });
    this.#clients.push(client);
    return client;
  }

  async leader(timeoutMs = 10_000): Promise<MetaraftNode> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const leader = this.nodes.find((n) => n?.host.isLeader);
      if (leader) return leader;
      if (Date.now() > deadline) throw new Error("no leader");
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async stop(): Promise<void> {
    for (const client of this.#clients) client.close();
    for (let id = 1; id <= this.nodes.length; id++) await this.stopNode(id);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
