import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { encodeWriteSet, WasmCore, wasmPath } from "../../src/core/index.js";

/** The limit this test states: 64 KiB calls never need more than 1 MiB of linear memory. */
const MEMORY_BYTES_LIMIT = 1024 * 1024;
const CALLS = 10_000;
const INPUT_BYTES = 64 * 1024;

describe("WASM arena", () => {
  it(`${CALLS} calls with 64 KiB inputs keep linear memory under 1 MiB and stop growing`, () => {
    const core = new WasmCore(new WebAssembly.Module(readFileSync(wasmPath)));
    const data = new Uint8Array(INPUT_BYTES).map((_, i) => (i * 31) & 0xff);
    const events = Array.from({ length: INPUT_BYTES / 256 }, (_, i) => data.subarray(i * 256, i * 256 + 247));
    const frames = core.encodeFrames(events);
    const ids = Array.from({ length: INPUT_BYTES / 8 }, (_, i) => 1e12 + i * 3);
    const deltas = core.encodeDeltas(ids);
    const keys = Array.from({ length: 2048 }, (_, i) => new TextEncoder().encode(`volume/bucket/key-${i}`));
    const frontCoded = core.encodeKeys(keys);
    const writeSet = encodeWriteSet(
      Array.from({ length: 1024 }, (_, i) => ({
        table: i % 3,
        key: data.subarray(i % 200, (i % 200) + 16),
        value: data.subarray(0, 40),
      })),
    );
    assert.ok(writeSet.length >= INPUT_BYTES);

    const calls: (() => unknown)[] = [
      () => core.crc32c(data),
      () => core.encodeFrames(events),
      () => core.splitFrames(frames),
      () => core.encodeDeltas(ids),
      () => core.decodeDeltas(deltas),
      () => core.encodeKeys(keys),
      () => core.decodeKeys(frontCoded),
      () => core.mergeWriteSets([writeSet]),
    ];
    let afterWarmUp = 0;
    for (let i = 0; i < CALLS; i++) {
      calls[i % calls.length]!();
      if (i === calls.length - 1) afterWarmUp = core.memoryBytes;
    }
    assert.ok(core.memoryBytes <= MEMORY_BYTES_LIMIT, `linear memory is ${core.memoryBytes} bytes`);
    assert.equal(core.memoryBytes, afterWarmUp, "memory grew after every path had run once");
  });
});
