import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runNodeSeeds } from "./run.js";

/** The second half of CI's node-simulator seeds, in its own file so the runner runs it beside the first. */
const SEEDS = Number(process.env.NODE_SIM_SEEDS ?? 250);

describe("the node simulator, more seeds", () => {
  it(`seeds ${SEEDS + 1}..${2 * SEEDS}`, async () => {
    const failures = await runNodeSeeds(SEEDS + 1, SEEDS);
    assert.deepEqual(
      failures.map(
        (f) => `seed=${f.seed} ${f.failure}\n  replay: node dist/test/sim/node/run.js --seed ${f.seed}`,
      ),
      [],
    );
  });
});
