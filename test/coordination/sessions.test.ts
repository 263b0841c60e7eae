import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { MetaraftError } from "../../src/errors.js";
import { readLedger } from "../../src/events/index.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const code = (error: unknown) => (error instanceof MetaraftError ? error.code : String(error));

async function rejectsWith(promise: Promise<unknown>, expected: string): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.equal(code(error), expected, String(error));
    return true;
  });
}

describe("sessions and ephemeral entries", () => {
  it("expires a session that stops heartbeating, deleting exactly its ephemeral entries, within TTL plus one check", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, session: { expiryCheckMs: 100 } });
    try {
      const keeper = cluster.client();
      const doomedClient = cluster.client();
      const live = await keeper.createSession({ ttlMs: 2_000 });
      const doomed = await doomedClient.createSession({ ttlMs: 2_000 });
      await keeper.kvPut("agents/a/status", "up", { session: live });
      await doomedClient.kvPut("agents/b/status", "up", { session: doomed });
      await doomedClient.kvPut("agents/b/extra", "x", { session: doomed.id });
      await keeper.kvPut("agents/b/info", "persistent");
      const entry = (await keeper.kvGet("agents/b/status")).kv as { session: number };
      assert.equal(entry.session, doomed.id);
      const got = (await keeper.sessionGet(doomed.id)).session as { keys: string[]; ephemeralCount: number };
      assert.deepEqual(got.keys, ["agents/b/extra", "agents/b/status"]);
      assert.equal(got.ephemeralCount, 2);

      // The doomed client goes away without closing: its heartbeats stop.
      const stoppedAt = Date.now();
      doomedClient.close();
      await waitFor(
        "the doomed session to expire",
        async () => (await keeper.sessionGet(doomed.id)).ended !== null,
        10_000,
      );
      const lived = Date.now() - stoppedAt;
      // Its last heartbeat was at most TTL/3 before the stop; allow one check and a commit.
      assert.ok(lived >= 2_000 - 700, `expired after ${lived} ms, before its TTL`);
      assert.ok(lived <= 2_000 + 100 + 600, `expired after ${lived} ms`);

      assert.equal((await keeper.kvGet("agents/b/status")).kv, null);
      assert.equal((await keeper.kvGet("agents/b/extra")).kv, null);
      assert.equal(((await keeper.kvGet("agents/b/info")).kv as { value: string }).value, "persistent");
      assert.equal(((await keeper.kvGet("agents/a/status")).kv as { value: string }).value, "up");
      const ended = (await keeper.sessionGet(doomed.id)).ended as { reason: string; lastHeartbeatAt: number };
      assert.equal(ended.reason, "expired");
      assert.ok(ended.lastHeartbeatAt > 0 && ended.lastHeartbeatAt <= stoppedAt + 50);

      // Every node applied the same deletes, and the ledger has their events.
      const leader = await cluster.leader();
      const deletes = readLedger(leader.store, leader.core.sync, 0, Number.MAX_SAFE_INTEGER, {
        prefix: "_kv/agents/b/",
      }).events.filter((e) => e.type === "KvDelete:Delete");
      assert.deepEqual(deletes.map((e) => e.key).sort(), ["agents/b/extra", "agents/b/status"]);
      await waitFor("followers to apply the expiry", () =>
        cluster.nodes.every((n) => n && n.store.get("kv", "agents/b/status") === undefined),
      );

      // The dead session is told so: on a heartbeat and on a call.
      assert.deepEqual((await keeper.keepAlive([doomed.id, live.id])).expired, [doomed.id]);
      await rejectsWith(
        keeper.kvPut("agents/b/status", "again", { session: doomed.id }),
        "MR_ERR_SESSION_EXPIRED",
      );
      await rejectsWith(keeper.closeSession(doomed.id), "MR_ERR_SESSION_EXPIRED");
      assert.equal(live.state, "alive");
      const list = await keeper.sessionList();
      assert.deepEqual(
        (list.items as { id: number }[]).map((s) => s.id),
        [live.id],
      );
      assert.equal(list.open, 1);
    } finally {
      await cluster.stop();
    }
  });

  it("tells the client its session expired on the next heartbeat", async () => {
    const cluster = await InProcessCluster.start({ nodes: 1 });
    try {
      const client = cluster.client();
      const session = await client.createSession({ ttlMs: 2_000 });
      const other = cluster.client();
      // Another client closes it: the owner learns at its next heartbeat.
      await other.closeSession(session.id);
      const reason = await session.ended;
      assert.equal(reason?.code, "MR_ERR_SESSION_EXPIRED");
      assert.equal(session.state, "expired");
    } finally {
      await cluster.stop();
    }
  });

  it("deletes a closed session's entries at once, and an ordinary put detaches an entry", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      const session = await client.createSession({ ttlMs: 60_000 });
      await client.kvPut("e/1", "a", { session });
      await client.kvPut("e/2", "b", { session });
      // A put without the session makes the entry persistent again (etcd's put without a lease).
      await client.kvPut("e/2", "kept");
      assert.equal(
        ((await client.sessionGet(session.id)).session as { ephemeralCount: number }).ephemeralCount,
        1,
      );
      // A txn put can attach too.
      await client.kvTxn({ success: [{ op: "put", key: "e/3", value: "c", session: session.id }] });
      await session.close();
      assert.equal(session.state, "closed");
      assert.equal((await client.kvGet("e/1")).kv, null);
      assert.equal((await client.kvGet("e/3")).kv, null);
      assert.equal(((await client.kvGet("e/2")).kv as { value: string }).value, "kept");
      assert.equal(((await client.sessionGet(session.id)).ended as { reason: string }).reason, "closed");
    } finally {
      await cluster.stop();
    }
  });

  it("refuses bad TTLs, the leader's own requests, and creates and puts past the limits", async () => {
    const cluster = await InProcessCluster.start({
      nodes: 1,
      session: { sessionsMax: 2, ephemeralKeysMax: 2, ttlMaxMs: 10_000 },
    });
    try {
      const client = cluster.client();
      await rejectsWith(client.write("sessionCreate", { ttlMs: 1_999 }), "MR_ERR_INVALID_ARGUMENT");
      await rejectsWith(client.write("sessionCreate", { ttlMs: 10_001 }), "MR_ERR_INVALID_ARGUMENT");
      await rejectsWith(client.write("sessionCreate", { ttlMs: "5000" }), "MR_ERR_INVALID_ARGUMENT");
      await rejectsWith(client.write("sessionExpire", { items: [[1, 0]] }), "MR_ERR_INVALID_ARGUMENT");
      await rejectsWith(client.write("sessionCheckpoint", { items: [[1, 0]] }), "MR_ERR_INVALID_ARGUMENT");
      await rejectsWith(client.keepAlive(["x" as unknown as number]), "MR_ERR_INVALID_ARGUMENT");
      await rejectsWith(client.kvPut("k", "v", { session: 12345 }), "MR_ERR_SESSION_EXPIRED");
      const a = await client.createSession({ ttlMs: 5_000 });
      await client.createSession({ ttlMs: 5_000 });
      await rejectsWith(client.createSession({ ttlMs: 5_000 }), "MR_ERR_SESSION_LIMIT");
      await client.kvPut("k1", "v", { session: a });
      await client.kvPut("k2", "v", { session: a });
      await rejectsWith(client.kvPut("k3", "v", { session: a }), "MR_ERR_SESSION_LIMIT");
      // Rewriting one of its own entries is not a new one.
      await client.kvPut("k2", "v2", { session: a });
      await a.close();
      await client.createSession({ ttlMs: 5_000 });
      // The node kept serving through it all.
      assert.equal((await client.kvGet("k1")).kv, null);
    } finally {
      await cluster.stop();
    }
  });

  it("forwards heartbeats that reach a follower to the leader", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const leader = await cluster.leader();
      const follower = cluster.nodes.find((n) => n && n !== leader)!;
      const writer = cluster.client();
      const session = await writer.createSession({ ttlMs: 2_000 });
      writer.close();
      const port = follower.config.cluster.find((m) => m.id === follower.config.id)!.clientPort;
      const direct = new MetaraftClient({
        endpoints: [{ host: "127.0.0.1", port }],
        clusterId: cluster.clusterId,
      });
      try {
        // For three TTLs, only the follower hears from the session.
        const until = Date.now() + 6_000;
        while (Date.now() < until) {
          const reply = await direct.keepAlive([session.id]);
          assert.deepEqual(reply.expired, []);
          assert.equal(reply.leader, leader.config.id);
          await new Promise((r) => setTimeout(r, 400));
        }
        assert.ok(leader.sessions.tracker.stats.heartbeats >= 10);
      } finally {
        direct.close();
      }
    } finally {
      await cluster.stop();
    }
  });
});

/** Moves leadership to another voter `times` times, `gapMs` apart; returns the leaders in order. */
async function transfers(cluster: InProcessCluster, client: MetaraftClient, times: number, gapMs: number) {
  const leaders: number[] = [];
  for (let i = 0; i < times; i++) {
    const leader = await cluster.leader();
    const next = cluster.nodes.find((n) => n && n !== leader)!;
    await client.leaderTransfer(next.config.id);
    await waitFor("the new leader to be ready", () => next.host.leadership.ready);
    leaders.push(next.config.id);
    if (gapMs > 0) await new Promise((r) => setTimeout(r, gapMs));
  }
  return leaders;
}

describe("sessions across leader changes", () => {
  it("five leader changes in a row expire no live session", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      const sessions = await Promise.all(
        Array.from({ length: 20 }, () => client.createSession({ ttlMs: 2_000 })),
      );
      await Promise.all(sessions.map((s, i) => client.kvPut(`live/${i}`, "up", { session: s })));
      const admin = cluster.client();
      const leaders = await transfers(cluster, admin, 5, 0);
      assert.equal(leaders.length, 5);
      // Two more TTLs under the last leader: heartbeats found it.
      await new Promise((r) => setTimeout(r, 4_000));
      assert.deepEqual(
        sessions.filter((s) => s.state !== "alive").map((s) => s.id),
        [],
      );
      assert.equal((await admin.sessionList()).open, 20);
      assert.equal(((await admin.kvRange("live/")).items as unknown[]).length, 20);
      const leader = await cluster.leader();
      assert.equal(leader.sessions.tracker.stats.expired, 0);
    } finally {
      await cluster.stop();
    }
  });

  for (const checkpoints of [true, false]) {
    it(
      checkpoints
        ? "a dead session cannot outlive TTL plus the checkpoint interval however often the leader changes"
        : "without checkpoints, leader changes keep a dead session alive (the control case)",
      async () => {
        const ttlMs = 3_000;
        const checkpointMs = checkpoints ? 500 : 3_600_000;
        const cluster = await InProcessCluster.start({ nodes: 3, session: { checkpointMs } });
        try {
          const owner = cluster.client();
          const session = await owner.createSession({ ttlMs });
          await owner.kvPut("dead/status", "up", { session });
          owner.close(); // No more heartbeats from here.
          const stoppedAt = Date.now();
          const admin = cluster.client();
          const graceMs = 2 * 10 * 20; // Twice electionTicks times tickMs, as the node computes it.
          // The bound with checkpoints every 500 ms; the control case must outlive it.
          const boundMs = ttlMs + 500 + graceMs + 1_000;
          // Leadership moves every 700 ms, well inside TTL + grace: each new leader grants the
          // session its recorded remaining TTL plus the grace again.
          let endedAfter: number | undefined;
          while (Date.now() - stoppedAt < boundMs + 2_000) {
            await transfers(cluster, admin, 1, 700);
            if ((await admin.sessionGet(session.id)).ended !== null) {
              endedAfter = Date.now() - stoppedAt;
              break;
            }
          }
          if (checkpoints) {
            assert.ok(endedAfter !== undefined, "the dead session survived the leader changes");
            assert.ok(endedAfter <= boundMs, `expired after ${endedAfter} ms, over ${boundMs}`);
            assert.equal((await admin.kvGet("dead/status")).kv, null);
          } else {
            assert.equal(
              endedAfter,
              undefined,
              `expired after ${endedAfter} ms though nothing checkpointed it`,
            );
          }
        } finally {
          await cluster.stop();
        }
      },
    );
  }
});
