/**
 * Helpers the benchmarks share: argument checks, per-process CPU from /proc, latency
 * histograms, the key-create load of the cluster benchmarks and their progress line.
 */
import { type ChildProcess, execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import cliProgress from "cli-progress";
import hdr from "hdr-histogram-js";
import type { MetaraftClient } from "../src/client/client.js";

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

/** `part` of `whole` seconds as % of one core, one decimal. */
export const pct = (cpuSeconds: number, wallSeconds: number): number =>
  Number(((cpuSeconds / wallSeconds) * 100).toFixed(1));

/** An error's stable code (a MetaraftError's), else its class name. */
export const errorCode = (error: unknown): string =>
  typeof (error as { code?: unknown })?.code === "string"
    ? (error as { code: string }).code
    : error instanceof Error
      ? error.name
      : "unknown";

export interface LatencyUs {
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

/** A histogram wide enough for any latency in µs a benchmark sees (2 minutes, 3 digits). */
export function latencyHistogram(): hdr.Histogram {
  return hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });
}

/** Percentiles of `histogram` (empty: zeros). */
export function latencySummary(histogram: hdr.Histogram): LatencyUs {
  const n = histogram.totalCount;
  // HdrHistogram reports a bucket's highest equivalent value, which can exceed the largest
  // recorded value: clamp to it.
  const at = (p: number) => (n > 0 ? Math.min(histogram.getValueAtPercentile(p), histogram.maxValue) : 0);
  return {
    p50: at(50),
    p99: at(99),
    p999: at(99.9),
    max: n > 0 ? histogram.maxValue : 0,
    mean: n > 0 ? Math.round(histogram.mean) : 0,
  };
}

/** The median run by `rate`, whole (its latencies and CPU belong to the same run). */
export function medianRun<T>(runs: readonly T[], rate: (run: T) => number): T {
  const sorted = [...runs].sort((a, b) => rate(a) - rate(b));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

export interface LoadOptions {
  /** The connections; loop i uses clients[i % clients.length]. */
  readonly clients: readonly MetaraftClient[];
  readonly volume: string;
  readonly bucket: string;
  /** Open-key + commit-key pairs in flight at once (one loop each). */
  readonly inflight: number;
}

/**
 * A closed-loop load: `inflight` loops, each running `run(loop, n)` one after the other until
 * `stop()`. An operation counts (latency, per-second tally) only if it started and ended inside
 * the measured window; errors are counted by code, and a loop that failed waits 10 ms so that it
 * does not spin on a node that refuses at once.
 */
export abstract class ClosedLoopLoad {
  readonly histogram = latencyHistogram();
  readonly errorCodes: Record<string, number> = {};
  /** Operations counted (inside the window). */
  completed = 0;
  errors = 0;
  /** Date.now() when the window opened (0: not yet). */
  measureStart = 0;
  readonly inflight: number;
  /** Operations completed in each second of the window: shows stalls an average hides. */
  readonly #perSecond: number[] = [];
  #measuring = false;
  #stop = false;
  #loops: Promise<void>[] = [];

  constructor(inflight: number) {
    this.inflight = inflight;
  }

  protected abstract run(loop: number, n: number): Promise<unknown>;

  get measuring(): boolean {
    return this.#measuring;
  }

  start(): void {
    this.#loops = Array.from({ length: this.inflight }, (_, i) => this.#loop(i));
  }

  measure(on: boolean): void {
    if (on) this.measureStart = Date.now();
    this.#measuring = on;
  }

  /** Stops every loop once its operation in flight is done. */
  async stop(): Promise<void> {
    this.#stop = true;
    await Promise.all(this.#loops);
  }

  /** Operations per whole second of a window `elapsed` seconds long. */
  bySecond(elapsed: number): number[] {
    return Array.from({ length: Math.round(elapsed) }, (_, i) => this.#perSecond[i] ?? 0);
  }

  async #loop(loop: number): Promise<void> {
    for (let n = 0; !this.#stop; n++) {
      const started = process.hrtime.bigint();
      const counted = this.#measuring;
      try {
        await this.run(loop, n);
        if (counted && this.#measuring) {
          this.histogram.recordValue(Math.max(1, Number((process.hrtime.bigint() - started) / 1000n)));
          this.completed++;
          const second = Math.floor((Date.now() - this.measureStart) / 1000);
          this.#perSecond[second] = (this.#perSecond[second] ?? 0) + 1;
        }
      } catch (error) {
        if (this.#measuring || counted) {
          this.errors++;
          const code = errorCode(error);
          this.errorCodes[code] = (this.errorCodes[code] ?? 0) + 1;
        }
        await new Promise((r) => setTimeout(r, 10));
      }
    }
  }
}

/**
 * The key-create load of bench:cluster and bench:ledger: `inflight` loops, each doing
 * openKey + commitKey on unique keys (like Ozone's freon `omkg`) until `stop()`. Only pairs
 * that start and end inside the measured window (`measure(true)` .. `measure(false)`) count.
 */
export class KeyCreateLoad extends ClosedLoopLoad {
  /** Successful requests (an open-key or a commit-key), measured or not. */
  requestsDone = 0;
  readonly #options: LoadOptions;

  constructor(options: LoadOptions) {
    super(options.inflight);
    this.#options = options;
  }

  /** Key creates counted (inside the window). */
  get creates(): number {
    return this.completed;
  }

  protected async run(loopId: number, n: number): Promise<void> {
    const { clients, volume, bucket } = this.#options;
    const client = clients[loopId % clients.length]!;
    const key = `k-${loopId}-${n}`;
    const { openKeyId } = await client.openKey(volume, bucket, key, 1024);
    this.requestsDone++;
    await client.commitKey(volume, bucket, key, openKeyId, { size: 1024, etag: `e-${loopId}-${n}` });
    this.requestsDone++;
  }
}

/** The progress line every cluster benchmark shows: case, seconds measured, phase, rate (in `unit`). */
export function progressBar(unit = "creates/s"): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    {
      format: `{label} {bar} {value}/{total} s  {phase}  {rate}${unit ? ` ${unit}` : ""}`,
      formatValue: (v, _options, type) => (type === "value" ? Number(v).toFixed(1) : String(v)),
      hideCursor: true,
      noTTYOutput: true,
      notTTYSchedule: 2000,
      stopOnComplete: false,
      clearOnComplete: false,
    },
    cliProgress.Presets.shades_classic,
  );
}

/** The machine a result was measured on. */
export function machineInfo() {
  return {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    memory_gb: Number((totalmem() / 2 ** 30).toFixed(1)),
    node: process.version,
    clock_ticks_per_s: clockTicks,
    date: new Date().toISOString(),
  };
}

/**
 * The whole machine's CPU time (all cores, /proc/stat) in seconds: `busy` (everything but idle,
 * iowait and steal) and `steal` (time a hypervisor ran something else while this machine wanted
 * to run); undefined where there is no /proc. Beside the benchmark's own processes, `busy` shows
 * how much of the machine other work took during a window.
 */
export function machineCpuSeconds(): { busy: number; steal: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!;
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is in user).
    const [, user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).map(Number);
    return {
      busy: ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) / clockTicks,
      steal: (steal ?? 0) / clockTicks,
    };
  } catch {
    return undefined;
  }
}

/** % of one core a window took of the whole machine: busy, ours (`oursPct`), others (busy − ours), steal. */
export interface MachineShare {
  readonly busy_pct: number;
  readonly ours_pct: number;
  readonly others_pct: number;
  readonly steal_pct: number;
}

/** What a window of `elapsed` s took of the machine, from `machineCpuSeconds` at its ends (null: no /proc). */
export function machineShare(
  before: ReturnType<typeof machineCpuSeconds>,
  after: ReturnType<typeof machineCpuSeconds>,
  oursPct: number,
  elapsed: number,
): MachineShare | null {
  if (!before || !after) return null;
  const busy = pct(after.busy - before.busy, elapsed);
  const ours = Number(oursPct.toFixed(1));
  return {
    busy_pct: busy,
    ours_pct: ours,
    // Both are sampled a moment apart: a small negative difference is noise.
    others_pct: Math.max(0, Number((busy - ours).toFixed(1))),
    steal_pct: pct(after.steal - before.steal, elapsed),
  };
}

/**
 * Waits until the machine is quiet: until a one-second sample of its busy CPU (with nothing of
 * the benchmark running) is at most `busyPctMax` % of one core, or `limitMs` passed. On a machine
 * shared with other work this keeps a case from starting in the middle of someone's build; it
 * cannot keep the work from starting later, so the window's own figure is recorded as well.
 * Returns how long it waited and the last sample.
 */
export async function waitForQuiet(
  busyPctMax: number,
  limitMs: number,
): Promise<{ waited_ms: number; busy_pct: number | null }> {
  const t0 = Date.now();
  for (;;) {
    const a = machineCpuSeconds();
    const s0 = process.hrtime.bigint();
    await new Promise((r) => setTimeout(r, 1000));
    const b = machineCpuSeconds();
    const wall = Number(process.hrtime.bigint() - s0) / 1e9;
    const busy = a && b ? pct(b.busy - a.busy, wall) : null;
    if (busy === null || busy <= busyPctMax || Date.now() - t0 >= limitMs) {
      return { waited_ms: Date.now() - t0, busy_pct: busy };
    }
  }
}

/**
 * Shows a key-create load's warm-up, then its seconds measured and rate, every 250 ms until
 * the returned interval is cleared.
 */
export function showLoadProgress(
  load: KeyCreateLoad,
  bar: cliProgress.SingleBar,
  label: string,
  seconds: number,
): NodeJS.Timeout {
  return setInterval(() => {
    if (!load.measuring) {
      bar.update(0, { label, phase: "warm-up", rate: "-" });
      return;
    }
    const elapsed = (Date.now() - load.measureStart) / 1000;
    bar.update(Math.min(elapsed, seconds), {
      label,
      phase: "measuring",
      rate: elapsed > 0 ? (load.creates / elapsed).toFixed(0) : "-",
    });
  }, 250);
}

/** Writes `bench/results/NAME.json` (a quick or filtered run names a `.partial` file, never the reference). */
export function writeResults(name: string, result: unknown): void {
  const out = new URL(`../../bench/results/${name}.json`, import.meta.url);
  mkdirSync(new URL(".", out), { recursive: true });
  writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stderr.write(`wrote ${out.pathname}\n`);
}

/**
 * Polls `check` every `pollMs` until it is true (a check that throws counts as false) and
 * returns how long that took; fails past `limitMs`.
 */
export async function waitUntil(
  what: string,
  limitMs: number,
  check: () => Promise<boolean>,
  pollMs = 100,
): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await check().catch(() => false)) return Date.now() - t0;
    if (Date.now() - t0 > limitMs) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** SIGTERM to `child`, SIGKILL if it has not exited 5 s later; resolves once it exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}
