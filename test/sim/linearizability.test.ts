import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  checkKv,
  checkModel,
  type KvOp,
  kvRegisterModel,
  type LinearizabilityResult,
  type Model,
} from "./linearizability.js";

const runs = { numRuns: Number(process.env.PROPERTY_RUNS ?? 200) };

const put = (client: number, key: string, value: string, call: number, ret: number | null): KvOp => ({
  client,
  kind: "put",
  key,
  value,
  call,
  ret,
});
const get = (client: number, key: string, output: string | null, call: number, ret: number | null): KvOp => ({
  client,
  kind: "get",
  key,
  call,
  ret,
  ...(ret === null ? {} : { output }),
});
const cas = (
  client: number,
  key: string,
  expected: string | null,
  value: string,
  output: boolean | null,
  call: number,
  ret: number | null,
): KvOp => ({ client, kind: "cas", key, expected, value, call, ret, ...(output === null ? {} : { output }) });

function assertOk(history: readonly KvOp[]): void {
  const result = checkKv(history);
  assert.deepEqual(result, { kind: "ok" }, describeResult(result));
}

function assertViolation(
  history: readonly KvOp[],
  key: string,
): Extract<LinearizabilityResult, { kind: "violation" }> {
  const result = checkKv(history);
  assert.equal(result.kind, "violation", describeResult(result));
  assert.ok(result.kind === "violation");
  assert.equal(result.key, key);
  return result;
}

function describeResult(result: LinearizabilityResult): string {
  return result.kind === "violation" ? result.explanation : JSON.stringify(result);
}

/**
 * The witness `checkModel` returns must be a real linearization: every completed op appears once,
 * no op appears after one that was called after it returned, and replaying it passes the model.
 */
function assertValidWitness(ops: readonly KvOp[], linearization: readonly number[]): void {
  assert.equal(new Set(linearization).size, linearization.length, "an op linearized twice");
  const placed = new Set(linearization);
  ops.forEach((op, i) => {
    if (op.ret !== null) assert.ok(placed.has(i), `completed op ${i} missing from the witness`);
  });
  let state = kvRegisterModel.init();
  linearization.forEach((i, position) => {
    const op = ops[i]!;
    for (const j of linearization.slice(position + 1)) {
      const later = ops[j]!;
      assert.ok(!(later.ret !== null && later.ret < op.call), `op ${j} returned before op ${i} was called`);
    }
    const step = kvRegisterModel.step(state, op);
    assert.ok(step.ok, `op ${i} fails the model at position ${position}`);
    state = step.state;
  });
}

/** The definition itself: some minimal remaining op goes next, until only pending ops remain. */
function bruteForceLinearizable(history: readonly KvOp[]): boolean {
  const keys = new Set(history.map((op) => op.key));
  for (const key of keys) {
    const ops = history.filter((op) => op.key === key && !(op.kind === "get" && op.ret === null));
    const search = (remaining: readonly KvOp[], state: string | null): boolean => {
      if (remaining.every((op) => op.ret === null)) return true;
      return remaining.some((op, i) => {
        if (remaining.some((other) => other.ret !== null && other.ret < op.call)) return false;
        const step = kvRegisterModel.step(state, op);
        return step.ok && search([...remaining.slice(0, i), ...remaining.slice(i + 1)], step.state);
      });
    };
    if (!search(ops, null)) return false;
  }
  return true;
}

// --- A real atomic register, to generate linearizable histories --------------------------------

interface PlannedOp {
  readonly kind: "put" | "get" | "cas";
  readonly key: string;
  readonly value: string;
  readonly expected: string | null;
  /** Idle time before the call. */
  readonly gap: number;
  readonly duration: number;
  /** Where in [call, ret] the op takes effect, as a fraction. */
  readonly at: number;
  readonly pending: boolean;
  /** For a pending op: whether it took effect at all. */
  readonly tookEffect: boolean;
}

/**
 * Runs each client's planned ops back to back against an atomic store: each op takes effect at one
 * point inside its interval and its output is derived from the order of those points.
 */
function simulate(plan: readonly (readonly PlannedOp[])[]): KvOp[] {
  const history: (KvOp & { output?: string | null | boolean })[] = [];
  const effects: { at: number; index: number }[] = [];
  plan.forEach((clientOps, client) => {
    let now = 0;
    for (const p of clientOps) {
      const call = now + p.gap;
      const end = call + p.duration;
      now = end; // a client that timed out gives up at `end` and goes on
      const op: KvOp = {
        client,
        kind: p.kind,
        key: p.key,
        call,
        ret: p.pending ? null : end,
        ...(p.kind === "get" ? {} : { value: p.value }),
        ...(p.kind === "cas" ? { expected: p.expected } : {}),
      };
      if (!p.pending || p.tookEffect) effects.push({ at: call + p.at * p.duration, index: history.length });
      history.push(op);
    }
  });
  effects.sort((a, b) => a.at - b.at);
  const store = new Map<string, string>();
  for (const { index } of effects) {
    const op = history[index]!;
    const current = store.get(op.key) ?? null;
    let output: string | null | boolean | undefined;
    if (op.kind === "put") store.set(op.key, op.value!);
    else if (op.kind === "get") output = current;
    else {
      output = current === op.expected;
      if (output) store.set(op.key, op.value!);
    }
    if (op.ret !== null && output !== undefined) history[index] = { ...op, output };
  }
  return history;
}

const VALUES = ["a", "b", "c"] as const;

const plannedOp = (keys: readonly string[]) =>
  fc.record({
    kind: fc.constantFrom("put", "get", "cas"),
    key: fc.constantFrom(...keys),
    value: fc.constantFrom(...VALUES),
    expected: fc.constantFrom(null, ...VALUES),
    gap: fc.integer({ min: 0, max: 6 }),
    duration: fc.integer({ min: 0, max: 12 }),
    at: fc.double({ min: 0, max: 1, noNaN: true }),
    pending: fc.integer({ min: 0, max: 99 }).map((n) => n < 8),
    tookEffect: fc.boolean(),
  }) satisfies fc.Arbitrary<PlannedOp>;

const registerPlan = fc.array(fc.array(plannedOp(["x", "y"]), { maxLength: 12 }), {
  minLength: 1,
  maxLength: 5,
});

function mulberry32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// --- Tests ----------------------------------------------------------------------------------------

describe("checkKv: linearizable histories", () => {
  it("accepts a sequential history", () => {
    assertOk([
      put(0, "x", "1", 0, 1),
      get(0, "x", "1", 2, 3),
      put(1, "x", "2", 4, 5),
      get(1, "x", "2", 6, 7),
      cas(0, "x", "2", "3", true, 8, 9),
      get(2, "x", "3", 10, 11),
      get(2, "y", null, 12, 13),
    ]);
  });

  it("accepts the empty history and a history of pending ops only", () => {
    assertOk([]);
    assertOk([put(0, "x", "1", 0, null), get(1, "x", null, 0, null), cas(2, "x", null, "2", null, 3, null)]);
  });

  it("lets a get after two concurrent puts see either, but not neither", () => {
    const puts = [put(0, "x", "1", 0, 10), put(1, "x", "2", 1, 9)];
    assertOk([...puts, get(2, "x", "1", 11, 12)]);
    assertOk([...puts, get(2, "x", "2", 11, 12)]);
    assertViolation([...puts, get(2, "x", null, 11, 12)], "x");
  });

  it("lets a get concurrent with a put see the old or the new value", () => {
    assertOk([
      put(0, "x", "1", 0, 1),
      put(1, "x", "2", 2, 10),
      get(2, "x", "1", 3, 4),
      get(2, "x", "2", 5, 6),
    ]);
    assertOk([
      put(0, "x", "1", 0, 1),
      put(1, "x", "2", 2, 10),
      get(2, "x", "2", 3, 4),
      get(2, "x", "2", 5, 6),
    ]);
  });

  it("accepts a pending put that took effect, even long after its call", () => {
    assertOk([put(0, "x", "1", 0, 1), put(1, "x", "2", 2, null), get(2, "x", "2", 5, 6)]);
    assertOk([
      put(0, "x", "1", 0, 1),
      put(1, "x", "2", 2, null),
      get(2, "x", "1", 50, 60),
      get(2, "x", "2", 70, 80),
    ]);
  });

  it("accepts a pending put that never took effect", () => {
    assertOk([
      put(0, "x", "1", 0, 1),
      put(1, "x", "2", 2, null),
      get(2, "x", "1", 5, 6),
      get(2, "x", "1", 7, 8),
    ]);
  });

  it("does not let a pending put take effect before its call, nor be undone", () => {
    assertViolation([get(0, "x", "2", 0, 1), put(1, "x", "2", 2, null)], "x");
    assertViolation(
      [put(0, "x", "1", 0, 1), put(1, "x", "2", 2, null), get(2, "x", "2", 5, 6), get(2, "x", "1", 7, 8)],
      "x",
    );
  });

  it("accepts consistent cas successes and failures, including on an absent key", () => {
    assertOk([
      cas(0, "x", "1", "9", false, 0, 1),
      cas(0, "x", null, "1", true, 2, 3),
      cas(1, "x", null, "5", false, 4, 5),
      cas(1, "x", "1", "2", true, 6, 7),
      cas(2, "x", "1", "3", false, 8, 9),
      get(2, "x", "2", 10, 11),
    ]);
  });

  it("accepts two concurrent cas from the same value when exactly one wins", () => {
    const start = [put(0, "x", "0", 0, 1)];
    assertOk([
      ...start,
      cas(1, "x", "0", "1", true, 2, 10),
      cas(2, "x", "0", "2", false, 3, 11),
      get(0, "x", "1", 12, 13),
    ]);
    assertOk([
      ...start,
      cas(1, "x", "0", "1", false, 2, 10),
      cas(2, "x", "0", "2", true, 3, 11),
      get(0, "x", "2", 12, 13),
    ]);
    assertViolation(
      [
        ...start,
        cas(1, "x", "0", "1", true, 2, 10),
        cas(2, "x", "0", "2", false, 3, 11),
        get(0, "x", "2", 12, 13),
      ],
      "x",
    );
  });

  it("lets a pending cas take effect or not", () => {
    const start = [put(0, "x", "0", 0, 1), cas(1, "x", "0", "1", null, 2, null)];
    assertOk([...start, get(2, "x", "1", 5, 6)]);
    assertOk([...start, get(2, "x", "0", 5, 6)]);
    assertViolation([...start, get(2, "x", "2", 5, 6)], "x");
  });

  it("drops a pending get, whatever it claims", () => {
    assertOk([put(0, "x", "1", 0, 1), { ...get(1, "x", null, 2, 3), ret: null, output: "never" }]);
  });

  it("treats intervals that only touch as concurrent", () => {
    assertOk([put(0, "x", "1", 0, 5), get(1, "x", null, 5, 6)]);
    assertViolation([put(0, "x", "1", 0, 5), get(1, "x", null, 6, 7)], "x");
  });
});

describe("checkKv: violations", () => {
  it("finds a stale read after a completed write", () => {
    assertViolation([put(0, "x", "1", 0, 1), get(1, "x", null, 2, 3)], "x");
    const result = assertViolation(
      [
        put(0, "y", "0", 0, 1),
        put(0, "x", "0", 0, 1),
        put(0, "x", "1", 2, 3),
        get(1, "y", "0", 2, 5),
        get(1, "x", "0", 4, 5),
      ],
      "x",
    );
    assert.deepEqual(
      result.ops.map((op) => [op.kind, op.output ?? op.value]),
      [
        ["put", "0"],
        ["put", "1"],
        ["get", "0"],
      ],
    );
  });

  it("finds a read of a value never written", () => {
    const result = assertViolation(
      [put(0, "x", "1", 0, 1), get(0, "y", null, 0, 1), get(1, "y", "zzz", 2, 3), get(1, "x", "1", 4, 5)],
      "y",
    );
    assert.deepEqual(result.ops, [get(1, "y", "zzz", 2, 3)]);
    assert.match(
      result.explanation,
      /#2 client 1: get\("y"\) -> "zzz" \[2, 3\] fits nowhere: it read "zzz", which nothing/,
    );
  });

  it("finds two sequential reads that contradict real time", () => {
    // Both writes completed: a later read cannot go back.
    assertViolation(
      [put(0, "x", "1", 0, 1), put(0, "x", "2", 2, 3), get(1, "x", "2", 4, 5), get(2, "x", "1", 6, 7)],
      "x",
    );
    // The second write still running: each read alone is fine, the two in this order are not.
    const history = [
      put(0, "x", "1", 0, 1),
      put(0, "x", "2", 2, 10),
      get(1, "x", "2", 3, 4),
      get(2, "x", "1", 5, 6),
    ];
    assertOk(history.slice(0, 3));
    assertOk([...history.slice(0, 2), history[3]!]);
    const result = assertViolation(history, "x");
    assert.equal(result.ops.length, 4, result.explanation);
  });

  it("finds a cas that succeeded against a value that could not be current", () => {
    assertViolation([put(0, "x", "1", 0, 1), put(0, "x", "2", 2, 3), cas(1, "x", "1", "3", true, 4, 5)], "x");
    assertViolation([cas(1, "x", "1", "3", true, 0, 5)], "x");
    assertViolation([put(0, "x", "1", 0, 1), cas(1, "x", "1", "3", false, 2, 3)], "x");
  });

  it("finds a lost update: two cas from the same value both succeeding", () => {
    const result = assertViolation(
      [
        put(0, "x", "0", 0, 1),
        put(0, "z", "0", 0, 1),
        cas(1, "x", "0", "1", true, 2, 10),
        cas(2, "x", "0", "2", true, 3, 11),
        cas(3, "z", "0", "1", true, 3, 11),
      ],
      "x",
    );
    assert.equal(result.keyOps.length, 3);
    assert.deepEqual(
      result.ops.map((op) => op.kind),
      ["put", "cas", "cas"],
    );
  });

  it("explains a violation: key, ops, longest prefix and where it got stuck", () => {
    const history = [
      put(0, "x", "1", 0, 1),
      put(0, "x", "2", 2, 3),
      get(1, "x", "2", 4, 5),
      get(1, "x", "1", 6, 7),
      get(2, "x", "2", 8, 9),
    ];
    const result = assertViolation(history, "x");
    const text = result.explanation;
    assert.match(text, /Key "x" is not linearizable/);
    assert.match(text, /Longest linearizable prefix the search found: 3 of 5/);
    assert.match(text, /#3 client 1: get\("x"\) -> "1" \[6, 7\]: it read "1" but the value would be "2"/);
    assert.match(text, /These 3 op\(s\) alone/);
    assert.deepEqual(result.ops, [history[0], history[1], history[3]]);
    assert.deepEqual(result.keyOps, history);
  });

  it("explains what it assumed about pending writes", () => {
    const history = [
      put(0, "x", "a", 0, 1),
      put(1, "x", "b", 2, null),
      put(2, "x", "c", 2, null),
      get(3, "x", "c", 5, 6),
      get(3, "x", "a", 7, 8),
    ];
    const result = assertViolation(history, "x");
    assert.match(
      result.explanation,
      /1 pending write\(s\) could not matter and were taken never to have happened: #1\n/,
    );
    assert.match(
      result.explanation,
      /1 pending write\(s\) were observed, so they were checked as having happened by:\n {2}#2 by 6\n/,
    );
    assert.deepEqual(result.ops, [history[0], history[2], history[3], history[4]]);
    // Had the unobserved one been seen instead, no violation.
    assertOk([...history.slice(0, 4), get(3, "x", "b", 7, 8)]);
  });

  /** Twelve concurrent puts, then two reads in an order no single final value allows: only a search refutes it. */
  const hard = (key: string): KvOp[] => [
    ...Array.from({ length: 12 }, (_, c) => put(c, key, `v${c}`, 0, 100)),
    get(99, key, "v0", 101, 102),
    get(99, key, "v1", 103, 104),
  ];

  it("answers unknown, not a verdict, when the step bound runs out", () => {
    const history = [...hard("k"), put(0, "other", "1", 0, 1)];
    assert.deepEqual(checkKv(history, { stepsMax: 50 }), { kind: "unknown", key: "k" });
    assert.equal(checkKv(history).kind, "violation");
    assert.equal(checkKv(history.slice(0, -2)).kind, "ok");
  });

  it("reports a violation on one key over an unknown on another", () => {
    const history = [...hard("a"), put(0, "b", "1", 0, 1), get(0, "b", null, 2, 3)];
    const result = checkKv(history, { stepsMax: 30 });
    assert.equal(result.kind, "violation");
    assert.ok(result.kind === "violation" && result.key === "b");
  });

  it("rejects malformed operations instead of judging them", () => {
    assert.throws(() => checkKv([{ client: 0, kind: "put", key: "x", call: 0, ret: 1 }]), TypeError);
    assert.throws(() => checkKv([{ client: 0, kind: "get", key: "x", call: 0, ret: 1 }]), TypeError);
    assert.throws(() => checkKv([{ ...cas(0, "x", null, "1", true, 0, 1), output: "yes" }]), TypeError);
    assert.throws(() => checkKv([put(0, "x", "1", 5, 4)]), RangeError);
  });
});

describe("checkModel: a generic core", () => {
  type CounterOp = { kind: "inc" | "read"; call: number; ret: number | null; output?: number };
  const counter: Model<number, CounterOp> = {
    init: () => 0,
    step: (n, op) =>
      op.kind === "inc" ? { ok: true, state: n + 1 } : { ok: op.ret === null || op.output === n, state: n },
    key: (n) => String(n),
  };

  it("checks another model and returns a witness order", () => {
    const ops: CounterOp[] = [
      { kind: "inc", call: 0, ret: 10 },
      { kind: "inc", call: 1, ret: 10 },
      { kind: "read", call: 2, ret: 3, output: 1 },
      { kind: "read", call: 11, ret: 12, output: 2 },
    ];
    const result = checkModel(ops, counter);
    assert.equal(result.kind, "ok");
    assert.ok(result.kind === "ok");
    // The read of 1 must sit between the two increments.
    assert.deepEqual(result.linearization, [0, 2, 1, 3]);

    const bad = checkModel([...ops, { kind: "read", call: 13, ret: 14, output: 1 }], counter);
    assert.equal(bad.kind, "violation");
    assert.ok(bad.kind === "violation");
    assert.equal(bad.longestPrefix.length, 4);
  });
});

describe("checkModel: pending ops", () => {
  // Found by fuzzing against the definition: each needs a pending put linearized late, after the
  // search had already failed with it linearized early. Pruning a configuration because one with
  // *more* pending ops failed would wrongly call them violations.
  const cases: KvOp[][] = [
    [
      put(0, "x", "w0", 1, null),
      put(1, "x", "w1", 6, 11),
      cas(2, "x", null, "w2", false, 1, 5),
      get(3, "x", "w0", 10, 13),
      put(4, "x", "w4", 5, null),
      put(5, "x", "w5", 9, 10),
      put(7, "x", "w7", 6, 8),
    ],
    [
      get(0, "x", "w8", 3, 4),
      cas(1, "x", "w8", "w1", false, 10, 13),
      get(2, "x", "w8", 4, 4),
      put(4, "x", "w4", 0, null),
      get(5, "x", "w4", 9, 12),
      cas(6, "x", null, "w6", false, 3, 5),
      get(7, "x", "w8", 0, 4),
      put(8, "x", "w8", 4, null),
    ],
  ];
  it("finds linearizations that take a pending op late", () => {
    for (const ops of cases) {
      assert.equal(bruteForceLinearizable(ops), true);
      const result = checkModel(ops, kvRegisterModel);
      assert.equal(result.kind, "ok");
      assert.ok(result.kind === "ok");
      assertValidWitness(ops, result.linearization);
      assertOk(ops);
    }
  });
});

describe("checkKv: properties", () => {
  it("agrees with the definition on arbitrary small histories", () => {
    const op = fc
      .record({
        kind: fc.constantFrom("put", "get", "cas"),
        key: fc.constantFrom("x", "y"),
        value: fc.constantFrom("a", "b"),
        expected: fc.constantFrom(null, "a", "b"),
        read: fc.constantFrom(null, "a", "b"),
        succeeded: fc.boolean(),
        call: fc.integer({ min: 0, max: 10 }),
        duration: fc.integer({ min: 0, max: 6 }),
        pending: fc.integer({ min: 0, max: 99 }).map((n) => n < 15),
      })
      .map((r): KvOp => {
        const client = 0;
        const ret = r.pending ? null : r.call + r.duration;
        if (r.kind === "put") return put(client, r.key, r.value, r.call, ret);
        if (r.kind === "get") return get(client, r.key, r.read, r.call, ret);
        return cas(client, r.key, r.expected, r.value, ret === null ? null : r.succeeded, r.call, ret);
      });
    let ok = 0;
    let violations = 0;
    fc.assert(
      fc.property(fc.array(op, { maxLength: 9 }), (history) => {
        const expected = bruteForceLinearizable(history);
        const result = checkKv(history);
        assert.equal(result.kind, expected ? "ok" : "violation", describeResult(result));
        if (result.kind !== "violation") {
          ok++;
          return;
        }
        violations++;
        // The core is a violation on its own, made of the key's ops.
        assert.ok(result.ops.length > 0 && result.ops.every((o) => result.keyOps.includes(o)));
        assert.equal(bruteForceLinearizable(result.ops), false, result.explanation);
      }),
      { numRuns: runs.numRuns * 5 },
    );
    assert.ok(
      ok > 0 && violations > 0,
      `ok ${ok}, violations ${violations}: the generator should produce both`,
    );
  });

  /**
   * Small one-key histories with unique written values, reads of written values (or absent, or a
   * value never written) and pending ops: where dropping, settling and the pre-check matter.
   */
  const uniqueValueHistory = fc
    .array(
      fc.record({
        kind: fc.constantFrom("put", "get", "cas"),
        pick: fc.nat(),
        absent: fc.integer({ min: 0, max: 99 }).map((n) => n < 20),
        stray: fc.integer({ min: 0, max: 99 }).map((n) => n < 5),
        succeeded: fc.boolean(),
        call: fc.integer({ min: 0, max: 12 }),
        duration: fc.integer({ min: 0, max: 6 }),
        pending: fc.integer({ min: 0, max: 99 }).map((n) => n < 30),
      }),
      { maxLength: 10 },
    )
    .map((records) => {
      const written = records.flatMap((r, i) => (r.kind === "get" ? [] : [`w${i}`]));
      return records.map((r, i): KvOp => {
        const ret = r.pending ? null : r.call + r.duration;
        const seen = r.absent
          ? null
          : r.stray
            ? "stray"
            : (written[r.pick % Math.max(1, written.length)] ?? null);
        if (r.kind === "put") return put(i, "x", `w${i}`, r.call, ret);
        if (r.kind === "get") return get(i, "x", seen, r.call, ret);
        return cas(i, "x", seen, `w${i}`, ret === null ? null : r.succeeded, r.call, ret);
      });
    });

  it("agrees with the definition on small histories with unique values", () => {
    let ok = 0;
    let violations = 0;
    fc.assert(
      fc.property(uniqueValueHistory, (history) => {
        const expected = bruteForceLinearizable(history);
        const result = checkKv(history);
        assert.equal(result.kind, expected ? "ok" : "violation", describeResult(result));
        if (result.kind === "violation") {
          violations++;
          assert.equal(bruteForceLinearizable(result.ops), false, result.explanation);
        } else {
          ok++;
        }
      }),
      { numRuns: runs.numRuns * 5 },
    );
    assert.ok(ok > 0 && violations > 0, `ok ${ok}, violations ${violations}`);
  });

  it("has a generic core that agrees with the definition on its own, witness included", () => {
    fc.assert(
      fc.property(uniqueValueHistory, (history) => {
        const ops = history.filter((op) => !(op.kind === "get" && op.ret === null));
        const result = checkModel(ops, kvRegisterModel);
        assert.equal(result.kind, bruteForceLinearizable(ops) ? "ok" : "violation");
        if (result.kind === "ok") assertValidWitness(ops, result.linearization);
        // Without the read-only hint too.
        const plain = checkModel(ops, { ...kvRegisterModel, readOnly: undefined });
        assert.equal(plain.kind, result.kind);
      }),
      { numRuns: runs.numRuns * 5 },
    );
  });

  it("accepts every history of a real atomic register, with a valid witness", () => {
    fc.assert(
      fc.property(registerPlan, (plan) => {
        const history = simulate(plan);
        assertOk(history);
        for (const key of ["x", "y"]) {
          const ops = history.filter((op) => op.key === key);
          const result = checkModel(ops, kvRegisterModel);
          assert.equal(result.kind, "ok");
          assert.ok(result.kind === "ok");
          assertValidWitness(ops, result.linearization);
        }
      }),
      runs,
    );
  });

  it("rejects it once one completed get reads a value never written, and keeps that get in the core", () => {
    fc.assert(
      fc.property(registerPlan, fc.nat(), (plan, pick) => {
        const history = simulate(plan);
        const gets = history.flatMap((op, i) => (op.kind === "get" && op.ret !== null ? [i] : []));
        fc.pre(gets.length > 0);
        const at = gets[pick % gets.length]!;
        const mutated = { ...history[at]!, output: "never-written" };
        history[at] = mutated;
        const result = assertViolation(history, mutated.key);
        // Removing reads keeps a history linearizable, so the core must hold the broken read; and
        // that read alone is enough.
        assert.deepEqual(result.ops, [mutated], result.explanation);
        assert.equal(checkKv(result.ops).kind, "violation");
      }),
      runs,
    );
  });
});

describe("checkKv: scale", () => {
  it("checks 1,000 ops on 5 keys from 8 concurrent clients", () => {
    const random = mulberry32(20_240_601);
    const pickFrom = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
    const plan: PlannedOp[][] = [];
    for (let client = 0; client < 8; client++) {
      const ops: PlannedOp[] = [];
      for (let i = 0; i < 125; i++) {
        ops.push({
          kind: pickFrom(["put", "get", "get", "cas"] as const),
          key: pickFrom(["k0", "k1", "k2", "k3", "k4"]),
          value: `v${Math.floor(random() * 6)}`,
          expected: pickFrom([null, "v0", "v1", "v2", "v3", "v4", "v5"]),
          gap: Math.floor(random() * 4),
          duration: 1 + Math.floor(random() * 30),
          at: random(),
          pending: random() < 0.01,
          tookEffect: random() < 0.5,
        });
      }
      plan.push(ops);
    }
    const history = simulate(plan);
    assert.equal(history.length, 1000);
    assertOk(history);
    // And the same history with one stale read injected is caught.
    const gets = history.filter((op) => op.kind === "get" && op.ret !== null);
    const last = gets.reduce((a, b) => (b.call > a.call ? b : a));
    history[history.indexOf(last)] = { ...last, output: "v-none" };
    assert.equal(checkKv(history).kind, "violation");
  });
});
