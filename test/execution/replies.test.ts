import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  EXPIRED_REPLIES_SWEEP_EVERY_WRITES,
  EXPIRED_REPLIES_SWEEP_INTERVAL_MS,
  lookupReply,
  ReplySweeper,
  replyWrite,
  SweepSchedule,
} from "../../src/execution/replies.js";
import { compareUtf8 } from "../../src/execution/state-store.js";
import type { ScanEntry, StateReader, StateTable } from "../../src/execution/types.js";

/** A sorted in-memory table: enough of a StateReader for the replay cache alone. */
class Rows implements StateReader {
  readonly rows = new Map<string, Uint8Array>();
  reads = 0;

  get(_table: StateTable, key: string): Uint8Array | undefined {
    return this.rows.get(key);
  }

  scan(_table: StateTable, prefix: string, startAfter: string | undefined, limit: number): ScanEntry[] {
    const keys = [...this.rows.keys()]
      .filter((k) => k.startsWith(prefix) && (startAfter === undefined || compareUtf8(k, startAfter) > 0))
      .sort(compareUtf8)
      .slice(0, limit);
    this.reads += keys.length;
    return keys.map((key) => ({ key, value: this.rows.get(key)! }));
  }

  put(clientId: string, callId: number, expiresAt: number): void {
    const write = replyWrite(clientId, callId, { txid: callId, expiresAt, reply: { callId } });
    this.rows.set(write.key, write.value!);
  }
}

describe("the replay cache", () => {
  it("keeps one record per call and serves it only until it expires", () => {
    const rows = new Rows();
    rows.put("client", 7, 1_000);
    assert.equal(rows.rows.size, 1);
    assert.deepEqual(lookupReply(rows, "client", 7, 999), {
      txid: 7,
      expiresAt: 1_000,
      reply: { callId: 7 },
    });
    assert.equal(lookupReply(rows, "client", 7, 1_000), undefined);
    assert.equal(lookupReply(rows, "client", 8, 0), undefined);
    assert.equal(lookupReply(rows, "other", 7, 0), undefined);
  });

  it("refuses a record too short to hold its expiry", () => {
    const rows = new Rows();
    rows.rows.set("c/client\u00001", new Uint8Array(3));
    assert.throws(
      () => lookupReply(rows, "client", 1, 0),
      (e: Error & { code?: string }) => e.code === "MR_ERR_LOG_CORRUPT",
    );
  });

  it("sweeps from a cursor, a budget at a time, deleting only expired records", () => {
    const rows = new Rows();
    for (let call = 0; call < 100; call++) rows.put("c1", call, call % 2 === 0 ? 500 : 5_000);
    const sweeper = new ReplySweeper();
    const deleted = new Set<string>();
    let sweeps = 0;
    // Budget 30 over 100 records: the cursor must wrap around and reach every record.
    while (deleted.size < 50 && sweeps < 10) {
      for (const write of sweeper.sweep(rows, 1_000, 30)) {
        assert.equal(write.value, null);
        deleted.add(write.key);
        rows.rows.delete(write.key);
      }
      sweeps++;
    }
    assert.equal(deleted.size, 50);
    assert.ok(sweeps <= 4, `${sweeps} sweeps`);
    for (const key of rows.rows.keys()) assert.equal(Number(key.split("\u0000")[1]) % 2, 1);
    // Keys an earlier batch already deletes are left alone.
    rows.put("c2", 1, 0);
    const again = new ReplySweeper().sweep(rows, 1_000, 1_000, (key) => key.startsWith("c/c2"));
    assert.equal(again.length, 0);
  });

  it("sweeps at least twice as many records as were written, so the table stays bounded", () => {
    const schedule = new SweepSchedule();
    let now = 0;
    let written = 0;
    let budgets = 0;
    for (let i = 0; i < 100; i++) {
      const writes = 300 + (i % 7) * 50;
      written += writes;
      now += 10;
      budgets += schedule.due(now, writes);
    }
    assert.ok(budgets >= 2 * written - 2 * EXPIRED_REPLIES_SWEEP_EVERY_WRITES, `${budgets} for ${written}`);
    // An idle leader still sweeps once per interval.
    assert.equal(schedule.due(now + 1, 0), 0);
    assert.ok(schedule.due(now + EXPIRED_REPLIES_SWEEP_INTERVAL_MS + 1, 0) > 0);
  });
});
