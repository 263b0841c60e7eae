import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import type { ListenerRow } from "../../src/server/node-listeners.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const COLLECT = fileURLToPath(new URL("../fixtures/collect-listener.js", import.meta.url));
const MISBEHAVING = fileURLToPath(new URL("../fixtures/misbehaving-listener.js", import.meta.url));

const lines = (file: string): string[] =>
  existsSync(file) ? readFileSync(file, "utf8").split("\n").filter(Boolean) : [];
const txids = (file: string): number[] => lines(file).map((l) => Number(l.split(" ")[0]));

describe("listener plugins in the node's worker threads", () => {
  let cluster: InProcessCluster;
  let declaredFile: string;

  before(async () => {
    // The cluster's directory exists once it starts; the file goes in a fresh one beside it.
    const dir = join(process.env.TMPDIR ?? "/tmp", `metaraft-listeners-${process.pid}-${Date.now()}`);
    declaredFile = join(dir, "declared.log");
    const { mkdirSync } = await import("node:fs");
    mkdirSync(dir, { recursive: true });
    cluster = await InProcessCluster.start({
      nodes: 3,
      listeners: [
        { name: "declared", module: COLLECT, options: { file: declaredFile }, runner: "node", from: "start" },
      ],
    });
  });
  after(async () => {
    await cluster.stop();
  });

  const rows = async (): Promise<ListenerRow[]> =>
    ((await cluster.client().listenerStatus()) as unknown as { listeners: ListenerRow[] }).listeners;
  const row = async (name: string): Promise<ListenerRow | undefined> =>
    (await rows()).find((r) => r.name === name);

  it("registers a declared listener when its node leads, delivers every event in order and checkpoints it", async () => {
    const client = cluster.client();
    await client.createVolume("lsn");
    await client.createBucket("lsn", "bkt");
    for (let i = 0; i < 20; i++) await client.putKey("lsn", "bkt", `k${i}`, { size: i, etag: "e" });
    const ledger = (await client.readEvents({ afterTxid: 0, limit: 1000 })).events as readonly {
      txid: number;
    }[];
    await waitFor("the plugin wrote every event", () => txids(declaredFile).length >= ledger.length);
    assert.deepEqual(
      txids(declaredFile),
      ledger.map((e) => e.txid),
    );
    const last = ledger.at(-1)!.txid;
    await waitFor(
      "the checkpoint reached the last event",
      async () => (await row("declared"))?.checkpoint === last,
    );
    const r = (await row("declared"))!;
    assert.equal(r.state, "running");
    assert.equal(r.runner, "node");
    assert.equal(r.lagTxids, 0);
    assert.equal(r.restarts, 0);
  });

  it("wakes a plugin for each lone write, never leaving it to its poll", async () => {
    // A poll of ten minutes: only the node's announcement of each batch can wake the sink. It
    // used to come before the batch's LMDB commit was visible to the plugin's thread, so the
    // plugin read nothing and slept until its poll.
    const client = cluster.client();
    const file = `${declaredFile}.sparse`;
    await client.listenerAdd({ name: "sparse", module: "ndjson", options: { path: file, poll_ms: 600_000 } });
    await waitFor("it runs", async () => (await row("sparse"))?.state === "running");
    for (let i = 0; i < 5; i++) {
      await client.putKey("lsn", "bkt", `lone-${i}`, { size: 1, etag: "e" });
      await waitFor(`lone write ${i} delivered`, () => lines(file).some((l) => l.includes(`"lone-${i}"`)));
    }
    await client.listenerRemove("sparse");
  });

  it("reports the ledger's metrics and the plugins' with the node's", async () => {
    const leader = await cluster.leader();
    const ledger = (await cluster.client().status()).ledger as { lastTxid: number; written: number };
    const text = await leader.listeners.metricsText();
    const value = (name: string): number =>
      Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, "m").exec(text)?.[1]);
    assert.ok(value("metaraft_ledger_last_txid") >= ledger.lastTxid - 1, text);
    assert.ok(value("metaraft_ledger_events_written") > 0, text);
    assert.match(text, /^collect_events_total\{listener="declared"\} \d+$/m);
    // Through the client port too (`metaraft metrics`).
    assert.match(String((await cluster.client().metrics()).text), /metaraft_ledger_first_txid/);
  });

  it("follows the registry: add, stop, start, restart and remove take effect with no node restart", async () => {
    const client = cluster.client();
    const file = `${declaredFile}.added`;
    await client.listenerAdd({ name: "added", module: COLLECT, options: { file }, from: "now" });
    await waitFor("the added listener runs", async () => (await row("added"))?.state === "running");
    await client.putKey("lsn", "bkt", "after-add", { size: 1, etag: "e" });
    await waitFor("it delivered the write after it was added", () =>
      lines(file).some((l) => l.includes("after-add")),
    );
    assert.equal(lines(file).length, 1, "from now: nothing before it was added");

    await client.listenerUpdate("added", { enabled: false });
    await waitFor("a stopped listener shows stopped", async () => (await row("added"))?.state === "stopped");
    await client.putKey("lsn", "bkt", "while-stopped", { size: 1, etag: "e" });
    await client.listenerUpdate("added", { enabled: true });
    await waitFor("started again, it delivers from its checkpoint", () =>
      lines(file).some((l) => l.includes("while-stopped")),
    );

    await client.listenerUpdate("added", { restart: true });
    await client.putKey("lsn", "bkt", "after-restart", { size: 1, etag: "e" });
    await waitFor("restarted, it delivers again", () => lines(file).some((l) => l.includes("after-restart")));

    await client.listenerRemove("added");
    await waitFor("a removed listener is gone", async () => (await row("added")) === undefined);
    const leader = await cluster.leader();
    await waitFor("its thread has stopped", async () =>
      (await leader.listeners.host.statuses()).every((s) => s.name !== "added"),
    );
    await client.putKey("lsn", "bkt", "after-remove", { size: 1, etag: "e" });
    await waitFor("the declared one delivered it", () =>
      lines(declaredFile).some((l) => l.includes("after-remove")),
    );
    assert.ok(!lines(file).some((l) => l.includes("after-remove")));
  });

  it("restarts a plugin that crashes its thread with backoff, and one that spins does not stop writes", async () => {
    const client = cluster.client();
    await client.listenerAdd({
      name: "crashing",
      module: COLLECT,
      options: { file: `${declaredFile}.x`, mode: "crash" },
    });
    await client.listenerAdd({
      name: "spinning",
      module: COLLECT,
      options: { file: `${declaredFile}.y`, mode: "spin" },
    });
    await waitFor(
      "the crashing plugin was restarted",
      async () => ((await row("crashing"))?.restarts ?? 0) >= 2,
    );
    const crashing = (await row("crashing"))!;
    assert.match(crashing.lastError ?? "", /crashed on purpose/);
    for (let i = 0; i < 20; i++) await client.putKey("lsn", "bkt", `busy-${i}`, { size: 1, etag: "e" });
    await waitFor("the healthy plugin still delivers", () =>
      lines(declaredFile).some((l) => l.includes("busy-19")),
    );
    await client.listenerRemove("crashing");
    await client.listenerRemove("spinning");
    await waitFor("both are gone", async () => (await rows()).length === 1);
  });

  it("a plugin that throws on every call and one that hangs do not hurt writes or the other listeners", async () => {
    const client = cluster.client();
    const added = await client.listenerAdd({
      name: "throwing",
      module: MISBEHAVING,
      options: { mode: "throw" },
    });
    await client.listenerAdd({
      name: "hanging",
      module: MISBEHAVING,
      options: { mode: "hang", stop_timeout_ms: 200 },
    });
    await waitFor("both run", async () => {
      const r = await rows();
      return ["throwing", "hanging"].every((n) => r.some((x) => x.name === n && x.state !== "starting"));
    });
    // Every write of a concurrent load is acknowledged while they misbehave.
    const results = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => client.putKey("lsn", "bkt", `load-${i}`, { size: i, etag: "e" })),
    );
    assert.deepEqual(
      results.filter((r) => r.status === "rejected"),
      [],
    );
    await waitFor("the healthy listener delivered the whole load", () =>
      lines(declaredFile).some((l) => l.includes("load-199")),
    );
    await waitFor("the throwing one is retrying, with its errors counted", async () => {
      const r = await row("throwing");
      return r?.state === "retrying" && r.errors >= 2 && /misbehaving on purpose/.test(r.lastError ?? "");
    });
    const hanging = (await row("hanging"))!;
    assert.ok(hanging.lagTxids > 0, "the hanging one delivered nothing");
    // Nothing it failed to deliver was checkpointed.
    assert.equal((await row("throwing"))!.checkpoint, (added.listener as { checkpoint: number }).checkpoint);
    await client.listenerRemove("throwing");
    await client.listenerRemove("hanging");
    const leader = await cluster.leader();
    await waitFor("their threads stopped (the hanging one past its stop timeout)", async () =>
      (await leader.listeners.host.statuses()).every((s) => s.name === "declared"),
    );
  });

  it("a new leader runs the listeners from the replicated checkpoint", async () => {
    const client = cluster.client();
    const before = (await row("declared"))!.checkpoint;
    const leader = await cluster.leader();
    await cluster.stopNode(leader.config.id);
    for (let i = 0; i < 10; i++) await client.putKey("lsn", "bkt", `failover-${i}`, { size: 1, etag: "e" });
    await waitFor("the new leader's plugin delivered the writes", () =>
      lines(declaredFile).some((l) => l.includes("failover-9")),
    );
    const seen = txids(declaredFile);
    // At least once: every txid after the old checkpoint arrives, in order within a run.
    const ledger = (
      (await client.readEvents({ afterTxid: 0, limit: 10_000 })).events as readonly { txid: number }[]
    ).map((e) => e.txid);
    for (const txid of ledger) assert.ok(seen.includes(txid), `txid ${txid} delivered`);
    assert.ok(before > 0);
    await cluster.startNode(leader.config.id);
  });
});
