/** Helpers the benchmarks share: argument checks and per-process CPU from /proc. */
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

export function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer: ${text}`);
  return n;
}

/** Clock ticks per second for /proc/<pid>/stat (normally 100). */
export const clockTicks = (() => {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process (all its threads), in seconds; undefined if it is gone. */
export function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 2 (comm) is in parentheses and may hold spaces: count fields after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    // Fields 14 (utime) and 15 (stime), counting from 1; `fields` starts at field 3.
    return (Number(fields[14 - 3]) + Number(fields[15 - 3])) / clockTicks;
  } catch {
    return undefined;
  }
}
