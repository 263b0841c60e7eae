import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { freeRange } from "../helpers/dev.js";
import { waitFor } from "../helpers/wait.js";

/**
 * The `metaraft` command as a user runs it: `metaraft dev --nodes 3` as a real process tree on
 * free loopback ports, the verbs as separate processes, Ctrl-C at the end.
 */

const cliPath = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));
const NODES = 3;

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("metaraft command line", { timeout: 60_000 }, () => {
  let dir = "";
  let dev: ChildProcess | undefined;
  let devOut = "";
  let devErr = "";
  let devExit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  let endpoints = "";
  const nodePids: number[] = [];

  /** Runs `metaraft ARGS` to completion (the environment's METARAFT_* variables removed). */
  function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
    const base = { ...process.env };
    delete base.METARAFT_ENDPOINTS;
    delete base.METARAFT_CLUSTER_ID;
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [cliPath, ...args],
        { env: { ...base, ...env }, timeout: 20_000 },
        (error, stdout, stderr) => {
          const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
          resolve({ code, stdout, stderr });
        },
      );
    });
  }

  /** A verb against the dev cluster. */
  function verb(...args: string[]): Promise<Run> {
    return cli([...args, "--endpoints", endpoints]);
  }

  function ok(run: Run, what: string): string {
    assert.equal(run.code, 0, `${what}: exit ${run.code}, stderr: ${run.stderr}`);
    assert.equal(run.stderr, "", what);
    return run.stdout;
  }

  function failsInOneLine(run: Run, code: number, ...fragments: string[]): void {
    assert.equal(run.code, code, `exit code; stdout: ${run.stdout} stderr: ${run.stderr}`);
    assert.equal(run.stdout, "");
    const lines = run.stderr.split("\n").filter((l) => l.length > 0);
    assert.equal(lines.length, 1, `one line: ${run.stderr}`);
    assert.ok(lines[0]!.startsWith("error: "), lines[0]);
    for (const f of fragments) assert.ok(lines[0]!.includes(f), `"${f}" in: ${lines[0]}`);
  }

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "metaraft-cli-"));
    const raftBase = await freeRange(NODES);
    const clientBase = await freeRange(NODES, new Set(Array.from({ length: NODES }, (_, i) => raftBase + i)));
    endpoints = Array.from({ length: NODES }, (_, i) => `127.0.0.1:${clientBase + i}`).join(",");
    const child = spawn(
      process.execPath,
      [
        cliPath,
        "dev",
        "--nodes",
        String(NODES),
        "--data",
        join(dir, "data"),
        "--base-port",
        String(raftBase),
        "--client-base-port",
        String(clientBase),
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    dev = child;
    devExit = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
    child.stderr!.on("data", (chunk: Buffer) => {
      devErr += chunk.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`dev cluster not ready in 20 s:\n${devOut}\n${devErr}`)),
        20_000,
      );
      child.stdout!.on("data", (chunk: Buffer) => {
        devOut += chunk.toString();
        if (devOut.includes("Ctrl-C stops every node\n")) {
          clearTimeout(timer);
          resolve();
        }
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`dev exited with ${code} before it was ready:\n${devOut}\n${devErr}`));
      });
    });
    for (const match of devOut.matchAll(/^node (\d+) ready: client (\S+), raft \S+, pid (\d+)$/gm)) {
      nodePids.push(Number(match[3]));
    }
  });

  after(async () => {
    // Even on failure: no process and no directory left behind. Killing `dev` outright also
    // stops its nodes (their stdin closes).
    if (dev && dev.exitCode === null && dev.signalCode === null) {
      dev.kill("SIGKILL");
      await devExit;
    }
    const deadline = Date.now() + 10_000;
    while (nodePids.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const pid of nodePids.filter(alive)) process.kill(pid, "SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("prints every node's client endpoint and the leader when ready", () => {
    assert.equal(nodePids.length, NODES, devOut);
    for (const endpoint of endpoints.split(",")) assert.ok(devOut.includes(`client ${endpoint}`), devOut);
    assert.match(devOut, /cluster ready: leader node [1-3], endpoints /);
    assert.ok(devOut.includes(`METARAFT_ENDPOINTS=${endpoints}`), devOut);
  });

  it("creates a volume and a bucket", async () => {
    assert.equal(ok(await verb("volume", "create", "vol1"), "volume create"), "created volume vol1\n");
    assert.equal(
      ok(await verb("bucket", "create", "vol1", "photos"), "bucket create"),
      "created bucket vol1/photos\n",
    );
    assert.match(ok(await verb("volume", "ls"), "volume ls"), /^VOLUME .*\nvol1 /);
    assert.match(ok(await verb("bucket", "ls", "vol1"), "bucket ls"), /\nphotos /);
  });

  it("puts keys and gets one back with its size, etag and metadata", async () => {
    ok(
      await verb(
        "key",
        "put",
        "vol1",
        "photos",
        "2024/cat.jpg",
        "--size",
        "1234",
        "--etag",
        "e-cat",
        "--meta",
        "camera=x100",
      ),
      "key put",
    );
    ok(
      await verb("key", "put", "vol1", "photos", "2024/dog.jpg", "--size", "99", "--etag", "e-dog"),
      "key put",
    );
    ok(
      await verb("key", "put", "vol1", "photos", "2025/owl.jpg", "--size", "7", "--etag", "e-owl"),
      "key put",
    );
    const got = ok(await verb("key", "get", "vol1", "photos", "2024/cat.jpg"), "key get");
    assert.match(got, /^key +2024\/cat\.jpg$/m);
    assert.match(got, /^size +1234$/m);
    assert.match(got, /^etag +e-cat$/m);
    assert.match(got, /^meta\.camera +x100$/m);
    const json = JSON.parse(
      ok(await verb("key", "get", "vol1", "photos", "2024/dog.jpg", "--json"), "key get --json"),
    );
    assert.equal(json.key.size, 99);
    assert.equal(json.key.etag, "e-dog");
  });

  it("lists keys by prefix, and page by page", async () => {
    const listed = ok(await verb("key", "ls", "vol1", "photos", "--prefix", "2024/"), "key ls");
    const names = listed
      .trim()
      .split("\n")
      .slice(1)
      .map((l) => l.split(/\s+/)[0]);
    assert.deepEqual(names, ["2024/cat.jpg", "2024/dog.jpg"]);
    const page = JSON.parse(
      ok(await verb("key", "ls", "vol1", "photos", "--limit", "1", "--json"), "ls --limit"),
    );
    assert.equal(page.items.length, 1);
    assert.equal(page.truncated, true);
    assert.equal(page.nextStartAfter, "2024/cat.jpg");
    const human = await verb("key", "ls", "vol1", "photos", "--limit", "1");
    assert.equal(human.code, 0);
    assert.match(human.stderr, /more keys follow: --start-after "2024\/cat\.jpg", or --all/);
    const all = JSON.parse(
      ok(await verb("key", "ls", "vol1", "photos", "--limit", "1", "--all", "--json"), "ls --all"),
    );
    assert.deepEqual(
      all.items.map((k: { key: string }) => k.key),
      ["2024/cat.jpg", "2024/dog.jpg", "2025/owl.jpg"],
    );
  });

  it("renames and removes keys", async () => {
    assert.equal(
      ok(await verb("key", "mv", "vol1", "photos", "2024/dog.jpg", "2025/dog.jpg"), "key mv"),
      "renamed vol1/photos/2024/dog.jpg to 2025/dog.jpg\n",
    );
    assert.equal(
      ok(await verb("key", "rm", "vol1", "photos", "2025/owl.jpg"), "key rm"),
      "removed vol1/photos/2025/owl.jpg\n",
    );
    const keys = JSON.parse(ok(await verb("key", "ls", "vol1", "photos", "--json"), "key ls"));
    assert.deepEqual(
      keys.items.map((k: { key: string }) => k.key),
      ["2024/cat.jpg", "2025/dog.jpg"],
    );
    failsInOneLine(await verb("key", "get", "vol1", "photos", "2025/owl.jpg"), 1, "MR_ERR_KEY_NOT_FOUND");
  });

  it("manages listener plugins while the cluster runs: add, ls, stop, start, restart, rm; and metrics", async () => {
    const file = join(dir, "events.ndjson");
    const options = JSON.stringify({ path: file, checkpoint_events: 1, checkpoint_ms: 50 });
    ok(
      await verb("listeners", "add", "audit", "--module", "ndjson", "--options", options, "--from", "start"),
      "add",
    );
    const row = async (): Promise<Record<string, unknown>> => {
      const listed = JSON.parse(ok(await verb("listeners", "ls", "--json"), "ls")) as {
        listeners: Record<string, unknown>[];
      };
      return listed.listeners.find((l) => l.name === "audit")!;
    };
    await waitFor("the sink runs and caught up", async () => {
      const r = await row();
      return r.state === "running" && r.lagTxids === 0 && (r.checkpoint as number) > 0;
    });
    const written = readFileSync(file, "utf8")
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { type: string });
    assert.ok(
      written.some((e) => e.type === "ObjectCreated:Put"),
      "the sink wrote the key puts",
    );
    const table = ok(await verb("listeners", "ls"), "ls table");
    assert.match(table, /^NAME\s+RUNNER\s+STATE\s+CHECKPOINT\s+LAG/m);
    assert.match(table, /^audit\s+node\s+running\s+\d+\s+0\s/m);
    assert.equal(ok(await verb("listeners", "stop", "audit"), "stop"), "stopped listener audit\n");
    await waitFor("stopped", async () => (await row()).state === "stopped");
    ok(await verb("listeners", "start", "audit"), "start");
    ok(await verb("listeners", "restart", "audit"), "restart");
    await waitFor("running again", async () => (await row()).state === "running");
    assert.match(ok(await verb("metrics"), "metrics"), /^metaraft_ledger_last_txid \d+$/m);
    failsInOneLine(
      await verb("listeners", "add", "audit", "--module", "ndjson"),
      1,
      "MR_ERR_LISTENER_EXISTS",
    );
    // A shipped sink's options are checked before the change commits, naming the option.
    failsInOneLine(
      await verb("listeners", "add", "bad", "--module", "ndjson", "--options", "{}"),
      1,
      "MR_ERR_INVALID_ARGUMENT",
      "path",
    );
    failsInOneLine(
      await verb("listeners", "add", "bad", "--module", "webhook", "--options", '{"url":"ftp://x"}'),
      1,
      "url",
    );
    // A plugin of one's own checks its options in its thread: a bad one shows in ls, named.
    const fixture = fileURLToPath(new URL("../fixtures/misbehaving-listener.js", import.meta.url));
    ok(
      await verb("listeners", "add", "bad", "--module", fixture, "--options", '{"mode":"sideways"}'),
      "add bad",
    );
    await waitFor("the bad one failed, saying why", async () => {
      const listed = JSON.parse(ok(await verb("listeners", "ls", "--json"), "ls")) as {
        listeners: Record<string, unknown>[];
      };
      const bad = listed.listeners.find((l) => l.name === "bad")!;
      return (bad.restarts as number) >= 1 && /mode/.test(String(bad.lastError));
    });
    ok(await verb("listeners", "rm", "audit"), "rm");
    ok(await verb("listeners", "rm", "bad"), "rm bad");
    failsInOneLine(await verb("listeners", "rm", "audit"), 1, "MR_ERR_LISTENER_NOT_FOUND");
  });

  it("shows and drives services: service ls/stop/start, lifecycle set/get/rm expiring a key", async () => {
    const row = async (): Promise<Record<string, unknown>> =>
      (
        JSON.parse(ok(await verb("service", "ls", "--json"), "service ls")).services as Record<
          string,
          unknown
        >[]
      ).find((s) => s.name === "lifecycle")!;
    await waitFor("the lifecycle service runs on the leader", async () => (await row()).state === "running");
    assert.match(ok(await verb("service", "ls"), "service ls"), /^lifecycle\s+running\s+\d\s+yes\s/m);
    ok(await verb("key", "put", "vol1", "photos", "tmp/scratch", "--size", "1", "--etag", "x"), "put");
    ok(
      await verb("lifecycle", "set", "vol1/photos", "--prefix", "tmp/", "--expire-after", "1ms"),
      "lifecycle set",
    );
    assert.match(
      ok(await verb("lifecycle", "get", "vol1/photos"), "lifecycle get"),
      /vol1\/photos\s+"tmp\/"\s+1 ms/,
    );
    await waitFor(
      "the key expired",
      async () => (await verb("key", "get", "vol1", "photos", "tmp/scratch")).code === 1,
    );
    assert.ok(
      JSON.parse(ok(await verb("key", "ls", "vol1", "photos", "--json"), "key ls")).items.length > 0,
      "others kept",
    );
    const got = JSON.parse(ok(await verb("service", "get", "lifecycle"), "service get")) as {
      service: { config: { buckets: Record<string, unknown> }; progress: { passes: number } };
    };
    assert.ok(got.service.config.buckets["vol1/photos"], "service get shows the replicated configuration");
    ok(await verb("lifecycle", "rm", "vol1/photos"), "lifecycle rm");
    ok(await verb("service", "set", "lifecycle", "--config", '{"buckets":{}}'), "service set");
    failsInOneLine(
      await verb("service", "set", "lifecycle", "--config", '{"buckets":{"x":[]}}'),
      1,
      "MR_ERR_INVALID_ARGUMENT",
    );
    assert.equal(
      ok(await verb("lifecycle", "get", "-w", "json"), "lifecycle get").trim(),
      JSON.stringify({ buckets: {} }, null, 2),
    );
    failsInOneLine(
      await verb("lifecycle", "set", "vol1/photos", "--expire-after", "soon"),
      2,
      "expire-after",
    );
    ok(await verb("service", "stop", "lifecycle"), "stop");
    await waitFor("stopped", async () => (await row()).state === "stopped");
    ok(await verb("service", "start", "lifecycle"), "start");
    await waitFor("running", async () => (await row()).state === "running");
  });

  it("shows one status row per node, with a leader", async () => {
    const out = ok(await verb("status"), "status")
      .trim()
      .split("\n");
    assert.match(out[0]!, /^NODE +ENDPOINT +ROLE +TERM +LEADER +COMMIT +APPLIED +MEMBERS$/);
    const rows = out.slice(1, -1);
    assert.equal(rows.length, NODES, out.join("\n"));
    assert.equal(rows.filter((r) => / leader /.test(r)).length, 1, out.join("\n"));
    for (const row of rows) assert.match(row, /1,2,3$/);
    assert.match(out.at(-1)!, /^leader: node [1-3] \(term \d+\); 3 of 3 endpoints answered$/);
    const health = await verb("endpoint", "health", "-w", "json");
    assert.equal(health.code, 0, health.stderr);
    assert.equal(JSON.parse(health.stdout).healthy, true);
    const volumes = JSON.parse(ok(await verb("volume", "ls", "-w", "json"), "volume ls -w json"));
    assert.match(volumes.items[0].createdAt, /^\d{4}-\d\d-\d\dT/);
    const json = JSON.parse(ok(await verb("status", "--json"), "status --json"));
    assert.equal(json.healthy, true);
    assert.equal(json.nodes.length, NODES);
    for (const node of json.nodes) {
      assert.equal(node.leader, json.leader);
      assert.ok(node.applied >= 1 && node.commit >= 1, JSON.stringify(node));
    }
  });

  it("status and endpoint health exit 1 while a member does not answer, and still name the leader", async () => {
    const json = JSON.parse(ok(await verb("status", "--json"), "status --json"));
    const leader = json.leader as number;
    const victim = [1, 2, 3].find((id) => id !== leader)!;
    const pid = nodePids[victim - 1]!;
    // Frozen, not killed: its sockets stay open and silent, and the cluster stays whole for the
    // tests after this one.
    process.kill(pid, "SIGSTOP");
    try {
      const status = await verb("status", "--timeout-ms", "1500");
      assert.equal(status.code, 1, `${status.stdout}\n${status.stderr}`);
      assert.match(
        status.stdout,
        new RegExp(`leader: node ${leader} \\(term \\d+\\); 2 of 3 endpoints answered`),
      );
      assert.match(status.stderr, /MR_ERR_UNAVAILABLE: unhealthy: 127\.0\.0\.1:\d+ MR_ERR_TIMEOUT/);
      const health = await verb("endpoint", "health", "-w", "json", "--timeout-ms", "1500");
      assert.equal(health.code, 1, health.stderr);
      assert.equal(JSON.parse(health.stdout).healthy, false);
    } finally {
      process.kill(pid, "SIGCONT");
    }
    const healed = await verb("status");
    assert.equal(healed.code, 0, healed.stderr);
  });

  it("takes the endpoints from METARAFT_ENDPOINTS, and --endpoints over it", async () => {
    const viaEnv = await cli(["volume", "ls"], { METARAFT_ENDPOINTS: endpoints });
    assert.match(ok(viaEnv, "volume ls via env"), /\nvol1 /);
    const port = await freeRange(1);
    const flagWins = await cli(["volume", "ls", "--endpoints", `127.0.0.1:${port}`], {
      METARAFT_ENDPOINTS: endpoints,
    });
    failsInOneLine(flagWins, 1, "MR_ERR_UNAVAILABLE");
  });

  it("reports a service error in one line, exit 1", async () => {
    failsInOneLine(await verb("volume", "create", "vol1"), 1, "MR_ERR_VOLUME_EXISTS", "vol1");
    const asJson = await verb("volume", "create", "vol1", "-w", "json");
    assert.equal(asJson.code, 1);
    assert.equal(asJson.stdout, "");
    assert.equal(JSON.parse(asJson.stderr).error.code, "MR_ERR_VOLUME_EXISTS");
  });

  it("reports unreachable endpoints in one line, exit 1, quickly", async () => {
    const port = await freeRange(2);
    const started = Date.now();
    const run = await cli([
      "volume",
      "create",
      "vol2",
      "--endpoints",
      `127.0.0.1:${port},127.0.0.1:${port + 1}`,
    ]);
    failsInOneLine(run, 1, "MR_ERR_UNAVAILABLE", `127.0.0.1:${port}`, "connection refused");
    failsInOneLine(await cli(["status", "--endpoints", `127.0.0.1:${port}`]), 1, "MR_ERR_UNAVAILABLE");
    assert.ok(Date.now() - started < 5000, "fails fast");
  });

  it("reports usage errors in one line, exit 2", async () => {
    failsInOneLine(await verb("key", "put", "vol1", "photos", "k", "--size", "big"), 2, "--size");
    failsInOneLine(
      await cli(["volume", "ls", "--endpoints", "nowhere"]),
      2,
      "MR_ERR_USAGE",
      "--endpoints",
      "see 'metaraft volume ls --help'",
    );
    failsInOneLine(
      await verb("key", "put", "vol1", "photos", "k", "--size", "big"),
      2,
      "MR_ERR_USAGE",
      "see 'metaraft key put --help'",
    );
    const asJson = await verb("key", "put", "vol1", "photos", "k", "--size", "big", "-w", "json");
    assert.equal(asJson.code, 2);
    assert.equal(JSON.parse(asJson.stderr).error.code, "MR_ERR_USAGE");
    failsInOneLine(await cli(["volume", "bogus"]), 2, "bogus");
    failsInOneLine(await cli(["start", "--tick-ms", "0"]), 2, "MR_ERR_USAGE", "--tick-ms");
  });

  it("dev reports a node that fails to start and exits 1", async () => {
    const raftPort = await freeRange(1);
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const clientPort = (taken.address() as { port: number }).port;
    try {
      const run = await cli([
        "dev",
        "--nodes",
        "1",
        "--data",
        join(dir, "failing"),
        "--base-port",
        String(raftPort),
        "--client-base-port",
        String(clientPort),
      ]);
      assert.equal(run.code, 1, `${run.stdout}\n${run.stderr}`);
      assert.match(
        run.stderr,
        /^error: MR_ERR_LISTEN_FAILED: .* is in use\) \(node 1 failed to start, code 1\)$/m,
      );
      assert.match(run.stderr, /MR_ERR_LISTEN_FAILED/);
    } finally {
      await new Promise<void>((r) => taken.close(() => r()));
    }
  });

  it("stops every node cleanly on Ctrl-C and exits 0", async () => {
    assert.ok(dev && devExit);
    dev.kill("SIGINT");
    const exit = await devExit;
    assert.deepEqual(exit, { code: 0, signal: null }, `${devOut}\n${devErr}`);
    for (let id = 1; id <= NODES; id++) assert.match(devOut, new RegExp(`^node ${id} stopped$`, "m"));
    assert.match(devOut, /all nodes stopped\n$/);
    for (const pid of nodePids) assert.equal(alive(pid), false, `node process ${pid} still running`);
  });
});
