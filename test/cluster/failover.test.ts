import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { ProcessCluster } from "../helpers/cluster.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("three real node processes", () => {
  it("lose no acknowledged write when the leader is killed with SIGKILL and restarted", async (t) => {
    const cluster = await ProcessCluster.start({
      nodes: 3,
      tickMs: 50,
      electionTicks: 10,
      snapshotEntries: 500,
    });
    try {
      const firstLeader = await cluster.leader();
      const client = cluster.client(15_000);
      const acknowledged = new Map<string, string>();
      const ackTimes: number[] = [];
      let next = 0;
      let writing = true;
      const writer = async () => {
        while (writing) {
          const key = `k${next++}`;
          const value = `v${next}`;
          try {
            await client.call("put", { key, value });
            acknowledged.set(key, value);
            ackTimes.push(Date.now());
          } catch (error) {
            // An unacknowledged write may or may not have happened; only acknowledged ones count.
            if (!(error instanceof MetaraftError)) throw error;
          }
        }
      };
      const writers = Array.from({ length: 8 }, writer);

      await sleep(1500);
      await cluster.kill(firstLeader);
      // From the moment the process is gone: replies it sent while dying do not count.
      const killedAt = Date.now();
      const newLeader = await cluster.leader();
      assert.notEqual(newLeader, firstLeader);
      await sleep(1500);
      const firstAckAfterKill = ackTimes.find((time) => time > killedAt);
      assert.ok(firstAckAfterKill !== undefined, "writes resumed after the kill");
      const failoverMs = firstAckAfterKill - killedAt;
      t.diagnostic(
        `failover: first acknowledged write ${failoverMs} ms after SIGKILL of leader ${firstLeader}`,
      );
      console.log(`failover_ms=${failoverMs}`);

      await cluster.startNode(firstLeader);
      await sleep(1000);
      writing = false;
      await Promise.all(writers);
      assert.ok(acknowledged.size > 200, `only ${acknowledged.size} writes acknowledged`);

      // Every acknowledged write is there, read linearizably through the leader.
      const reader = cluster.client(15_000);
      const missing: string[] = [];
      await Promise.all(
        [...acknowledged].map(async ([key, value]) => {
          const { value: read } = await reader.call("get", { key });
          if (read !== value) missing.push(key);
        }),
      );
      assert.deepEqual(missing, []);

      // The restarted node catches up from the log (or a snapshot) to the leader's commit.
      const leaderStatus = await cluster.status(await cluster.leader());
      const deadline = Date.now() + 10_000;
      let restarted = await cluster.status(firstLeader);
      while ((restarted.applied as number) < (leaderStatus.commit as number) && Date.now() < deadline) {
        await sleep(100);
        restarted = await cluster.status(firstLeader);
      }
      assert.ok((restarted.applied as number) >= (leaderStatus.commit as number), "restarted node caught up");
    } finally {
      await cluster.stop();
    }
  });
});
