import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { describe, it } from "node:test";
import { nextTurn, sleep, systemRuntime } from "../src/runtime.js";
import { SRC, sourceFiles } from "./helpers/sources.js";

const src = SRC;

/** What only the runtime and the process entry points may touch: clock, timers, randomness. */
const AMBIENT =
  /\b(Date\.now|performance\.now|Math\.random|setTimeout|setInterval|setImmediate|clearTimeout|clearInterval|clearImmediate|queueMicrotask)\b/;

/** The process entry points: they own the real process, and pass `systemRuntime` down. */
const allowed = (path: string): boolean =>
  path === "runtime.ts" || path.startsWith("cli/") || path.endsWith("-main.ts");

describe("the runtime seam", () => {
  it("nothing under src/ but the runtime and the entry points reads the clock, schedules a timer or draws a random number", () => {
    const found: string[] = [];
    for (const file of sourceFiles(src)) {
      const path = relative(src, file);
      if (allowed(path)) continue;
      readFileSync(file, "utf8")
        .split("\n")
        .forEach((line, i) => {
          const code = line.replace(/\/\/.*$/, "").replace(/^\s*\*.*$/, "");
          if (AMBIENT.test(code)) found.push(`${path}:${i + 1}: ${line.trim()}`);
        });
    }
    assert.deepEqual(found, []);
  });

  it("the system runtime keeps time, schedules and cancels", async () => {
    const t0 = systemRuntime.elapsed();
    await sleep(systemRuntime, 5);
    assert.ok(systemRuntime.elapsed() - t0 >= 4);
    let fired = 0;
    const cancelled = systemRuntime.after(1, () => fired++);
    cancelled.cancel();
    let ticks = 0;
    const every = systemRuntime.every(1, () => ticks++);
    await sleep(systemRuntime, 20);
    every.cancel();
    const after = ticks;
    await sleep(systemRuntime, 10);
    assert.equal(fired, 0);
    assert.ok(after >= 2, `${after} ticks`);
    assert.equal(ticks, after, "no tick after cancel");
    await nextTurn(systemRuntime);
    const r = systemRuntime.random();
    assert.ok(r >= 0 && r < 1);
  });
});
