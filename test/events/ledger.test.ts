import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { type CoreSync, tsCore, wasmCore } from "../../src/core/index.js";
import { MetaraftError } from "../../src/errors.js";
import {
  decodeRecord,
  encodeRecord,
  type LedgerEvent,
  type LedgerReader,
  type LedgerTable,
  ledgerWrites,
  PRUNE_RECORDS_PER_ENTRY,
  planPrune,
  readLedger,
  readSummary,
} from "../../src/events/index.js";
import { compareUtf8 } from "../../src/execution/state-store.js";

/** The ledger's two tables in memory: pure-logic tests of pruning and reading. */
class Tables implements LedgerReader {
  readonly rows = new Map<LedgerTable, Map<string, Uint8Array>>([
    ["events", new Map()],
    ["checkpoints", new Map()],
  ]);

  get(table: LedgerTable, key: string): Uint8Array | undefined {
    return this.rows.get(table)!.get(key);
  }

  scan(table: LedgerTable, prefix: string, startAfter: string | undefined, limit: number) {
    return [...this.rows.get(table)!]
      .filter(([k]) => k.startsWith(prefix) && (startAfter === undefined || compareUtf8(k, startAfter) > 0))
      .sort(([a], [b]) => compareUtf8(a, b))
      .slice(0, limit)
      .map(([key, value]) => ({ key, value }));
  }

  apply(writes: readonly { table: LedgerTable; key: string; value: Uint8Array | null }[]): void {
    for (const w of writes) {
      if (w.value === null) this.rows.get(w.table)!.delete(w.key);
      else this.rows.get(w.table)!.set(w.key, w.value);
    }
  }
}

const core: CoreSync = tsCore;

const put = (txid: number, key = `k${txid}`): LedgerEvent => ({
  txid,
  time: 1_700_000_000_000 + txid,
  type: "ObjectCreated:Put",
  volume: "v",
  bucket: "b",
  key,
  objectId: txid * 256,
  size: txid,
  etag: `e${txid}`,
});

/** Appends `records` records of `perRecord` events each (one txid per event), pruning as told. */
function fill(tables: Tables, records: number, perRecord: number, from = 1, prune = () => 0): number {
  let txid = from;
  for (let r = 0; r < records; r++) {
    const events = Array.from({ length: perRecord }, () => put(txid++));
    tables.apply(ledgerWrites(tables, core, encodeRecord(events, core), prune()));
  }
  return txid;
}

describe("ledger records", () => {
  const event = fc.record(
    {
      type: fc.constantFrom(
        "VolumeCreated:Create",
        "BucketRemoved:Delete",
        "ObjectCreated:Put",
        "ObjectRemoved:Delete",
        "ObjectRenamed:Rename",
      ),
      volume: fc.string({ minLength: 1, maxLength: 12 }),
      bucket: fc.string({ maxLength: 12 }),
      key: fc.string({ maxLength: 40 }),
      toKey: fc.string({ maxLength: 40 }),
      objectId: fc.maxSafeNat(),
      size: fc.maxSafeNat(),
      etag: fc.string({ maxLength: 32 }),
    },
    { requiredKeys: ["type", "volume"] },
  );
  const events = fc
    .tuple(
      fc.array(fc.tuple(event, fc.nat({ max: 3 }), fc.nat({ max: 2 ** 40 })), {
        minLength: 1,
        maxLength: 50,
      }),
      fc.nat({ max: 2 ** 45 }),
    )
    .map(([drafts, start]) => {
      let txid = start;
      return drafts.map(([draft, step, time]) => ({ ...draft, txid: (txid += step), time }) as LedgerEvent);
    });

  it("round-trip every event field, byte-identical through the TypeScript and WASM cores", () => {
    fc.assert(
      fc.property(events, (list) => {
        const bytes = encodeRecord(list, tsCore);
        assert.deepEqual(encodeRecord(list, wasmCore()), bytes);
        assert.deepEqual(decodeRecord(bytes, tsCore), list);
        assert.deepEqual(decodeRecord(bytes, wasmCore()), list);
      }),
      { numRuns: 200 },
    );
  });

  it("refuse corrupted bytes with MR_ERR_LOG_CORRUPT, never a crash or a wrong event", () => {
    fc.assert(
      fc.property(events, fc.nat(), fc.integer({ min: 1, max: 255 }), (list, at, flip) => {
        const bytes = encodeRecord(list, tsCore);
        const bad = Uint8Array.from(bytes);
        bad[at % bad.length]! ^= flip;
        assert.throws(
          () => decodeRecord(bad, tsCore),
          (e) => e instanceof MetaraftError && e.code === "MR_ERR_LOG_CORRUPT",
        );
      }),
      { numRuns: 300 },
    );
    assert.throws(
      () => decodeRecord(new Uint8Array([1, 2, 3]), tsCore),
      (e) => e instanceof MetaraftError && e.code === "MR_ERR_LOG_CORRUPT",
    );
  });

  it("refuse events whose txids go back", () => {
    assert.throws(() => encodeRecord([put(5), put(4)], core), /go back/);
  });
});

describe("ledger retention", () => {
  it("keeps at least events.max, and prunes at most a bounded number of records per entry", () => {
    const tables = new Tables();
    const limits = { eventsMax: 100, eventsHardMax: 1000 };
    let txid = fill(tables, 60, 5); // 300 events, nothing pruned
    assert.equal(readSummary(tables).count, 300);
    // The leader's decision looks at the oldest records only: at most one entry's worth.
    const through = planPrune(tables, core, limits);
    assert.equal(through, PRUNE_RECORDS_PER_ENTRY * 5);
    // A follower told to prune everything still deletes only a bounded number per entry.
    const writes = ledgerWrites(tables, core, undefined, Number.MAX_SAFE_INTEGER - 1);
    assert.equal(
      writes.filter((w) => w.table === "events" && w.value === null).length,
      PRUNE_RECORDS_PER_ENTRY,
    );
    // Entries keep coming, each pruning what the leader decided from the state before it.
    txid = fill(tables, 100, 5, txid, () => planPrune(tables, core, limits));
    const s = readSummary(tables);
    assert.ok(s.count >= limits.eventsMax && s.count <= limits.eventsMax + 5, `count ${s.count}`);
    assert.equal(s.written, 800);
    assert.equal(s.pruned, 800 - s.count);
    assert.equal(s.firstTxid, s.prunedThrough + 1);
    assert.equal(s.lastTxid, txid - 1);
    // What is held reads back whole, and a reader from the start is told what it missed.
    const read = readLedger(tables, core, 0, 10_000);
    assert.deepEqual(read.missed, { fromTxid: 1, toTxid: s.prunedThrough });
    assert.equal(read.events.length, s.count);
    assert.equal(read.events[0]!.txid, s.firstTxid);
    assert.equal(read.scannedThrough, s.lastTxid);
  });

  it("keeps what an enabled listener has not checkpointed, up to events.hardMax, then tells it what it missed", () => {
    const tables = new Tables();
    const limits = { eventsMax: 50, eventsHardMax: 200 };
    const listener = (checkpoint: number, enabled = true) =>
      tables.apply([
        {
          table: "checkpoints",
          key: "listener/lagging",
          value: encodeListenerRecord({ checkpoint, enabled }),
        },
      ]);
    listener(0);
    let txid = fill(tables, 30, 5, 1, () => planPrune(tables, core, limits));
    // 150 events, over events.max but under the hard limit: the listener holds them all.
    assert.equal(readSummary(tables).count, 150);
    assert.equal(readSummary(tables).pruned, 0);
    txid = fill(tables, 40, 5, txid, () => planPrune(tables, core, limits));
    const s = readSummary(tables);
    assert.ok(s.count > 195 && s.count <= 205, `count ${s.count}`);
    const read = readLedger(tables, core, 0, 10);
    assert.deepEqual(read.missed, { fromTxid: 1, toTxid: s.prunedThrough });
    assert.equal(read.events[0]!.txid, s.prunedThrough + 1);
    // It checkpoints: pruning goes down to events.max again, a bounded step per entry...
    listener(txid - 1);
    txid = fill(tables, 3, 5, txid, () => planPrune(tables, core, limits));
    assert.ok(readSummary(tables).count <= 55, `count ${readSummary(tables).count}`);
    // ...and holds what it has not checkpointed since, up to the hard limit again.
    txid = fill(tables, 40, 5, txid, () => planPrune(tables, core, limits));
    // (the decision comes before the entry's own record: one record over at most)
    const held = readSummary(tables).count;
    assert.ok(held >= 200 && held <= 205, `count ${held}`);
    // A disabled listener holds nothing back.
    listener(0, false);
    assert.ok(planPrune(tables, core, { eventsMax: 10, eventsHardMax: 1000 }) > 0);
    listener(0, true);
    assert.equal(planPrune(tables, core, { eventsMax: 10, eventsHardMax: 1000 }), 0);
  });

  it("applies an entry twice as once (a restart re-applies what the tables' last commit lost)", () => {
    const tables = new Tables();
    fill(tables, 3, 2);
    const record = encodeRecord([put(7), put(8)], core);
    tables.apply(ledgerWrites(tables, core, record, 0));
    const once = JSON.stringify([...tables.rows.get("checkpoints")!]);
    tables.apply(ledgerWrites(tables, core, record, 0));
    assert.equal(JSON.stringify([...tables.rows.get("checkpoints")!]), once);
    assert.equal(readSummary(tables).count, 8);
    // A record that overlaps the ledger is corruption, not a repeat.
    assert.throws(
      () => ledgerWrites(tables, core, encodeRecord([put(8), put(9)], core), 0),
      (e) => e instanceof MetaraftError && e.code === "MR_ERR_LOG_CORRUPT",
    );
  });

  it("reads by prefix, a bounded page at a time, never splitting a txid", () => {
    const tables = new Tables();
    let txid = 1;
    for (let r = 0; r < 20; r++) {
      const events: LedgerEvent[] = [];
      for (let i = 0; i < 3; i++) {
        const t = txid++;
        events.push(put(t, `a/${t}`), { ...put(t, `b/${t}`) });
      }
      tables.apply(ledgerWrites(tables, core, encodeRecord(events, core), 0));
    }
    const seen: LedgerEvent[] = [];
    let after = 0;
    for (let pages = 0; pages < 100; pages++) {
      const read = readLedger(tables, core, after, 4, { prefix: "v/b/a/" });
      seen.push(...read.events);
      if (read.scannedThrough === after) break;
      after = read.scannedThrough;
    }
    assert.equal(seen.length, 60);
    assert.ok(seen.every((e) => e.key!.startsWith("a/")));
    assert.deepEqual(
      seen.map((e) => e.txid),
      Array.from({ length: 60 }, (_, i) => i + 1),
    );
    // Both events of a txid come in the same read.
    const whole = readLedger(tables, core, 0, 1);
    assert.deepEqual(
      whole.events.map((e) => e.txid),
      [1, 1, 2, 2, 3, 3],
    );
  });
});

import { encodeListener } from "../../src/events/index.js";

function encodeListenerRecord(fields: { checkpoint: number; enabled: boolean }): Uint8Array {
  return encodeListener({
    name: "lagging",
    module: "webhook",
    options: {},
    runner: "process",
    checkpointTime: 0,
    createdTxid: 1,
    generation: 0,
    ...fields,
  });
}
