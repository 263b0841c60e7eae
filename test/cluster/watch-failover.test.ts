import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import type { LedgerEvent } from "../../src/events/index.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const WRITERS = 8;

describe("a watch across a leader kill", () => {
  it("sees every event of the ledger exactly once, in order, resumed on a survivor", async () => {
    const cluster = await ProcessCluster.start({ nodes: 3, kind: "metaraft" });
    const clients: MetaraftClient[] = [];
    try {
      const leader = await cluster.leader();
      const endpoint = (id: number) => ({ host: "127.0.0.1", port: cluster.members[id - 1]!.clientPort });
      const others = cluster.members.filter((m) => m.id !== leader).map((m) => endpoint(m.id));
      const writer = new MetaraftClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId });
      // The leader first: it serves the watch, and its death is the failover.
      const watcher = new MetaraftClient({
        endpoints: [endpoint(leader), ...others],
        clusterId: cluster.clusterId,
      });
      clients.push(writer, watcher);
      await writer.createVolume("fail");
      await writer.createBucket("fail", "bkt");
      const watch = watcher.watch({ prefix: "fail/bkt/", fromTxid: 1 });
      assert.equal((await watch.opened()).node, leader);
      const delivered: LedgerEvent[] = [];
      const iterating = (async () => {
        for await (const event of watch) delivered.push(event);
      })();

      let stop = false;
      let acknowledged = 0;
      const load = Promise.all(
        Array.from({ length: WRITERS }, async (_, w) => {
          for (let i = 0; !stop; i++) {
            // A write cut off by the kill may or may not have committed: the ledger says which.
            await writer
              .putKey("fail", "bkt", `w${w}/k${i}`, { size: i, etag: "e" })
              .then(() => acknowledged++)
              .catch(() => undefined);
          }
        }),
      );
      await waitFor("events before the kill", () => delivered.length >= 200, 30_000);
      await cluster.kill(leader);
      const atKill = acknowledged;
      await waitFor("writes after the failover", () => acknowledged >= atKill + 300, 30_000);
      stop = true;
      await load;

      // The ledger as the new leader holds it, read page by page.
      const ledger: LedgerEvent[] = [];
      for (let after = 0; ; ) {
        const read = await writer.readEvents({ afterTxid: after, limit: 10_000, prefix: "fail/bkt/" });
        ledger.push(...read.events);
        if (read.scannedThrough >= read.appliedTxid) break;
        after = read.scannedThrough;
      }
      assert.ok(
        ledger.length >= acknowledged,
        `${ledger.length} events for ${acknowledged} acknowledged puts`,
      );
      const last = ledger.at(-1)!.txid;
      await waitFor("the watch reached the ledger's end", () => watch.txid >= last, 30_000);
      assert.ok(watch.reopens >= 1, "the watch reopened");
      assert.notEqual(watch.node, leader);
      const txids = delivered.map((e) => e.txid);
      assert.equal(new Set(txids).size, txids.length, "no event twice");
      assert.deepEqual(
        delivered.map((e) => [e.txid, e.key]),
        ledger.map((e) => [e.txid, e.key]),
      );
      await watch.return();
      await iterating;
    } finally {
      for (const client of clients) client.close();
      await cluster.stop();
    }
  });

  it("leaves a frozen serving node (SIGSTOP) for another, with every event once", async () => {
    const cluster = await ProcessCluster.start({ nodes: 3, kind: "metaraft" });
    const clients: MetaraftClient[] = [];
    let frozen: number | undefined;
    try {
      const leader = await cluster.leader();
      const follower = cluster.members.find((m) => m.id !== leader)!.id;
      const endpoint = (id: number) => ({ host: "127.0.0.1", port: cluster.members[id - 1]!.clientPort });
      const writer = new MetaraftClient({ endpoints: cluster.endpoints, clusterId: cluster.clusterId });
      const watcher = new MetaraftClient({
        endpoints: [
          endpoint(follower),
          ...cluster.members.filter((m) => m.id !== follower).map((m) => endpoint(m.id)),
        ],
        clusterId: cluster.clusterId,
      });
      clients.push(writer, watcher);
      await writer.createVolume("frozen");
      await writer.createBucket("frozen", "bkt");
      const watch = watcher.watch({ prefix: "frozen/bkt/", fromTxid: 1 });
      assert.equal((await watch.opened()).node, follower);
      const delivered: LedgerEvent[] = [];
      const iterating = (async () => {
        for await (const event of watch) delivered.push(event);
      })();
      for (let i = 0; i < 50; i++)
        await writer.putKey("frozen", "bkt", `before-${i}`, { size: i, etag: "e" });
      await waitFor("the events before the freeze", () => delivered.length >= 50, 30_000);
      frozen = cluster.pid(follower)!;
      process.kill(frozen, "SIGSTOP");
      // The follower's silence costs the leader nothing: writes go on, and the watch moves.
      for (let i = 0; i < 50; i++)
        await writer.putKey("frozen", "bkt", `during-${i}`, { size: i, etag: "e" });
      await waitFor("the events written during the freeze", () => delivered.length >= 100, 30_000);
      assert.ok(watch.reopens >= 1);
      assert.notEqual(watch.node, follower);
      const read = await writer.readEvents({ afterTxid: 0, limit: 10_000, prefix: "frozen/bkt/" });
      assert.deepEqual(
        delivered.map((e) => [e.txid, e.key]),
        read.events.map((e) => [e.txid, e.key]),
      );
      await watch.return();
      await iterating;
    } finally {
      if (frozen !== undefined) process.kill(frozen, "SIGCONT");
      for (const client of clients) client.close();
      await cluster.stop();
    }
  });
});
