import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { MetaraftError } from "../../src/errors.js";
import { ProcessCluster } from "../helpers/cluster.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function clientOf(cluster: ProcessCluster): MetaraftClient {
  return new MetaraftClient({
    endpoints: cluster.endpoints,
    clusterId: cluster.clusterId,
    timeoutMs: 20_000,
  });
}

describe("metaraft node processes", () => {
  it("keep every acknowledged key and never repeat a txid when the leader is killed under load", async () => {
    // Snapshots every 50 entries with 10 kept behind: compaction runs all the time, and the
    // killed leader, two seconds behind when it comes back, catches up from a copy of the state.
    const cluster = await ProcessCluster.start({
      nodes: 3,
      kind: "metaraft",
      snapshotEntries: 50,
      snapshotTrailingEntries: 10,
    });
    const client = clientOf(cluster);
    try {
      await client.createVolume("load");
      await client.createBucket("load", "keys");
      const acknowledged = new Map<string, { objectId: number; updateId: number }>();
      let writing = true;
      let next = 0;
      const writer = async () => {
        while (writing) {
          const key = `k${next++}`;
          try {
            const { openKeyId } = await client.openKey("load", "keys", key, 1);
            const committed = await client.commitKey("load", "keys", key, openKeyId, { size: 1, etag: key });
            acknowledged.set(key, committed as { objectId: number; updateId: number });
          } catch (error) {
            if (!(error instanceof MetaraftError)) throw error;
          }
        }
      };
      const writers = Array.from({ length: 16 }, writer);
      await sleep(1500);
      const leader = await cluster.leader();
      await cluster.kill(leader);
      await sleep(2000);
      await cluster.startNode(leader);
      await sleep(1000);
      writing = false;
      await Promise.all(writers);
      assert.ok(acknowledged.size > 100, `${acknowledged.size} keys acknowledged`);

      const txids = [...acknowledged.values()].map((k) => k.updateId);
      assert.equal(new Set(txids).size, txids.length, "a txid was given twice");
      const missing: string[] = [];
      for (const [key, info] of acknowledged) {
        const { key: stored } = (await client.lookupKey("load", "keys", key)) as {
          key: { objectId: number };
        };
        if (stored.objectId !== info.objectId) missing.push(key);
      }
      assert.deepEqual(missing, []);

      // The old leader came back behind the compacted log: it caught up from a copy of the
      // state, and serves every acknowledged key itself.
      const current = await cluster.leader();
      const target = ((await cluster.status(current)) as { applied: number }).applied;
      const caughtUp = (await cluster.statusWhenApplied(leader, target)) as {
        applied: number;
        raftStats: { restores: number };
      };
      assert.ok(caughtUp.applied >= target, `node ${leader} applied ${caughtUp.applied} of ${target}`);
      assert.ok(caughtUp.raftStats.restores >= 1, "the restarted node was sent a copy of the state");
      const objectIds = new Map([...acknowledged].map(([key, info]) => [key, info.objectId]));
      assert.deepEqual(await cluster.keysNotHeld(leader, "load", "keys", objectIds), []);
    } finally {
      client.close();
      await cluster.stop();
    }
  });

  it("keeps the managed index increasing across kill -9 of leaders in a loop", async () => {
    const cluster = await ProcessCluster.start({ nodes: 3, kind: "metaraft" });
    const client = clientOf(cluster);
    try {
      const txids: number[] = [];
      let n = 0;
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 10; i++) {
          const { updateId } = (await client.createVolume(`vol-${n++}`)) as { updateId: number };
          txids.push(updateId);
        }
        const leader = await cluster.leader();
        await cluster.kill(leader);
        const { updateId } = (await client.createVolume(`vol-${n++}`)) as { updateId: number };
        txids.push(updateId);
        await cluster.startNode(leader);
      }
      for (let i = 1; i < txids.length; i++) {
        assert.ok(txids[i]! > txids[i - 1]!, `txid ${txids[i]} after ${txids[i - 1]}`);
      }
      const volumes = await client.listVolumes({ limit: 1000 });
      assert.equal(volumes.items.length, n);
    } finally {
      client.close();
      await cluster.stop();
    }
  });
});
