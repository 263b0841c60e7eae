import { parseArgs } from "node:util";
import { type SimResult, simulate } from "./cluster.js";

/**
 * `npm run sim -- --seeds 100000 [--first N]` runs many seeds (from 1, or N) and prints what
 * they exercised; `--seed N` replays one and prints its stats, `--seed N --trace` its schedule
 * (elections, crashes, partitions, membership changes) too. Exits non-zero if any seed fails,
 * printing each failing seed and the command that replays it.
 */
export function runSeeds(
  first: number,
  count: number,
  onProgress?: (done: number) => void,
  onResult?: (result: SimResult) => void,
): SimResult[] {
  const failures: SimResult[] = [];
  for (let i = 0; i < count; i++) {
    const seed = first + i;
    const result = simulate({ seed, nodes: seed % 4 === 3 ? 5 : 3 });
    if (!result.ok) failures.push(result);
    onResult?.(result);
    onProgress?.(i + 1);
  }
  return failures;
}

/** Totals over many seeds, for the summary line. */
class Totals {
  learnersAdded = 0;
  promotions = 0;
  removals = 0;
  leaderRemovals = 0;
  transfersDone = 0;
  judged = 0;
  abandoned = 0;
  missedBytesMax = 0;
  excessBytesMax = Number.NEGATIVE_INFINITY;
  livenessDown = 0;

  add({ stats }: SimResult): void {
    const m = stats.membership;
    this.learnersAdded += m.learnersAdded;
    this.promotions += m.promotions;
    this.removals += m.removals;
    this.leaderRemovals += m.leaderRemovals;
    this.transfersDone += m.transfersDone;
    this.judged += stats.catchUp.judged;
    this.abandoned += stats.catchUp.abandoned;
    this.missedBytesMax = Math.max(this.missedBytesMax, stats.catchUp.missedBytesMax);
    if (stats.catchUp.judged > 0)
      this.excessBytesMax = Math.max(this.excessBytesMax, stats.catchUp.excessBytesMax);
    if (stats.livenessDown > 0) this.livenessDown++;
  }

  toString(): string {
    return (
      `membership: ${this.learnersAdded} learners added, ${this.promotions} promoted, ${this.removals} removed ` +
      `(${this.leaderRemovals} by themselves as leader), ${this.transfersDone} leadership transfers done; ` +
      `catch-up: ${this.judged} episodes judged (${this.abandoned} abandoned: a link fault, a crash or a new leader), the largest ` +
      `missing ${this.missedBytesMax} bytes, sent - 2 x missed at most ${this.excessBytesMax} bytes; ` +
      `${this.livenessDown} liveness phases without a minority of the voters`
    );
  }
}

function main(): void {
  const { values } = parseArgs({
    options: {
      seeds: { type: "string", default: "1000" },
      first: { type: "string", default: "1" },
      seed: { type: "string" },
      trace: { type: "boolean", default: false },
    },
  });
  if (values.seed !== undefined) {
    const seed = Number(values.seed);
    const trace = values.trace ? (line: string) => console.log(line) : undefined;
    const result = simulate({ seed, nodes: seed % 4 === 3 ? 5 : 3, ...(trace ? { trace } : {}) });
    console.log(JSON.stringify(result, null, 2));
    process.exitCode = result.ok ? 0 : 1;
    return;
  }
  const count = Number(values.seeds);
  const first = Number(values.first);
  const started = Date.now();
  const totals = new Totals();
  const failures = runSeeds(
    first,
    count,
    (done) => {
      if (done % 100 === 0 || done === count) process.stderr.write(`\r${done}/${count} seeds`);
    },
    (result) => totals.add(result),
  );
  process.stderr.write("\n");
  for (const failure of failures) {
    console.log(`seed=${failure.seed} FAILED: ${failure.failure}`);
    console.log(`  replay: npm run sim -- --seed ${failure.seed}`);
  }
  console.log(totals.toString());
  console.log(
    `${count - failures.length} passed, ${failures.length} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  process.exitCode = failures.length === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) main();
