import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { pack, unpackMultiple } from "msgpackr";
import { MemoryStateStore } from "../../src/execution/memory-state-store.js";
import { StateStore } from "../../src/execution/state-store.js";
import { TABLE_IDS } from "../../src/execution/types.js";
import {
  MemoryStateDisk,
  openEnvironment,
  type StateDiskBatch,
  type StorageEnvironment,
} from "../../src/storage/index.js";

const dirs: string[] = [];
const envs: StorageEnvironment[] = [];
after(async () => {
  for (const env of envs) await env.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function openStore(): StateStore {
  const dir = mkdtempSync(join(tmpdir(), "metaraft-state-"));
  dirs.push(dir);
  const env = openEnvironment(dir, { noSync: true });
  envs.push(env);
  return StateStore.open(env);
}

const encoder = new TextEncoder();
const put = (table: number, key: string, value: string | null) => ({
  table,
  key: encoder.encode(key),
  value: value === null ? null : encoder.encode(value),
});

/** Every row of every table but meta, read through the store (pending writes included). */
function dump(store: StateStore): string {
  const rows: string[] = [];
  for (const table of Object.keys(TABLE_IDS) as (keyof typeof TABLE_IDS)[]) {
    if (table === "meta") continue;
    for (const { key, value } of store.scan(table, "", undefined, 1_000_000)) {
      rows.push(`${table} ${key} ${Buffer.from(value).toString()}`);
    }
  }
  return rows.join("\n");
}

describe("state snapshots", () => {
  it("copy the state as of the call, pending writes included, while the event loop keeps running", async () => {
    const store = openStore();
    let index = 0;
    for (let batch = 0; batch < 10; batch++) {
      const writes = Array.from({ length: 100 }, (_, i) =>
        put(TABLE_IDS.keys, `k/${batch}/${i}`, `v${batch}.${i}`),
      );
      store.apply(writes, { index: ++index, lastTxid: index * 100 });
    }
    await store.flushed();
    // Written to LMDB: some deleted, some replaced, some added, none committed yet.
    store.apply(
      [
        put(TABLE_IDS.keys, "k/0/1", null),
        put(TABLE_IDS.keys, "k/3/3", "replaced"),
        put(TABLE_IDS.keys, "k/3/30", null),
        put(TABLE_IDS.keys, "a-first", "new"),
        put(TABLE_IDS.keys, "z-last", "new"),
        put(TABLE_IDS.volumes, "vol", "v"),
      ],
      { index: ++index, lastTxid: index * 100 },
    );
    assert.ok(store.pending.size > 0);
    const expected = dump(store);
    const order: string[] = [];
    const copying = store.snapshotAsync(64).then((data) => {
      order.push("copied");
      return data;
    });
    setImmediate(() => order.push("another task ran"));
    // Changes after the call are not in the copy.
    store.apply([put(TABLE_IDS.keys, "k/5/5", "later"), put(TABLE_IDS.keys, "later", "x")], {
      index: ++index,
      lastTxid: index * 100,
    });
    const data = await copying;
    assert.deepEqual(order, ["another task ran", "copied"]);

    const copy = openStore();
    const restoring = copy.restore(data, 5);
    // Its txid is the snapshot's at once, its tables only once the commit lands: say so.
    assert.equal(copy.restoring, true);
    await restoring;
    assert.equal(copy.restoring, false);
    assert.equal(dump(copy), expected);
    assert.equal(copy.appliedIndex, 11, "the copy's own applied index, above the snapshot's");
    assert.equal(copy.lastTxid, 1100);
    // The synchronous copy is the same bytes.
    const again = openStore();
    await again.restore(store.snapshot(64), 5);
    assert.match(dump(again), /later/);
  });

  it("slice by row count whether the rows are committed or pending, so the bytes do not depend on it", async () => {
    const writes = [
      put(TABLE_IDS.kv, "a1", "1"),
      put(TABLE_IDS.kv, "a2", "2"),
      put(TABLE_IDS.kv, "b", "3"),
      put(TABLE_IDS.kv, "c1", "4"),
      put(TABLE_IDS.kv, "c2", "5"),
      put(TABLE_IDS.kv, "c3", "6"),
    ];
    // All committed, against: only "b" committed, the rows before and after it pending.
    const committed = openStore();
    committed.apply(writes, { index: 1, lastTxid: 1 });
    await committed.flushed();
    const mixed = openStore();
    mixed.apply([writes[2]!], { index: 1, lastTxid: 1 });
    await mixed.flushed();
    mixed.apply(
      writes.filter((_, i) => i !== 2),
      { index: 2, lastTxid: 1 },
    );
    committed.apply([], { index: 2, lastTxid: 1 });
    await committed.flushed();
    const [, ...slices] = unpackMultiple(mixed.snapshot(2)) as [unknown, ...[number, unknown[]][]];
    const kv = slices.filter(([id]) => id === TABLE_IDS.kv).map(([, rows]) => rows.length);
    assert.deepEqual(kv, [2, 2, 2]);
    const withoutMeta = (data: Uint8Array) =>
      (unpackMultiple(data) as [unknown, ...[number, unknown[]][]]).filter(
        (part) => !Array.isArray(part) || part[0] !== TABLE_IDS.meta,
      );
    assert.deepEqual(withoutMeta(mixed.snapshot(2)), withoutMeta(committed.snapshot(2)));
  });

  it("refuse a snapshot in another format", () => {
    const store = openStore();
    assert.throws(
      () => void store.restore(pack({ appliedIndex: 3, lastTxid: 1, tables: [] }), 3),
      (e: Error & { code?: string }) => e.code === "MR_ERR_LOG_CORRUPT",
    );
  });

  it("report as durable only what the disk has synced", async () => {
    const dir = mkdtempSync(join(tmpdir(), "metaraft-state-"));
    dirs.push(dir);
    // Synced commits that overlap their fsync, as the node opens its state.
    const env = openEnvironment(dir, { overlappingSync: true });
    envs.push(env);
    const store = StateStore.open(env);
    store.apply([put(TABLE_IDS.volumes, "v", "1")], { index: 1, lastTxid: 1 });
    assert.equal(store.appliedIndex, 1);
    assert.equal(store.durableIndex, 0, "nothing is durable before its commit");
    await store.flushed();
    assert.equal(store.committedIndex, 1);
    await env.flushed();
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(store.durableIndex, 1);
  });
});

describe("state commits", () => {
  it("commit once what flushed() committed before its turn came", async () => {
    let commits = 0;
    class CountingDisk extends MemoryStateDisk {
      override commit(batch: StateDiskBatch): Promise<void> {
        commits++;
        return super.commit(batch);
      }
    }
    const store = new MemoryStateStore(new CountingDisk());
    store.apply([put(TABLE_IDS.volumes, "v", "1")], { index: 1, lastTxid: 1 });
    await store.flushed();
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(commits, 1);
    assert.equal(store.durableIndex, 1);
  });
});
