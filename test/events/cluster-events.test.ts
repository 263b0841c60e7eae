import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { LedgerEvent } from "../../src/events/index.js";
import { readLedger } from "../../src/events/index.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const strip = ({ time, ...rest }: LedgerEvent) => {
  assert.equal(typeof time, "number");
  return rest;
};

describe("the ledger of a cluster", () => {
  for (const mode of ["leader-execution", "replicated-request"] as const) {
    it(`${mode}: records exactly the changes, one txid after another, the same on every node`, async () => {
      const cluster = await InProcessCluster.start({ nodes: 3, mode });
      try {
        const client = cluster.client();
        // Every successful write takes the next txid, refusals none: sequential calls make the
        // expected txids exact.
        let txid = ((await client.status()).lastTxid as number) + 1;
        const expected: Omit<LedgerEvent, "time">[] = [];
        const created = await client.createVolume("evv");
        assert.equal(created.updateId, txid);
        expected.push({
          txid: txid++,
          type: "VolumeCreated:Create",
          volume: "evv",
          objectId: created.objectId as number,
        });
        const bucket = await client.createBucket("evv", "bkt");
        expected.push({
          txid: txid++,
          type: "BucketCreated:Create",
          volume: "evv",
          bucket: "bkt",
          objectId: bucket.objectId as number,
        });
        const put = async (key: string, size: number) => {
          const opened = await client.openKey("evv", "bkt", key, size);
          txid++; // openKey: a txid, no event (nothing is visible until the commit)
          const committed = await client.commitKey("evv", "bkt", key, opened.openKeyId, {
            size,
            etag: `e-${key}`,
          });
          assert.equal(committed.updateId, txid);
          expected.push({
            txid: txid++,
            type: "ObjectCreated:Put",
            volume: "evv",
            bucket: "bkt",
            key,
            objectId: opened.openKeyId,
            size,
            etag: `e-${key}`,
          });
          return opened.openKeyId;
        };
        const a = await put("a", 10);
        const c = await put("dir/c", 30);
        await put("a", 11); // an overwrite is a put of a new object
        // Refusals leave no event and take no txid.
        await assert.rejects(client.createVolume("evv"));
        await assert.rejects(client.deleteKey("evv", "bkt", "missing"));
        await assert.rejects(client.renameKey("evv", "bkt", "nope", "x"));
        await client.renameKey("evv", "bkt", "dir/c", "dir/d");
        expected.push({
          txid: txid++,
          type: "ObjectRenamed:Rename",
          volume: "evv",
          bucket: "bkt",
          key: "dir/c",
          toKey: "dir/d",
          objectId: c,
          size: 30,
          etag: "e-dir/c",
        });
        const overwrite = expected[expected.length - 2]!;
        await client.deleteKey("evv", "bkt", "a");
        expected.push({
          txid: txid++,
          type: "ObjectRemoved:Delete",
          volume: "evv",
          bucket: "bkt",
          key: "a",
          objectId: overwrite.objectId!,
          size: 11,
          etag: "e-a",
        });
        assert.notEqual(overwrite.objectId, a);
        await client.deleteKey("evv", "bkt", "dir/d");
        expected.push({
          txid: txid++,
          type: "ObjectRemoved:Delete",
          volume: "evv",
          bucket: "bkt",
          key: "dir/d",
          objectId: c,
          size: 30,
          etag: "e-dir/c",
        });
        await client.deleteBucket("evv", "bkt");
        expected.push({
          txid: txid++,
          type: "BucketRemoved:Delete",
          volume: "evv",
          bucket: "bkt",
          objectId: bucket.objectId as number,
        });
        await client.deleteVolume("evv");
        expected.push({
          txid: txid++,
          type: "VolumeRemoved:Delete",
          volume: "evv",
          objectId: created.objectId as number,
        });

        // Through the client (linearizable read), and a prefix filter.
        const read = await client.readEvents({ afterTxid: 0, limit: 1000 });
        assert.deepEqual((read.events as LedgerEvent[]).map(strip), expected);
        assert.equal(read.missed, undefined);
        const under = await client.readEvents({ prefix: "evv/bkt/dir/" });
        assert.deepEqual(
          (under.events as LedgerEvent[]).map((e) => [e.type, e.key]),
          [
            ["ObjectCreated:Put", "dir/c"],
            ["ObjectRenamed:Rename", "dir/c"],
            ["ObjectRemoved:Delete", "dir/d"],
          ],
        );
        // Every node holds the same ledger.
        const leader = await cluster.leader();
        await waitFor("every node applied the last write", () =>
          cluster.nodes.every((n) => n!.store.lastTxid === leader.store.lastTxid),
        );
        const ledgers = cluster.nodes.map((n) => readLedger(n!.store, n!.core.sync, 0, 1000).events);
        assert.deepEqual(ledgers[1], ledgers[0]);
        assert.deepEqual(ledgers[2], ledgers[0]);
        const summary = (await client.status()).ledger as {
          count: number;
          lastTxid: number;
          written: number;
        };
        assert.equal(summary.count, expected.length);
        assert.equal(summary.written, expected.length);
        assert.equal(summary.lastTxid, txid - 1);
      } finally {
        await cluster.stop();
      }
    });
  }

  it("with events off, records nothing and still serves writes", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, events: { disabled: true } });
    try {
      const client = cluster.client();
      await client.createVolume("quiet");
      await client.putKey("quiet", "bkt", "k", { size: 1, etag: "x" }).catch(() => undefined);
      await client.createBucket("quiet", "bkt");
      await client.putKey("quiet", "bkt", "k", { size: 1, etag: "x" });
      const read = await client.readEvents();
      assert.deepEqual(read.events, []);
      assert.equal(((await client.status()).ledger as { written: number }).written, 0);
    } finally {
      await cluster.stop();
    }
  });

  it("prunes to events.max under load on every node alike, and tells a reader from the start what it missed", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, events: { max: 40, hardMax: 400 } });
    try {
      const client = cluster.client();
      await client.createVolume("ret");
      await client.createBucket("ret", "bkt");
      for (let round = 0; round < 6; round++) {
        await Promise.all(
          Array.from({ length: 25 }, (_, i) =>
            client.putKey("ret", "bkt", `k${round}-${i}`, { size: i, etag: "t" }),
          ),
        );
      }
      // A few lone writes after the storm: each entry prunes what the one before left over.
      for (let i = 0; i < 10; i++) await client.createBucket("ret", `lone-${i}`);
      const leader = await cluster.leader();
      await waitFor("every node applied the last write", () =>
        cluster.nodes.every((n) => n!.store.lastTxid === leader.store.lastTxid),
      );
      const summaries = cluster.nodes.map((n) => readLedger(n!.store, n!.core.sync, 0, 1).lastTxid);
      assert.equal(new Set(summaries).size, 1);
      const status = (await client.status()).ledger as { count: number; pruned: number; written: number };
      assert.equal(status.written, 2 + 150 + 10);
      // Whole records are pruned, so the ledger keeps at least 40 and less than 40 plus one
      // record (a batch holds at most the 25 puts of one round).
      assert.ok(status.count >= 40 && status.count < 40 + 25, `count ${status.count}`);
      assert.equal(status.pruned, status.written - status.count);
      const read = await client.readEvents({ afterTxid: 0, limit: 10 });
      assert.equal((read.missed as { fromTxid: number }).fromTxid, 1);
      assert.equal((read.events as LedgerEvent[])[0]!.txid, (read.missed as { toTxid: number }).toTxid + 1);
    } finally {
      await cluster.stop();
    }
  });
});
