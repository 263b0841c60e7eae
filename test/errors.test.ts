import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { errorRegistry, MetaraftError } from "../src/errors.js";

describe("error registry", () => {
  const documented = readFileSync(new URL("../../docs/errors.md", import.meta.url), "utf8");
  const rows = new Map(
    [...documented.matchAll(/^\| `(MR_ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])]),
  );

  it("documents every code with its HTTP status, and nothing else", () => {
    assert.deepEqual([...rows.keys()].sort(), Object.keys(errorRegistry).sort());
    for (const [code, spec] of Object.entries(errorRegistry)) {
      assert.equal(rows.get(code), spec.httpStatus, code);
    }
  });

  it("survives a trip through JSON with its code and offset", () => {
    const error = new MetaraftError("MR_ERR_FRAME_CORRUPT", "test", { offset: 18 });
    const back = MetaraftError.fromJSON(JSON.parse(JSON.stringify(error)));
    assert.equal(back.code, "MR_ERR_FRAME_CORRUPT");
    assert.equal(back.offset, 18);
    assert.equal(back.message, error.message);
    assert.equal(MetaraftError.fromJSON({ code: "NOPE" }).code, "MR_ERR_INTERNAL");
  });
});
