import { parseArgs } from "node:util";
import { type NodeSimResult, simulateNodes } from "./simulation.js";

/**
 * `node dist/test/sim/node/run.js --seeds 500` runs the node simulator over many seeds;
 * `--seed N` replays one and prints its stats. Exits non-zero on a failure, with the seed.
 */
export async function runNodeSeeds(
  first: number,
  count: number,
  onProgress?: (done: number, result: NodeSimResult) => void,
): Promise<NodeSimResult[]> {
  const failures: NodeSimResult[] = [];
  for (let i = 0; i < count; i++) {
    const seed = first + i;
    const result = await simulateNodes({ seed, nodes: seed % 4 === 3 ? 5 : 3 });
    if (!result.ok) failures.push(result);
    onProgress?.(i + 1, result);
  }
  return failures;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seeds: { type: "string", default: "200" },
      first: { type: "string", default: "1" },
      seed: { type: "string" },
    },
  });
  if (values.seed !== undefined) {
    const seed = Number(values.seed);
    const result = await simulateNodes({ seed, nodes: seed % 4 === 3 ? 5 : 3 });
    console.log(JSON.stringify(result, null, 2));
    process.exitCode = result.ok ? 0 : 1;
    return;
  }
  const count = Number(values.seeds);
  const first = Number(values.first);
  const started = performance.now();
  const sessions = { opened: 0, died: 0, ended: 0, told: 0 };
  const failures = await runNodeSeeds(first, count, (done, result) => {
    for (const k of Object.keys(sessions) as (keyof typeof sessions)[])
      sessions[k] += result.stats.sessions[k];
    if (done % 10 === 0 || done === count) process.stderr.write(`\r${done}/${count} seeds`);
  });
  process.stderr.write("\n");
  for (const failure of failures) {
    console.log(`seed=${failure.seed} FAILED: ${failure.failure}`);
    console.log(`  replay: node dist/test/sim/node/run.js --seed ${failure.seed}`);
  }
  console.log(
    `sessions: ${sessions.opened} opened, ${sessions.died} clients died, ${sessions.ended} ended, ${sessions.told} clients told expired`,
  );
  console.log(
    `${count - failures.length} passed, ${failures.length} failed (${((performance.now() - started) / 1000).toFixed(1)} s)`,
  );
  process.exitCode = failures.length === 0 ? 0 : 1;
}

if (import.meta.url === `file://${process.argv[1]}`) void main();
