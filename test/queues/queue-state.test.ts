import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { dataPrefix, parseDataKey, type QueueStatusRow, readMeta } from "../../src/queues/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { openEnvironment } from "../../src/storage/index.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const code = (error: unknown) => (error instanceof MetaraftError ? error.code : String(error));

async function settle(cluster: InProcessCluster): Promise<void> {
  const leader = await cluster.leader();
  const target = leader.host.appliedIndex;
  await waitFor("every node applied the leader's entries", () =>
    cluster.nodes.every((n) => !n || n.host.appliedIndex >= target),
  );
  await Promise.all(cluster.nodes.map((n) => n?.store.flushed()));
}

/** Every row of the `queues` table, from the node's LMDB file. */
function dumpQueues(node: MetaraftNode): string {
  const rows: string[] = [];
  for (const { key, value } of node.env.dbs.queues.getRange({})) {
    rows.push(
      `${Buffer.from(key as Uint8Array).toString()} ${Buffer.from(value as Uint8Array).toString("hex")}`,
    );
  }
  return rows.join("\n");
}

async function statusOn(node: MetaraftNode, queue: string): Promise<QueueStatusRow | undefined> {
  return (await node.queues.statuses()).find((q) => q.name === queue);
}

describe("queue state", () => {
  it("both execution modes end in byte-identical queue tables for the same request sequence", async () => {
    const dumps: string[] = [];
    for (const mode of ["leader-execution", "replicated-request"] as const) {
      const cluster = await InProcessCluster.start({ nodes: 3, mode, clock: () => 1_700_000_000_000 });
      try {
        const client = cluster.client("same-client");
        await client.queueRegister("same", { maxOutstandingBytes: 8192, segmentBytes: 4096 });
        const adds: Record<string, unknown>[] = [];
        for (let i = 0; i < 12; i++) {
          const events = Array.from({ length: 1 + (i % 4) }, (_, j) =>
            `e${i}.${j}`.padEnd(150 + 40 * j, "-"),
          );
          adds.push(await client.queueAdd("same", events));
        }
        await assert.rejects(
          client.queueAdd("same", "x".repeat(4000)),
          (e) => code(e) === "MR_ERR_QUEUE_FULL",
        );
        const leader = await cluster.leader();
        let call = 0;
        const direct = (request: Record<string, unknown>) =>
          leader.pipeline.submit("direct", call++, request as { op: string });
        // What the tail would send: a truncation at the 6th add, its first event dead-lettered,
        // more adds, the dead letter retried, another dead-lettered and purged, and the deletes.
        const at = adds[5]!;
        await direct({
          op: "queueTruncate",
          queue: "same",
          offset: at.offset,
          rowOffset: at.offset,
          events: at.index,
        });
        await direct({
          op: "queueDeadLetter",
          queue: "same",
          offset: at.offset,
          rowOffset: at.offset,
          index: at.index,
          event: Buffer.from("e5.0".padEnd(150, "-")),
          error: "Error: no",
          attempts: 3,
        });
        for (let i = 0; i < 4; i++) await client.queueAdd("same", `late-${i}`.padEnd(300, "+"));
        await client.queueRetryDeadLetters("same");
        const next = adds[6]!;
        await direct({
          op: "queueTruncate",
          queue: "same",
          offset: next.offset,
          rowOffset: next.offset,
          events: next.index,
        });
        await direct({
          op: "queueDeadLetter",
          queue: "same",
          offset: next.offset,
          rowOffset: next.offset,
          index: next.index,
          event: Buffer.from("e6.0".padEnd(150, "-")),
          error: "Error: again",
          attempts: 1,
        });
        await client.queuePurgeDeadLetters("same");
        const end = readMeta(leader.pipeline.reader, "same")!;
        await direct({
          op: "queueTruncate",
          queue: "same",
          offset: end.appended,
          rowOffset: end.appended,
          events: end.appendedEvents,
        });
        await settle(cluster);
        const states = cluster.nodes.map((n) => dumpQueues(n!));
        assert.equal(states[1], states[0]);
        assert.equal(states[2], states[0]);
        dumps.push(states[0]!);
      } finally {
        await cluster.stop();
      }
    }
    assert.ok(dumps[0]!.split("\n").length >= 3, dumps[0]);
    assert.equal(dumps[1], dumps[0]);
  });

  it("a segment that fails its checksum stops its queue on that node with MR_ERR_LOG_CORRUPT naming the segment, raises the metric, and skips nothing", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, queue: { segmentBytes: 4096 } });
    try {
      const client = cluster.client();
      await client.queueRegister("fragile", { maxOutstandingBytes: 1 << 20, segmentBytes: 4096 });
      // Five adds of four events of 1,024 bytes framed: one row, and one 4 KiB segment, each.
      for (let r = 0; r < 5; r++) {
        await client.queueAdd(
          "fragile",
          Array.from({ length: 4 }, (_, e) => `row${r}-event${e}`.padEnd(1024 - 9, ".")),
        );
      }
      await settle(cluster);
      const victim = cluster.nodes.find((n) => n && !n.host.isLeader)!;
      const id = victim.config.id;
      await cluster.stopNode(id);
      const env = openEnvironment(join(cluster.dir, `node-${id}`, "state"));
      const keys = [...env.dbs.queues.getRange({})]
        .map(({ key }) => Buffer.from(key as Uint8Array).toString())
        .filter((k) => k.startsWith(dataPrefix("fragile")));
      assert.equal(keys.length, 5);
      const broken = keys[2]!;
      const { segment } = parseDataKey(broken);
      assert.equal(segment, 2);
      await env.transaction(() => {
        const value = Buffer.from(env.dbs.queues.get(Buffer.from(broken))!);
        value[value.length - 1]! ^= 0x01;
        env.dbs.queues.put(Buffer.from(broken), value);
      });
      await env.close();

      const restarted = await cluster.startNode(id);
      const seen: { node: number; text: string }[] = [];
      restarted.queues.forConsumer(
        "fragile",
        (events) => {
          for (const e of events)
            seen.push({ node: id, text: Buffer.from(e.data).toString().split(".")[0]! });
        },
        { maxItemsAtOnce: 3 },
      );
      await settle(cluster);
      await client.leaderTransfer(id);
      await waitFor("the corrupt node leads", () => restarted.host.leadership.ready);
      await waitFor(
        "its tail stops on the corrupt row",
        async () => (await statusOn(restarted, "fragile"))?.state === "corrupt",
      );
      const status = (await statusOn(restarted, "fragile"))!;
      assert.match(status.lastError!, /^MR_ERR_LOG_CORRUPT/);
      assert.ok(status.lastError!.includes(`segment ${segment}`), status.lastError);
      assert.ok(status.lastError!.includes(broken), status.lastError);
      assert.match(status.lastError!, /fails its checksum: MR_ERR_FRAME_CORRUPT/);
      // Everything before the corrupt row, nothing from it or after it.
      assert.deepEqual(
        seen.map((s) => s.text),
        Array.from({ length: 8 }, (_, i) => `row${Math.floor(i / 4)}-event${i % 4}`),
      );
      const metrics = await restarted.queues.metrics.metrics();
      assert.match(metrics, /metaraft_queue_corrupt\{queue="fragile"\} 1/);
      // The listing shows it through the client too (the leader answers).
      const listed = ((await client.queueStatus()).queues as Record<string, unknown>[]).find(
        (q) => q.name === "fragile",
      )!;
      assert.equal(listed.state, "corrupt");

      // Another node's copy is intact: once it leads, it delivers the rest.
      const healthy = cluster.nodes.find((n) => n && n !== restarted)!;
      const rest: string[] = [];
      for (const node of cluster.nodes) {
        if (node && node !== restarted) {
          node.queues.forConsumer("fragile", (events) => {
            for (const e of events) rest.push(Buffer.from(e.data).toString().split(".")[0]!);
          });
        }
      }
      await client.leaderTransfer(healthy.config.id);
      await waitFor("the rows from the corrupt one on", () => rest.includes("row4-event3"));
      assert.ok(rest.includes("row2-event0"), rest.join(","));
      assert.ok(restarted.host.isLeader === false);
    } finally {
      await cluster.stop();
    }
  });
});
