import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  type CoreSync,
  FRAME_HEADER_BYTES,
  framePayloads,
  MetaraftError,
  tsCore,
  wasmCore,
} from "../../src/core/index.js";
import { encodeFrame, encodeFrameBatch, FrameDecoder } from "../../src/transport/index.js";

const runs = { numRuns: Number(process.env.PROPERTY_RUNS ?? 150) };
const cores: readonly [string, CoreSync][] = [
  ["ts", tsCore],
  ["wasm", wasmCore()],
];

/** Cuts `bytes` at the given points (taken modulo its length), in order. */
function cut(bytes: Uint8Array, points: readonly number[]): Uint8Array[] {
  const at = [...new Set(points.map((p) => (bytes.length === 0 ? 0 : p % bytes.length)))].sort(
    (a, b) => a - b,
  );
  const chunks: Uint8Array[] = [];
  let start = 0;
  for (const p of at) {
    chunks.push(bytes.subarray(start, p));
    start = p;
  }
  chunks.push(bytes.subarray(start));
  return chunks;
}

function decodeAll(
  chunks: readonly Uint8Array[],
  frameBytesMax: number,
  core: CoreSync = tsCore,
): { payloads: Uint8Array[]; error: MetaraftError | undefined; bufferedMax: number } {
  const payloads: Uint8Array[] = [];
  const decoder = new FrameDecoder({ frameBytesMax, core, onFrame: (p) => payloads.push(p) });
  let error: MetaraftError | undefined;
  let bufferedMax = 0;
  for (const chunk of chunks) {
    error = decoder.push(chunk);
    bufferedMax = Math.max(bufferedMax, decoder.bufferedBytes);
    if (error) break;
  }
  return { payloads, error, bufferedMax };
}

const payloadsArb = fc.array(
  fc.oneof(
    { arbitrary: fc.uint8Array({ maxLength: 200 }), weight: 10 },
    { arbitrary: fc.constant(new Uint8Array(0)), weight: 1 },
    { arbitrary: fc.uint8Array({ minLength: 3000, maxLength: 5000 }), weight: 1 },
  ),
  { maxLength: 40 },
);

describe("FrameDecoder", () => {
  for (const [name, core] of cores) {
    it(`yields the same payloads however the stream is cut (${name} core)`, () => {
      fc.assert(
        fc.property(payloadsArb, fc.array(fc.nat(), { maxLength: 60 }), (payloads, points) => {
          const stream = encodeFrameBatch(payloads, 8192, core);
          const { payloads: out, error, bufferedMax } = decodeAll(cut(stream, points), 8192, core);
          assert.equal(error, undefined);
          assert.deepEqual(out, payloads);
          assert.ok(bufferedMax <= FRAME_HEADER_BYTES + 8192, `buffered ${bufferedMax}`);
        }),
        runs,
      );
    });
  }

  it("also decodes a stream fed one byte at a time, and agrees with splitFrames", () => {
    const payloads = [new Uint8Array([1, 2, 3]), new Uint8Array(0), new Uint8Array(300).fill(7)];
    const stream = encodeFrameBatch(payloads);
    const bytes = [...stream].map((b) => new Uint8Array([b]));
    assert.deepEqual(decodeAll(bytes, 1000).payloads, payloads);
    assert.deepEqual(framePayloads(stream, tsCore.splitFrames(stream)), payloads);
  });

  it("hands out copies that later chunks never overwrite", () => {
    const stream = encodeFrameBatch([new Uint8Array([1, 1, 1]), new Uint8Array([2, 2, 2])]);
    const out: Uint8Array[] = [];
    const decoder = new FrameDecoder({ onFrame: (p) => out.push(p) });
    decoder.push(stream);
    stream.fill(0xee);
    assert.deepEqual(out, [new Uint8Array([1, 1, 1]), new Uint8Array([2, 2, 2])]);
  });

  it("reports a corrupted payload as FRAME_CORRUPT at that frame, after delivering the ones before", () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 100 }), { minLength: 1, maxLength: 10 }),
        fc.nat(),
        fc.nat(),
        fc.integer({ min: 0, max: 7 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (payloads, which, at, bit, points) => {
          const k = which % payloads.length;
          const stream = encodeFrameBatch(payloads);
          let start = 0;
          for (let i = 0; i < k; i++) start += FRAME_HEADER_BYTES + payloads[i]!.length;
          const target = payloads[k]!;
          stream[start + FRAME_HEADER_BYTES + (at % target.length)]! ^= 1 << bit;
          const { payloads: out, error } = decodeAll(cut(stream, points), 1000);
          assert.ok(error instanceof MetaraftError);
          assert.equal(error.code, "MR_ERR_FRAME_CORRUPT");
          assert.equal(error.offset, start);
          assert.deepEqual(out, payloads.slice(0, k));
        },
      ),
      runs,
    );
  });

  it("reports a damaged checksum field as FRAME_CORRUPT and keeps reporting it", () => {
    const stream = encodeFrame(new Uint8Array([9, 8, 7]));
    stream[6]! ^= 0x10;
    const out: Uint8Array[] = [];
    const decoder = new FrameDecoder({ onFrame: (p) => out.push(p) });
    const error = decoder.push(stream);
    assert.equal(error?.code, "MR_ERR_FRAME_CORRUPT");
    assert.equal(decoder.push(encodeFrame(new Uint8Array([1]))), error, "a failed stream stays failed");
    assert.deepEqual(out, []);
  });

  it("reports a version other than 1 as FRAME_VERSION as soon as the header is in", () => {
    const stream = encodeFrame(new Uint8Array(100));
    stream[4] = 2;
    const decoder = new FrameDecoder({ onFrame: () => assert.fail("delivered a bad frame") });
    assert.equal(decoder.push(stream.subarray(0, FRAME_HEADER_BYTES))?.code, "MR_ERR_FRAME_VERSION");
  });

  it("rejects an oversized length from the header alone, without allocating it", () => {
    const header = new Uint8Array([0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0]);
    const decoder = new FrameDecoder({ onFrame: () => assert.fail("delivered") });
    for (let i = 0; i < FRAME_HEADER_BYTES - 1; i++) {
      assert.equal(decoder.push(header.subarray(i, i + 1)), undefined, `byte ${i}`);
    }
    const error = decoder.push(header.subarray(FRAME_HEADER_BYTES - 1));
    assert.equal(error?.code, "MR_ERR_FRAME_TOO_LARGE");
    assert.equal(error?.offset, 0);
    assert.equal(decoder.bufferedBytes, 0, "no payload buffer was allocated");
  });

  it("accepts a frame of exactly frameBytesMax and rejects one byte more", () => {
    const max = 64;
    assert.equal(decodeAll([encodeFrame(new Uint8Array(max))], max).payloads.length, 1);
    const over = decodeAll([encodeFrame(new Uint8Array(max + 1))], max);
    assert.equal(over.error?.code, "MR_ERR_FRAME_TOO_LARGE");
    assert.deepEqual(over.payloads, []);
    assert.equal(over.bufferedMax, 0);
  });

  it("applies a raised frameBytesMax from the next header on", () => {
    const out: Uint8Array[] = [];
    const decoder: FrameDecoder = new FrameDecoder({
      frameBytesMax: 16,
      onFrame: (p) => {
        out.push(p);
        decoder.frameBytesMax = 1000;
      },
    });
    const stream = encodeFrameBatch([new Uint8Array(10), new Uint8Array(500)]);
    assert.equal(decoder.push(stream), undefined);
    assert.deepEqual(
      out.map((p) => p.length),
      [10, 500],
    );
  });

  it("delivers nothing after halt()", () => {
    const out: Uint8Array[] = [];
    const decoder: FrameDecoder = new FrameDecoder({
      onFrame: (p) => {
        out.push(p);
        decoder.halt();
      },
    });
    decoder.push(encodeFrameBatch([new Uint8Array([1]), new Uint8Array([2])]));
    assert.deepEqual(out, [new Uint8Array([1])]);
  });

  it("never throws on random bytes: each push returns undefined or a coded error", () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), (chunks) => {
        const { error, bufferedMax } = decodeAll(chunks, 256);
        if (error !== undefined) {
          assert.ok(
            ["MR_ERR_FRAME_TOO_LARGE", "MR_ERR_FRAME_VERSION", "MR_ERR_FRAME_CORRUPT"].includes(error.code),
          );
        }
        assert.ok(bufferedMax <= FRAME_HEADER_BYTES + 256);
      }),
      runs,
    );
  });

  it("refuses to encode a payload above frameBytesMax", () => {
    assert.throws(
      () => encodeFrame(new Uint8Array(11), 10),
      (e: unknown) => e instanceof MetaraftError && e.code === "MR_ERR_FRAME_TOO_LARGE",
    );
  });
});
