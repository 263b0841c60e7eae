import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { type LedgerEvent, readLedger } from "../../src/events/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const code = (error: unknown) => (error instanceof MetaraftError ? error.code : String(error));

/** Every row of the `kv` table, hex. */
function dumpKv(node: MetaraftNode): string {
  return [...node.env.dbs.kv.getRange({})]
    .map(
      ({ key, value }) =>
        `${Buffer.from(key as Uint8Array).toString("hex")} ${Buffer.from(value as Uint8Array).toString("hex")}`,
    )
    .join("\n");
}

/** The kv events of the node's ledger, without their times. */
function kvEvents(node: MetaraftNode): Omit<LedgerEvent, "time">[] {
  return readLedger(node.store, node.core.sync, 0, Number.MAX_SAFE_INTEGER, { prefix: "_kv/" }).events.map(
    ({ time: _time, ...rest }) => rest,
  );
}

async function settle(cluster: InProcessCluster): Promise<void> {
  const leader = await cluster.leader();
  const target = leader.host.appliedIndex;
  await waitFor("followers to catch up", () =>
    cluster.nodes.every((n) => !n || n.host.appliedIndex >= target),
  );
  await Promise.all(cluster.nodes.map((n) => n?.store.flushed()));
}

describe("the coordination keyspace in a cluster", () => {
  it("puts, gets, ranges, deletes and runs txns end to end, and a watch sees every change", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, kv: { deleteKeysMax: 3 } });
    try {
      const client = cluster.client();
      const watch = client.watch({ prefix: "_kv/app/" });
      const opened = await watch.opened();

      const first = await client.kvPut("app/a", "1");
      const second = await client.kvPut("app/a", "2", { prevKv: true });
      assert.equal((second.prevKv as { value: string }).value, "1");
      const got = (await client.kvGet("app/a")).kv as Record<string, unknown>;
      assert.deepEqual(got, {
        key: "app/a",
        value: "2",
        createTxid: first.txid,
        modTxid: second.txid,
        version: 2,
      });
      assert.equal((await client.kvGet("app/none")).kv, null);
      // Bytes stay bytes; stale reads from any node serve once applied.
      await client.kvPut("app/bin", new Uint8Array([0, 255, 7]));
      const bin = (await client.kvGet("app/bin")).kv as { value: Uint8Array };
      assert.deepEqual([...bin.value], [0, 255, 7]);
      await client.kvPut("other/x", "outside the watch");

      // Pages of a range.
      for (const k of ["app/c", "app/d", "app/e"]) await client.kvPut(k, k);
      const page1 = await client.kvRange("app/", { limit: 2 });
      assert.deepEqual(
        (page1.items as { key: string }[]).map((e) => e.key),
        ["app/a", "app/bin"],
      );
      assert.equal(page1.truncated, true);
      const page2 = await client.kvRange("app/", { startAfter: page1.nextStartAfter as string });
      assert.deepEqual(
        (page2.items as { key: string }[]).map((e) => e.key),
        ["app/c", "app/d", "app/e"],
      );
      assert.equal(page2.truncated, false);

      // A txn: the compare fails, so the failure branch runs; then one that succeeds.
      const failed = await client.kvTxn({
        compare: [{ target: "value", key: "app/a", op: "=", value: "1" }],
        success: [{ op: "put", key: "app/a", value: "never" }],
        failure: [{ op: "get", key: "app/a" }],
      });
      assert.equal(failed.succeeded, false);
      assert.equal((failed.responses as { kv: { value: string } }[])[0]!.kv.value, "2");
      const won = await client.kvTxn({
        compare: [
          { target: "version", key: "app/a", op: "=", value: 2 },
          { target: "create", key: "app/lock", op: "=", value: 0 },
        ],
        success: [
          { op: "put", key: "app/lock", value: "me" },
          { op: "delete", key: "app/c" },
          { op: "get", key: "app/lock" },
        ],
      });
      assert.equal(won.succeeded, true);
      const responses = won.responses as Record<string, unknown>[];
      assert.equal(responses[1]!.deleted, 1);
      assert.equal((responses[2]!.kv as { createTxid: number }).createTxid, won.txid);

      // A prefix delete is bounded by kv.deleteKeysMax (3 here): it says when keys remain.
      const del1 = await client.kvDelete("app/", { prefix: true });
      assert.deepEqual([del1.deleted, del1.truncated], [3, true]);
      const del2 = await client.kvDelete("app/", { prefix: true });
      assert.deepEqual([del2.deleted, del2.truncated], [2, false]);
      assert.equal(((await client.kvRange("app/")).items as unknown[]).length, 0);
      assert.equal((await client.kvGet("other/x")).kv !== null, true);

      // A key of kv.keyBytesMax (4 KiB, past LMDB's 1,978-byte key limit) is stored, and its
      // event carries it whole. Long keys sharing their first 1,900 bytes range in byte order.
      const stem = `zz/${"z".repeat(1900)}`;
      const longest = `${stem}${"y".repeat(4096 - stem.length)}`;
      const stored = await client.kvPut(longest, "v");
      for (const tail of ["\u{1F600}", "b", "\uFF5E", "a"]) await client.kvPut(stem + tail, tail);
      assert.equal(((await client.kvGet(longest)).kv as { key: string }).key, longest);
      const longRange = (await client.kvRange(stem, { limit: 3 })) as {
        items: { key: string }[];
        nextStartAfter: string;
      };
      const rest = (await client.kvRange(stem, { startAfter: longRange.nextStartAfter })) as {
        items: { key: string }[];
      };
      assert.deepEqual(
        [...longRange.items, ...rest.items].map((e) => e.key.slice(stem.length)),
        ["a", "b", "y".repeat(4096 - stem.length), "\uFF5E", "\u{1F600}"],
      );
      const longRead = await client.readEvents({ afterTxid: (stored.txid as number) - 1, prefix: "_kv/zz" });
      assert.deepEqual(
        (longRead.events as LedgerEvent[]).map((e) => e.key),
        [longest, ...["\u{1F600}", "b", "\uFF5E", "a"].map((tail) => stem + tail)],
      );
      assert.equal((await client.kvDelete("zz/", { prefix: true })).deleted, 3);
      assert.equal((await client.kvDelete("zz/", { prefix: true })).deleted, 2);
      await client.kvPut(longest, "again"); // a group in the dumps compared below
      // Bad input gets its code, and nothing is written.
      await assert.rejects(client.kvPut("", "x"), (e) => code(e) === "MR_ERR_INVALID_ARGUMENT");
      await assert.rejects(client.kvPut("k".repeat(4097), "x"), (e) => code(e) === "MR_ERR_KV_KEY_TOO_LARGE");
      await assert.rejects(
        client.kvPut("app/big", "v".repeat(1024 * 1024 + 1)),
        (e) => code(e) === "MR_ERR_KV_VALUE_TOO_LARGE",
      );
      await assert.rejects(
        client.kvTxn({ success: Array.from({ length: 129 }, () => ({ op: "get", key: "k" })) }),
        (e) => code(e) === "MR_ERR_KV_TXN_TOO_LARGE",
      );
      await assert.rejects(
        client.kvTxn({ compare: [{ target: "size", key: "k", op: "=", value: 1 }] }),
        (e) => code(e) === "MR_ERR_INVALID_ARGUMENT",
      );

      // The watch saw every put and delete under app/ (none of other/), in order.
      const seen: LedgerEvent[] = [];
      const expected = 2 + 1 + 3 + 2 + 5; // puts of a, bin, c d e; the txn's put and delete; 5 deletes
      for await (const event of watch) {
        seen.push(event);
        if (seen.length === expected) break;
      }
      assert.ok(seen.every((e) => e.txid > opened.txid && e.volume === undefined));
      assert.deepEqual(
        seen.map((e) => `${e.type} ${e.key}`),
        [
          "KvPut:Put app/a",
          "KvPut:Put app/a",
          "KvPut:Put app/bin",
          "KvPut:Put app/c",
          "KvPut:Put app/d",
          "KvPut:Put app/e",
          "KvPut:Put app/lock",
          "KvDelete:Delete app/c",
          "KvDelete:Delete app/a",
          "KvDelete:Delete app/bin",
          "KvDelete:Delete app/d",
          "KvDelete:Delete app/e",
          "KvDelete:Delete app/lock",
        ],
      );
      // The txn's two events share its txid.
      assert.equal(seen[6]!.txid, won.txid);
      assert.equal(seen[7]!.txid, won.txid);
      // Every node holds the same keyspace.
      await settle(cluster);
      const dumps = cluster.nodes.map((n) => dumpKv(n!));
      assert.equal(dumps[1], dumps[0]);
      assert.equal(dumps[2], dumps[0]);
    } finally {
      await cluster.stop();
    }
  });

  it("both execution modes end in byte-identical keyspaces and identical kv events", async () => {
    const dumps: string[] = [];
    const ledgers: Omit<LedgerEvent, "time">[][] = [];
    for (const mode of ["leader-execution", "replicated-request"] as const) {
      const cluster = await InProcessCluster.start({ nodes: 3, mode, clock: () => 1_700_000_000_000 });
      try {
        const client = cluster.client("same-client");
        // One call first, so that the client has found the leader and the concurrent ones reach
        // it in the order sent (a redirected call would be retried out of order); those ride in
        // shared batches, and the txns then read what they left.
        await client.kvPut("k/first", "0");
        await Promise.all(Array.from({ length: 30 }, (_, i) => client.kvPut(`k/${i % 10}`, `v${i}`)));
        await client.kvTxn({
          compare: [{ target: "exists", key: "k/1", op: "=", value: true }],
          success: [
            { op: "put", key: "k/1", value: "txn" },
            { op: "put", key: "k/1", value: "txn again" },
            { op: "delete", key: "k/2" },
          ],
          failure: [{ op: "put", key: "k/failed", value: "x" }],
        });
        await client.kvTxn({
          compare: [{ target: "mod", key: "k/3", op: ">", value: 1_000_000 }],
          success: [{ op: "delete", key: "k/3" }],
          failure: [{ op: "put", key: "k/failed", value: new Uint8Array([1, 2]) }],
        });
        await client.kvDelete("k/", { prefix: true }).then(() => client.kvPut("k/after", "y"));
        // Long keys: their rows and their group's directory are the same in both modes.
        for (const tail of ["b", "a", "c"]) await client.kvPut(`k/${"l".repeat(2000)}${tail}`, tail);
        await client.kvDelete(`k/${"l".repeat(2000)}c`);
        await settle(cluster);
        const leader = await cluster.leader();
        for (const node of cluster.nodes) assert.equal(dumpKv(node!), dumpKv(leader));
        dumps.push(dumpKv(leader));
        ledgers.push(kvEvents(leader));
      } finally {
        await cluster.stop();
      }
    }
    // k/after, two long keys and their group's directory.
    assert.equal(dumps[0]!.split("\n").length, 4);
    assert.equal(dumps[1], dumps[0]);
    // 31 puts, 2 + 1 in the first txn, 1 in the second, 11 deletes (k/first, k/0..k/9 but k/2,
    // k/failed), 1 put, 3 long puts and 1 long delete.
    assert.equal(ledgers[0]!.length, 31 + 3 + 1 + 11 + 1 + 4);
    assert.deepEqual(ledgers[1], ledgers[0]);
  });
});
