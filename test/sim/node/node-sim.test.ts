import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { runNodeSeeds } from "./run.js";
import { BUGGIFY_POINTS, simulateNodes } from "./simulation.js";

/**
 * The node simulator in CI: `NODE_SIM_SEEDS` seeds (default 250 here, and 250 more in
 * node-sim-more.test.ts, which the runner runs beside this one); `node dist/test/sim/node/run.js
 * --seeds N` runs more.
 */
const SEEDS = Number(process.env.NODE_SIM_SEEDS ?? 250);

describe("the node simulator: the real host, write path and namespace from one seed", () => {
  it(`keeps election safety, a linearizable history, unique object ids, identical replicas and honest session expiry over seeds 1..${SEEDS}`, async () => {
    const failures = await runNodeSeeds(1, SEEDS);
    assert.deepEqual(
      failures.map(
        (f) => `seed=${f.seed} ${f.failure}\n  replay: node dist/test/sim/node/run.js --seed ${f.seed}`,
      ),
      [],
    );
  });

  it("replays a seed exactly", async () => {
    const a = await simulateNodes({ seed: 77 });
    const b = await simulateNodes({ seed: 77 });
    assert.deepEqual(a, b);
  });

  it("exercises what it claims to: crashes, state copies, transfers, membership changes, fault points, both execution modes", async () => {
    const totals = {
      crashes: 0,
      restores: 0,
      transfers: 0,
      membershipChanges: 0,
      completed: 0,
      sessionsDied: 0,
      sessionsEnded: 0,
    };
    const modes = new Set<string>();
    const fired = new Map<string, number>();
    // Forty seeds: which faults a seed draws depends on the whole schedule, and twenty drew
    // few membership changes once session clients joined the workload.
    for (let seed = 1; seed <= 40; seed++) {
      const { stats } = await simulateNodes({ seed, nodes: seed % 4 === 3 ? 5 : 3 });
      totals.crashes += stats.crashes;
      totals.restores += stats.restores;
      totals.transfers += stats.transfers;
      totals.membershipChanges += stats.membershipChanges;
      totals.completed += stats.completed;
      totals.sessionsDied += stats.sessions.died;
      totals.sessionsEnded += stats.sessions.ended;
      modes.add(stats.mode);
      for (const [point, n] of Object.entries(stats.buggified)) fired.set(point, (fired.get(point) ?? 0) + n);
    }
    for (const point of BUGGIFY_POINTS)
      assert.ok((fired.get(point) ?? 0) > 0, `fault point ${point} never fired`);
    assert.ok(totals.crashes >= 20, `crashes ${totals.crashes}`);
    assert.ok(totals.restores >= 10, `state copies restored ${totals.restores}`);
    assert.ok(totals.transfers >= 10, `leadership transfers ${totals.transfers}`);
    assert.ok(totals.membershipChanges >= 10, `membership changes ${totals.membershipChanges}`);
    assert.ok(totals.completed >= 2_000, `completed operations ${totals.completed}`);
    assert.deepEqual([...modes].sort(), ["leader-execution", "replicated-request"]);
    assert.ok(totals.sessionsDied >= 20, `session clients that died ${totals.sessionsDied}`);
    assert.ok(totals.sessionsEnded >= totals.sessionsDied, `sessions ended ${totals.sessionsEnded}`);
  });
});
