/**
 * Runs every benchmark, each in its own process so that one's heap, JIT state and worker
 * threads cannot colour the next one's numbers. Arguments (--quick, --filter) are passed on.
 *
 *   npm run bench [-- --quick]
 */
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const benchmarks = [
  "core",
  "raft",
  "cluster",
  "ledger",
  "reads",
  "faults",
  "queue",
  "sessions",
  "kv",
  "locks",
] as const;

let failed = 0;
for (const name of benchmarks) {
  console.log(`\n=== bench:${name} ===`);
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  const { status, signal } = spawnSync(process.execPath, [script, ...process.argv.slice(2)], {
    stdio: "inherit",
  });
  if (status !== 0) {
    console.error(`bench:${name} failed (${signal ?? `exit ${status}`})`);
    failed++;
  }
}
process.exitCode = failed === 0 ? 0 : 1;
