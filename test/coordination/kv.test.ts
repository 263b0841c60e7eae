import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  KV_LIMITS_DEFAULT,
  KV_SHORT_KEY_BYTES,
  type KvLimits,
  kvSpecs,
} from "../../src/coordination/index.js";
import { MetaraftError } from "../../src/errors.js";
import { type EventDraft, eventPaths, matchesPrefix } from "../../src/events/index.js";
import type { Execution, Request, RequestSpec } from "../../src/execution/types.js";
import { STATE_KEY_BYTES_MAX } from "../../src/storage/index.js";
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
    for (const write of execution.writes) {
      const bytes = Buffer.byteLength(write.key, "utf8");
      assert.ok(bytes <= STATE_KEY_BYTES_MAX, `a ${bytes}-byte row key: LMDB would refuse it`);
    }
    this.state.apply(execution);
    for (const event of execution.events ?? []) this.events.push({ ...event, txid });
    return execution.reply as Record<string, unknown>;
  }

  /** The keyspace as plain objects, in key order, paged through `kvRange` as a client would. */
  entries(pageSize = 1000): Record<string, unknown>[] {
    const all: Record<string, unknown>[] = [];
    let startAfter: string | undefined;
    for (;;) {
      const page = this.run({
        op: "kvRange",
        prefix: "",
        limit: pageSize,
        ...(startAfter ? { startAfter } : {}),
      });
      all.push(...(page.items as Record<string, unknown>[]));
      if (!page.truncated) return all;
      startAfter = page.nextStartAfter as string;
    }
  }

  /** Rows of the `kv` table: one a key, plus a directory for each group of long keys. */
  rows(): number {
    return this.state.entries("kv").length;
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

/** A long key's first KV_SHORT_KEY_BYTES bytes and the rest of the character they end in. */
function stemOf(key: string): string {
  let stem = "";
  for (const char of key) {
    if (Buffer.byteLength(stem) >= KV_SHORT_KEY_BYTES) break;
    stem += char;
  }
  return stem;
}

const byUtf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a, "utf8"), Buffer.from(b, "utf8"));

/**
 * Keys about the 1,900-byte line past which keys are stored in groups: keys of exactly 1,900
 * bytes; groups whose cut falls inside a character; keys sharing their first 1,900 bytes and
 * differing after, in orders that UTF-16 and the row keys' hashes would get wrong.
 */
const STEM = `p/${"x".repeat(KV_SHORT_KEY_BYTES - 4)}`; // 1,898 bytes
const LONG_KEYS = [
  `${STEM}\u00e9`, // 1,900 bytes: a short key
  `${STEM}\u00e9a`,
  `${STEM}\u00e9b`,
  `${STEM}\u00e9\u{1F600}`,
  `${STEM}\u00e9\uFF5E`,
  `${STEM}\u00e9a/x`,
  `${STEM}\u{1F600}`, // 1,902 bytes, cut inside the emoji
  `${STEM}\u{1F600}z`,
  `${STEM}y`,
  `${STEM}yy`,
  `${STEM}yyy`,
  `${STEM}yyy${"w".repeat(4096 - KV_SHORT_KEY_BYTES - 3)}`, // 4 KiB
  // A cut that replaced the emoji's first three bytes with U+FFFD would sort it before U+FFFF.
  `${STEM.slice(1)}\uFFFF`, // 1,900 bytes
  `${STEM.slice(1)}\u{1F600}`, // 1,901 bytes
];
const keys = fc.oneof(
  { weight: 1, arbitrary: fc.constantFrom("a", "b", "c", "a/x", "p/") },
  { weight: 2, arbitrary: fc.constantFrom(...LONG_KEYS) },
);
const prefixes = fc.constantFrom(
  "",
  "a",
  "p/",
  `${STEM}\u00e9`,
  `${STEM}\u00e9a`,
  `${STEM}\u{1F600}`,
  `${STEM}yy`,
);
const DELETE_KEYS_MAX = 3;
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
  { weight: 2, arbitrary: opArb.map((op) => ({ kind: "single" as const, op })) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("range" as const),
      prefix: prefixes,
      startAfter: fc.option(keys, { nil: undefined }),
      limit: fc.integer({ min: 1, max: 4 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("deletePrefix" as const), prefix: prefixes }) },
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
        const kv = new Kv({ deleteKeysMax: DELETE_KEYS_MAX });
        const model: Model = new Map();
        const expectedEvents: string[] = [];
        const sorted = () => [...model.keys()].sort(byUtf8);
        for (const step of steps) {
          if (step.kind === "range") {
            const { prefix, startAfter, limit } = step;
            const matching = sorted().filter(
              (k) => k.startsWith(prefix) && (startAfter === undefined || byUtf8(k, startAfter) > 0),
            );
            const reply = kv.run({ op: "kvRange", prefix, limit, ...(startAfter ? { startAfter } : {}) });
            assert.deepEqual(
              reply.items,
              matching.slice(0, limit).map((key) => ({ key, ...model.get(key)! })),
            );
            assert.equal(reply.truncated, matching.length > limit);
          } else if (step.kind === "deletePrefix") {
            const doomed = sorted()
              .filter((k) => k.startsWith(step.prefix))
              .slice(0, DELETE_KEYS_MAX + 1);
            const reply = kv.run({ op: "kvDelete", key: step.prefix, prefix: true, prevKv: true });
            const gone = doomed.slice(0, DELETE_KEYS_MAX);
            assert.deepEqual(
              reply.prevKvs,
              gone.map((key) => ({ key, ...model.get(key)! })),
            );
            assert.equal(reply.truncated, doomed.length > DELETE_KEYS_MAX);
            for (const key of gone) {
              model.delete(key);
              expectedEvents.push(`KvDelete:Delete ${key}`);
            }
          } else if (step.kind === "single") {
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
            kv.entries(2),
            sorted().map((key) => ({ key, ...model.get(key)! })),
          );
          // No row left behind: one a key, and a directory for each group of long keys (the
          // keys over the line that share their first bytes up to it).
          const groups = new Set(
            [...model.keys()].filter((k) => Buffer.byteLength(k) > KV_SHORT_KEY_BYTES).map(stemOf),
          );
          assert.equal(kv.rows(), model.size + groups.size);
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

  it("takes 4 KiB keys, and bounds a group of long keys at kv.longKeyGroupMax with nothing written", () => {
    const kv = new Kv({ longKeyGroupMax: 2 });
    const key = (tail: string) => `${STEM}::${tail}`; // past the line: all in one group
    kv.run({ op: "kvPut", key: key("a"), value: "1" });
    kv.run({ op: "kvPut", key: key("b"), value: "1" });
    const rows = kv.rows();
    const full = (raw: Request) =>
      assert.throws(
        () => kv.run(raw),
        (e) => code(e) === "MR_ERR_KV_KEY_GROUP_FULL",
      );
    full({ op: "kvPut", key: key("c"), value: "1" });
    // A txn that would fill the group past its limit fails whole: its first put is not kept.
    full({
      op: "kvTxn",
      success: [
        { op: "put", key: "short", value: "1" },
        { op: "put", key: key("c"), value: "1" },
      ],
    });
    assert.equal(kv.rows(), rows);
    assert.equal(kv.run({ op: "kvGet", key: "short" }).kv, null);
    // Updating a member is no new member; another group and short keys are unaffected.
    kv.run({ op: "kvPut", key: key("a"), value: "2" });
    kv.run({ op: "kvPut", key: `q${key("c")}`, value: "1" });
    kv.run({ op: "kvPut", key: "short", value: "1" });
    // A delete frees its room, and a txn may delete one member and create another.
    kv.run({
      op: "kvTxn",
      success: [
        { op: "delete", key: key("b") },
        { op: "put", key: key("c"), value: "1" },
      ],
    });
    assert.deepEqual(
      kv.entries().map((e) => [e.key, e.value]),
      [
        [key("a"), "2"],
        [key("c"), "1"],
        [`q${key("c")}`, "1"],
        ["short", "1"],
      ],
    );

    // With the default limits a key of 4,096 UTF-8 bytes is stored; one byte more is refused.
    const big = new Kv();
    const fourKiB = `k/${"\u00e9".repeat(2047)}`;
    assert.equal(Buffer.byteLength(fourKiB), 4096);
    big.run({ op: "kvPut", key: fourKiB, value: "v" });
    assert.equal((big.run({ op: "kvGet", key: fourKiB }).kv as { value: string }).value, "v");
    assert.throws(
      () => big.run({ op: "kvPut", key: `${fourKiB}x`, value: "v" }),
      (e) => code(e) === "MR_ERR_KV_KEY_TOO_LARGE",
    );
  });

  it("kv events match watch prefixes by _kv/<key>, never a volume's path", () => {
    const event: EventDraft = { type: "KvPut:Put", key: "vol1/bucket/k" };
    assert.deepEqual(eventPaths(event), ["_kv/vol1/bucket/k"]);
    assert.equal(matchesPrefix(event, "_kv/vol1/"), true);
    assert.equal(matchesPrefix(event, "vol1/"), false);
    assert.equal(matchesPrefix({ type: "KvDelete:Delete", key: "a" }, "_kv/"), true);
  });
});
