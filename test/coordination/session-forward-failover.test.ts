import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { KEEPALIVE_FORWARD_TIMEOUT_MS } from "../../src/server/node-sessions.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

describe("heartbeats forwarded across a leader's death", () => {
  it("are answered once a new leader is known, not after the forward's deadline", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    const direct: MetaraftClient[] = [];
    try {
      const leader = await cluster.leader();
      const writer = cluster.client();
      const session = await writer.createSession({ ttlMs: 10_000 });
      writer.close();
      // Every member, the leader first: the heartbeats go to the leader, and no follower has
      // forwarded one yet. When the leader goes, the client moves on to a follower, which opens
      // its forwarding connection to the leader it still knows: the dead one.
      const port = (node: NonNullable<(typeof cluster.nodes)[number]>) =>
        node.config.cluster.find((m) => m.id === node.config.id)!.clientPort;
      const others = cluster.nodes.filter((n) => n && n !== leader).map((n) => port(n!));
      // One client for each follower as the next in line.
      for (const order of [others, [...others].reverse()]) {
        direct.push(
          new MetaraftClient({
            endpoints: [port(leader), ...order].map((p) => ({ host: "127.0.0.1", port: p })),
            clusterId: cluster.clusterId,
          }),
        );
      }
      for (const client of direct)
        assert.deepEqual((await client.keepAlive([session.id], 3_000)).expired, []);

      // Heartbeats every 20 ms, pipelined, as the leader goes away; each with a deadline of one
      // interval of a 9 s TTL, as SessionKeeper gives it.
      let beating = true;
      let stoppedAt = 0;
      const after: Promise<{ ms: number; expired: unknown }>[] = [];
      const loops = direct.map(async (client) => {
        while (beating) {
          const sentAt = Date.now();
          const pending = client.keepAlive([session.id], 3_000).then(
            (reply) => ({ ms: Date.now() - sentAt, expired: reply.expired }),
            (error: unknown) => ({ ms: Date.now() - sentAt, expired: String(error) }),
          );
          if (stoppedAt > 0 && sentAt >= stoppedAt) after.push(pending);
          await new Promise((r) => setTimeout(r, 20));
        }
      });
      await new Promise((r) => setTimeout(r, 100));
      stoppedAt = Date.now();
      await cluster.stopNode(leader.config.id);
      const next = await cluster.leader();
      assert.notEqual(next, leader);
      await waitFor("heartbeats sent after the new leader", () => after.length >= 40);
      beating = false;
      await Promise.all(loops);
      const answered = await Promise.all(after);
      // Each heartbeat was answered, none expired, and none waited out the follower's forward to
      // the dead leader (it would take KEEPALIVE_FORWARD_TIMEOUT_MS at least).
      // A heartbeat may fail fast while there is no leader (NOT_LEADER, NOT_READY, or the client's
      // "no quorum reachable" as the dead leader's connection and a follower's refusal come
      // in): the keeper retries it 200 ms later. None may say the session expired.
      for (const r of answered) {
        if (Array.isArray(r.expired)) assert.deepEqual(r.expired, []);
        else assert.match(String(r.expired), /MR_ERR_(NOT_LEADER|NOT_READY|UNAVAILABLE|TIMEOUT)/);
      }
      assert.ok(
        answered.some((r) => Array.isArray(r.expired)),
        "no heartbeat was answered after the leader stopped",
      );
      const slowest = Math.max(...answered.map((r) => r.ms));
      assert.ok(
        slowest < KEEPALIVE_FORWARD_TIMEOUT_MS,
        `the slowest heartbeat after the leader stopped took ${slowest} ms`,
      );
    } finally {
      for (const client of direct) client.close();
      await cluster.stop();
    }
  });
});
