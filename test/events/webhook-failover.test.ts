import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import type { LedgerEvent } from "../../src/events/index.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const CHECKPOINT_EVENTS = 100;
const BATCH_EVENTS_MAX = 50;

/** The shipped webhook sink in the leader's worker thread, while the leader is `kill -9`ed twice. */
describe("a webhook listener across leader kills", () => {
  let server: Server;
  let url: string;
  let cluster: ProcessCluster;
  let client: MetaraftClient;
  const configDir = mkdtempSync(join(tmpdir(), "metaraft-webhook-"));
  /** Every txid received, in arrival order (a batch's events in their order). */
  const arrivals: number[] = [];

  before(async () => {
    server = createServer((request, response) => {
      let body = "";
      request.setEncoding("utf8");
      request.on("data", (chunk: string) => {
        body += chunk;
      });
      request.on("end", () => {
        for (const event of JSON.parse(body) as LedgerEvent[]) arrivals.push(event.txid);
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address() as { port: number };
    url = `http://127.0.0.1:${address.port}/events`;
    const config = join(configDir, "node.yaml");
    writeFileSync(
      config,
      [
        "listeners:",
        "  - name: hook",
        "    module: webhook",
        "    from: start",
        "    options:",
        `      url: ${url}`,
        "      format: native",
        `      checkpoint_events: ${CHECKPOINT_EVENTS}`,
        // Checkpoints by count only, so the bound on duplicates below is exact.
        "      checkpoint_ms: 3600000",
        `      batch_events_max: ${BATCH_EVENTS_MAX}`,
        "",
      ].join("\n"),
    );
    cluster = await ProcessCluster.start({ kind: "metaraft", nodes: 3, extraArgs: [`--config=${config}`] });
    client = new MetaraftClient({
      endpoints: cluster.endpoints,
      clusterId: cluster.clusterId,
      timeoutMs: 20_000,
    });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    rmSync(configDir, { recursive: true, force: true });
  });

  it("delivers every committed txid at least once, each run in order, duplicates within the checkpoint interval", async (t) => {
    await client.createVolume("hook");
    await client.createBucket("hook", "bkt");
    const firstTerm = (await cluster.status(await cluster.leader())).term as number;
    let writing = true;
    let acknowledged = 0;
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; writing; i++) {
        // A write in flight when the leader dies may fail after its retries: the ledger, read
        // at the end, says what committed.
        await client.putKey("hook", "bkt", `w${w}-${i}`, { size: i, etag: "e" }).then(
          () => acknowledged++,
          () => undefined,
        );
      }
    };
    const writers = [0, 1, 2, 3].map(writer);
    for (let round = 0; round < 2; round++) {
      const before = arrivals.length;
      await waitFor("the webhook receives under load", () => arrivals.length > before + 200, 30_000);
      const leader = await cluster.leader();
      await cluster.kill(leader);
      const next = await cluster.leader(20_000);
      assert.notEqual(next, leader);
      const atKill = arrivals.length;
      await waitFor("the new leader's listener delivers", () => arrivals.length > atKill + 200, 30_000);
      await cluster.startNode(leader);
    }
    writing = false;
    await Promise.all(writers);
    assert.ok(acknowledged > 400, `acknowledged ${acknowledged}`);

    // Every event the ledger holds (nothing was pruned: events.max is 1,000,000).
    const ledger: number[] = [];
    for (let after = 0; ; ) {
      const read = await client.readEvents({ afterTxid: after, limit: 1000 });
      const events = read.events as LedgerEvent[];
      for (const e of events) if (ledger.at(-1) !== e.txid) ledger.push(e.txid);
      if (events.length === 0) break;
      after = events.at(-1)!.txid;
    }
    const received = (): Set<number> => new Set(arrivals);
    await waitFor("every committed txid arrived", () => ledger.every((t) => received().has(t)), 30_000);
    const leaderNow = await cluster.leader();
    const lastTerm = (await cluster.status(leaderNow)).term as number;

    // A run ends where the txids go back: a new leader resuming from the replicated checkpoint.
    const runs: number[][] = [[]];
    for (const txid of arrivals) {
      const run = runs.at(-1)!;
      if (run.length > 0 && txid <= run.at(-1)!) runs.push([txid]);
      else run.push(txid);
    }
    assert.ok(runs.length >= 2, "the kills restarted delivery at least once");
    assert.ok(
      runs.length <= 1 + (lastTerm - firstTerm),
      `${runs.length} runs for ${lastTerm - firstTerm} new terms: deliveries went back without a new leader`,
    );
    // Each run resumes at most the unconfirmed part of the checkpoint interval back: the events
    // since the last checkpoint, and those of a checkpoint that was proposed but lost with the leader.
    for (let i = 1; i < runs.length; i++) {
      const previousEnd = runs[i - 1]!.at(-1)!;
      const resumed = runs[i]![0]!;
      const redelivered = ledger.filter((t) => t >= resumed && t <= previousEnd).length;
      assert.ok(
        redelivered <= 2 * (CHECKPOINT_EVENTS + BATCH_EVENTS_MAX),
        `run ${i} went back ${redelivered} events (from ${previousEnd} to ${resumed})`,
      );
    }
    const duplicates = arrivals.length - received().size;
    t.diagnostic(
      `${ledger.length} txids with events, ${arrivals.length} received, ${runs.length} runs, ${duplicates} duplicates, terms ${firstTerm}..${lastTerm}`,
    );
    assert.ok(
      duplicates <= (runs.length - 1) * 2 * (CHECKPOINT_EVENTS + BATCH_EVENTS_MAX),
      `${duplicates} duplicates`,
    );
  });
});
