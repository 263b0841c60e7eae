import { parseArgs } from "node:util";
import { type SimResult, simulate } from "./cluster.js";

/**
 * `npm run sim -- --seeds 100000` runs many seeds; `--seed N` replays one and prints its stats.
 * Exits non-zero on the first failure, printing the seed and the command that replays it.
 */
export function runSeeds(first: number, count: number, onProgress?: (done: number) => void): SimResult[] {
  const failures: SimResult[] = [];
  for (let i = 0; i < count; i++) {
    const seed = first + i;
    const result = simulate({ seed, nodes: seed % 4 === 3 ? 5 : 3 });
    if (!result.ok) failures.push(result);
    onProgress?.(i + 1);
  }
  return failures;
}

function main(): void {
  const { values } = parseArgs({
    options: {
      seeds: { type: "string", default: "1000" },
      first: { type: "string", default: "1" },
      seed: { type: "string" },
    },
  });
  if (values.seed !== undefined) {
    const seed = Number(values.seed);
    const result = simulate({ seed, nodes: seed % 4 === 3 ? 5 : 3 });
    console.log(JSON.stringify(result, null, 2));
    process.exitCode = result.ok ? 0 : 1;
    return;
  }
  const count = Number(values.seeds);
  const first = Number(values.first);
  const started = Date.now();
  const failures = runSeeds(first, count, (done) => {
    if (done % 100 === 0 || done === count) process.stderr.write(`\r${done}/${count} seeds`);
  });
  process.stderr.write("\n");
  for (const failure of failures) {
    console.log(`seed=${failure.seed} FAILED: ${failure.failure}`);
    console.log(`  replay: npm run sim -- --seed ${failure.seed}`);
  }
  console.log(
    `${count - failures.length} passed, ${failures.length} failed (${((Date.now() - started) / 1000).toFixed(1)} s)`,
  );
  process.exitCode = failures.length === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) main();
