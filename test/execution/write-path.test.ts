import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { type LedgerEvent, readLedger } from "../../src/events/index.js";
import { EXPIRED_REPLIES_SWEEP_INTERVAL_MS, REPLY_TTL_MS } from "../../src/execution/replies.js";
import { TABLE_IDS } from "../../src/execution/types.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { openEnvironment } from "../../src/storage/index.js";
import { InProcessCluster } from "../helpers/nodes.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function settle(cluster: InProcessCluster): Promise<void> {
  // Every node has applied everything the leader has.
  const leader = await cluster.leader();
  const target = leader.host.appliedIndex;
  const deadline = Date.now() + 10_000;
  while (cluster.nodes.some((n) => n && n.host.appliedIndex < target)) {
    if (Date.now() > deadline) throw new Error("followers did not catch up");
    await sleep(10);
  }
  await Promise.all(cluster.nodes.map((n) => n?.store.flushed()));
}

/**
 * Every row of every state table except `meta` (whose applied index differs between modes); with
 * `byMode`, also without the ledger's records and summary, which the modes cut differently (a
 * record per batch, a record per request): their events are compared with `allEvents`.
 */
function dumpState(node: MetaraftNode, byMode = false): string {
  const rows: string[] = [];
  for (const table of Object.keys(TABLE_IDS) as (keyof typeof TABLE_IDS)[]) {
    if (table === "meta" || (byMode && table === "events")) continue;
    for (const { key, value } of node.env.dbs[table].getRange({})) {
      if (byMode && table === "checkpoints" && Buffer.from(key as Uint8Array).toString() === "ledger")
        continue;
      rows.push(
        `${table} ${Buffer.from(key as Uint8Array).toString("hex")} ${Buffer.from(value as Uint8Array).toString("hex")}`,
      );
    }
  }
  return rows.join("\n");
}

/** Every event the node's ledger holds, in order. */
function allEvents(node: MetaraftNode): LedgerEvent[] {
  return readLedger(node.store, node.core.sync, 0, Number.MAX_SAFE_INTEGER).events;
}

async function until(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const code = (error: unknown) => (error instanceof MetaraftError ? error.code : String(error));

describe("the write path", () => {
  it("executes on the leader, batches, and applies the same state on every node", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      await client.createVolume("vol1");
      await client.createBucket("vol1", "bucket1");
      // A storm of concurrent writes rides in batches.
      await Promise.all(
        Array.from({ length: 200 }, (_, i) =>
          client.putKey("vol1", "bucket1", `key-${i}`, { size: i, etag: `e${i}` }),
        ),
      );
      const leader = await cluster.leader();
      assert.ok(
        leader.pipeline.stats.requestsBatched > leader.pipeline.stats.batches,
        `requests ${leader.pipeline.stats.requestsBatched} rode in ${leader.pipeline.stats.batches} batches`,
      );
      await settle(cluster);
      const states = cluster.nodes.map((n) => dumpState(n!));
      assert.ok(states[0]!.length > 0);
      assert.equal(states[1], states[0]);
      assert.equal(states[2], states[0]);
      const page = await client.listKeys("vol1", "bucket1", { limit: 1000 });
      assert.equal(page.items.length, 200);
      // Managed index: every txid distinct, object ids derived from them.
      const objectIds = new Set(page.items.map((k) => k.objectId));
      assert.equal(objectIds.size, 200);
    } finally {
      await cluster.stop();
    }
  });

  it("lets a request see the effects of the one before it in the same batch (the overlay)", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      // Pipelined without waiting: each depends on the previous one's unapplied writes.
      const [volume, bucket, opened] = await Promise.all([
        client.createVolume("overlay"),
        client.createBucket("overlay", "bkt"),
        client.openKey("overlay", "bkt", "k", 10),
      ]);
      assert.ok(volume && bucket);
      const committed = await client.commitKey("overlay", "bkt", "k", opened.openKeyId, {
        size: 10,
        etag: "x",
      });
      assert.equal(committed.objectId, opened.openKeyId);
      const [again, commitAtOnce] = await Promise.allSettled([
        client
          .openKey("overlay", "bkt", "k2", 1)
          .then((o) => client.commitKey("overlay", "bkt", "k2", o.openKeyId, { size: 1, etag: "y" })),
        client.deleteBucket("overlay", "bkt"),
      ]);
      assert.equal(again.status, "fulfilled");
      assert.equal(commitAtOnce.status, "rejected");
      assert.equal(code((commitAtOnce as PromiseRejectedResult).reason), "MR_ERR_BUCKET_NOT_EMPTY");
      const { key } = await client.lookupKey("overlay", "bkt", "k");
      assert.equal((key as { etag: string }).etag, "x");
    } finally {
      await cluster.stop();
    }
  });

  it("answers a retried call from the replay cache after the leader that executed it is gone", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const first = cluster.client("client-a");
      const created = await first.write("createVolume", { volume: "replayed" });
      const oldLeader = await cluster.leader();
      await settle(cluster);
      await cluster.stopNode(oldLeader.config.id);
      // The same client retries the same call (as after a lost reply): same answer, no second execution.
      const retry = cluster.client("client-a");
      const again = await retry.write("createVolume", { volume: "replayed" }).catch((e) => e);
      assert.ok(!(again instanceof Error), `retry failed: ${again}`);
      // A new client id gets no help from the cache: the volume exists.
      await assert.rejects(
        cluster.client().createVolume("replayed"),
        (e) => code(e) === "MR_ERR_VOLUME_EXISTS",
      );
      assert.deepEqual(again, created);
    } finally {
      await cluster.stop();
    }
  });

  it("fails pending requests with NOT_LEADER naming the new leader, and leaks nothing uncommitted", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      await client.createVolume("vol");
      await client.createBucket("vol", "bkt");
      const leader = await cluster.leader();
      leader.host.raft.transferLeader(cluster.nodes.find((n) => n && n !== leader)!.config.id);
      const results = await Promise.allSettled(
        Array.from({ length: 50 }, (_, i) =>
          leader.pipeline.submit("direct", i, { op: "createBucket", volume: "vol", bucket: `bkt-x${i}` }),
        ),
      );
      const failed = results
        .filter((r) => r.status === "rejected")
        .map((r) => code((r as PromiseRejectedResult).reason));
      for (const c of failed)
        assert.ok(["MR_ERR_NOT_LEADER", "MR_ERR_PROPOSAL_DROPPED", "MR_ERR_NOT_READY"].includes(c), c);
      await settle(cluster);
      const buckets = await client.listBuckets("vol", { limit: 1000 });
      const succeeded = results.filter((r) => r.status === "fulfilled").length;
      assert.equal(buckets.items.length, 1 + succeeded, "exactly the acknowledged buckets exist (plus bkt)");
    } finally {
      await cluster.stop();
    }
  });

  it("answers a refusal only once the writes it saw commit: a refusal resting on an uncommitted write is never sent", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      await client.createVolume("vol");
      const leader = await cluster.leader();
      // The followers go: nothing the leader executes from now on can commit.
      for (const node of cluster.nodes) if (node && node !== leader) await cluster.stopNode(node.config.id);
      const create = leader.pipeline.submit("direct", 1, {
        op: "createBucket",
        volume: "vol",
        bucket: "bkt-one",
      } as never);
      // Refused against the overlay, which holds the uncommitted bucket: answering KEY_EXISTS
      // now would tell a client of a bucket that may never exist. (The leader of old did.)
      const again = leader.pipeline.submit("direct", 2, {
        op: "createBucket",
        volume: "vol",
        bucket: "bkt-one",
      } as never);
      const outcomes = await Promise.allSettled([create, again]);
      // Both end when the leader gives up its leadership (check quorum): as retryable failures.
      for (const outcome of outcomes) {
        assert.equal(outcome.status, "rejected");
        assert.ok(
          ["MR_ERR_NOT_LEADER", "MR_ERR_PROPOSAL_DROPPED"].includes(
            code((outcome as PromiseRejectedResult).reason),
          ),
          code((outcome as PromiseRejectedResult).reason),
        );
      }
    } finally {
      await cluster.stop();
    }
  });

  for (const mode of ["leader-execution", "replicated-request"] as const) {
    it(`${mode}: serves the namespace`, async () => {
      const cluster = await InProcessCluster.start({ nodes: 3, mode });
      try {
        const client = cluster.client();
        await client.createVolume("mvol");
        await client.createBucket("mvol", "bkt");
        await client.putKey("mvol", "bkt", "a", { size: 1, etag: "1" });
        await client.renameKey("mvol", "bkt", "a", "z");
        await assert.rejects(client.lookupKey("mvol", "bkt", "a"), (e) => code(e) === "MR_ERR_KEY_NOT_FOUND");
        assert.equal(((await client.lookupKey("mvol", "bkt", "z")).key as { size: number }).size, 1);
      } finally {
        await cluster.stop();
      }
    });
  }

  it("both execution modes end in byte-identical state and identical ledgers for the same request sequence", async () => {
    const dumps: string[] = [];
    const ledgers: LedgerEvent[][] = [];
    for (const mode of ["leader-execution", "replicated-request"] as const) {
      const cluster = await InProcessCluster.start({ nodes: 3, mode, clock: () => 1_700_000_000_000 });
      try {
        const client = cluster.client("same-client");
        await client.createVolume("same");
        await client.createBucket("same", "bk1");
        await client.createBucket("same", "bk2");
        const opens = await Promise.all(
          Array.from({ length: 20 }, (_, i) => client.openKey("same", "bk1", `k${i % 15}`, i)),
        );
        await Promise.all(
          opens.map((o, i) =>
            client.commitKey("same", "bk1", `k${i % 15}`, o.openKeyId, { size: i, etag: `t${i}` }),
          ),
        );
        await client.renameKey("same", "bk1", "k3", "renamed");
        await client.deleteKey("same", "bk1", "k4");
        await client.deleteBucket("same", "bk2");
        await client.createVolume("same").catch(() => undefined);
        await settle(cluster);
        const leader = await cluster.leader();
        dumps.push(dumpState(leader, true));
        ledgers.push(allEvents(leader));
      } finally {
        await cluster.stop();
      }
    }
    assert.ok(dumps[0]!.split("\n").length > 40);
    assert.equal(dumps[1], dumps[0]);
    // 1 volume, 2 buckets, 20 commits, a rename, a delete, a bucket delete; the refused create none.
    assert.equal(ledgers[0]!.length, 26);
    assert.deepEqual(ledgers[1], ledgers[0]);
  });

  for (const mode of ["leader-execution", "replicated-request"] as const) {
    it(`${mode}: expired replay records are swept on every node, and a late retry executes again`, async () => {
      let now = 1_700_000_000_000;
      const cluster = await InProcessCluster.start({ nodes: 3, mode, clock: () => now });
      try {
        const early = cluster.client("early-client");
        await early.createVolume("swept");
        for (let i = 0; i < 20; i++) await early.createBucket("swept", `bucket-${i}`);
        await settle(cluster);
        const replies = (node: MetaraftNode) =>
          [...node.env.dbs.replies.getRange({})].map(({ key }) => Buffer.from(key as Uint8Array).toString());
        for (const node of cluster.nodes) {
          assert.equal(replies(node!).filter((k) => k.startsWith("c/early-client")).length, 21);
        }
        // Past the TTL, other traffic drives the sweep (due once per interval).
        now += REPLY_TTL_MS + 1;
        const late = cluster.client("late-client");
        for (let i = 0; i < 5; i++) {
          await late.createBucket("swept", `late-${i}`);
          now += EXPIRED_REPLIES_SWEEP_INTERVAL_MS;
        }
        await settle(cluster);
        for (const node of cluster.nodes) {
          const left = replies(node!);
          assert.equal(left.filter((k) => k.startsWith("c/early-client")).length, 0, left.join(","));
          assert.ok(left.some((k) => k.startsWith("c/late-client")));
        }
        // The same client and call id as the first call: no cached reply any more, so it runs.
        await assert.rejects(
          cluster.client("early-client").createVolume("swept"),
          (e) => code(e) === "MR_ERR_VOLUME_EXISTS",
        );
      } finally {
        await cluster.stop();
      }
    });
  }

  it("re-applies from the log what a node's state lost in a crash (its tables sync lazily)", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      await client.createVolume("lost");
      for (let i = 0; i < 10; i++) await client.createBucket("lost", `bucket-${i}`);
      await settle(cluster);
      const victim = cluster.nodes.find((n) => n && !n.host.isLeader)!;
      const id = victim.config.id;
      await cluster.stopNode(id);
      // As if the last commits of its tables never reached the disk: applied index back to 1
      // (the first no-op, before any txid), the buckets gone. Its Raft log is intact.
      const env = openEnvironment(join(cluster.dir, `node-${id}`, "state"));
      await env.transaction(() => {
        for (const { key } of env.dbs.buckets.getRange({})) env.dbs.buckets.remove(key as Buffer);
        const one = Buffer.alloc(8);
        one.writeBigUInt64BE(1n);
        env.dbs.meta.put(Buffer.from("appliedIndex"), one);
        env.dbs.meta.put(Buffer.from("lastTxid"), Buffer.alloc(8));
      });
      await env.close();
      const restarted = await cluster.startNode(id);
      await client.createBucket("lost", "after");
      await settle(cluster);
      const leader = await cluster.leader();
      assert.equal(dumpState(restarted), dumpState(leader));
      assert.match(dumpState(restarted), /^buckets /m);
    } finally {
      await cluster.stop();
    }
  });

  for (const mode of ["leader-execution", "replicated-request"] as const) {
    it(`${mode}: snapshots carry no data; a follower behind the compacted log gets a copy of the state`, async () => {
      const cluster = await InProcessCluster.start({
        nodes: 3,
        mode,
        snapshotEntries: 10,
        snapshotTrailingEntries: 2,
      });
      try {
        const client = cluster.client();
        await client.createVolume("snap");
        const lagging = cluster.nodes.find((n) => n && !n.host.isLeader)!;
        const id = lagging.config.id;
        await settle(cluster);
        await cluster.stopNode(id);
        // One entry each, more than the leader keeps in flight to a silent follower (256), so
        // that it cannot catch up from messages queued for it.
        for (let i = 0; i < 300; i++) await client.createBucket("snap", `bucket-${i}`);
        const leader = await cluster.leader();
        await until(
          () => leader.store.durableIndex >= leader.host.appliedIndex,
          "the leader's state to sync",
        );
        for (let i = 300; i < 320; i++) await client.createBucket("snap", `bucket-${i}`);
        const status = leader.host.status() as {
          snapshot: { index: number; dataBytes: number };
          firstIndex: number;
        };
        assert.ok(status.snapshot.index > 0, "the leader took snapshots");
        assert.equal(status.snapshot.dataBytes, 0, "a snapshot is metadata only");
        assert.ok(
          status.firstIndex > lagging.host.appliedIndex + 1,
          "the log was compacted past the stopped node",
        );
        const restarted = await cluster.startNode(id);
        // Writes that race the copy: the copy may be ahead of the snapshot's index.
        const racing = Array.from({ length: 20 }, (_, i) => client.createBucket("snap", `racing-${i}`));
        await Promise.all(racing);
        await settle(cluster);
        assert.equal(dumpState(restarted), dumpState(leader));
        assert.ok(restarted.host.stats.restores >= 1, "the follower was sent a copy of the state");
      } finally {
        await cluster.stop();
      }
    });
  }

  it("refuses to start a node whose state is behind the start of its compacted log", async () => {
    const cluster = await InProcessCluster.start({
      nodes: 3,
      snapshotEntries: 10,
      snapshotTrailingEntries: 2,
    });
    try {
      const client = cluster.client();
      await client.createVolume("behind");
      for (let i = 0; i < 40; i++) await client.createBucket("behind", `bucket-${i}`);
      await settle(cluster);
      const victim = cluster.nodes.find((n) => n && !n.host.isLeader)!;
      const id = victim.config.id;
      await until(() => victim.host.raft.log.firstIndex() > 2, "the follower to compact its log");
      await until(() => victim.store.durableIndex >= victim.host.appliedIndex, "its state to sync");
      await cluster.stopNode(id);
      // Not a state this log was compacted against: someone else's, or restored from an old copy.
      const env = openEnvironment(join(cluster.dir, `node-${id}`, "state"));
      await env.transaction(() => {
        const one = Buffer.alloc(8);
        one.writeBigUInt64BE(1n);
        env.dbs.meta.put(Buffer.from("appliedIndex"), one);
        env.dbs.meta.put(Buffer.from("lastTxid"), Buffer.alloc(8));
      });
      await env.close();
      await assert.rejects(cluster.startNode(id), (e) => code(e) === "MR_ERR_LOG_CORRUPT");
    } finally {
      await cluster.stop();
    }
  });
});
