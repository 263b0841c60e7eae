import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import {
  dataPrefix,
  parseDataKey,
  type QueueEvent,
  type QueueHandler,
  type QueueMeta,
  readMeta,
  segmentOf,
} from "../../src/queues/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

/** Real nodes (LMDB files, TCP on loopback) in this process, with consumers registered on each. */

interface Delivery {
  readonly node: number;
  readonly offset: number;
  readonly text: string;
}

const text = (e: QueueEvent) => Buffer.from(e.data).toString();
const code = (error: unknown) => (error instanceof MetaraftError ? error.code : String(error));

/** A handler per node that records what it processed. */
function recorder(into: Delivery[], node: number): QueueHandler {
  return (events) => {
    for (const e of events) into.push({ node, offset: e.offset, text: text(e) });
  };
}

function consumeOn(
  cluster: InProcessCluster,
  queue: string,
  handler: (node: number) => QueueHandler,
  options: Record<string, unknown> = {},
): void {
  for (const node of cluster.nodes)
    if (node) node.queues.forConsumer(queue, handler(node.config.id), options);
}

const meta = (node: MetaraftNode, queue: string): QueueMeta | undefined => readMeta(node.store, queue);

/** The segments of the data rows `node` holds for `queue`, from its LMDB file. */
function segmentsOnDisk(node: MetaraftNode, queue: string): number[] {
  const prefix = dataPrefix(queue);
  const segments = new Set<number>();
  for (const { key } of node.env.dbs.queues.getRange({})) {
    const k = Buffer.from(key as Uint8Array).toString();
    if (k.startsWith(prefix)) segments.add(parseDataKey(k).segment);
  }
  return [...segments].sort((a, b) => a - b);
}

async function settle(cluster: InProcessCluster): Promise<void> {
  const leader = await cluster.leader();
  const target = leader.host.appliedIndex;
  await waitFor("every node applied the leader's entries", () =>
    cluster.nodes.every((n) => !n || n.host.appliedIndex >= target),
  );
  await Promise.all(cluster.nodes.map((n) => n?.store.flushed()));
}

describe("durable queues on a cluster", () => {
  it("delivers every event once and in order, truncates as it goes, and rolls segments over and deletes them on every node", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, queue: { segmentBytes: 4096 } });
    try {
      const client = cluster.client();
      // Registered first, with nobody consuming, so that the rows pile up in many segments.
      await client.queueRegister("work", { maxOutstandingBytes: 1 << 20, segmentBytes: 4096 });
      const payload = (i: number) => `event-${String(i).padStart(4, "0")}-`.padEnd(200, "x");
      let added = 0;
      for (let round = 0; round < 20; round++) {
        const events = Array.from({ length: 5 }, () => payload(added++));
        const reply = await client.queueAdd("work", events);
        assert.equal(reply.events, 5);
      }
      // A second client adding concurrently: the queue's order is the order adds commit in.
      const other = cluster.client();
      await Promise.all(
        Array.from({ length: 10 }, async (_, i) => {
          await other.queueAdd("work", `concurrent-${i}`.padEnd(200, "y"));
        }),
      );
      await settle(cluster);
      for (const node of cluster.nodes) {
        const held = segmentsOnDisk(node!, "work");
        assert.ok(held.length >= 5, `node ${node!.config.id} holds segments ${held.join(",")}`);
        assert.equal(meta(node!, "work")!.segments, held.length);
      }

      const delivered: Delivery[] = [];
      consumeOn(cluster, "work", (id) => recorder(delivered, id), {
        maxItemsAtOnce: 7,
        truncationBytes: 2000,
        truncationMs: 50,
      });
      await waitFor("every event delivered", () => delivered.length >= 110);
      const leader = await cluster.leader();
      assert.ok(
        delivered.every((d) => d.node === leader.config.id),
        "only the leader consumes",
      );
      // In order: offsets increase, and the first client's events come in the order it added them.
      for (let i = 1; i < delivered.length; i++) assert.ok(delivered[i]!.offset > delivered[i - 1]!.offset);
      assert.deepEqual(
        delivered.filter((d) => d.text.startsWith("event-")).map((d) => d.text),
        Array.from({ length: 100 }, (_, i) => payload(i)),
      );
      assert.equal(new Set(delivered.map((d) => d.text)).size, 110);
      assert.equal(delivered.length, 110, "no event twice without a failover");

      // The last truncation (by time) reaches the end, and the segments below go on every node.
      await waitFor("truncated to the end, segments deleted", () => {
        const m = meta(leader, "work")!;
        return m.truncated === m.appended && m.firstSegment === segmentOf(m.truncated, 4096);
      });
      await settle(cluster);
      const m = meta(leader, "work")!;
      assert.equal(m.appended - m.truncated, 0);
      for (const node of cluster.nodes) {
        const held = segmentsOnDisk(node!, "work");
        assert.ok(
          held.every((s) => s >= segmentOf(m.truncated, 4096)),
          `node ${node!.config.id}: ${held.join(",")}`,
        );
        assert.equal(meta(node!, "work")!.segments, held.length);
      }
      const status = (await client.queueStatus()).queues as Record<string, unknown>[];
      const row = status.find((q) => q.name === "work")!;
      assert.equal(row.state, "running");
      assert.equal(row.processed, m.appended);
      assert.equal(row.outstandingBytes, 0);
      assert.equal(typeof row.latencyP50Ms, "number");
      const metrics = String((await client.metrics()).text);
      assert.match(metrics, /metaraft_queue_events_processed_total\{queue="work"\} 110/);
      assert.match(metrics, /metaraft_queue_outstanding_bytes\{queue="work"\} 0/);
      assert.match(metrics, /metaraft_queue_processing_latency_seconds_count\{queue="work"\} 110/);
    } finally {
      await cluster.stop();
    }
  });

  it("resumes from the replicated truncation point after every node restarts: what followed it is delivered again, nothing before it", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    const delivered: Delivery[] = [];
    // Truncations by bytes only: after every 4 events of 109 bytes (100-byte payloads).
    const options = {
      truncationBytes: 4 * 109,
      truncationMs: 3_600_000,
      maxItemsAtOnce: 1,
      stopTimeoutMs: 100,
    };
    try {
      consumeOn(cluster, "resume", (id) => recorder(delivered, id), options);
      const client = cluster.client();
      await waitFor("the queue is registered", async () =>
        ((await client.queues()).queues as { name: string }[]).some((q) => q.name === "resume"),
      );
      // One at a time, so that the truncations fall after the 4th and the 8th.
      for (let i = 0; i < 10; i++) {
        await client.queueAdd("resume", `r${i}`.padEnd(100, "."));
        await waitFor(`r${i} delivered`, () => delivered.length === i + 1);
      }
      const leader = await cluster.leader();
      await waitFor("the second truncation", () => meta(leader, "resume")!.truncatedEvents === 8);
      await settle(cluster);
      const truncated = meta(leader, "resume")!.truncated;
      assert.equal(truncated, 8 * 109);
      // The followers first: the leader can no longer commit a last truncation as it closes, as
      // if it had crashed.
      for (const node of cluster.nodes) if (node && node !== leader) await cluster.stopNode(node.config.id);
      // Stepped down (check quorum) before it closes: its last truncation is never proposed, so
      // it cannot be committed by a later term either.
      await waitFor("the lone leader steps down", () => !leader.host.isLeader);
      await cluster.stopNode(leader.config.id);
      for (const id of [1, 2, 3]) await cluster.startNode(id);
      for (const node of cluster.nodes) assert.equal(meta(node!, "resume")!.truncated, truncated);
      const before = delivered.length;
      consumeOn(cluster, "resume", (id) => recorder(delivered, id), options);
      await waitFor("the events after the truncation again", () => delivered.length >= before + 2);
      const again = delivered.slice(before);
      assert.deepEqual(
        again.map((d) => [d.offset, d.text.slice(0, 2)]),
        [
          [8 * 109, "r8"],
          [9 * 109, "r9"],
        ],
      );
      await client.queueAdd("resume", "after".padEnd(100, "."));
      await waitFor("a new event after them", () => delivered.length === before + 3);
      assert.equal(delivered.at(-1)!.offset, 10 * 109);
    } finally {
      await cluster.stop();
    }
  });

  it("fails an add at once with QUEUE_FULL while the consumer is behind, and takes adds again once it has caught up", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      let open: () => void = () => {};
      const gate = new Promise<void>((resolve) => {
        open = resolve;
      });
      const delivered: Delivery[] = [];
      consumeOn(
        cluster,
        "full",
        (id) => async (events, signal) => {
          await Promise.race([gate, new Promise((_, reject) => signal.addEventListener("abort", reject))]);
          recorder(delivered, id)(events, signal);
        },
        { maxOutstandingBytes: 2048, truncationMs: 20 },
      );
      const client = cluster.client();
      await waitFor("the queue is registered", async () =>
        ((await client.queues()).queues as { name: string }[]).some((q) => q.name === "full"),
      );
      const event = "f".repeat(200 - 9);
      const outstanding: number[] = [];
      let refusal: unknown;
      for (let i = 0; i < 20 && refusal === undefined; i++) {
        await client.queueAdd("full", event).then(
          (reply) => outstanding.push(reply.outstandingBytes as number),
          (error: unknown) => {
            refusal = error;
          },
        );
      }
      assert.equal(code(refusal), "MR_ERR_QUEUE_FULL");
      assert.deepEqual(
        outstanding,
        Array.from({ length: 10 }, (_, i) => (i + 1) * 200),
        "each add resolves with the outstanding bytes",
      );
      // The same from an in-process handle on the leader.
      const leader = await cluster.leader();
      await assert.rejects(leader.queues.forDurableQueue("full").add(Buffer.from(event)), (e) => {
        assert.equal(code(e), "MR_ERR_QUEUE_FULL");
        assert.match(
          (e as Error).message,
          /2000 bytes outstanding \+ 200 would pass its maxOutstandingBytes of 2048/,
        );
        return true;
      });
      open();
      await waitFor("the backlog processed and truncated", () => meta(leader, "full")!.truncated === 2000);
      const reply = await client.queueAdd("full", event);
      assert.equal(reply.outstandingBytes, 200);
      await waitFor("the last one delivered", () => delivered.length === 11);
    } finally {
      await cluster.stop();
    }
  });

  it("moves a poison event to the dead letters after maxAttempts failures on its own, delivers the rest in order, and retries and purges dead letters", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const delivered: Delivery[] = [];
      let accepting = false;
      const attempts = new Map<string, number>();
      consumeOn(
        cluster,
        "poison",
        (id) => (events) => {
          for (const e of events) attempts.set(text(e), (attempts.get(text(e)) ?? 0) + 1);
          if (!accepting && events.some((e) => text(e).startsWith("poison"))) throw new Error("poison event");
          recorder(delivered, id)(events, new AbortController().signal);
        },
        { maxAttempts: 3, retryInitialMs: 5, retryMaxMs: 20, truncationMs: 20 },
      );
      const client = cluster.client();
      await waitFor("the queue is registered", async () =>
        ((await client.queues()).queues as { name: string }[]).some((q) => q.name === "poison"),
      );
      const events = ["ok-0", "ok-1", "ok-2", "poison-a", "ok-3", "ok-4"];
      await client.queueAdd("poison", events);
      await waitFor("the others delivered", () => delivered.length === 5);
      assert.deepEqual(
        delivered.map((d) => d.text),
        ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4"],
      );
      // In the failed batch once, then alone three times.
      assert.equal(attempts.get("poison-a"), 4);
      const leader = await cluster.leader();
      await waitFor("dead-lettered and truncated past", () => {
        const m = meta(leader, "poison")!;
        return m.deadLetters === 1 && m.truncated === m.appended;
      });
      const listed = await client.queueDeadLetters("poison");
      const letters = listed.deadLetters as Record<string, unknown>[];
      assert.equal(letters.length, 1);
      assert.equal(Buffer.from(letters[0]!.event as Uint8Array).toString(), "poison-a");
      assert.equal(letters[0]!.attempts, 3);
      assert.match(String(letters[0]!.error), /poison event/);
      const status = ((await client.queueStatus()).queues as Record<string, unknown>[]).find(
        (q) => q.name === "poison",
      )!;
      assert.equal(status.deadLetters, 1);
      assert.ok((status.retries as number) >= 4, `retries ${status.retries}`);
      assert.match(String((await client.metrics()).text), /metaraft_queue_dead_letters\{queue="poison"\} 1/);

      // Retried: back at the end of the queue, and now it goes through.
      accepting = true;
      const retried = await client.queueRetryDeadLetters("poison");
      assert.equal(retried.retried, 1);
      assert.equal(retried.deadLetters, 0);
      await waitFor("the retried event delivered", () => delivered.length === 6);
      assert.equal(delivered.at(-1)!.text, "poison-a");

      // Another one, purged.
      accepting = false;
      await client.queueAdd("poison", "poison-b");
      await waitFor("dead-lettered again", () => meta(leader, "poison")!.deadLetters === 1);
      const purged = await client.queuePurgeDeadLetters("poison");
      assert.equal(purged.purged, 1);
      assert.equal(((await client.queueDeadLetters("poison")).deadLetters as unknown[]).length, 0);
    } finally {
      await cluster.stop();
    }
  });

  it("lets the event loop turn between batches while it works through a backlog with a handler that returns at once", async () => {
    const cluster = await InProcessCluster.start({ nodes: 1 });
    try {
      const client = cluster.client();
      await client.queueRegister("backlog", { maxOutstandingBytes: 1 << 24, segmentBytes: 1 << 22 });
      for (let i = 0; i < 10; i++) {
        await client.queueAdd(
          "backlog",
          Array.from({ length: 500 }, (_, j) => `b${i}-${j}`),
        );
      }
      let processed = 0;
      let atNextTurn = -1;
      cluster.nodes[0]!.queues.forConsumer(
        "backlog",
        (events) => {
          // From the first batch on: what has been processed when the event loop next turns.
          if (processed === 0) {
            setImmediate(() => {
              atNextTurn = processed;
            });
          }
          processed += events.length;
        },
        { maxItemsAtOnce: 10 },
      );
      await waitFor("the backlog processed", () => processed === 5000);
      // Without a turn between batches the whole backlog would go before any I/O or timer.
      assert.ok(atNextTurn >= 0 && atNextTurn < 5000, `processed ${atNextTurn} before the next turn`);
    } finally {
      await cluster.stop();
    }
  });

  it("refuses the tail's own requests from a client", async () => {
    const cluster = await InProcessCluster.start({ nodes: 1 });
    try {
      const client = cluster.client();
      await client.queueRegister("own", { maxOutstandingBytes: 4096, segmentBytes: 4096 });
      await client.queueAdd("own", "x");
      await assert.rejects(
        client.write("queueTruncate", { queue: "own", offset: 10, rowOffset: 10, events: 1 }),
        (e) => code(e) === "MR_ERR_INVALID_ARGUMENT" && /tail's own request/.test((e as Error).message),
      );
      await assert.rejects(client.queueAdd("nope", "x"), (e) => code(e) === "MR_ERR_QUEUE_NOT_FOUND");
      await assert.rejects(client.queueAdd("own", ""), (e) => code(e) === "MR_ERR_INVALID_ARGUMENT");
      await assert.rejects(
        client.queueAdd("own", Buffer.alloc(1024 * 1024 + 1)),
        (e) => code(e) === "MR_ERR_REQUEST_TOO_LARGE",
      );
      assert.equal(meta(cluster.nodes[0]!, "own")!.appendedEvents, 1);
    } finally {
      await cluster.stop();
    }
  });
});
