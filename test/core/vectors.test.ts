import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { encodeWriteSet, framePayloads, type WriteOp } from "../../src/core/index.js";
import { readUvarint32, writeUvarint32 } from "../../src/core/twin/varint.js";
import {
  ascii,
  assertFails,
  fromHex,
  type Implementations,
  implementations,
  loadVectors,
  toHex,
} from "../helpers/core.js";

interface Failure {
  readonly name: string;
  readonly hex: string;
  readonly code: string;
  readonly offset: number;
}

let impls: Implementations;
before(() => {
  impls = implementations();
});
after(() => impls.close());

describe("crc32c known answers", () => {
  const { cases } = loadVectors<{
    cases: {
      name: string;
      hex?: string;
      ascii?: string;
      repeat?: { byte: number; count: number };
      crc: number;
    }[];
  }>("crc32c.json");

  it("every implementation gives the published checksums", async () => {
    for (const core of impls.all) {
      for (const c of cases) {
        const data = c.repeat
          ? new Uint8Array(c.repeat.count).fill(c.repeat.byte)
          : c.ascii !== undefined
            ? ascii(c.ascii)
            : fromHex(c.hex ?? "");
        assert.equal(await core.crc32c(data), c.crc, `${core.impl}: ${c.name}`);
      }
    }
  });

  it("streams: crc(b, crc(a)) = crc(a ‖ b)", async () => {
    for (const core of impls.all) {
      const first = await core.crc32c(ascii("12345"));
      assert.equal(await core.crc32c(ascii("6789"), first), 0xe3069283, core.impl);
    }
  });
});

describe("frame vectors", () => {
  const vectors = loadVectors<{
    valid: { name: string; events: string[]; frames: string }[];
    invalid: (Omit<Failure, "hex"> & { frames: string; maxFrameBytes?: number })[];
  }>("frames.json");

  it("encodes and splits the published frames", async () => {
    for (const core of impls.all) {
      for (const v of vectors.valid) {
        const events = v.events.map(fromHex);
        assert.equal(toHex(await core.encodeFrames(events)), v.frames, `${core.impl}: ${v.name}`);
        const buf = fromHex(v.frames);
        const payloads = framePayloads(buf, await core.splitFrames(buf)).map(toHex);
        assert.deepEqual(payloads, v.events, `${core.impl}: ${v.name}`);
      }
    }
  });

  it("reports each broken frame with its code and offset", async () => {
    for (const core of impls.all) {
      for (const v of vectors.invalid) {
        await assertFails(
          () => core.splitFrames(fromHex(v.frames), v.maxFrameBytes),
          v.code,
          v.offset,
          `${core.impl}: ${v.name}`,
        );
      }
    }
  });

  it("refuses to encode an event over the limit", async () => {
    for (const core of impls.all) {
      await assertFails(
        () => core.encodeFrames([new Uint8Array(3), new Uint8Array(9)], 8),
        "MR_ERR_FRAME_TOO_LARGE",
        12,
        core.impl,
      );
    }
  });
});

describe("varint and delta vectors", () => {
  const vectors = loadVectors<{
    uvarint32: { value: number; hex: string }[];
    uvarint32_invalid: { name: string; hex: string }[];
    deltas: { values: number[]; hex: string }[];
    deltas_invalid: Failure[];
    deltas_encode_invalid: { name: string; values: number[]; code: string; offset: number }[];
  }>("varint.json");

  it("uvarint32 matches the published LEB128 bytes", () => {
    for (const v of vectors.uvarint32) {
      const out = new Uint8Array(5);
      const end = writeUvarint32(out, 0, v.value);
      assert.equal(toHex(out.subarray(0, end)), v.hex);
      const buf = fromHex(v.hex);
      const cursor = { pos: 0 };
      assert.equal(readUvarint32(buf, buf.length, cursor), v.value);
      assert.equal(cursor.pos, buf.length);
    }
    for (const v of vectors.uvarint32_invalid) {
      const buf = fromHex(v.hex);
      assert.equal(readUvarint32(buf, buf.length, { pos: 0 }), -1, v.name);
    }
  });

  it("deltas encode to the published zigzag varints and back", async () => {
    for (const core of impls.all) {
      for (const v of vectors.deltas) {
        assert.equal(toHex(await core.encodeDeltas(v.values)), v.hex, `${core.impl}: ${v.values}`);
        assert.deepEqual([...(await core.decodeDeltas(fromHex(v.hex)))], v.values, `${core.impl}: ${v.hex}`);
      }
    }
  });

  it("rejects malformed and out-of-range input with its code and offset", async () => {
    for (const core of impls.all) {
      for (const v of vectors.deltas_invalid) {
        await assertFails(
          () => core.decodeDeltas(fromHex(v.hex)),
          v.code,
          v.offset,
          `${core.impl}: ${v.name}`,
        );
      }
      for (const v of vectors.deltas_encode_invalid) {
        await assertFails(() => core.encodeDeltas(v.values), v.code, v.offset, `${core.impl}: ${v.name}`);
      }
      await assertFails(() => core.encodeDeltas([Number.NaN]), "MR_ERR_DELTA_RANGE", 0, `${core.impl}: NaN`);
    }
  });
});

describe("front-coded key vectors", () => {
  const vectors = loadVectors<{
    valid: { keys: string[]; hex: string }[];
    invalid: (Failure & { decodedBytesMax?: number })[];
  }>("keys.json");

  it("encodes and decodes the vectors", async () => {
    for (const core of impls.all) {
      for (const v of vectors.valid) {
        const keys = v.keys.map(ascii);
        assert.equal(toHex(await core.encodeKeys(keys)), v.hex, `${core.impl}: ${v.keys}`);
        const decoded = (await core.decodeKeys(fromHex(v.hex))).map((k) => Buffer.from(k).toString("latin1"));
        assert.deepEqual(decoded, v.keys, `${core.impl}: ${v.hex}`);
      }
    }
  });

  it("rejects malformed and oversized input with its code and offset", async () => {
    for (const core of impls.all) {
      for (const v of vectors.invalid) {
        await assertFails(
          () => core.decodeKeys(fromHex(v.hex), v.decodedBytesMax),
          v.code,
          v.offset,
          `${core.impl}: ${v.name}`,
        );
      }
    }
  });
});

describe("write-set merge vectors", () => {
  type JsonOp = { table: number; key: string; value: string | null };
  const vectors = loadVectors<{
    merge: { name: string; writeSets: JsonOp[][]; hex: string }[];
    invalid: Failure[];
  }>("writesets.json");
  const toOps = (ops: JsonOp[]): WriteOp[] =>
    ops.map((op) => ({
      table: op.table,
      key: ascii(op.key),
      value: op.value === null ? null : ascii(op.value),
    }));

  it("merges to the expected bytes", async () => {
    for (const core of impls.all) {
      for (const v of vectors.merge) {
        const merged = await core.mergeWriteSets(v.writeSets.map((ops) => encodeWriteSet(toOps(ops))));
        assert.equal(toHex(merged), v.hex, `${core.impl}: ${v.name}`);
      }
    }
  });

  it("rejects malformed write-sets", async () => {
    for (const core of impls.all) {
      for (const v of vectors.invalid) {
        await assertFails(
          () => core.mergeWriteSets([fromHex(v.hex)]),
          v.code,
          v.offset,
          `${core.impl}: ${v.name}`,
        );
      }
    }
  });
});

describe("index generation vectors", () => {
  const vectors = loadVectors<{
    valid: { base: number; counts: number[]; txids: number[]; objectIds: number[] }[];
    invalid: { name: string; base: number; counts: number[]; code: string; offset: number }[];
  }>("indexes.json");

  it("allocates txids and object ids", async () => {
    for (const core of impls.all) {
      for (const v of vectors.valid) {
        const { txids, objectIds } = await core.allocateIndexes(v.base, v.counts);
        assert.deepEqual([...txids], v.txids, core.impl);
        assert.deepEqual([...objectIds], v.objectIds, core.impl);
      }
      for (const v of vectors.invalid) {
        await assertFails(
          () => core.allocateIndexes(v.base, v.counts),
          v.code,
          v.offset,
          `${core.impl}: ${v.name}`,
        );
      }
    }
  });
});
