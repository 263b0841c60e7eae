import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { type CoreMode, createCore, MetaraftError, thresholdsDefault } from "../../src/core/index.js";

const data = new TextEncoder().encode("123456789");

describe("core dispatch", () => {
  for (const mode of ["ts", "wasm", "pool", "auto"] as const) {
    it(`mode ${mode} answers both interfaces with the same bytes`, async () => {
      const core = createCore({ mode, pool: { threads: 1 } });
      try {
        assert.equal(core.sync.crc32c(data), 0xe3069283);
        assert.equal(await core.async.crc32c(data), 0xe3069283);
        const frames = core.sync.encodeFrames([data, data]);
        assert.deepEqual(await core.async.encodeFrames([data, data]), frames);
        assert.equal((await core.async.splitFrames(frames)).count, 2);
      } finally {
        await core.close();
      }
    });
  }

  it("auto picks by size at the configured thresholds", async () => {
    const core = createCore({ mode: "auto", thresholds: { crc32c: { wasm: 1024, pool: 1 << 20 } } });
    try {
      assert.equal(core.implFor("crc32c", 1023, "sync"), "ts");
      assert.equal(core.implFor("crc32c", 1024, "sync"), "wasm");
      assert.equal(core.implFor("crc32c", 1 << 20, "sync"), "wasm");
      assert.equal(core.implFor("crc32c", 1 << 20, "async"), "pool");
      assert.equal(core.implFor("frames", thresholdsDefault.frames.wasm - 1, "sync"), "ts");
      const big = new Uint8Array(1 << 20).fill(1);
      assert.equal(await core.async.crc32c(big), core.sync.crc32c(big));
    } finally {
      await core.close();
    }
  });

  it("forced modes take one implementation", async () => {
    const expected = { ts: "ts", wasm: "wasm", pool: "pool" } as const;
    for (const mode of ["ts", "wasm", "pool"] as const) {
      const core = createCore({ mode, pool: { threads: 1 } });
      assert.equal(core.implFor("merge", 1 << 30, "async"), expected[mode]);
      assert.equal(core.implFor("merge", 0, "async"), expected[mode]);
      await core.close();
    }
  });

  it("an unknown mode is a clear error", () => {
    assert.throws(
      () => createCore({ mode: "gpu" as CoreMode }),
      (error) => error instanceof MetaraftError && error.code === "MR_ERR_INVALID_ARGUMENT",
    );
  });

  it("a closed pool refuses work with POOL_CLOSED", async () => {
    const core = createCore({ mode: "pool", pool: { threads: 1 } });
    assert.equal(await core.async.crc32c(data), 0xe3069283);
    await core.close();
    await assert.rejects(
      core.async.crc32c(data),
      (error) => error instanceof MetaraftError && error.code === "MR_ERR_POOL_CLOSED",
    );
  });
});
