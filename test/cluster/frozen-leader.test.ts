import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { MetaraftError } from "../../src/errors.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

describe("a leader frozen with SIGSTOP, well past the election timeout", () => {
  it("costs writes an election, not the pause; after SIGCONT it steps down and nothing is lost", async (t) => {
    const cluster = await ProcessCluster.start({ kind: "metaraft", nodes: 3, tickMs: 50, electionTicks: 10 });
    const client = new MetaraftClient({
      endpoints: cluster.endpoints,
      clusterId: cluster.clusterId,
      timeoutMs: 20_000,
    });
    let frozen: number | undefined;
    try {
      await client.createVolume("vol");
      await client.createBucket("vol", "bkt");
      const acked = new Map<string, number>();
      const ackTimes: number[] = [];
      const failures: string[] = [];
      let writing = true;
      let next = 0;
      const writer = async () => {
        while (writing) {
          const key = `k-${next++}`;
          try {
            await client.putKey("vol", "bkt", key, { size: 1, etag: "e" });
            acked.set(key, 0);
            ackTimes.push(Date.now());
          } catch (error) {
            failures.push(error instanceof MetaraftError ? error.code : String(error));
          }
        }
      };
      const writers = Array.from({ length: 4 }, writer);
      await waitFor("some writes", () => acked.size >= 50, 20_000);

      const leader = await cluster.leader();
      frozen = cluster.pid(leader)!;
      process.kill(frozen, "SIGSTOP");
      const stoppedAt = Date.now();
      // A write must succeed through the new leader while the old one is still stopped.
      await waitFor(
        "a write acknowledged while the old leader is stopped",
        () => ackTimes.some((at) => at > stoppedAt + 100),
        4_500,
      );
      const firstAck = ackTimes.find((at) => at > stoppedAt + 100)! - stoppedAt;
      t.diagnostic(`first write acknowledged ${firstAck} ms into a 5 s SIGSTOP of leader ${leader}`);
      console.log(`frozen_leader_first_write_ms=${firstAck}`);
      await waitFor("5 s of pause", () => Date.now() - stoppedAt >= 5_000, 6_000);
      process.kill(frozen, "SIGCONT");
      frozen = undefined;
      await waitFor(
        "the old leader to step down",
        async () => (await cluster.status(leader).catch(() => ({ role: "?" }))).role === "follower",
        10_000,
      );
      const resumed = ackTimes.length;
      await waitFor("writes after the old leader is back", () => ackTimes.length >= resumed + 20, 10_000);
      writing = false;
      await Promise.all(writers);
      // The client retried what the frozen leader held; no write failed for good.
      assert.deepEqual(failures, []);

      // Every node agrees, and holds every acknowledged key with the objectId the leader serves.
      const expected = new Map<string, number>();
      for (const key of acked.keys()) {
        const found = await client.lookupKey("vol", "bkt", key);
        expected.set(key, (found.key as { objectId: number }).objectId);
      }
      for (const node of await cluster.convergence([1, 2, 3], "vol", "bkt", expected)) {
        assert.ok(node.applied >= node.target, `node ${node.id} applied ${node.applied} < ${node.target}`);
        assert.deepEqual(node.missing, [], `node ${node.id}`);
      }
    } finally {
      if (frozen !== undefined) process.kill(frozen, "SIGCONT");
      client.close();
      await cluster.stop();
    }
  });
});
