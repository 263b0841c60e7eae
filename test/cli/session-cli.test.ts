import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { MetaraftClient } from "../../src/client/client.js";
import { InProcessCluster } from "../helpers/nodes.js";

const cliPath = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe("metaraft session, config and agents", { timeout: 60_000 }, () => {
  let cluster: InProcessCluster;
  let client: MetaraftClient;
  let endpoints = "";

  const verb = (args: readonly string[]): Promise<Run> => {
    const env = { ...process.env };
    delete env.METARAFT_ENDPOINTS;
    delete env.METARAFT_CLUSTER_ID;
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [cliPath, ...args, "--endpoints", endpoints, "--cluster-id", cluster.clusterId],
        { env, timeout: 20_000 },
        (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr }),
      );
    });
  };
  const ok = (run: Run, what: string): string => {
    assert.equal(run.code, 0, `${what}: exit ${run.code}, stderr: ${run.stderr}`);
    return run.stdout;
  };

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 1 });
    const self = cluster.nodes[0]!.config.cluster[0]!;
    endpoints = `${self.host}:${self.clientPort}`;
    client = cluster.client();
  });
  after(async () => {
    await cluster?.stop();
  });

  it("lists, shows and closes sessions", async () => {
    const session = await client.createSession({ ttlMs: 30_000 });
    await client.kvPut("svc/lock", "me", { session });
    const table = ok(await verb(["session", "ls"]), "session ls");
    assert.match(table, /^SESSION\s+TTL\s+LEFT\s+LAST HEARTBEAT\s+EPHEMERAL\s+CREATED/);
    assert.match(table, new RegExp(`\\n${session.id}\\s+30000ms\\s+\\d+ms\\s+[\\d.]+s\\s+1\\s`));
    const listed = JSON.parse(ok(await verb(["session", "ls", "-w", "json"]), "session ls json")) as {
      items: { id: number; remainingMs: number }[];
      open: number;
    };
    assert.equal(listed.open, 1);
    assert.ok(listed.items[0]!.remainingMs > 20_000);
    const got = JSON.parse(ok(await verb(["session", "get", String(session.id)]), "session get")) as {
      session: { keys: string[] };
    };
    assert.deepEqual(got.session.keys, ["svc/lock"]);
    assert.match(
      ok(await verb(["session", "close", String(session.id)]), "close"),
      /1 ephemeral entries deleted/,
    );
    assert.equal((await client.kvGet("svc/lock")).kv, null);
    const closed = await verb(["session", "close", String(session.id)]);
    assert.equal(closed.code, 1);
    assert.match(closed.stderr, /MR_ERR_SESSION_EXPIRED/);
    const ended = ok(await verb(["session", "ls", "--ended"]), "ls --ended");
    assert.match(ended, new RegExp(`\\n${session.id}\\s+closed\\s+30000ms`));
    const bad = await verb(["session", "get", "nope"]);
    assert.equal(bad.code, 2);
  });

  it("pushes, lists and removes an agent's configuration, and lists agents", async () => {
    assert.match(
      ok(await verb(["config", "push", "edge-1", "rate", "100"]), "push"),
      /pushed rate to edge-1/,
    );
    ok(await verb(["config", "push", "edge-1", "mode", "fast"]), "push mode");
    assert.match(
      ok(await verb(["config", "ls", "edge-1"]), "config ls"),
      /KEY\s+VALUE\s+MOD TXID\nmode\s+fast\s+\d+\nrate\s+100/,
    );
    assert.equal(ok(await verb(["config", "rm", "edge-1", "rate"]), "rm"), "1\n");
    const badId = await verb(["config", "push", "../x", "k", "v"]);
    assert.equal(badId.code, 2);
    assert.match(badId.stderr, /MR_ERR_USAGE/);
    // An agent that registered and then closed its session shows as closed.
    const session = await client.createSession({ ttlMs: 5_000 });
    await client.kvPut(
      "agents/edge-1/info",
      JSON.stringify({ id: "edge-1", sessionId: session.id, version: "2", host: "h" }),
    );
    await client.kvPut(
      "agents/edge-1/status",
      JSON.stringify({ health: "ok", version: "2", sessionId: session.id, since: 0 }),
      { session },
    );
    const alive = JSON.parse(ok(await verb(["agents", "ls", "-w", "json"]), "agents ls")) as {
      agents: { id: string; state: string; configKeys: number; version: string }[];
    };
    assert.deepEqual(
      alive.agents.map((a) => [a.id, a.state, a.configKeys, a.version]),
      [["edge-1", "alive", 1, "2"]],
    );
    await session.close();
    assert.match(
      ok(await verb(["agents", "ls"]), "agents ls table"),
      /\nedge-1\s+closed\s+\d+\s+-\s+2\s+-\s+h\s+1\n/,
    );
  });
});
