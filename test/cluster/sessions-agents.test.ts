import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { MetaraftClient } from "../../src/client/client.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { FaultProxy } from "../helpers/proxy.js";
import { waitFor } from "../helpers/wait.js";

const cli = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));
const run = promisify(execFile);

type Line = Record<string, unknown>;

/** `metaraft agent` as a child process, its JSON lines collected as they come. */
class AgentProcess {
  readonly lines: Line[] = [];
  readonly child: ChildProcess;

  constructor(
    id: string,
    endpoints: string,
    clusterId: string,
    ttlMs: number,
    extra: readonly string[] = [],
  ) {
    this.child = spawn(
      process.execPath,
      [
        cli,
        "agent",
        "--id",
        id,
        "--ttl-ms",
        String(ttlMs),
        "--endpoints",
        endpoints,
        "--cluster-id",
        clusterId,
        "-w",
        "json",
        ...extra,
      ],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      this.lines.push(JSON.parse(line) as Line);
    });
  }

  events(event: string): Line[] {
    return this.lines.filter((l) => l.event === event);
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      this.child.once("exit", () => resolve());
      this.child.kill(signal);
    });
  }
}

const endpointList = (endpoints: readonly { host: string; port: number }[]) =>
  endpoints.map((e) => `${e.host}:${e.port}`).join(",");

describe("sessions and agents across real processes", () => {
  let cluster: ProcessCluster;
  let client: MetaraftClient;
  const agents: AgentProcess[] = [];
  const proxies: FaultProxy[] = [];

  before(async () => {
    cluster = await ProcessCluster.start({
      kind: "metaraft",
      noSync: true,
      extraArgs: ["--session-expiry-check-ms=100"],
    });
    await cluster.leader();
    client = new MetaraftClient({
      endpoints: cluster.endpoints,
      clusterId: cluster.clusterId,
      timeoutMs: 15_000,
    });
  });

  after(async () => {
    client.close();
    await Promise.all(agents.map((a) => a.kill()));
    await Promise.all(proxies.map((p) => p.close()));
    await cluster.stop();
  });

  /** `metaraft agents ls -w json`, run as an operator runs it. */
  const agentsLs = async () =>
    JSON.parse(
      (
        await run(process.execPath, [
          cli,
          ...["agents", "ls", "-w", "json"],
          ...["--endpoints", endpointList(cluster.endpoints), "--cluster-id", cluster.clusterId],
        ])
      ).stdout,
    ) as { agents: { id: string; state: string; heartbeatAgeMs: number | null }[] };

  const status = async (id: string) =>
    (await client.kvGet(`agents/${id}/status`)).kv as { value: string } | null;

  it("kill -9 of the leader expires no live session", async () => {
    const sessions = await Promise.all(
      Array.from({ length: 50 }, () => client.createSession({ ttlMs: 3_000 })),
    );
    await Promise.all(sessions.map((s, i) => client.kvPut(`held/${i}`, "up", { session: s })));
    const leader = await cluster.leader();
    await cluster.kill(leader);
    await waitFor(
      "a new leader",
      async () => (await cluster.leader().catch(() => leader)) !== leader,
      15_000,
    );
    // Two TTLs under the new leader.
    const until = Date.now() + 6_000;
    await waitFor(
      "two TTLs to pass",
      () => Date.now() >= until || sessions.some((s) => s.state !== "alive"),
      10_000,
    );
    assert.deepEqual(
      sessions.filter((s) => s.state !== "alive").map((s) => s.id),
      [],
    );
    assert.equal(((await client.kvRange("held/")).items as unknown[]).length, 50);
    const newLeader = await cluster.leader();
    const reply = await client.sessionStatus();
    assert.equal(reply.from, newLeader);
    assert.equal((reply.stats as { expired: number }).expired, 0);
    await Promise.all(sessions.map((s) => s.close()));
    await cluster.startNode(leader);
  });

  it("an agent killed with kill -9 disappears within its TTL, and agents ls shows it expired", async () => {
    const ttlMs = 3_000;
    const agent = new AgentProcess("worker-1", endpointList(cluster.endpoints), cluster.clusterId, ttlMs);
    agents.push(agent);
    await waitFor("the agent to register", () => agent.events("registered").length === 1, 20_000);
    const sessionId = agent.events("registered")[0]!.sessionId as number;
    const shown = JSON.parse((await status("worker-1"))!.value) as { sessionId: number; health: string };
    assert.equal(shown.sessionId, sessionId);
    assert.equal(shown.health, "ok");

    // Configuration pushed to it arrives in order: many values to one key, and a few keys.
    const pushed: string[] = [];
    for (let i = 0; i < 20; i++) {
      pushed.push(String(i));
      await client.kvPut("agents/worker-1/config/rate", String(i));
    }
    // The last value arrives (a value overwritten before the agent reads it may be coalesced,
    // so the delete waits for it).
    await waitFor("the last rate", () =>
      agent.events("config").some((c) => c.key === "rate" && c.value === "19"),
    );
    await run(process.execPath, [
      cli,
      "config",
      "push",
      "worker-1",
      "mode",
      "fast",
      "--endpoints",
      endpointList(cluster.endpoints),
      "--cluster-id",
      cluster.clusterId,
    ]);
    await client.kvDelete("agents/worker-1/config/rate");
    await waitFor("the agent to get the last changes", () => {
      const configs = agent.events("config");
      return (
        configs.some((c) => c.key === "mode") && configs.some((c) => c.key === "rate" && c.value === null)
      );
    });
    const configs = agent.events("config");
    const txids = configs.map((c) => c.txid as number);
    assert.deepEqual(
      txids,
      [...txids].sort((a, b) => a - b),
      "changes out of txid order",
    );
    const rates = configs.filter((c) => c.key === "rate").map((c) => c.value);
    assert.equal(rates.at(-1), null);
    const values = rates.slice(0, -1) as string[];
    // In order, never a value twice, and the last put value among them (a value overwritten
    // before the agent read it may be skipped: the later one is delivered instead).
    assert.deepEqual(
      values,
      [...values].sort((a, b) => Number(a) - Number(b)),
    );
    assert.equal(new Set(values).size, values.length);
    assert.equal(values.at(-1), "19");

    const listed = await agentsLs();
    const alive = listed.agents.find((a) => a.id === "worker-1")!;
    assert.equal(alive.state, "alive");
    assert.ok(
      alive.heartbeatAgeMs !== null && alive.heartbeatAgeMs <= ttlMs,
      `heartbeat age ${alive.heartbeatAgeMs}`,
    );

    const killedAt = Date.now();
    await agent.kill();
    await waitFor("the agent's status to go", async () => (await status("worker-1")) === null, 15_000, 25);
    const gone = Date.now() - killedAt;
    assert.ok(gone <= ttlMs + 100 + 700, `the status went ${gone} ms after the kill, TTL ${ttlMs}`);
    assert.ok(gone >= ttlMs - ttlMs / 3 - 300, `the status went ${gone} ms after the kill: before the TTL`);

    const after = await agentsLs();
    const expired = after.agents.find((a) => a.id === "worker-1")!;
    assert.equal(expired.state, "expired");
    assert.ok(expired.heartbeatAgeMs !== null && expired.heartbeatAgeMs >= ttlMs - ttlMs / 3 - 300);
  });

  it("an agent cut off from the cluster loses its session, is told so, and registers again when the network returns", async () => {
    const ttlMs = 3_000;
    for (const e of cluster.endpoints) proxies.push(await FaultProxy.start(e));
    const agent = new AgentProcess(
      "worker-2",
      endpointList(proxies.map((p) => p.endpoint)),
      cluster.clusterId,
      ttlMs,
      ["--no-discover-endpoints"],
    );
    agents.push(agent);
    await waitFor("the agent to register", () => agent.events("registered").length === 1, 20_000);
    const first = agent.events("registered")[0]!.sessionId as number;
    await client.kvPut("agents/worker-2/config/level", "1");
    await waitFor("the first config", () => agent.events("config").some((c) => c.value === "1"));

    for (const p of proxies) p.cut();
    await waitFor(
      "the cluster to expire the cut-off agent",
      async () => (await status("worker-2")) === null,
      15_000,
    );
    await waitFor("the agent to notice", () => agent.events("disconnected").length >= 1);
    assert.equal(agent.events("sessionLost").length, 0, "told before it could have heard");
    // Pushed while it is cut off: it gets this once back.
    await client.kvPut("agents/worker-2/config/level", "2");

    for (const p of proxies) p.heal();
    await waitFor(
      "the agent to be told its session was lost",
      () => agent.events("sessionLost").length === 1,
      20_000,
    );
    await waitFor("the agent to register again", () => agent.events("registered").length === 2, 20_000);
    const second = agent.events("registered")[1]!.sessionId as number;
    assert.notEqual(second, first);
    const back = JSON.parse((await status("worker-2"))!.value) as { sessionId: number };
    assert.equal(back.sessionId, second);
    await waitFor(
      "the config pushed while cut off",
      () => agent.events("config").some((c) => c.value === "2"),
      20_000,
    );
    assert.deepEqual(
      agent
        .events("config")
        .filter((c) => c.key === "level")
        .map((c) => c.value),
      ["1", "2"],
    );
    // A clean stop closes the session: the status goes at once.
    await agent.kill("SIGTERM");
    assert.equal(await status("worker-2"), null);
    assert.equal(((await client.sessionGet(second)).ended as { reason: string }).reason, "closed");
  });
});
