import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { MetaraftClient } from "../../src/client/client.js";
import type { ListenerRow } from "../../src/server/node-listeners.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const CLI = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));
const COLLECT = fileURLToPath(new URL("../fixtures/collect-listener.js", import.meta.url));

interface Line {
  readonly txid: number;
  readonly path: string;
  readonly pid: number;
}
const linesOf = (file: string): Line[] =>
  existsSync(file)
    ? readFileSync(file, "utf8")
        .split("\n")
        .filter(Boolean)
        .map((l) => {
          const [txid, , path, pid] = l.split(" ");
          return { txid: Number(txid), path: path!, pid: Number(pid) };
        })
    : [];

/** `metaraft listeners run --data DIR`, started as an operator would, beside each node. */
async function startRunner(dataDir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, "listeners", "run", "--data", dataDir, "--log-level", "warn"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once("line", () => resolve());
    child.once("exit", (code) => reject(new Error(`the runner exited with ${code}`)));
  });
  return child;
}

describe("the separate listener runner (metaraft listeners run)", () => {
  let cluster: ProcessCluster;
  const runners = new Map<number, ChildProcess>();
  let client: MetaraftClient;
  let file: string;

  before(async () => {
    cluster = await ProcessCluster.start({ kind: "metaraft", nodes: 3 });
    file = join(cluster.dir, "collected.log");
    for (const id of [1, 2, 3]) runners.set(id, await startRunner(join(cluster.dir, `node-${id}`)));
    client = new MetaraftClient({
      endpoints: cluster.endpoints,
      clusterId: cluster.clusterId,
      timeoutMs: 15_000,
    });
  });
  after(async () => {
    client?.close();
    for (const runner of runners.values()) runner.kill("SIGKILL");
    await cluster?.stop();
  });

  const row = async (name: string): Promise<ListenerRow | undefined> =>
    ((await client.listenerStatus()) as unknown as { listeners: ListenerRow[] }).listeners.find(
      (r) => r.name === name,
    );

  it("runs only beside the leader, and takes over when its node becomes leader", async () => {
    await client.createVolume("run");
    await client.createBucket("run", "bkt");
    await client.listenerAdd({
      name: "outside",
      module: COLLECT,
      options: { file },
      runner: "process",
      from: "start",
    });
    for (let i = 0; i < 10; i++) await client.putKey("run", "bkt", `a${i}`, { size: i, etag: "e" });
    await waitFor("the leader's runner delivered every write", () =>
      linesOf(file).some((l) => l.path === "run/bkt/a9"),
    );
    const leader = await cluster.leader();
    const leaderRunner = runners.get(leader)!.pid!;
    assert.deepEqual(
      [...new Set(linesOf(file).map((l) => l.pid))],
      [leaderRunner],
      "only the runner beside the leader delivers; the followers' stay idle",
    );
    const ledger = (
      (await client.readEvents({ afterTxid: 0, limit: 1000 })).events as readonly { txid: number }[]
    ).map((e) => e.txid);
    assert.deepEqual(
      linesOf(file).map((l) => l.txid),
      ledger,
    );
    await waitFor("ls shows the runner's report: running, caught up", async () => {
      const r = await row("outside");
      return r?.state === "running" && r.lagTxids === 0 && r.runner === "process";
    });

    await cluster.kill(leader);
    for (let i = 0; i < 10; i++) await client.putKey("run", "bkt", `b${i}`, { size: i, etag: "e" });
    await waitFor("the new leader's runner delivered the writes", () =>
      linesOf(file).some((l) => l.path === "run/bkt/b9"),
    );
    const next = await cluster.leader();
    assert.notEqual(next, leader);
    const after = linesOf(file).filter((l) => l.path.startsWith("run/bkt/b"));
    assert.deepEqual([...new Set(after.map((l) => l.pid))], [runners.get(next)!.pid!]);
    // At least once: every event is in the file, whichever runner wrote it.
    const all = new Set(linesOf(file).map((l) => l.txid));
    const ledgerNow = (
      (await client.readEvents({ afterTxid: 0, limit: 1000 })).events as readonly { txid: number }[]
    ).map((e) => e.txid);
    for (const txid of ledgerNow) assert.ok(all.has(txid), `txid ${txid} delivered`);
    await cluster.startNode(leader);
  });
});
