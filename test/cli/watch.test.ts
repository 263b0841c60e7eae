import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { LedgerEvent } from "../../src/events/index.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

/** `metaraft watch` and `metaraft events tail` as processes, against nodes in this process. */

const cliPath = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

function env(): NodeJS.ProcessEnv {
  const base = { ...process.env };
  delete base.METARAFT_ENDPOINTS;
  delete base.METARAFT_CLUSTER_ID;
  return base;
}

function cli(args: readonly string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliPath, ...args],
      { env: env(), timeout: 20_000 },
      (error, stdout, stderr) => {
        resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr });
      },
    );
  });
}

/** A command left running: its output so far, and its exit. */
function start(args: readonly string[]) {
  const child = spawn(process.execPath, [cliPath, ...args], {
    env: env(),
    stdio: ["ignore", "pipe", "pipe"],
  });
  const run = { stdout: "", stderr: "" };
  child.stdout.on("data", (chunk: Buffer) => {
    run.stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    run.stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, run, exited };
}

describe("metaraft watch and events tail", { timeout: 60_000 }, () => {
  let cluster: InProcessCluster;
  let flags: string[];

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 3 });
    const endpoints = cluster.nodes
      .map((n) => `127.0.0.1:${n!.config.cluster.find((m) => m.id === n!.config.id)!.clientPort}`)
      .join(",");
    flags = ["--endpoints", endpoints, "--cluster-id", cluster.clusterId];
    const client = cluster.client();
    await client.createVolume("clivol");
    await client.createBucket("clivol", "bkt");
    await client.putKey("clivol", "bkt", "a.txt", { size: 3, etag: "abc" });
    await client.renameKey("clivol", "bkt", "a.txt", "b.txt");
  });

  after(async () => {
    await cluster.stop();
  });

  const watching = () => cluster.nodes.reduce((n, node) => n + (node?.watches.size ?? 0), 0);

  it("prints the events under a prefix from --from as a table, and stops after --count", async () => {
    const run = await cli(["watch", "clivol/bkt/", "--from", "1", "--count", "2", ...flags]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stderr, "");
    const lines = run.stdout.trimEnd().split("\n");
    assert.equal(lines.length, 3);
    assert.match(lines[0]!, /^TXID\s+TIME\s+TYPE\s+PATH\s+DETAIL$/);
    assert.match(
      lines[1]!,
      /^\d+\s+\d{4}-\d\d-\d\dT[\d:.]+Z\s+ObjectCreated:Put\s+clivol\/bkt\/a\.txt\s+size=3 etag=abc/,
    );
    assert.match(lines[2]!, /ObjectRenamed:Rename\s+clivol\/bkt\/a\.txt\s+to=b\.txt size=3/);
  });

  it("events tail -w json prints one JSON object per event, times in ISO 8601", async () => {
    const run = await cli(["events", "tail", "--from", "1", "--count", "4", "-w", "json", ...flags]);
    assert.equal(run.code, 0, run.stderr);
    const events = run.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as LedgerEvent & { time: string });
    assert.deepEqual(
      events.map((e) => e.type),
      ["VolumeCreated:Create", "BucketCreated:Create", "ObjectCreated:Put", "ObjectRenamed:Rename"],
    );
    assert.ok(events.every((e, i) => i === 0 || e.txid > events[i - 1]!.txid));
    assert.match(events[0]!.time, /^\d{4}-\d\d-\d\dT/);
  });

  it("from now, prints what happens after it starts; Ctrl-C stops it with exit 0", async () => {
    const before = watching();
    const tail = start(["watch", "clivol/", "-w", "json", ...flags]);
    try {
      await waitFor("the watch is open", () => watching() > before);
      const client = cluster.client();
      await client.createBucket("clivol", "later");
      await waitFor("the new event is printed", () => tail.run.stdout.includes("later"));
      const printed = tail.run.stdout
        .trimEnd()
        .split("\n")
        .map((l) => JSON.parse(l) as LedgerEvent);
      assert.deepEqual(
        printed.map((e) => [e.type, e.bucket]),
        [["BucketCreated:Create", "later"]],
      );
      tail.child.kill("SIGINT");
      assert.equal(await tail.exited, 0);
      assert.equal(tail.run.stderr, "");
      await waitFor("the watch ended on its node", () => watching() === before);
    } finally {
      tail.child.kill("SIGKILL");
    }
  });

  it("fails in one line: a usage error exits 2, an unreachable cluster 1", async () => {
    const missing = await cli(["watch", ...flags]);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^error: MR_ERR_USAGE: .*prefix.*metaraft watch --help/);
    const badFrom = await cli(["events", "tail", "--from", "x", ...flags]);
    assert.equal(badFrom.code, 2);
    assert.match(badFrom.stderr, /^error: MR_ERR_USAGE: .*--from/);
    const down = await cli(["watch", "x", "--endpoints", "127.0.0.1:1", "--timeout-ms", "2000"]);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /^error: MR_ERR_UNAVAILABLE: /);
    assert.equal(down.stdout, "");
  });
});

describe("metaraft watch before the ledger's start", { timeout: 60_000 }, () => {
  it("exits 1 with MR_ERR_COMPACTED, naming the first txid held", async () => {
    const cluster = await InProcessCluster.start({ nodes: 1, events: { max: 5, hardMax: 20 } });
    try {
      const client = cluster.client();
      await client.createVolume("pruned");
      for (let i = 0; i < 20; i++) await client.createBucket("pruned", `bkt-${i}`);
      const port = cluster.nodes[0]!.config.cluster[0]!.clientPort;
      const run = await cli([
        "watch",
        "",
        "--from",
        "1",
        "--endpoints",
        `127.0.0.1:${port}`,
        "--cluster-id",
        cluster.clusterId,
      ]);
      assert.equal(run.code, 1);
      assert.equal(run.stdout, "");
      const first = ((await client.status()).ledger as { firstTxid: number }).firstTxid;
      assert.match(run.stderr, new RegExp(`^error: MR_ERR_COMPACTED: .*the ledger starts at ${first}\\b`));
      assert.equal(run.stderr.trimEnd().split("\n").length, 1);
    } finally {
      await cluster.stop();
    }
  });
});
