import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { framePayloads, tsCore } from "../../src/core/index.js";
import { MetaraftError } from "../../src/errors.js";
import type { Request } from "../../src/execution/types.js";
import {
  dataPrefix,
  parseDataKey,
  QUEUE_DELETE_ROWS_PER_REQUEST,
  QUEUE_EVENT_BYTES_MAX,
  type QueueMeta,
  queueSpecs,
  readMeta,
  segmentOf,
} from "../../src/queues/index.js";
import { MemoryState } from "../namespace/memory-state.js";

/** The queue requests on the reference StateReader, as the executor runs them: one txid each. */
class Queues {
  readonly state = new MemoryState();
  readonly specs = new Map(queueSpecs(tsCore).map((s) => [s.op, s]));
  txid = 0;
  time = 1_700_000_000_000;

  run(raw: Request): Record<string, unknown> {
    const spec = this.specs.get(raw.op)!;
    this.txid++;
    const execution = spec.execute(spec.validate(raw), {
      txid: this.txid,
      time: this.time,
      reader: this.state,
    });
    if (spec.kind === "read") assert.equal(execution.writes.length, 0);
    this.state.apply(execution);
    return execution.reply as Record<string, unknown>;
  }

  fails(raw: Request, code: string): MetaraftError {
    const before = this.state.snapshot();
    let caught: unknown;
    try {
      this.run(raw);
    } catch (error) {
      caught = error;
    }
    assert.ok(caught instanceof MetaraftError, `${raw.op} should fail with ${code}, got ${String(caught)}`);
    assert.equal(caught.code, code, caught.message);
    assert.deepEqual(this.state.snapshot(), before, `${raw.op} failed but changed the state`);
    return caught;
  }

  register(queue: string, maxOutstandingBytes = 1 << 20, segmentBytes = 4096): QueueMeta {
    this.run({ op: "queueRegister", queue, maxOutstandingBytes, segmentBytes });
    return this.meta(queue);
  }

  add(queue: string, ...events: string[]): Record<string, unknown> {
    return this.run({ op: "queueAdd", queue, events: events.map((e) => Buffer.from(e)) });
  }

  meta(queue: string): QueueMeta {
    return readMeta(this.state, queue)!;
  }

  /** Every data row of `queue`: its segment, offset and events. */
  rows(queue: string): { segment: number; offset: number; events: string[] }[] {
    return this.state.scan("queues", dataPrefix(queue), undefined, 1_000_000).map((row) => {
      const payloads = framePayloads(row.value, tsCore.splitFrames(row.value));
      return { ...parseDataKey(row.key), events: payloads.slice(1).map((p) => Buffer.from(p).toString()) };
    });
  }

  /** Truncates to the end of the queue, as the tail does once it has processed everything. */
  truncateAll(queue: string): Record<string, unknown> {
    const meta = this.meta(queue);
    return this.run({
      op: "queueTruncate",
      queue,
      offset: meta.appended,
      rowOffset: meta.appended,
      events: meta.appendedEvents,
    });
  }
}

const frame = (text: string) => 9 + Buffer.byteLength(text);

describe("queue requests", () => {
  it("adds frame events at increasing offsets, in rows keyed by segment and offset, each row checksummed", () => {
    const q = new Queues();
    q.register("work");
    const first = q.add("work", "a", "bb");
    assert.deepEqual(first, {
      offset: 0,
      index: 0,
      events: 2,
      appended: frame("a") + frame("bb"),
      outstandingBytes: frame("a") + frame("bb"),
      outstandingEvents: 2,
    });
    const second = q.add("work", "ccc");
    assert.equal(second.offset, frame("a") + frame("bb"));
    assert.equal(second.index, 2);
    assert.deepEqual(q.rows("work"), [
      { segment: 0, offset: 0, events: ["a", "bb"] },
      { segment: 0, offset: 21, events: ["ccc"] },
    ]);
    const meta = q.meta("work");
    assert.equal(meta.appendedEvents, 3);
    assert.equal(meta.rows, 2);
    assert.equal(meta.segments, 1);
  });

  it("refuses an empty event, one over 1 MiB, an unknown queue and a bad name, writing nothing", () => {
    const q = new Queues();
    q.register("work");
    q.fails({ op: "queueAdd", queue: "work", events: [Buffer.alloc(0)] }, "MR_ERR_INVALID_ARGUMENT");
    q.fails({ op: "queueAdd", queue: "work", events: [] }, "MR_ERR_INVALID_ARGUMENT");
    q.fails({ op: "queueAdd", queue: "work", events: ["text"] }, "MR_ERR_INVALID_ARGUMENT");
    q.fails(
      { op: "queueAdd", queue: "work", events: [Buffer.alloc(QUEUE_EVENT_BYTES_MAX + 1)] },
      "MR_ERR_REQUEST_TOO_LARGE",
    );
    q.fails({ op: "queueAdd", queue: "none", events: [Buffer.from("x")] }, "MR_ERR_QUEUE_NOT_FOUND");
    q.fails({ op: "queueAdd", queue: "a/b", events: [Buffer.from("x")] }, "MR_ERR_INVALID_NAME");
    q.fails(
      { op: "queueRegister", queue: "work2", maxOutstandingBytes: 1, segmentBytes: 4096 },
      "MR_ERR_INVALID_ARGUMENT",
    );
    // Exactly 1 MiB is an event.
    q.register("big", 4 << 20);
    q.run({ op: "queueAdd", queue: "big", events: [Buffer.alloc(QUEUE_EVENT_BYTES_MAX, 7)] });
  });

  it("refuses an add past maxOutstandingBytes with QUEUE_FULL, and takes adds again once truncated", () => {
    const q = new Queues();
    q.register("small", 1024);
    const event = "x".repeat(100 - 9);
    for (let i = 0; i < 10; i++) q.add("small", event);
    assert.equal(q.meta("small").appended, 1000);
    const error = q.fails(
      { op: "queueAdd", queue: "small", events: [Buffer.from(event)] },
      "MR_ERR_QUEUE_FULL",
    );
    assert.deepEqual(error.details, { queue: "small", outstandingBytes: 1000, maxOutstandingBytes: 1024 });
    // Two small ones still fit: the bound is on bytes.
    q.add("small", "y".repeat(3));
    q.truncateAll("small");
    assert.equal(q.add("small", event).outstandingBytes, 100);
  });

  it("cuts rows where events start in a new segment, and deletes whole segments once truncated past them", () => {
    const q = new Queues();
    q.register("seg", 1 << 20, 4096);
    const event = "e".repeat(1000 - 9);
    // One add of 20 events: 4 per 4 KiB segment, the fifth starts at 4000 in segment 0...
    q.add("seg", ...Array.from({ length: 20 }, () => event));
    const rows = q.rows("seg");
    for (const row of rows) {
      assert.equal(row.segment, segmentOf(row.offset, 4096));
      // Every event of a row starts in the row's segment.
      const last = row.offset + (row.events.length - 1) * 1000;
      assert.equal(segmentOf(last, 4096), row.segment, JSON.stringify(row));
    }
    assert.deepEqual(
      rows.map((r) => [r.segment, r.events.length]),
      [
        [0, 5],
        [1, 4],
        [2, 4],
        [3, 4],
        [4, 3],
      ],
    );
    assert.equal(q.meta("seg").segments, 5);
    // Truncate into segment 2: segments 0 and 1 go; 2 (holding the truncation point) stays.
    q.run({ op: "queueTruncate", queue: "seg", offset: 10_000, rowOffset: 9000, events: 10 });
    assert.deepEqual(
      q.rows("seg").map((r) => r.segment),
      [2, 3, 4],
    );
    const meta = q.meta("seg");
    assert.equal(meta.segments, 3);
    assert.equal(meta.rows, 3);
    assert.equal(meta.firstSegment, 2);
    assert.equal(meta.truncatedEvents, 10);
    assert.equal(meta.appended - meta.truncated, 10_000);
  });

  it("truncates forward only, refuses a truncation past the end or on no row, and a dead letter of a truncated event is ignored", () => {
    const q = new Queues();
    q.register("fwd");
    q.add("fwd", "one", "two");
    q.add("fwd", "three");
    const t = frame("one") + frame("two");
    q.run({ op: "queueTruncate", queue: "fwd", offset: t, rowOffset: t, events: 2 });
    const before = q.state.snapshot();
    q.run({ op: "queueTruncate", queue: "fwd", offset: frame("one"), rowOffset: 0, events: 1 });
    assert.deepEqual(q.state.snapshot(), before, "a truncation behind the current one writes nothing");
    q.fails(
      { op: "queueTruncate", queue: "fwd", offset: 10_000, rowOffset: 10_000, events: 3 },
      "MR_ERR_INVALID_ARGUMENT",
    );
    q.fails(
      { op: "queueTruncate", queue: "fwd", offset: t + 1, rowOffset: 5, events: 2 },
      "MR_ERR_INVALID_ARGUMENT",
    );
    const late = q.run({
      op: "queueDeadLetter",
      queue: "fwd",
      offset: 0,
      rowOffset: 0,
      index: 0,
      event: Buffer.from("one"),
      error: "late",
      attempts: 3,
    });
    assert.equal(late.ignored, true);
    assert.equal(q.meta("fwd").deadLetters, 0);
  });

  it("moves a poison event to the dead letters, past it, and retries or purges them", () => {
    const q = new Queues();
    q.register("dlq");
    q.add("dlq", "ok-1", "poison", "ok-2");
    const at = frame("ok-1");
    q.time += 5000;
    q.run({
      op: "queueDeadLetter",
      queue: "dlq",
      offset: at,
      rowOffset: 0,
      index: 1,
      event: Buffer.from("poison"),
      error: "Error: cannot digest",
      attempts: 3,
    });
    const meta = q.meta("dlq");
    assert.equal(meta.truncated, at + frame("poison"), "truncated past the poison event");
    assert.equal(meta.truncatedEvents, 2);
    assert.equal(meta.truncatedRow, 0, "the next event is in the same row");
    assert.equal(meta.deadLetters, 1);
    const listed = q.run({ op: "queueDeadLetters", queue: "dlq" });
    const letters = listed.deadLetters as Record<string, unknown>[];
    assert.equal(letters.length, 1);
    assert.equal(Buffer.from(letters[0]!.event as Uint8Array).toString(), "poison");
    assert.equal(letters[0]!.error, "Error: cannot digest");
    assert.equal(letters[0]!.attempts, 3);
    assert.equal(letters[0]!.offset, at);
    assert.equal(letters[0]!.time, q.time);

    const retried = q.run({ op: "queueRetryDeadLetters", queue: "dlq" });
    assert.equal(retried.retried, 1);
    assert.equal(retried.offset, meta.appended, "appended at the end again");
    assert.deepEqual(q.rows("dlq").at(-1)!.events, ["poison"]);
    assert.equal(q.meta("dlq").deadLetters, 0);
    assert.equal(q.meta("dlq").deadLetterBytes, 0);

    // Dead-letter it again (it is the event at the old end now), then purge.
    const again = q.meta("dlq");
    q.run({
      op: "queueTruncate",
      queue: "dlq",
      offset: meta.appended,
      rowOffset: meta.appended,
      events: 3,
    });
    q.run({
      op: "queueDeadLetter",
      queue: "dlq",
      offset: meta.appended,
      rowOffset: meta.appended,
      index: 3,
      event: Buffer.from("poison"),
      error: "again",
      attempts: 1,
    });
    assert.equal(q.meta("dlq").truncated, again.appended);
    assert.equal(q.run({ op: "queuePurgeDeadLetters", queue: "dlq" }).purged, 1);
    assert.equal(q.meta("dlq").deadLetters, 0);
    assert.equal((q.run({ op: "queueDeadLetters", queue: "dlq" }).deadLetters as unknown[]).length, 0);
  });

  it("deletes at most QUEUE_DELETE_ROWS_PER_REQUEST rows per request and continues in the next ones", () => {
    const q = new Queues();
    q.register("many", 64 << 20, 4096);
    const rows = QUEUE_DELETE_ROWS_PER_REQUEST * 2 + 50;
    for (let i = 0; i < rows; i++) q.add("many", `event-${i}`.padEnd(100, "."));
    assert.equal(q.meta("many").rows, rows);
    const deleted: number[] = [];
    deleted.push(q.truncateAll("many").deletedRows as number);
    // An add deletes nothing (a batch of many adds would carry unbounded deletes): the tail's
    // truncations at the same point go on until the segments below it are gone.
    const rowsBefore = q.meta("many").rows;
    q.add("many", "one more");
    assert.equal(q.meta("many").rows, rowsBefore + 1);
    while (q.meta("many").firstSegment < segmentOf(q.meta("many").truncated, 4096)) {
      deleted.push(q.truncateAll("many").deletedRows as number);
    }
    assert.ok(
      deleted.every((n) => n <= QUEUE_DELETE_ROWS_PER_REQUEST),
      deleted.join(","),
    );
    assert.ok(deleted.length >= 3, deleted.join(","));
    // Everything below the last segment is gone; the last one (holding the end) stays.
    const left = q.rows("many");
    const last = segmentOf(q.meta("many").appended, 4096);
    assert.ok(left.every((r) => r.segment === last || r.segment === last - 1));
    assert.equal(q.meta("many").rows, left.length);
    assert.equal(q.meta("many").segments, new Set(left.map((r) => r.segment)).size);
  });

  it("keeps its counts equal to the rows it holds, whatever the sequence (property)", () => {
    const step = fc.oneof(
      fc.record({
        kind: fc.constant("add" as const),
        sizes: fc.array(fc.integer({ min: 1, max: 3000 }), { minLength: 1, maxLength: 8 }),
      }),
      fc.record({
        kind: fc.constant("truncate" as const),
        fraction: fc.double({ min: 0, max: 1, noNaN: true }),
      }),
      fc.record({ kind: fc.constant("compact" as const) }),
    );
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        const q = new Queues();
        q.register("p", 1 << 30, 4096);
        const events: { offset: number; row: number }[] = [];
        for (const s of steps) {
          if (s.kind === "add") {
            const before = q.meta("p").appended;
            q.run({ op: "queueAdd", queue: "p", events: s.sizes.map((n) => Buffer.alloc(n, 1)) });
            // Where each event went, read back from the rows.
            events.length = 0;
            for (const row of q.state.scan("queues", dataPrefix("p"), undefined, 1_000_000)) {
              const { offset } = parseDataKey(row.key);
              const payloads = framePayloads(row.value, tsCore.splitFrames(row.value)).slice(1);
              let at = offset;
              for (const payload of payloads) {
                events.push({ offset: at, row: offset });
                at += 9 + payload.length;
              }
            }
            assert.ok(q.meta("p").appended > before);
          } else if (s.kind === "truncate") {
            const meta = q.meta("p");
            const live = events.filter((e) => e.offset >= meta.truncated);
            const target = live[Math.floor(s.fraction * live.length)];
            const offset = target?.offset ?? meta.appended;
            const rowOffset = target?.row ?? meta.appended;
            const skipped = live.filter((e) => e.offset < offset).length;
            q.run({
              op: "queueTruncate",
              queue: "p",
              offset,
              rowOffset,
              events: meta.truncatedEvents + skipped,
            });
          } else {
            const meta = q.meta("p");
            q.run({
              op: "queueTruncate",
              queue: "p",
              offset: meta.truncated,
              rowOffset: meta.truncatedRow,
              events: meta.truncatedEvents,
            });
          }
          const meta = q.meta("p");
          const rows = q.rows("p");
          assert.equal(meta.rows, rows.length);
          assert.equal(meta.segments, new Set(rows.map((r) => r.segment)).size);
          assert.ok(rows.every((r) => r.segment >= meta.firstSegment));
          // Nothing not yet truncated was deleted.
          const held = rows.reduce((sum, r) => sum + r.events.reduce((n, e) => n + 9 + e.length, 0), 0);
          assert.ok(held >= meta.appended - meta.truncated);
        }
      }),
      { numRuns: 200 },
    );
  });
});
