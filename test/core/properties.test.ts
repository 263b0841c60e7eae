import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import fc from "fast-check";
import {
  type CoreAsync,
  DELTA_VALUE_MAX,
  decodeWriteSet,
  encodeWriteSet,
  framePayloads,
  TXID_MAX,
  type WriteOp,
} from "../../src/core/index.js";
import { type Implementations, implementations, type Outcome, outcome, toHex } from "../helpers/core.js";

let impls: Implementations;
before(() => {
  impls = implementations();
});
after(() => impls.close());

const runs = { numRuns: Number(process.env.PROPERTY_RUNS ?? 150) };

/** Mostly small inputs, sometimes empty, sometimes around 64 KiB where the implementations change. */
const bytes = fc.oneof(
  { arbitrary: fc.uint8Array({ maxLength: 300 }), weight: 10 },
  { arbitrary: fc.constant(new Uint8Array(0)), weight: 1 },
  { arbitrary: fc.uint8Array({ minLength: 60_000, maxLength: 70_000 }), weight: 1 },
);

/** Damages an encoding the three ways the issue names: bit flips, truncation, garbage. */
const damage = (encoded: Uint8Array) =>
  fc
    .oneof(
      fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
      fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
      fc.record({ kind: fc.constant("garbage" as const), bytes: fc.uint8Array({ maxLength: 64 }) }),
    )
    .map((d): { how: string; input: Uint8Array } => {
      if (d.kind === "garbage") return { how: "garbage", input: d.bytes };
      if (encoded.length === 0) return { how: "empty", input: encoded };
      const at = d.at % encoded.length;
      if (d.kind === "truncate") return { how: `truncate at ${at}`, input: encoded.slice(0, at) };
      const flipped = encoded.slice();
      flipped[at]! ^= 1 << d.bit;
      return { how: `flip bit ${d.bit} of byte ${at}`, input: flipped };
    });

/** Every implementation's outcome, normalised to plain data; they must all agree. */
async function agree<T>(
  call: (core: CoreAsync) => Promise<T>,
  normalise: (value: T) => unknown,
): Promise<Outcome<unknown>> {
  const outcomes: Outcome<unknown>[] = [];
  for (const core of impls.all) {
    const result = await outcome(() => call(core));
    outcomes.push("ok" in result ? { ok: normalise(result.ok) } : result);
  }
  for (let i = 1; i < outcomes.length; i++) {
    assert.deepEqual(outcomes[i], outcomes[0], `${impls.all[i]!.impl} differs from ${impls.all[0]!.impl}`);
  }
  return outcomes[0]!;
}

function assertCodeIn(result: Outcome<unknown>, codes: readonly string[]): void {
  if ("code" in result) assert.ok(codes.includes(result.code), `unexpected ${result.code}`);
}

const hexes = (parts: readonly Uint8Array[]): string[] => parts.map(toHex);

describe("crc32c properties", () => {
  it("all implementations agree, and streaming equals one pass", async () => {
    await fc.assert(
      fc.asyncProperty(bytes, fc.nat(), async (data, cut) => {
        const whole = (await agree(
          (core) => core.crc32c(data),
          (v) => v,
        )) as { ok: number };
        const at = data.length === 0 ? 0 : cut % data.length;
        const ts = impls.all[0]!;
        const first = await ts.crc32c(data.subarray(0, at));
        for (const core of impls.all) assert.equal(await core.crc32c(data.subarray(at), first), whole.ok);
      }),
      runs,
    );
  });
});

describe("frame properties", () => {
  const frameCodes = [
    "MR_ERR_FRAME_TRUNCATED",
    "MR_ERR_FRAME_TOO_LARGE",
    "MR_ERR_FRAME_VERSION",
    "MR_ERR_FRAME_CORRUPT",
  ];
  const events = fc.array(fc.oneof({ arbitrary: fc.uint8Array({ maxLength: 200 }), weight: 20 }, bytes), {
    maxLength: 40,
  });

  it("split(encode(events)) gives the events back, identically in every implementation", async () => {
    await fc.assert(
      fc.asyncProperty(events, async (evs) => {
        const encoded = (await agree((core) => core.encodeFrames(evs), toHex)) as { ok: string };
        const buf = new Uint8Array(Buffer.from(encoded.ok, "hex"));
        const split = await agree(
          (core) => core.splitFrames(buf),
          (s) => hexes(framePayloads(buf, s)),
        );
        assert.deepEqual(split, { ok: hexes(evs) });
      }),
      runs,
    );
  });

  it("a frame of exactly the maximum passes; one byte more fails in every implementation", async () => {
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 0, max: 4096 }), async (max) => {
        const exact = new Uint8Array(max).fill(7);
        const encoded = (await agree((core) => core.encodeFrames([exact], max), toHex)) as { ok: string };
        const buf = new Uint8Array(Buffer.from(encoded.ok, "hex"));
        assert.deepEqual(
          await agree(
            (core) => core.splitFrames(buf, max),
            (s) => s.count,
          ),
          { ok: 1 },
        );
        assert.deepEqual(
          await agree(
            (core) => core.splitFrames(buf, max - 1),
            (s) => s.count,
          ),
          {
            code: max === 0 ? "MR_ERR_INVALID_ARGUMENT" : "MR_ERR_FRAME_TOO_LARGE",
            offset: max === 0 ? undefined : 0,
          },
        );
      }),
      { numRuns: 30 },
    );
  });

  it("damaged frames give the same error code and offset everywhere, never a crash", async () => {
    const encodedEvents = events
      .filter((evs) => evs.length > 0)
      .map((evs) => ({ evs, encoded: Buffer.concat(evs.map(frameOf)) }));
    await fc.assert(
      fc.asyncProperty(
        encodedEvents.chain(({ evs, encoded }) =>
          damage(new Uint8Array(encoded)).map((d) => ({ evs, encoded, ...d })),
        ),
        async ({ evs, how, input }) => {
          const result = await agree(
            (core) => core.splitFrames(input),
            (s) => hexes(framePayloads(input, s)),
          );
          assertCodeIn(result, frameCodes);
          if (how.startsWith("flip")) assert.ok("code" in result, `${how} went unnoticed`);
          if ("ok" in result && how.startsWith("truncate")) {
            // A cut exactly between two frames leaves a valid shorter buffer: a prefix of the events.
            assert.deepEqual(result.ok, hexes(evs.slice(0, (result.ok as string[]).length)));
          }
        },
      ),
      runs,
    );
  });
});

/** The frame encoding, written out independently of every implementation under test. */
function frameOf(payload: Uint8Array): Buffer {
  const header = Buffer.alloc(9);
  header.writeUInt32LE(payload.length, 0);
  header[4] = 1;
  header.writeUInt32LE(crc32cReference(payload), 5);
  return Buffer.concat([header, payload]);
}

/** Bit-at-a-time CRC32C: slow and obviously right, the oracle for the fast ones. */
function crc32cReference(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}

describe("crc32c oracle", () => {
  it("the fast implementations equal the bitwise definition", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 2000 }), async (data) => {
        for (const core of impls.all) assert.equal(await core.crc32c(data), crc32cReference(data));
      }),
      runs,
    );
  });
});

describe("delta properties", () => {
  const deltaCodes = ["MR_ERR_DELTA_MALFORMED", "MR_ERR_DELTA_RANGE"];
  const value = fc.oneof(
    fc.constant(0),
    fc.constant(DELTA_VALUE_MAX),
    fc.maxSafeNat(),
    fc.integer({ min: 0, max: 1_000_000 }),
  );
  /** Ids that mostly increase, as txids and object ids do, plus arbitrary jumps. */
  const ids = fc.oneof(
    fc.array(value, { maxLength: 200 }),
    fc
      .tuple(fc.maxSafeNat(), fc.array(fc.integer({ min: -3, max: 1000 }), { maxLength: 2000 }))
      .map(([start, steps]) => {
        let v = Math.min(start, DELTA_VALUE_MAX - 2_000_000);
        return steps.map((step) => (v = Math.max(0, v + step)));
      }),
  );

  it("decode(encode(ids)) = ids, identically in every implementation", async () => {
    await fc.assert(
      fc.asyncProperty(ids, async (values) => {
        const encoded = (await agree((core) => core.encodeDeltas(values), toHex)) as { ok: string };
        const decoded = await agree(
          (core) => core.decodeDeltas(new Uint8Array(Buffer.from(encoded.ok, "hex"))),
          (v) => [...v],
        );
        assert.deepEqual(decoded, { ok: values });
      }),
      runs,
    );
  });

  it("values outside [0, 2^53 - 1] are refused at their index", async () => {
    const bad = fc.oneof(
      fc.constant(-1),
      fc.constant(DELTA_VALUE_MAX + 1),
      fc.constant(Number.NaN),
      fc.constant(Number.POSITIVE_INFINITY),
      fc.double({ noInteger: true }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(value, { maxLength: 20 }), bad, fc.nat(), async (values, wrong, at) => {
        const index = values.length === 0 ? 0 : at % values.length;
        const input = [...values.slice(0, index), wrong, ...values.slice(index)];
        assert.deepEqual(await agree((core) => core.encodeDeltas(input), toHex), {
          code: "MR_ERR_DELTA_RANGE",
          offset: index,
        });
      }),
      runs,
    );
  });

  it("damaged encodings give the same outcome everywhere, never a crash", async () => {
    await fc.assert(
      fc.asyncProperty(
        ids.chain((values) => damage(encodeDeltasReference(values))),
        async ({ input }) => {
          const result = await agree(
            (core) => core.decodeDeltas(input),
            (v) => [...v],
          );
          assertCodeIn(result, deltaCodes);
          if ("ok" in result) {
            // Only canonical encodings decode, so decoding then encoding gives the input back.
            assert.equal(toHex(await impls.all[0]!.encodeDeltas(result.ok as number[])), toHex(input));
          }
        },
      ),
      runs,
    );
  });
});

/** The delta format written out with BigInt, independently of the implementations under test. */
function encodeDeltasReference(values: readonly number[]): Uint8Array {
  const out: number[] = [];
  const uvarint = (v: bigint) => {
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
  };
  uvarint(BigInt(values.length));
  let previous = 0n;
  for (const value of values) {
    const delta = BigInt(value) - previous;
    uvarint(delta >= 0n ? delta << 1n : ((-delta - 1n) << 1n) | 1n);
    previous = BigInt(value);
  }
  return new Uint8Array(out);
}

describe("front-coded key properties", () => {
  const keyCodes = ["MR_ERR_KEYS_MALFORMED", "MR_ERR_DECODED_TOO_LARGE"];
  const key = fc.oneof(
    fc.uint8Array({ maxLength: 40 }),
    fc.stringMatching(/^[ab]{0,12}$/).map((s) => new Uint8Array(Buffer.from(s))),
  );
  const keyLists = fc.oneof(
    fc.array(key, { maxLength: 100 }),
    fc.array(key, { maxLength: 100 }).map((keys) => keys.sort(Buffer.compare)),
  );

  it("decode(encode(keys)) = keys, identically in every implementation", async () => {
    await fc.assert(
      fc.asyncProperty(keyLists, async (keys) => {
        const encoded = (await agree((core) => core.encodeKeys(keys), toHex)) as { ok: string };
        const decoded = await agree(
          (core) => core.decodeKeys(new Uint8Array(Buffer.from(encoded.ok, "hex"))),
          hexes,
        );
        assert.deepEqual(decoded, { ok: hexes(keys) });
      }),
      runs,
    );
  });

  it("the decoded-size limit holds exactly", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(key, { minLength: 1, maxLength: 30 }), async (keys) => {
        const total = keys.reduce((sum, k) => sum + k.length, 0);
        const encoded = await impls.all[0]!.encodeKeys(keys);
        assert.deepEqual(await agree((core) => core.decodeKeys(encoded, total), hexes), { ok: hexes(keys) });
        if (total > 0) {
          const result = await agree((core) => core.decodeKeys(encoded, total - 1), hexes);
          assert.equal("code" in result && result.code, "MR_ERR_DECODED_TOO_LARGE");
        }
      }),
      runs,
    );
  });

  it("damaged encodings give the same outcome everywhere, never a crash", async () => {
    await fc.assert(
      fc.asyncProperty(
        keyLists.chain((keys) => damage(encodeKeysReference(keys))),
        async ({ input }) => {
          const result = await agree((core) => core.decodeKeys(input), hexes);
          assertCodeIn(result, keyCodes);
          if ("ok" in result) {
            const keys = (result.ok as string[]).map((h) => new Uint8Array(Buffer.from(h, "hex")));
            assert.equal(toHex(await impls.all[0]!.encodeKeys(keys)), toHex(input));
          }
        },
      ),
      runs,
    );
  });
});

/** Front coding written out independently of the implementations under test (keys < 128 bytes). */
function encodeKeysReference(keys: readonly Uint8Array[]): Uint8Array {
  const out: number[] = [keys.length < 128 ? keys.length : -1];
  assert.ok(out[0]! >= 0);
  let previous: Uint8Array = new Uint8Array(0);
  for (const key of keys) {
    let shared = 0;
    while (shared < previous.length && shared < key.length && previous[shared] === key[shared]) shared++;
    out.push(shared, key.length - shared, ...key.subarray(shared));
    previous = key;
  }
  return new Uint8Array(out);
}

describe("write-set merge properties", () => {
  const op: fc.Arbitrary<WriteOp> = fc.record({
    table: fc.integer({ min: 0, max: 3 }),
    key: fc.oneof(
      fc.stringMatching(/^[xyz]{0,3}$/).map((s) => new Uint8Array(Buffer.from(s))),
      fc.uint8Array({ maxLength: 20 }),
    ),
    value: fc.option(fc.uint8Array({ maxLength: 30 }), { freq: 4 }),
  });
  const writeSets = fc.array(fc.array(op, { maxLength: 30 }), { maxLength: 20 });

  it("keeps the last write per (table, key), sorted, identically in every implementation", async () => {
    await fc.assert(
      fc.asyncProperty(writeSets, async (sets) => {
        const merged = (await agree((core) => core.mergeWriteSets(sets.map(encodeWriteSet)), toHex)) as {
          ok: string;
        };
        const last = new Map<string, WriteOp>();
        for (const o of sets.flat()) last.set(`${o.table}:${toHex(o.key)}`, o);
        const expected = [...last.values()].sort(
          (a, b) => a.table - b.table || Buffer.compare(Buffer.from(a.key), Buffer.from(b.key)),
        );
        assert.equal(merged.ok, toHex(encodeWriteSet(expected)));
        assert.equal(decodeWriteSet(new Uint8Array(Buffer.from(merged.ok, "hex"))).length, expected.length);
      }),
      runs,
    );
  });

  it("damaged write-sets give the same outcome everywhere, never a crash", async () => {
    await fc.assert(
      fc.asyncProperty(
        writeSets.chain((sets) => damage(encodeWriteSet(sets.flat()))),
        async ({ input }) => {
          const result = await agree((core) => core.mergeWriteSets([input]), toHex);
          assertCodeIn(result, ["MR_ERR_WRITESET_MALFORMED"]);
        },
      ),
      runs,
    );
  });
});

describe("index generation properties", () => {
  it("txids are consecutive from the base and object ids derive from them, everywhere alike", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: TXID_MAX }),
        fc.array(fc.integer({ min: 0, max: 256 }), { maxLength: 300 }),
        async (base, counts) => {
          const result = await agree(
            (core) => core.allocateIndexes(base, counts),
            (a) => ({ txids: [...a.txids], objectIds: [...a.objectIds] }),
          );
          if (base + counts.length - 1 > TXID_MAX && counts.length > 0) {
            assert.deepEqual(result, { code: "MR_ERR_INDEX_EXHAUSTED", offset: 0 });
            return;
          }
          const expected = { txids: [] as number[], objectIds: [] as number[] };
          counts.forEach((count, i) => {
            expected.txids.push(base + i);
            for (let k = 0; k < count; k++) expected.objectIds.push((base + i) * 256 + k);
          });
          assert.deepEqual(result, { ok: expected });
        },
      ),
      runs,
    );
  });
});
