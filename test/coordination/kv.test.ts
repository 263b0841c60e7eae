import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { decodeKvRecord, KV_LIMITS_DEFAULT, type KvLimits, kvSpecs } from "../../src/coordination/index.js";
import { MetaraftError } from "../../src/errors.js";
import { type EventDraft, eventPaths, matchesPrefix } from "../../src/events/index.js";
import type { Execution, Request, RequestSpec } from "../../src/execution/types.js";
import { MemoryState } from "../namespace/memory-state.js";

/** The specs over a sorted in-memory state, one txid per request, as the executor runs them. */
class Kv {
  readonly state = new MemoryState();
  readonly events: (EventDraft & { txid: number })[] = [];
  readonly #specs: Map<string, RequestSpec>;
  txid = 100;

  constructor(limits: Partial<KvLimits> = {}) {
    this.#specs = new Map(kvSpecs({ ...KV_LIMITS_DEFAULT, ...limits }).map((s) => [s.op, s]));
  }

  run(raw: Request): Record<string, unknown> {
    const spec = this.#specs.get(raw.op)!;
    const request = spec.validate(raw);
    const txid = spec.kind === "write" ? ++this.txid : this.txid;
    const execution: Execution = spec.execute(request, { txid, time: 0, reader: this.state });
    if (spec.kind === "read") assert.equal(execution.writes.length, 0);
    this.state.apply(execution);
    for (const event of execution.events ?? []) this.events.push({ ...event, txid });
    return execution.reply as Record<string, unknown>;
  }

  /** The keyspace as plain objects, in key order. */
  entries(): Record<string, unknown>[] {
    return this.state.entries("kv").map(({ key, value }) => ({ key, ...decodeKvRecord(value) }));
  }
}

const code = (error: unknown) => (error instanceof MetaraftError ? error.code : String(error));

// ---- the model: etcd's semantics written out plainly, independent of the implementation ----

interface ModelEntry {
  value: string;
  createTxid: number;
  modTxid: number;
  version: number;
}
type Model = Map<string, ModelEntry>;
type Compare = { target: string; key: string; op: "=" | "!=" | "<" | ">"; value: unknown };
type Op =
  | { op: "put"; key: string; value: string }
  | { op: "delete"; key: string }
  | { op: "get"; key: string };

function cmp(op: Compare["op"], a: number | string, b: number | string): boolean {
  if (op === "=") return a === b;
  if (op === "!=") return a !== b;
  // The generated values are ASCII: string order is byte order.
  return op === "<" ? a < b : a > b;
}

function modelHolds(model: Model, c: Compare): boolean {
  const e = model.get(c.key);
  switch (c.target) {
    case "exists":
      return c.op === "=" ? (e !== undefined) === c.value : (e !== undefined) !== c.value;
    case "value":
      return e !== undefined && cmp(c.op, e.value, c.value as string);
    case "version":
      return cmp(c.op, e?.version ?? 0, c.value as number);
    case "create":
      return cmp(c.op, e?.createTxid ?? 0, c.value as number);
    default:
      return cmp(c.op, e?.modTxid ?? 0, c.value as number);
  }
}

function modelOp(model: Model, op: Op, txid: number): { response: unknown; event?: string } {
  const before = model.get(op.key);
  const prev = before ? { key: op.key, ...before } : null;
  if (op.op === "get") return { response: { op: "get", kv: prev } };
  if (op.op === "delete") {
    if (!before) return { response: { op: "delete", deleted: 0, prevKv: null } };
    model.delete(op.key);
    return { response: { op: "delete", deleted: 1, prevKv: prev }, event: `KvDelete:Delete ${op.key}` };
  }
  model.set(op.key, {
    value: op.value,
    createTxid: before?.createTxid ?? txid,
    modTxid: txid,
    version: (before?.version ?? 0) + 1,
  });
  return { response: { op: "put", prevKv: prev }, event: `KvPut:Put ${op.key}` };
}

const keys = fc.constantFrom("a", "b", "c", "a/x");
const values = fc.constantFrom("", "1", "2", "10", "z");
const compareArb: fc.Arbitrary<Compare> = fc.oneof(
  fc.record({
    target: fc.constant("exists"),
    key: keys,
    op: fc.constantFrom("=" as const, "!=" as const),
    value: fc.boolean(),
  }),
  fc.record({
    target: fc.constant("value"),
    key: keys,
    op: fc.constantFrom("=", "!=", "<", ">"),
    value: values,
  }),
  fc.record({
    target: fc.constantFrom("version", "create", "mod"),
    key: keys,
    op: fc.constantFrom("=", "!=", "<", ">"),
    // Txids start at 101: small numbers and ones near the txids both.
    value: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 100, max: 140 })),
  }),
) as fc.Arbitrary<Compare>;
const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constant("put" as const), key: keys, value: values }),
  fc.record({ op: fc.constant("delete" as const), key: keys }),
  fc.record({ op: fc.constant("get" as const), key: keys }),
);
const stepArb = fc.oneof(
  { weight: 1, arbitrary: opArb.map((op) => ({ kind: "single" as const, op })) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant("txn" as const),
      compare: fc.array(compareArb, { maxLength: 3 }),
      success: fc.array(opArb, { maxLength: 4 }),
      failure: fc.array(opArb, { maxLength: 4 }),
    }),
  },
);

describe("the coordination keyspace's requests", () => {
  it("txns and single ops agree with a model of etcd's semantics, state, replies and events (property)", () => {
    fc.assert(
      fc.property(fc.array(stepArb, { minLength: 1, maxLength: 40 }), (steps) => {
        const kv = new Kv();
        const model: Model = new Map();
        const expectedEvents: string[] = [];
        for (const step of steps) {
          if (step.kind === "single") {
            const { op } = step;
            if (op.op === "get") {
              const reply = kv.run({ op: "kvGet", key: op.key });
              assert.deepEqual(reply.kv, (modelOp(model, op, 0).response as { kv: unknown }).kv);
            } else if (op.op === "put") {
              const reply = kv.run({ op: "kvPut", key: op.key, value: op.value, prevKv: true });
              const expected = modelOp(model, op, reply.txid as number);
              assert.deepEqual(reply.prevKv, (expected.response as { prevKv: unknown }).prevKv);
              expectedEvents.push(expected.event!);
            } else {
              const reply = kv.run({ op: "kvDelete", key: op.key, prevKv: true });
              const expected = modelOp(model, op, reply.txid as number);
              const response = expected.response as { deleted: number; prevKv: unknown };
              assert.equal(reply.deleted, response.deleted);
              assert.deepEqual(reply.prevKvs, response.prevKv ? [response.prevKv] : []);
              if (expected.event) expectedEvents.push(expected.event);
            }
          } else {
            // The compares see the state before the txn.
            const succeeded = step.compare.every((c) => modelHolds(model, c));
            const reply = kv.run({ op: "kvTxn", ...step });
            assert.equal(reply.succeeded, succeeded);
            const responses = (succeeded ? step.success : step.failure).map((op) => {
              const done = modelOp(model, op, reply.txid as number);
              if (done.event) expectedEvents.push(done.event);
              return done.response;
            });
            assert.deepEqual(reply.responses, responses);
          }
          assert.deepEqual(
            kv.entries(),
            [...model].sort(([a], [b]) => (a < b ? -1 : 1)).map(([key, e]) => ({ key, ...e })),
          );
        }
        assert.deepEqual(
          kv.events.map((e) => `${e.type} ${e.key}`),
          expectedEvents,
        );
      }),
      { numRuns: 300 },
    );
  });

  it("a txn applies its branch's writes at its one txid, a key written twice once, and emits each write's event", () => {
    const kv = new Kv();
    kv.run({ op: "kvPut", key: "k", value: "v0" });
    const reply = kv.run({
      op: "kvTxn",
      compare: [{ target: "version", key: "k", op: "=", value: 1 }],
      success: [
        { op: "put", key: "k", value: "v1" },
        { op: "put", key: "k", value: "v2" },
        { op: "get", key: "k" },
        { op: "put", key: "new", value: new Uint8Array([9]) },
      ],
    });
    assert.equal(reply.succeeded, true);
    const responses = reply.responses as { kv?: { value: string; version: number; modTxid: number } }[];
    assert.deepEqual(responses[2]!.kv, { key: "k", value: "v2", createTxid: 101, modTxid: 102, version: 3 });
    assert.deepEqual(kv.entries(), [
      { key: "k", value: "v2", createTxid: 101, modTxid: 102, version: 3 },
      { key: "new", value: new Uint8Array([9]), createTxid: 102, modTxid: 102, version: 1 },
    ]);
    assert.deepEqual(
      kv.events.map((e) => `${e.txid} ${e.type} ${e.key}`),
      ["101 KvPut:Put k", "102 KvPut:Put k", "102 KvPut:Put k", "102 KvPut:Put new"],
    );
    // A deleted and re-put key starts over: a new create txid, version 1.
    kv.run({ op: "kvDelete", key: "k" });
    kv.run({ op: "kvPut", key: "k", value: "again" });
    assert.deepEqual(kv.entries()[0], {
      key: "k",
      value: "again",
      createTxid: 104,
      modTxid: 104,
      version: 1,
    });
  });

  it("ranges in UTF-8 byte order by pages, and a prefix delete stops at kv.deleteKeysMax", () => {
    const kv = new Kv({ deleteKeysMax: 2 });
    // U+FF5E sorts before U+1F600 in UTF-8 though not in UTF-16.
    const names = ["p/\u{1F600}", "p/\uFF5E", "p/a", "p/b", "q/a"];
    for (const key of names) kv.run({ op: "kvPut", key, value: key });
    const page = kv.run({ op: "kvRange", prefix: "p/", limit: 2 });
    assert.deepEqual(
      (page.items as { key: string }[]).map((e) => e.key),
      ["p/a", "p/b"],
    );
    assert.equal(page.nextStartAfter, "p/b");
    const rest = kv.run({ op: "kvRange", prefix: "p/", startAfter: "p/b" });
    assert.deepEqual(
      (rest.items as { key: string }[]).map((e) => e.key),
      ["p/\uFF5E", "p/\u{1F600}"],
    );
    assert.equal(rest.truncated, false);
    assert.deepEqual(kv.run({ op: "kvDelete", key: "p/", prefix: true }), {
      txid: 106,
      deleted: 2,
      truncated: true,
    });
    const last = kv.run({ op: "kvDelete", key: "p/", prefix: true, prevKv: true });
    assert.equal(last.deleted, 2);
    assert.equal(last.truncated, false);
    assert.deepEqual(
      kv.entries().map((e) => e.key),
      ["q/a"],
    );
  });

  it("refuses bad input with stable codes", () => {
    const kv = new Kv({ keyBytesMax: 8, valueBytesMax: 4, txnOpsMax: 3 });
    const refuse = (raw: Request, expected: string) =>
      assert.throws(
        () => kv.run(raw),
        (e) => code(e) === expected,
        JSON.stringify(raw),
      );
    refuse({ op: "kvPut", key: "123456789", value: "v" }, "MR_ERR_KV_KEY_TOO_LARGE");
    refuse({ op: "kvPut", key: "k", value: "12345" }, "MR_ERR_KV_VALUE_TOO_LARGE");
    refuse({ op: "kvPut", key: "k", value: new Uint8Array(5) }, "MR_ERR_KV_VALUE_TOO_LARGE");
    refuse({ op: "kvPut", key: "", value: "v" }, "MR_ERR_INVALID_ARGUMENT");
    refuse({ op: "kvPut", key: "\uD800", value: "v" }, "MR_ERR_INVALID_ARGUMENT");
    refuse({ op: "kvPut", key: "k", value: 5 }, "MR_ERR_INVALID_ARGUMENT");
    refuse({ op: "kvGet", key: 1 }, "MR_ERR_INVALID_ARGUMENT");
    refuse({ op: "kvRange", prefix: "", limit: 0 }, "MR_ERR_INVALID_ARGUMENT");
    refuse({ op: "kvRange", prefix: "", limit: 1001 }, "MR_ERR_INVALID_ARGUMENT");
    refuse(
      {
        op: "kvTxn",
        success: [
          { op: "get", key: "k" },
          { op: "get", key: "k" },
        ],
        compare: [
          { target: "version", key: "k", op: "=", value: 0 },
          { target: "version", key: "k", op: "=", value: 0 },
        ],
      },
      "MR_ERR_KV_TXN_TOO_LARGE",
    );
    refuse(
      { op: "kvTxn", compare: [{ target: "exists", key: "k", op: "<", value: true }] },
      "MR_ERR_INVALID_ARGUMENT",
    );
    refuse(
      { op: "kvTxn", compare: [{ target: "version", key: "k", op: "=", value: -1 }] },
      "MR_ERR_INVALID_ARGUMENT",
    );
    refuse(
      { op: "kvTxn", compare: [{ target: "value", key: "k", op: "~", value: "v" }] },
      "MR_ERR_INVALID_ARGUMENT",
    );
    refuse({ op: "kvTxn", success: [{ op: "rename", key: "k" }] }, "MR_ERR_INVALID_ARGUMENT");
    refuse({ op: "kvTxn", success: "put k v" }, "MR_ERR_INVALID_ARGUMENT");
    assert.deepEqual(kv.entries(), []);
    assert.deepEqual(kv.events, []);
  });

  it("kv events match watch prefixes by _kv/<key>, never a volume's path", () => {
    const event: EventDraft = { type: "KvPut:Put", key: "vol1/bucket/k" };
    assert.deepEqual(eventPaths(event), ["_kv/vol1/bucket/k"]);
    assert.equal(matchesPrefix(event, "_kv/vol1/"), true);
    assert.equal(matchesPrefix(event, "vol1/"), false);
    assert.equal(matchesPrefix({ type: "KvDelete:Delete", key: "a" }, "_kv/"), true);
  });
});
