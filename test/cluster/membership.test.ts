import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { MetaraftError } from "../../src/errors.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

type Members = { voters: number[]; learners: number[] };

describe("membership changed online, across real node processes", () => {
  it("adds a fourth node, promotes it once caught up, removes a first one, hands it leadership and restarts every node, under key creates, losing nothing", async (t) => {
    const cluster = await ProcessCluster.start({
      kind: "metaraft",
      nodes: 3,
      tickMs: 50,
      electionTicks: 10,
      // Small snapshots so that the new member catches up from a streamed copy and the log.
      snapshotEntries: 200,
      snapshotTrailingEntries: 20,
    });
    // The client is given the first three nodes only: it must find node 4 by itself.
    const client = new MetaraftClient({
      endpoints: cluster.endpoints,
      clusterId: cluster.clusterId,
      timeoutMs: 20_000,
    });
    const admin = new MetaraftClient({
      endpoints: cluster.endpoints,
      clusterId: cluster.clusterId,
      timeoutMs: 20_000,
    });
    try {
      await client.createVolume("vol");
      await client.createBucket("vol", "bkt");
      const acked = new Set<string>();
      const failures: string[] = [];
      let writing = true;
      let next = 0;
      const writer = async () => {
        while (writing) {
          const key = `k-${next++}`;
          try {
            await client.putKey("vol", "bkt", key, { size: 1, etag: "e" });
            acked.add(key);
          } catch (error) {
            failures.push(error instanceof MetaraftError ? `${error.code}: ${error.message}` : String(error));
          }
        }
      };
      const writers = Array.from({ length: 3 }, writer);
      const progress = async (what: string, count = 30) => {
        const from = acked.size;
        await waitFor(`${count} writes ${what}`, () => acked.size >= from + count, 20_000);
      };
      await progress("before any change", 300);

      // Add node 4 as a learner, then start it with only its own address and one member's.
      const four = await cluster.addMember(1);
      const added = (await admin.memberAdd(four.id, {
        peer: `127.0.0.1:${four.raftPort}`,
        client: `127.0.0.1:${four.clientPort}`,
      })) as { members: Members };
      assert.deepEqual(added.members, { voters: [1, 2, 3], learners: [4] });
      await cluster.startNode(four.id);
      await waitFor(
        "node 4 to be promoted once caught up",
        async () => {
          try {
            await admin.memberPromote(four.id);
            return true;
          } catch (error) {
            if (error instanceof MetaraftError && error.code === "MR_ERR_CONF_CHANGE_REJECTED") return false;
            throw error;
          }
        },
        30_000,
      );
      await progress("with four voters");

      // Remove node 3; it applies its own removal, says so, and stops taking part.
      const removed = (await admin.memberRemove(3)) as { members: Members };
      assert.deepEqual(removed.members, { voters: [1, 2, 4], learners: [] });
      await waitFor(
        "node 3 to know it was removed",
        async () => (await cluster.status(3)).removed === true,
        10_000,
      );
      cluster.members[2]!.removed = true;
      await cluster.kill(3, "SIGTERM");
      await progress("without node 3");

      await admin.leaderTransfer(four.id);
      await waitFor("node 4 to lead", async () => (await cluster.status(four.id)).role === "leader", 10_000);
      await progress("through node 4, which the client was never given");

      // Restart every remaining node once, one at a time, each time waiting for it to catch up.
      for (const id of [1, 2, four.id]) {
        await cluster.kill(id, "SIGTERM");
        await progress(`while node ${id} is down`, 20);
        await cluster.startNode(id);
        const target = (await cluster.status(await cluster.leader(15_000))).commit as number;
        await cluster.statusWhenApplied(id, target, 20_000);
        await progress(`after node ${id} restarted`, 20);
      }
      writing = false;
      await Promise.all(writers);
      t.diagnostic(`${acked.size} keys acknowledged; failures: ${failures.length}`);
      // Every NOT_LEADER and dropped connection was retried by the client: no write failed.
      assert.deepEqual(failures, []);

      const members = (await admin.memberList()) as { members: { id: number; role: string }[] };
      assert.deepEqual(
        members.members.map((m) => [m.id, m.role]),
        [
          [1, "voter"],
          [2, "voter"],
          [4, "voter"],
        ],
      );
      // The final three-node cluster serves every acknowledged key, each with one objectId.
      const expected = new Map<string, number>();
      for (const key of acked) {
        const found = await client.lookupKey("vol", "bkt", key);
        expected.set(key, (found.key as { objectId: number }).objectId);
      }
      assert.equal(new Set(expected.values()).size, expected.size, "no objectId repeats");
      for (const node of await cluster.convergence([1, 2, 4], "vol", "bkt", expected)) {
        assert.ok(node.applied >= node.target, `node ${node.id} applied ${node.applied} < ${node.target}`);
        assert.deepEqual(node.missing, [], `node ${node.id}`);
      }
    } finally {
      client.close();
      admin.close();
      await cluster.stop();
    }
  });
});
