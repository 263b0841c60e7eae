import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { simulate } from "./cluster.js";
import { runSeeds } from "./run.js";

/** CI runs at least 2,000 seeds; `SIM_SEEDS` raises it, `npm run sim -- --seeds N` runs more. */
const SEEDS = Number(process.env.SIM_SEEDS ?? 2000);

describe("deterministic simulation", () => {
  it(`keeps Raft safe and the KV history linearizable over ${SEEDS} seeds`, () => {
    const failures = runSeeds(1, SEEDS);
    const report = failures.map(
      (f) => `seed=${f.seed} ${f.failure}\n  replay: npm run sim -- --seed ${f.seed}`,
    );
    assert.deepEqual(report, []);
  });

  it("replays a seed exactly", () => {
    assert.deepEqual(simulate({ seed: 4242 }), simulate({ seed: 4242 }));
  });

  it("exercises the faults it claims to: elections, crashes, snapshots, client operations, membership, catch-ups", () => {
    let elections = 0;
    let crashes = 0;
    let snapshots = 0;
    let completed = 0;
    const membership = { learnersAdded: 0, promotions: 0, removals: 0, leaderRemovals: 0, transfersDone: 0 };
    let stopped = 0;
    let judged = 0;
    let missedBytesMax = 0;
    let livenessDown = 0;
    let votersMax = 0;
    for (let seed = 1; seed <= 100; seed++) {
      const { stats } = simulate({ seed, nodes: seed % 4 === 3 ? 5 : 3 });
      elections += stats.elections;
      crashes += stats.crashes;
      snapshots += stats.snapshotsSent;
      completed += stats.completed;
      for (const key of Object.keys(membership) as (keyof typeof membership)[])
        membership[key] += stats.membership[key];
      stopped += stats.membership.stopped;
      judged += stats.catchUp.judged;
      missedBytesMax = Math.max(missedBytesMax, stats.catchUp.missedBytesMax);
      if (stats.livenessDown > 0) livenessDown++;
      votersMax = Math.max(votersMax, stats.membership.votersMax);
    }
    assert.ok(elections > 150, `elections ${elections}`);
    assert.ok(crashes > 50, `crashes ${crashes}`);
    assert.ok(snapshots > 10, `snapshots sent ${snapshots}`);
    assert.ok(completed > 10_000, `completed operations ${completed}`);
    // Learners join from an empty log, are promoted, members (the leader among them) removed.
    assert.ok(membership.learnersAdded > 80, `learners added ${membership.learnersAdded}`);
    assert.ok(membership.promotions > 25, `promotions ${membership.promotions}`);
    assert.ok(membership.removals > 70, `removals ${membership.removals}`);
    assert.ok(membership.leaderRemovals > 15, `leaders removing themselves ${membership.leaderRemovals}`);
    assert.ok(stopped > 70, `removed nodes shut down ${stopped}`);
    assert.ok(membership.transfersDone > 90, `completed leadership transfers ${membership.transfersDone}`);
    assert.equal(votersMax, 7, "some cluster grows to 7 voters");
    // The catch-up bound is judged on many episodes, some of them many appends long.
    assert.ok(judged > 500, `catch-up episodes judged ${judged}`);
    assert.ok(missedBytesMax > 10_000, `largest catch-up judged ${missedBytesMax} bytes`);
    assert.ok(livenessDown > 15, `liveness phases with a minority of voters down ${livenessDown}`);
  });
});
