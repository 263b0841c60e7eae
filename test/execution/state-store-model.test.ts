import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import fc from "fast-check";
import { pack, unpackMultiple } from "msgpackr";
import { MemoryStateStore } from "../../src/execution/memory-state-store.js";
import { type ApplyMeta, StateStore } from "../../src/execution/state-store.js";
import { type StateTable, TABLE_IDS } from "../../src/execution/types.js";
import {
  LmdbStateDisk,
  MemoryStateDisk,
  openEnvironment,
  STATE_KEY_BYTES_MAX,
  type StorageEnvironment,
} from "../../src/storage/index.js";

/**
 * The StateStore over LMDB and over MemoryStateDisk must be observably identical: the same
 * random operations run against both, and every read, index and snapshot byte must agree. The
 * memory disk's crashes are checked against the history of applied states: a crash keeps the
 * synced commits and a prefix of the rest, and the node re-applies the remainder from its log.
 */

const encoder = new TextEncoder();
const TABLES = Object.keys(TABLE_IDS) as StateTable[];
/** Runs a few seconds on a loaded 2-core machine; raise it locally to search harder. */
const RUNS = Number(process.env.STATE_MODEL_RUNS ?? 60);

// Keys from few characters, so that they collide, share prefixes and are prefixes of each other;
// "Ａ" (U+FF21) and "😀" (U+1F600) order one way by UTF-8 bytes and the other by UTF-16 units.
const KEY_CHARS = ["a", "b", "/", "\u0000", "é", "Ａ", "😀"];
const keyArb = fc.array(fc.constantFrom(...KEY_CHARS), { minLength: 1, maxLength: 3 }).map((c) => c.join(""));
// Mostly a few tables, so that scans find rows; now and then any of them.
const tableArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom<StateTable>("kv", "keys", "meta") },
  { weight: 1, arbitrary: fc.constantFrom(...TABLES) },
);
const writeArb = fc.record({
  table: tableArb,
  key: keyArb,
  value: fc.option(fc.uint8Array({ maxLength: 6 }), { freq: 3, nil: null }),
});

interface EntrySpec {
  readonly writes: readonly { table: StateTable; key: string; value: Uint8Array | null }[];
  /** Entries skipped before this one (applied elsewhere as no-ops, say). */
  readonly gap: number;
  readonly txids: number;
}

const entriesArb = fc.array(
  fc.record({ writes: fc.array(writeArb, { maxLength: 4 }), gap: fc.nat(1), txids: fc.nat(2) }),
  { minLength: 1, maxLength: 3 },
);

type Op =
  | { readonly kind: "apply"; readonly entries: readonly EntrySpec[] }
  | { readonly kind: "turn"; readonly turns: number }
  | { readonly kind: "get"; readonly table: StateTable; readonly key: string }
  | {
      readonly kind: "scan";
      readonly table: StateTable;
      readonly prefix: string;
      readonly startAfter: string | undefined;
      readonly limit: number;
    }
  | { readonly kind: "committed" }
  | { readonly kind: "flushed" }
  | {
      readonly kind: "snapshot";
      readonly committed: boolean;
      readonly sliceRows: number;
      readonly async: boolean;
    }
  | {
      readonly kind: "restore";
      readonly pick: number;
      readonly from: "lmdb" | "memory";
      readonly gap: number;
    }
  | { readonly kind: "reopen" }
  | {
      readonly kind: "crash";
      /** Entries applied (to both stores) just before, each batch followed by some turns. */
      readonly before: readonly { readonly entries: readonly EntrySpec[]; readonly turns: number }[];
      readonly committed: boolean;
      readonly turns: number;
      readonly keep: number;
    };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record({ kind: fc.constant("apply" as const), entries: entriesArb }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ kind: fc.constant("turn" as const), turns: fc.integer({ min: 1, max: 3 }) }),
  },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("get" as const), table: tableArb, key: keyArb }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant("scan" as const),
      table: tableArb,
      prefix: fc.oneof(fc.constant(""), fc.constantFrom(...KEY_CHARS), keyArb),
      startAfter: fc.option(keyArb, { freq: 2, nil: undefined }),
      limit: fc.nat(6),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("committed" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("flushed" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("snapshot" as const),
      committed: fc.boolean(),
      sliceRows: fc.integer({ min: 1, max: 5 }),
      async: fc.boolean(),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("restore" as const),
      pick: fc.nat(),
      from: fc.constantFrom("lmdb" as const, "memory" as const),
      gap: fc.nat(2),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reopen" as const) }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("crash" as const),
      before: fc.array(fc.record({ entries: entriesArb, turns: fc.nat(2) }), { maxLength: 3 }),
      committed: fc.boolean(),
      turns: fc.nat(3),
      keep: fc.nat(),
    }),
  },
);

const hexOf = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
const hex = (bytes: Uint8Array | undefined): string | null => (bytes === undefined ? null : hexOf(bytes));

const OWN_META = new Set(["appliedIndex", "lastTxid"]);

/**
 * A snapshot's parts as hex, but the store's own meta records, which hold the index committed
 * to the disk when the copy began (restore ignores them): every other table's slices as they
 * are, and meta's remaining rows.
 */
function withoutOwnMeta(data: Uint8Array): { header: string; slices: string[]; meta: string[] } {
  const [header, ...slices] = unpackMultiple(data) as [unknown, ...[number, [Uint8Array, Uint8Array][]][]];
  const out = { header: hexOf(pack(header)), slices: [] as string[], meta: [] as string[] };
  for (const [id, rows] of slices) {
    if (id !== TABLE_IDS.meta) {
      out.slices.push(hexOf(pack([id, rows])));
      continue;
    }
    for (const [key, value] of rows) {
      if (!OWN_META.has(Buffer.from(key).toString())) out.meta.push(`${hexOf(key)} ${hexOf(value)}`);
    }
  }
  return out;
}

/** Every row the store shows (pending writes included), but the meta records it writes itself. */
function dump(store: StateStore): string {
  const rows: string[] = [`lastTxid ${store.lastTxid}`];
  for (const table of TABLES) {
    for (const { key, value } of store.scan(table, "", undefined, Number.MAX_SAFE_INTEGER)) {
      if (table === "meta" && OWN_META.has(key)) continue;
      rows.push(`${table} ${hex(encoder.encode(key))} ${hex(value)}`);
    }
  }
  return rows.join("\n");
}

/** What the node's log holds: every entry applied and every snapshot restored, in order. */
type LogEvent =
  | { readonly kind: "apply"; readonly writes: ReturnType<typeof encodeWrites>; readonly meta: ApplyMeta }
  | {
      readonly kind: "restore";
      readonly data: Uint8Array;
      readonly index: number;
      readonly appliedIndex: number;
    };

function encodeWrites(writes: readonly { table: StateTable; key: string; value: Uint8Array | null }[]) {
  return writes.map((w) => ({ table: TABLE_IDS[w.table], key: encoder.encode(w.key), value: w.value }));
}

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

class Pair {
  readonly dir = mkdtempSync(join(tmpdir(), "metaraft-state-model-"));
  env: StorageEnvironment;
  lmdb: StateStore;
  memory: MemoryStateStore;
  readonly snapshots: { readonly lmdb: Uint8Array; readonly memory: Uint8Array }[] = [];
  readonly log: LogEvent[] = [];
  /** The applied state at each applied index (the state a crash may leave behind). */
  readonly history = new Map<number, string>();

  /** `delays`: how many turns each of the memory disk's deferred calls waits (1 + the value). */
  constructor(delays: readonly number[]) {
    // The memory disk lands and syncs its commits later than it must, by turns the input
    // chooses, so that crashes find commits at every stage; the store itself defers as the node does.
    let call = 0;
    const defer = (fn: () => void) => {
      const wait = (turns: number): void => void setImmediate(turns > 0 ? () => wait(turns - 1) : fn);
      wait(delays.length > 0 ? delays[call++ % delays.length]! : 0);
    };
    this.memory = new MemoryStateStore(new MemoryStateDisk({ defer }));
    this.history.set(0, dump(this.memory));
    // As the node opens its state: commits resolve before their fsync.
    this.env = openEnvironment(this.dir, { overlappingSync: true });
    this.lmdb = StateStore.open(this.env);
  }

  async close(): Promise<void> {
    await this.lmdb.flushed().catch(() => undefined);
    await this.env.close();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** The two stores agree on everything a reader sees. */
  same(what: string): void {
    assert.equal(this.memory.appliedIndex, this.lmdb.appliedIndex, `${what}: appliedIndex`);
    assert.equal(this.memory.lastTxid, this.lmdb.lastTxid, `${what}: lastTxid`);
    assert.equal(dump(this.memory), dump(this.lmdb), `${what}: rows`);
  }

  async flushBoth(): Promise<void> {
    await Promise.all([this.lmdb.flushed(), this.memory.flushed()]);
    await Promise.all([this.env.flushed(), this.memory.disk.flushed()]);
    await nextTurn();
  }

  apply(entries: readonly EntrySpec[]): void {
    for (const entry of entries) {
      const meta = {
        index: this.lmdb.appliedIndex + 1 + entry.gap,
        lastTxid: this.lmdb.lastTxid + entry.txids,
      };
      const writes = encodeWrites(entry.writes);
      this.lmdb.apply(writes, meta);
      this.memory.apply(writes, meta);
      this.log.push({ kind: "apply", writes, meta });
      this.history.set(meta.index, dump(this.lmdb));
    }
  }

  async run(op: Op): Promise<void> {
    switch (op.kind) {
      case "apply":
        this.apply(op.entries);
        break;
      case "turn":
        for (let i = 0; i < op.turns; i++) await nextTurn();
        break;
      case "get":
        assert.equal(hex(this.memory.get(op.table, op.key)), hex(this.lmdb.get(op.table, op.key)), "get");
        break;
      case "scan": {
        // meta's own records are as committed, which differs between the stores until both
        // have committed what they applied: until then, leave them out before the limit.
        const settled = [this.lmdb, this.memory].every((s) => s.committedIndex === s.appliedIndex);
        const scan = (store: StateStore) => {
          if (op.table !== "meta" || settled) {
            return store.scan(op.table, op.prefix, op.startAfter, op.limit).map((e) => [e.key, hex(e.value)]);
          }
          return store
            .scan(op.table, op.prefix, op.startAfter, Number.MAX_SAFE_INTEGER)
            .filter((e) => !OWN_META.has(e.key))
            .slice(0, op.limit)
            .map((e) => [e.key, hex(e.value)]);
        };
        assert.deepEqual(scan(this.memory), scan(this.lmdb), "scan");
        break;
      }
      case "committed":
        // Committed, and (with overlapping syncs) perhaps not synced yet.
        await Promise.all([this.lmdb.flushed(), this.memory.flushed()]);
        for (const store of [this.lmdb, this.memory]) {
          assert.equal(store.committedIndex, store.appliedIndex, "committed after flushed");
        }
        break;
      case "flushed":
        await this.flushBoth();
        for (const store of [this.lmdb, this.memory]) {
          assert.equal(store.committedIndex, store.appliedIndex, "committed after flushed");
          assert.equal(store.durableIndex, store.appliedIndex, "durable after the disk's flushed");
        }
        for (const key of ["appliedIndex", "lastTxid"]) {
          assert.equal(hex(this.memory.get("meta", key)), hex(this.lmdb.get("meta", key)), `meta ${key}`);
        }
        break;
      case "snapshot": {
        if (op.committed) await Promise.all([this.lmdb.flushed(), this.memory.flushed()]);
        // A snapshot copies the meta records as committed when it begins: the same bytes if both
        // stores have committed what they applied; otherwise the same but for those records.
        const settled = [this.lmdb, this.memory].every((s) => s.committedIndex === s.appliedIndex);
        const [lmdb, memory] = op.async
          ? await Promise.all([
              this.lmdb.snapshotAsync(op.sliceRows),
              this.memory.snapshotAsync(op.sliceRows),
            ])
          : [this.lmdb.snapshot(op.sliceRows), this.memory.snapshot(op.sliceRows)];
        if (settled) assert.equal(hex(memory), hex(lmdb), "snapshot bytes");
        else assert.deepEqual(withoutOwnMeta(memory), withoutOwnMeta(lmdb), "snapshot bytes but own meta");
        this.snapshots.push({ lmdb, memory });
        break;
      }
      case "restore": {
        const chosen = this.snapshots[op.pick % Math.max(1, this.snapshots.length)];
        if (!chosen) break;
        const data = chosen[op.from];
        // As Raft sends one: at an index above what is applied.
        const index = this.lmdb.appliedIndex + 1 + op.gap;
        await Promise.all([this.lmdb.restore(data, index), this.memory.restore(data, index)]);
        this.log.push({ kind: "restore", data, index, appliedIndex: this.lmdb.appliedIndex });
        this.history.set(this.lmdb.appliedIndex, dump(this.lmdb));
        break;
      }
      case "reopen": {
        // A crash after everything is synced loses nothing, in either store.
        await this.flushBoth();
        const before = dump(this.lmdb);
        const applied = this.lmdb.appliedIndex;
        await this.env.close();
        this.env = openEnvironment(this.dir, { overlappingSync: true });
        this.lmdb = StateStore.open(this.env);
        assert.equal(this.memory.disk.unsyncedCommits, 0, "nothing unsynced after flushed");
        this.memory = this.memory.crash(0);
        for (const store of [this.lmdb, this.memory]) {
          assert.equal(store.appliedIndex, applied, "reopened appliedIndex");
          assert.equal(dump(store), before, "reopened rows");
        }
        break;
      }
      case "crash":
        // Commits at every stage: not handed to the disk, not landed, landed, synced.
        for (const batch of op.before) {
          this.apply(batch.entries);
          for (let i = 0; i < batch.turns; i++) await nextTurn();
        }
        if (op.committed) await this.memory.flushed();
        for (let i = 0; i < op.turns; i++) await nextTurn();
        await this.crashMemory(op.keep);
        break;
    }
    this.same(op.kind);
  }

  /**
   * Crashes the memory store with some unsynced commits kept: the state it comes back with is
   * the applied state at the index its meta records, at or above what was durable. Then it
   * re-applies the log from there, as the node does, and must match the LMDB store again.
   */
  async crashMemory(keep: number): Promise<void> {
    const durable = this.memory.durableIndex;
    const applied = this.memory.appliedIndex;
    const kept = keep % (this.memory.disk.unsyncedCommits + 1);
    this.memory = this.memory.crash(kept);
    const resumed = this.memory.appliedIndex;
    assert.ok(resumed >= durable, `resumed at ${resumed}, below the durable ${durable}`);
    assert.ok(resumed <= applied, `resumed at ${resumed}, above the applied ${applied}`);
    assert.equal(dump(this.memory), this.history.get(resumed), `the state at ${resumed} (kept ${kept})`);
    for (const event of this.log) {
      if (event.kind === "apply") {
        if (event.meta.index > resumed) this.memory.apply(event.writes, event.meta);
      } else if (event.appliedIndex > resumed) await this.memory.restore(event.data, event.index);
    }
  }
}

describe("StateStore over LMDB and over MemoryStateDisk", () => {
  it("agree on every read, index and snapshot byte, across flushes, restores and crashes", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArb, { maxLength: 40, size: "max" }),
        fc.array(fc.nat(3), { maxLength: 8 }),
        async (ops, delays) => {
          const pair = new Pair(delays);
          try {
            for (const op of ops) await pair.run(op);
            await pair.flushBoth();
            pair.same("end");
          } finally {
            await pair.close();
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe("MemoryStateDisk crashes", () => {
  const put = (key: string, value: string) => [
    { table: TABLE_IDS.kv, key: encoder.encode(key), value: encoder.encode(value) },
  ];

  /** Entry 1 synced, entry 2 landed but unsynced, entry 3 handed to the disk but not landed. */
  async function threeCommits() {
    const queue: (() => void)[] = [];
    const store = new MemoryStateStore(undefined, { defer: (fn) => void queue.push(fn) });
    // One deferred task, then whatever it set off in promise callbacks.
    const step = async (at = 0) => {
      queue.splice(at, 1)[0]!();
      await nextTurn();
    };
    store.apply(put("a", "1"), { index: 1, lastTxid: 1 });
    await step(); // commit 1 submitted
    await step(); // landed: the store asks the disk to sync
    await step(); // synced
    assert.equal(store.durableIndex, 1);
    store.apply(put("a", "2"), { index: 2, lastTxid: 2 });
    await step();
    await step(); // landed; its sync is queued and never runs
    store.apply(put("b", "3"), { index: 3, lastTxid: 3 });
    await step(queue.length - 1); // submitted (not the sync before it); its landing is queued
    assert.equal(store.committedIndex, 2);
    assert.equal(store.disk.unsyncedCommits, 2);
    return { store, queue };
  }

  for (const [keep, index, a, b] of [
    [0, 1, "1", undefined],
    [1, 2, "2", undefined],
    [2, 3, "2", "3"],
  ] as const) {
    it(`keeps the synced state and the first ${keep} unsynced commits`, async () => {
      const { store, queue } = await threeCommits();
      const reopened = store.crash(keep);
      assert.equal(reopened.appliedIndex, index);
      assert.equal(reopened.lastTxid, index);
      const text = (v: Uint8Array | undefined) => (v ? Buffer.from(v).toString() : undefined);
      assert.equal(text(reopened.get("kv", "a")), a);
      assert.equal(text(reopened.get("kv", "b")), b);
      // The dead disk's queued work does nothing to the new one.
      while (queue.length > 0) queue.shift()!();
      assert.equal(reopened.appliedIndex, index);
      assert.equal(reopened.disk.unsyncedCommits, 0);
    });
  }

  it("refuses to keep more than it has unsynced", async () => {
    const { store } = await threeCommits();
    assert.throws(
      () => store.crash(3),
      (e: Error & { code?: string }) => e.code === "MR_ERR_INVALID_ARGUMENT",
    );
  });
});

describe("LmdbStateDisk and MemoryStateDisk", () => {
  it("refuse alike the keys LMDB cannot hold, committing nothing of their batch", async () => {
    const dir = mkdtempSync(join(tmpdir(), "metaraft-state-model-"));
    const env = openEnvironment(dir, { noSync: true });
    try {
      for (const disk of [new LmdbStateDisk(env), new MemoryStateDisk()]) {
        for (const [bytes, ok] of [
          [0, false],
          [1, true],
          [STATE_KEY_BYTES_MAX, true],
          [STATE_KEY_BYTES_MAX + 1, false],
        ] as const) {
          const key = new Uint8Array(bytes).fill(0x61);
          const other = encoder.encode(`other-${bytes}`);
          const commit = disk.commit({
            writes: [
              { table: "kv", key: other, value: new Uint8Array(0) },
              { table: "kv", key, value: new Uint8Array([1]) },
            ],
          });
          const outcome = await commit.then(
            () => true,
            () => false,
          );
          assert.equal(outcome, ok, `${disk.constructor.name}: a ${bytes}-byte key`);
          assert.equal(
            disk.get("kv", other) !== undefined,
            ok,
            `${disk.constructor.name}: the batch's other write`,
          );
        }
      }
    } finally {
      await env.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
