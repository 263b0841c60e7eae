import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { MetaraftClient } from "../../src/client/client.js";
import { RpcClient } from "../../src/client/rpc-client.js";

const kvNodeMain = fileURLToPath(new URL("../../src/server/kv-node-main.js", import.meta.url));
const metaraftCli = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));

/** Ports this process has handed out: the OS may offer a port again as soon as it is closed. */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const address = server.address();
        server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
      });
    });
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
}

export interface ClusterOptions {
  readonly nodes?: number;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly snapshotEntries?: number;
  /** `metaraft` nodes only: entries kept behind a snapshot (low values force snapshot catch-up). */
  readonly snapshotTrailingEntries?: number;
  readonly opaque?: boolean;
  /** `kv`: the minimal key-value node (Raft tests); `metaraft`: the full node via `metaraft start`. */
  readonly kind?: "kv" | "metaraft";
  readonly executionMode?: "leader-execution" | "replicated-request";
  readonly batchers?: number;
  /** `metaraft` nodes only: no fsync (benchmarks of CPU cost, never of durability). */
  readonly noSync?: boolean;
  /** `metaraft` nodes only: more flags for `metaraft start` (a `--config` file, say). */
  readonly extraArgs?: readonly string[];
}

interface Member {
  readonly id: number;
  readonly raftPort: number;
  readonly clientPort: number;
  process: ChildProcess | null;
  /** A member added online: started with `--join` to this client address and only its own address. */
  join?: string;
  /** Removed from the cluster: no longer named in the other nodes' `--cluster`. */
  removed?: boolean;
  /** What the node wrote to stderr (the last 64 KiB), for tests of how it fails. */
  stderr: string;
  exitCode: number | null;
}

/** Real node processes on loopback, each with its own LMDB directory. */
export class ProcessCluster {
  readonly dir: string;
  readonly members: Member[] = [];
  readonly clusterId = "test-cluster";
  readonly #options: ClusterOptions;
  readonly #clients: RpcClient[] = [];

  private constructor(options: ClusterOptions) {
    this.#options = options;
    this.dir = mkdtempSync(join(tmpdir(), "metaraft-cluster-"));
  }

  static async start(options: ClusterOptions = {}): Promise<ProcessCluster> {
    const cluster = new ProcessCluster(options);
    for (let id = 1; id <= (options.nodes ?? 3); id++) {
      cluster.members.push({
        id,
        raftPort: await freePort(),
        clientPort: await freePort(),
        process: null,
        stderr: "",
        exitCode: null,
      });
    }
    await Promise.all(cluster.members.map((m) => cluster.startNode(m.id)));
    return cluster;
  }

  get spec(): string {
    return this.members
      .filter((m) => !m.removed)
      .map((m) => `${m.id}@127.0.0.1:${m.raftPort}:${m.clientPort}`)
      .join(",");
  }

  get endpoints(): { host: string; port: number }[] {
    return this.members.filter((m) => !m.removed).map((m) => ({ host: "127.0.0.1", port: m.clientPort }));
  }

  async startNode(id: number): Promise<void> {
    const member = this.members[id - 1]!;
    const o = this.#options;
    const own = `${id}@127.0.0.1:${member.raftPort}:${member.clientPort}`;
    const common = [
      `--id=${id}`,
      `--cluster=${member.join ? own : this.spec}`,
      ...(member.join ? [`--join=${member.join}`] : []),
      `--data=${join(this.dir, `node-${id}`)}`,
      `--cluster-id=${this.clusterId}`,
      `--tick-ms=${o.tickMs ?? 50}`,
      `--election-ticks=${o.electionTicks ?? 10}`,
      `--snapshot-entries=${o.snapshotEntries ?? 10000}`,
    ];
    const args =
      o.kind === "metaraft"
        ? [
            metaraftCli,
            "start",
            ...common,
            `--execution-mode=${o.executionMode ?? "leader-execution"}`,
            `--batchers=${o.batchers ?? 6}`,
            "--log-level=warn",
            ...(o.noSync ? ["--no-sync"] : []),
            ...(o.extraArgs ?? []),
            ...(o.snapshotTrailingEntries === undefined
              ? []
              : [`--snapshot-trailing-entries=${o.snapshotTrailingEntries}`]),
          ]
        : [kvNodeMain, ...common, ...(o.opaque ? ["--opaque"] : [])];
    const child = spawn(
      process.execPath,
      // Extra flags for the node processes, e.g. METARAFT_NODE_ARGS=--cpu-prof to profile them.
      [...(process.env.METARAFT_NODE_ARGS?.split(" ").filter(Boolean) ?? []), ...args],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    member.process = child;
    member.stderr = "";
    member.exitCode = null;
    child.stderr!.on("data", (chunk: Buffer) => {
      member.stderr = (member.stderr + chunk.toString()).slice(-65536);
      process.stderr.write(chunk);
    });
    child.on("exit", (code) => {
      member.exitCode = code;
    });
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: child.stdout! });
      lines.once("line", () => resolve());
      child.once("exit", (code) => reject(new Error(`node ${id} exited with ${code} before it was ready`)));
    });
  }

  /**
   * Allocates ports for a new member that joins through `via`'s client port (not started: add
   * it with `member add` first, or after, as an operator would).
   */
  async addMember(via: number): Promise<Member> {
    const member: Member = {
      id: this.members.length + 1,
      raftPort: await freePort(),
      clientPort: await freePort(),
      process: null,
      join: `127.0.0.1:${this.members[via - 1]!.clientPort}`,
      stderr: "",
      exitCode: null,
    };
    this.members.push(member);
    return member;
  }

  /** `kill -9`: no shutdown, no flush. */
  kill(id: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const child = this.members[id - 1]!.process;
    this.members[id - 1]!.process = null;
    if (!child || child.exitCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      child.once("exit", () => resolve());
      child.kill(signal);
    });
  }

  /** The pid of node `id`'s process (for CPU accounting). */
  pid(id: number): number | undefined {
    return this.members[id - 1]?.process?.pid;
  }

  client(timeoutMs = 10_000): RpcClient {
    const client = new RpcClient({ endpoints: this.endpoints, clusterId: this.clusterId, timeoutMs });
    this.#clients.push(client);
    return client;
  }

  /** Status straight from one node (no leader redirection). */
  async status(id: number): Promise<Record<string, unknown>> {
    const m = this.members[id - 1]!;
    const client = new RpcClient({
      endpoints: [{ host: "127.0.0.1", port: m.clientPort }],
      clusterId: this.clusterId,
      timeoutMs: 2000,
    });
    try {
      return await client.call("status");
    } finally {
      client.close();
    }
  }

  /** Node `id`'s status once it has applied `target` (or the last one seen when time is up). */
  async statusWhenApplied(id: number, target: number, timeoutMs = 30_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.status(id).catch(() => ({ applied: 0 }) as Record<string, unknown>);
      if ((status.applied as number) >= target || Date.now() > deadline) return status;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * The keys of `expected` (key to objectId) that node `id` does not hold as expected, read from
   * its own state (stale reads on a connection to it alone).
   */
  async keysNotHeld(id: number, volume: string, bucket: string, expected: ReadonlyMap<string, number>) {
    const local = new MetaraftClient({
      endpoints: [{ host: "127.0.0.1", port: this.members[id - 1]!.clientPort }],
      clusterId: this.clusterId,
      timeoutMs: 30_000,
    });
    try {
      const wrong: string[] = [];
      for (const [key, objectId] of expected) {
        const found = await local.lookupKey(volume, bucket, key, { stale: true }).catch(() => undefined);
        if ((found?.key as { objectId?: number } | undefined)?.objectId !== objectId) wrong.push(key);
      }
      return wrong;
    } finally {
      local.close();
    }
  }

  /**
   * What every listed node holds once it has applied as far as the furthest of them: the keys of
   * `expected` it lacks (or holds with another objectId), and whether it got that far.
   */
  async convergence(
    ids: readonly number[],
    volume: string,
    bucket: string,
    expected: ReadonlyMap<string, number>,
  ): Promise<{ id: number; applied: number; target: number; missing: string[] }[]> {
    const target = Math.max(
      ...(await Promise.all(ids.map((id) => this.status(id)))).map((s) => s.applied as number),
    );
    const out = [];
    for (const id of ids) {
      const status = await this.statusWhenApplied(id, target);
      out.push({
        id,
        applied: status.applied as number,
        target,
        missing: await this.keysNotHeld(id, volume, bucket, expected),
      });
    }
    return out;
  }

  async leader(timeoutMs = 10_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      for (const m of this.members) {
        if (!m.process) continue;
        const s = await this.status(m.id).catch(() => null);
        if (s?.role === "leader") return m.id;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error("no leader elected");
  }

  async stop(): Promise<void> {
    for (const client of this.#clients) client.close();
    await Promise.all(this.members.map((m) => this.kill(m.id, "SIGTERM")));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
