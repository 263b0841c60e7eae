import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type CoreSync, tsCore } from "../../src/core/index.js";
import {
  encodeRecord,
  type LedgerEvent,
  type LedgerReader,
  type LedgerTable,
  ledgerWrites,
  readLedger,
} from "../../src/events/index.js";
import { compareUtf8 } from "../../src/execution/state-store.js";
import type { PushFrame } from "../../src/protocol/index.js";
import type { Runtime, Timer } from "../../src/runtime.js";
import type { RpcConnection } from "../../src/server/rpc-server.js";
import { WatchHub, type WatchHubOptions } from "../../src/server/watch-hub.js";

/**
 * The hub's logic alone: an in-memory ledger, a connection that records frames (and says how
 * much it holds unsent), and a runtime whose deferred work and timers run when the test says.
 */

const core: CoreSync = tsCore;

class Ledger implements LedgerReader {
  readonly rows = new Map<LedgerTable, Map<string, Uint8Array>>([
    ["events", new Map()],
    ["checkpoints", new Map()],
  ]);
  lastTxid = 0;
  restoring = false;

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

  /** Applies one entry's record, as apply does; returns the record for onEventsApplied. */
  append(events: readonly LedgerEvent[], pruneThrough = 0): Uint8Array {
    const record = encodeRecord(events, core);
    for (const w of ledgerWrites(this, core, record, pruneThrough)) {
      if (w.value === null) this.rows.get(w.table)!.delete(w.key);
      else this.rows.get(w.table)!.set(w.key, w.value);
    }
    this.lastTxid = events[events.length - 1]!.txid;
    return record;
  }
}

class ManualRuntime implements Runtime {
  #now = 0;
  #deferred: (() => void)[] = [];
  #timers: { at: number; every?: number; fn: () => void; cancelled: boolean }[] = [];

  now(): number {
    return this.#now;
  }
  elapsed(): number {
    return this.#now;
  }
  random(): number {
    return 0.5;
  }
  after(ms: number, fn: () => void): Timer {
    return this.#add({ at: this.#now + ms, fn, cancelled: false });
  }
  every(ms: number, fn: () => void): Timer {
    return this.#add({ at: this.#now + ms, every: ms, fn, cancelled: false });
  }
  defer(fn: () => void): void {
    this.#deferred.push(fn);
  }

  #add(t: { at: number; every?: number; fn: () => void; cancelled: boolean }): Timer {
    this.#timers.push(t);
    const timer: Timer = {
      cancel: () => {
        t.cancelled = true;
      },
      unref: () => timer,
    };
    return timer;
  }

  /** Runs deferred work until none is left. */
  settle(): void {
    for (let rounds = 0; this.#deferred.length > 0; rounds++) {
      assert.ok(rounds < 100_000, "deferred work never settles");
      for (const fn of this.#deferred.splice(0)) fn();
    }
  }

  /** Moves the clock on, firing the timers due, and settles. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      const due = this.#timers.filter((t) => !t.cancelled && t.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!due) break;
      this.#now = due.at;
      if (due.every === undefined) due.cancelled = true;
      else due.at += due.every;
      due.fn();
      this.settle();
    }
    this.#now = end;
    this.settle();
  }
}

/** A connection that keeps what is pushed; `held` bytes count as unsent until `drain()`. */
class FakeConnection implements RpcConnection {
  static #ids = 0;
  readonly id = ++FakeConnection.#ids;
  readonly frames: PushFrame[] = [];
  closed = false;
  held = 0;
  /** While blocked, every push is held (the reader does not read). */
  blocked = false;
  #drainWaiters: (() => void)[] = [];
  #closeWaiters: (() => void)[] = [];

  get bufferedBytes(): number {
    return this.held;
  }
  push(frame: PushFrame): void {
    this.frames.push(frame);
    if (this.blocked) this.held += JSON.stringify(frame).length;
  }
  onDrain(fn: () => void): void {
    this.#drainWaiters.push(fn);
  }
  onClose(fn: () => void): void {
    this.#closeWaiters.push(fn);
  }
  /** The reader took everything. */
  drain(): void {
    this.blocked = false;
    this.held = 0;
    for (const fn of this.#drainWaiters.splice(0)) fn();
  }
  close(): void {
    this.closed = true;
    for (const fn of this.#closeWaiters.splice(0)) fn();
  }
  events(watchId: number): LedgerEvent[] {
    return this.frames.flatMap((f) => (f.watchId === watchId && f.kind === "events" ? f.events : []));
  }
}

const put = (txid: number, key = `k${txid}`, bucket = "b"): LedgerEvent => ({
  txid,
  time: 1_700_000_000_000 + txid,
  type: "ObjectCreated:Put",
  volume: "v",
  bucket,
  key,
  size: txid,
  etag: "e",
});

function setup(limits: Partial<WatchHubOptions> = {}) {
  const ledger = new Ledger();
  const runtime = new ManualRuntime();
  const hub = new WatchHub({ store: ledger, core, runtime, nodeId: 1, progressMs: 100, ...limits });
  /** Applies and announces a record, as the state machine does. */
  const apply = (events: readonly LedgerEvent[]) => {
    const record = ledger.append(events);
    hub.onEventsApplied(record, events[events.length - 1]!.txid);
  };
  return { ledger, runtime, hub, apply };
}

const txids = (events: readonly LedgerEvent[]) => events.map((e) => e.txid);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe("the watch hub", () => {
  it("sends a live watch what the ledger gained without it (a restored snapshot) from the ledger, each event once", () => {
    const { ledger, runtime, hub, apply } = setup();
    const connection = new FakeConnection();
    apply([put(1)]);
    hub.open(connection, { watchId: 1, fromTxid: 1 });
    runtime.settle();
    assert.deepEqual(txids(connection.events(1)), [1]);
    apply([put(2), put(3)]);
    runtime.settle();
    // Records that reach the ledger with no announcement: a snapshot copied them in.
    ledger.append([put(4), put(5)]);
    ledger.append([put(6)]);
    apply([put(7)]);
    runtime.settle();
    assert.deepEqual(txids(connection.events(1)), range(1, 7));
    // Again, found by the progress tick this time (no record follows).
    ledger.append([put(8)]);
    runtime.advance(100);
    assert.deepEqual(txids(connection.events(1)), range(1, 8));
    assert.ok(hub.stats().catchUps >= 2);
    assert.equal(hub.watchers()[0]!.mode, "live");
  });

  it("takes no position from a restore under way (its txid is set before its tables)", () => {
    const { ledger, runtime, hub, apply } = setup();
    const connection = new FakeConnection();
    apply([put(1)]);
    hub.open(connection, { watchId: 1, fromTxid: 1 });
    runtime.settle();
    // The snapshot's last txid is in, its ledger records are not yet readable.
    ledger.restoring = true;
    ledger.lastTxid = 4;
    runtime.advance(500);
    assert.ok(
      connection.frames.every((f) => f.kind !== "progress" || f.txid < 2),
      "no progress past what the tables hold",
    );
    // The restore's commit lands: the records are there, and reach the watch.
    ledger.append([put(2), put(3)]);
    ledger.append([put(4)]);
    ledger.restoring = false;
    runtime.advance(100);
    assert.deepEqual(txids(connection.events(1)), range(1, 4));
    apply([put(5)]);
    runtime.settle();
    assert.deepEqual(txids(connection.events(1)), range(1, 5));
  });

  it("drops a watch whose buffer is full to reading the ledger, and it catches up with no gap", () => {
    const { runtime, hub, apply } = setup({ bufferEventsMax: 5, socketBytesMax: 1000 });
    const connection = new FakeConnection();
    hub.open(connection, { watchId: 9, prefix: "v/b/" });
    runtime.settle();
    connection.blocked = true;
    let txid = 0;
    for (let r = 0; r < 20; r++) {
      apply([put(++txid), put(++txid, `other-${txid}`, "c"), put(++txid)]);
      runtime.settle();
      assert.ok(hub.watchers()[0]!.bufferedEvents <= 5);
    }
    assert.equal(hub.watchers()[0]!.mode, "catch-up");
    const sentWhileBlocked = connection.events(9).length;
    assert.ok(sentWhileBlocked < 40, `${sentWhileBlocked} sent to a reader that does not read`);
    // The reader reads again: the rest comes from the ledger, then it is live.
    for (let rounds = 0; hub.watchers()[0]!.mode !== "live" || connection.held > 0; rounds++) {
      assert.ok(rounds < 1000);
      connection.drain();
      connection.blocked = true;
      runtime.settle();
    }
    connection.blocked = false;
    apply([put(++txid)]);
    runtime.settle();
    const expected = range(1, txid).filter((t) => t % 3 !== 2);
    assert.deepEqual(txids(connection.events(9)), expected);
    assert.ok(hub.stats().ledgerReads > 0);
    assert.ok(hub.stats().bufferedBytesPeak <= hub.limits.bufferBytesMax);
  });

  it("never splits a txid's events across frames, and each frame's txid is its position", () => {
    const { runtime, hub, apply } = setup({ frameEventsMax: 2 });
    const connection = new FakeConnection();
    hub.open(connection, { watchId: 2, fromTxid: 1 });
    // Txid 1 has three events, 2 has one, 3 has two.
    apply([put(1, "a"), put(1, "b"), put(1, "c"), put(2), put(3, "x"), put(3, "y")]);
    runtime.settle();
    const frames = connection.frames.filter((f) => f.kind === "events");
    assert.deepEqual(
      frames.map((f) => (f.kind === "events" ? [txids(f.events), f.txid] : [])),
      [
        [[1, 1, 1], 1],
        [[2], 2],
        [[3, 3], 3],
      ],
    );
  });

  it("ends a watch behind the ledger's pruning with MR_ERR_COMPACTED carrying the first txid held", () => {
    const { ledger, runtime, hub, apply } = setup({ bufferEventsMax: 2, socketBytesMax: 100 });
    for (let t = 1; t <= 3; t++) apply([put(t)]);
    const connection = new FakeConnection();
    assert.throws(
      () => {
        ledger.append([put(4)], 2);
        hub.open(connection, { watchId: 1, fromTxid: 1 });
      },
      (e: unknown) => (e as { code?: string }).code === "MR_ERR_COMPACTED",
    );
    hub.open(connection, { watchId: 5, fromTxid: 3 });
    connection.blocked = true;
    runtime.settle();
    for (let t = 5; t <= 12; t++) apply([put(t)]);
    runtime.settle();
    assert.equal(hub.watchers()[0]!.mode, "catch-up");
    const position = hub.watchers()[0]!.position;
    ledger.append([put(13)], position + 2);
    runtime.advance(100);
    assert.equal(hub.size, 0);
    const end = connection.frames.at(-1)!;
    assert.equal(end.kind, "cancelled");
    if (end.kind === "cancelled") {
      assert.equal(end.error.code, "MR_ERR_COMPACTED");
      assert.equal(end.error.details?.firstTxid, position + 3);
    }
    assert.equal(hub.stats().compacted, 1);
  });

  it("tells an idle watch the last applied txid, and forgets a closed connection's watches", () => {
    const { ledger, runtime, hub, apply } = setup();
    const connection = new FakeConnection();
    apply([put(1)]);
    hub.open(connection, { watchId: 1, prefix: "elsewhere/" });
    runtime.settle();
    apply([put(2)]);
    ledger.lastTxid = 5; // txids 3 to 5 had no events
    runtime.advance(100);
    assert.deepEqual(connection.frames.at(-1), { push: "watch", watchId: 1, kind: "progress", txid: 5 });
    connection.close();
    assert.equal(hub.size, 0);
    assert.equal(hub.stats().connections, 0);
  });
});

describe("ledger reads for bounded readers", () => {
  it("withinRecord stops at a txid boundary inside a record, and the next read resumes there", () => {
    const ledger = new Ledger();
    ledger.append([put(1), put(2), put(2), put(3), put(4), put(5)]);
    ledger.append([put(6), put(7)]);
    const whole = readLedger(ledger, core, 0, 2);
    assert.deepEqual(txids(whole.events), [1, 2, 2, 3, 4, 5]);
    const seen: number[] = [];
    const reads: number[][] = [];
    for (let after = 0; after < 7; ) {
      const read = readLedger(ledger, core, after, 2, { withinRecord: true });
      reads.push(txids(read.events));
      seen.push(...txids(read.events));
      assert.ok(read.scannedThrough > after);
      after = read.scannedThrough;
    }
    assert.deepEqual(seen, [1, 2, 2, 3, 4, 5, 6, 7]);
    // A txid's events stay together ([2, 2]); a read that ends a record may go on into the next.
    assert.deepEqual(reads, [[1, 2, 2], [3, 4], [5, 6], [7]]);
  });
});
