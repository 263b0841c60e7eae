/**
 * Benchmarks every hot path of the core (docs/core-formats.md) in every implementation, after
 * checking that each one reproduces the TypeScript twin's bytes. src/core/thresholds.ts takes
 * its numbers from the results this writes to bench/results/core.json.
 *
 *   npm run bench:core [-- --quick] [-- --filter <substring of "path/size/impl">]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, cpus } from "node:os";
import { parseArgs } from "node:util";
import { crc32 as zlibCrc32 } from "node:zlib";
import cliProgress from "cli-progress";
import { Bench, type Fn, type FnReturnedObject } from "tinybench";
import {
  type CoreAsync,
  type CorePath,
  CorePool,
  type CoreSync,
  createCore,
  encodeWriteSet,
  thresholdsDefault,
  tsCore,
  type WriteOp,
  wasmCore,
} from "../src/core/index.js";
import { NEVER } from "../src/core/thresholds.js";

type Impl = "ts" | "wasm" | "pool" | "auto" | "native";

/** What a case returns: enough to compare implementations byte for byte. */
type Output = number | ArrayBufferView | readonly Output[];

interface Case {
  readonly path: CorePath;
  readonly size: string;
  /** Input bytes, the base of the throughput column. */
  readonly sizeBytes: number;
  /** The size in the units of src/core/thresholds.ts, which `auto` compares with its thresholds. */
  readonly thresholdSize: number;
  readonly sync: (core: CoreSync) => Output;
  readonly async: (core: CoreAsync) => Promise<Output>;
  readonly native?: { readonly run: () => Output; readonly note: string };
  /** Also measure the pool with this many calls in flight, reported per call. */
  readonly poolInFlight?: number;
}

interface Variant {
  readonly id: string;
  readonly impl: Impl;
  readonly note?: string;
  /** Runs the case once (a pool variant returns a promise). */
  readonly once: () => unknown;
  /** A pool variant: calls in flight at once (1 measures the latency of one call at a time). */
  readonly inFlight?: number;
}

interface Profile {
  readonly timeMs: number;
  readonly warmupMs: number;
  readonly iterations: number;
  readonly warmupIterations: number;
  /**
   * Each case is measured this many times, the tasks' order rotated, and the medians' median
   * kept: on a shared 2-core machine, short interleaved rounds spread a noisy neighbour's bursts
   * over every implementation instead of landing on one.
   */
  readonly rounds: number;
}

const profiles = {
  full: { timeMs: 300, warmupMs: 50, iterations: 10, warmupIterations: 4, rounds: 5 },
  quick: { timeMs: 20, warmupMs: 10, iterations: 3, warmupIterations: 2, rounds: 1 },
} as const satisfies Record<string, Profile>;

/** Sync calls are batched so that one sample lasts at least this long: the timer's own cost vanishes. */
const SAMPLE_NS_MIN = 20_000;
const BATCH_MAX = 10_000;
/** `auto` is flagged when its median is this much above the best implementation's. */
const AUTO_SLACK = 1.1;
/** A suggested threshold needs a real win: ties within a few percent are noise here. */
const WIN_MARGIN = 1.05;

const thresholdUnits: Record<CorePath, string> = {
  crc32c: "bytes",
  frames: "payload bytes",
  deltas: "bytes (8 per value)",
  keys: "key bytes",
  merge: "write-set bytes",
  indexes: "requests",
};

const ZLIB_NOTE = "zlib.crc32 is CRC-32 (IEEE), shown as the practical limit";

// ---------------------------------------------------------------------------------------------
// Inputs: deterministic, so every run (and every --filter) times the same bytes.

/** mulberry32 */
function prng(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

const randomInt = (random: () => number, min: number, max: number): number =>
  min + Math.floor(random() * (max - min + 1));

function randomBytes(random: () => number, length: number): Uint8Array {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = random() * 256;
  return bytes;
}

const utf8 = new TextEncoder();
const sumLengths = (parts: readonly Uint8Array[]): number =>
  parts.reduce((sum, part) => sum + part.length, 0);
const bytesLabel = (bytes: number): string =>
  bytes >= 1 << 20 ? `${bytes / (1 << 20)}MiB` : bytes >= 1 << 10 ? `${bytes / (1 << 10)}KiB` : `${bytes}B`;

function crcCases(): Case[] {
  const random = prng(1);
  return [64, 256, 1 << 10, 64 << 10, 1 << 20].map((bytes) => {
    const data = randomBytes(random, bytes);
    return {
      path: "crc32c",
      size: bytesLabel(bytes),
      sizeBytes: bytes,
      thresholdSize: bytes,
      sync: (core) => core.crc32c(data),
      async: (core) => core.crc32c(data),
      native: { run: () => zlibCrc32(data), note: ZLIB_NOTE },
      ...(bytes === 1 << 20 && { poolInFlight: 2 }),
    };
  });
}

function frameCases(): Case[] {
  const random = prng(2);
  const eventBytes = 200;
  return [1, 16, 256, 4096].map((count) => {
    const events = Array.from({ length: count }, () => randomBytes(random, eventBytes));
    return {
      path: "frames",
      size: `${count}x${eventBytes}B`,
      sizeBytes: count * eventBytes,
      thresholdSize: count * eventBytes,
      sync: (core) => {
        const buf = core.encodeFrames(events);
        const split = core.splitFrames(buf);
        return [buf, split.starts, split.lengths];
      },
      async: async (core) => {
        const buf = await core.encodeFrames(events);
        const split = await core.splitFrames(buf);
        return [buf, split.starts, split.lengths];
      },
    };
  });
}

/** Mostly increasing ids near 2^40: small forward steps, now and then a small step back. */
function increasingIds(random: () => number, count: number): number[] {
  const ids = new Array<number>(count);
  let id = 2 ** 40 + randomInt(random, 0, 1_000_000);
  for (let i = 0; i < count; i++) {
    id += random() < 0.05 ? -randomInt(random, 1, 200) : randomInt(random, 1, 1000);
    ids[i] = id;
  }
  return ids;
}

function deltaCases(): Case[] {
  const random = prng(3);
  return [16, 1_000, 100_000].map((count) => {
    const ids = increasingIds(random, count);
    return {
      path: "deltas",
      size: count >= 1000 ? `${count / 1000}k ids` : `${count} ids`,
      sizeBytes: 8 * count,
      thresholdSize: 8 * count,
      sync: (core) => {
        const buf = core.encodeDeltas(ids);
        return [buf, core.decodeDeltas(buf)];
      },
      async: async (core) => {
        const buf = await core.encodeDeltas(ids);
        return [buf, await core.decodeDeltas(buf)];
      },
    };
  });
}

/** Sorted keys like "volume-1/bucket-07/key-000123": long shared prefixes, as in the key tables. */
function sortedKeys(random: () => number, count: number): Uint8Array[] {
  const buckets = 16;
  const names: string[] = [];
  for (let b = 0; names.length < count; b++) {
    let key = 0;
    for (let k = 0; k < Math.ceil(count / buckets) && names.length < count; k++) {
      key += randomInt(random, 1, 5);
      const volume = Math.floor(b / 8);
      names.push(
        `volume-${volume}/bucket-${String(b % 8).padStart(2, "0")}/key-${String(key).padStart(6, "0")}`,
      );
    }
  }
  return names.sort().map((name) => utf8.encode(name));
}

function keyCases(): Case[] {
  const random = prng(4);
  return [16, 1_000, 100_000].map((count) => {
    const keys = sortedKeys(random, count);
    const keyBytes = sumLengths(keys);
    return {
      path: "keys",
      size: count >= 1000 ? `${count / 1000}k keys` : `${count} keys`,
      sizeBytes: keyBytes,
      thresholdSize: keyBytes,
      sync: (core) => {
        const buf = core.encodeKeys(keys);
        return [buf, core.decodeKeys(buf)];
      },
      async: async (core) => {
        const buf = await core.encodeKeys(keys);
        return [buf, await core.decodeKeys(buf)];
      },
    };
  });
}

/**
 * Write-sets over a key space sized for ~20% overwrites: n uniform draws from k keys leave
 * k(1 - e^(-n/k)) distinct, which is 80% of n at n/k = 0.464. Two tables, 10% deletes.
 */
function writeSets(random: () => number, count: number, entries: number): Uint8Array[] {
  const keySpace = Math.round((count * entries) / 0.464);
  return Array.from({ length: count }, () => {
    const ops: WriteOp[] = Array.from({ length: entries }, () => {
      const id = randomInt(random, 0, keySpace - 1);
      // Hashing the id keeps key order unrelated to execution order, so the sort has work to do.
      const name = `tenant/objects/${(Math.imul(id >>> 1, 0x9e3779b1) >>> 0).toString(16)}`;
      return {
        table: id & 1,
        key: utf8.encode(name),
        value: random() < 0.1 ? null : randomBytes(random, randomInt(random, 0, 100)),
      };
    });
    return encodeWriteSet(ops);
  });
}

function mergeCases(): Case[] {
  const random = prng(5);
  const entries = 64;
  return [2, 16, 256].map((count) => {
    const sets = writeSets(random, count, entries);
    const bytes = sumLengths(sets);
    return {
      path: "merge",
      size: `${count}x${entries}`,
      sizeBytes: bytes,
      thresholdSize: bytes,
      sync: (core) => core.mergeWriteSets(sets),
      async: (core) => core.mergeWriteSets(sets),
      ...(count === 256 && { poolInFlight: 2 }),
    };
  });
}

function indexCases(): Case[] {
  const random = prng(6);
  const baseTxid = 1_000_000;
  return [64, 1024, 4096].map((requests) => {
    const objectCounts = Array.from({ length: requests }, () => randomInt(random, 0, 4));
    return {
      path: "indexes",
      size: `${requests} req`,
      // The counts as the caller holds them: one double per request.
      sizeBytes: 8 * requests,
      thresholdSize: requests,
      sync: (core) => {
        const { txids, objectIds } = core.allocateIndexes(baseTxid, objectCounts);
        return [txids, objectIds];
      },
      async: async (core) => {
        const { txids, objectIds } = await core.allocateIndexes(baseTxid, objectCounts);
        return [txids, objectIds];
      },
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Verification

/** A canonical serialization of an output: element types, lengths and bytes. */
function canonicalBytes(output: Output): Buffer {
  const parts: Buffer[] = [];
  const visit = (value: Output): void => {
    if (typeof value === "number") {
      parts.push(Buffer.from(`n${value};`));
    } else if (ArrayBuffer.isView(value)) {
      parts.push(Buffer.from(`${value.constructor.name}(${value.byteLength}):`));
      parts.push(Buffer.from(value.buffer, value.byteOffset, value.byteLength));
    } else {
      parts.push(Buffer.from(`[${value.length}]`));
      for (const item of value) visit(item);
    }
  };
  visit(output);
  return Buffer.concat(parts);
}

function firstDifference(a: Buffer, b: Buffer): number {
  const length = Math.min(a.length, b.length);
  for (let i = 0; i < length; i++) if (a[i] !== b[i]) return i;
  return length;
}

async function verify(
  testCase: Case,
  sync: Readonly<Record<"wasm" | "auto", CoreSync>>,
  pool: CorePool,
): Promise<void> {
  const expected = canonicalBytes(testCase.sync(tsCore));
  const actual: [Impl, Output][] = [
    ["wasm", testCase.sync(sync.wasm)],
    ["auto", testCase.sync(sync.auto)],
    ["pool", await testCase.async(pool)],
  ];
  for (const [impl, output] of actual) {
    const bytes = canonicalBytes(output);
    if (!bytes.equals(expected)) {
      throw new Error(
        `${testCase.path}/${testCase.size}: ${impl} differs from ts at serialized byte ` +
          `${firstDifference(expected, bytes)} (ts ${expected.length} bytes, ${impl} ${bytes.length} bytes)`,
      );
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Measurement

/** Results land here so that no call can be optimized away. */
const sink: { value: unknown } = { value: undefined };

const elapsedMs = (start: bigint): number => Number(process.hrtime.bigint() - start) / 1e6;

/** How many calls one sample needs to last SAMPLE_NS_MIN, from a short timed loop. */
function callsPerSample(run: () => unknown): number {
  const start = process.hrtime.bigint();
  let calls = 0;
  do {
    sink.value = run();
    calls++;
  } while (elapsedMs(start) < 2 && calls < BATCH_MAX);
  const perCallNs = (elapsedMs(start) * 1e6) / calls;
  return Math.min(BATCH_MAX, Math.max(1, Math.ceil(SAMPLE_NS_MIN / perCallNs)));
}

function batched(run: () => unknown, calls: number): Fn {
  return (): FnReturnedObject => {
    const start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) sink.value = run();
    const ms = elapsedMs(start);
    return { overriddenDuration: ms / calls, overriddenIterationCost: ms };
  };
}

/** `inFlight` calls at once; each sample is the wall time per call, i.e. the inverse throughput. */
function concurrent(run: () => unknown, inFlight: number): Fn {
  return async (): Promise<FnReturnedObject> => {
    const start = process.hrtime.bigint();
    sink.value = await Promise.all(Array.from({ length: inFlight }, run));
    const ms = elapsedMs(start);
    return { overriddenDuration: ms / inFlight, overriddenIterationCost: ms };
  };
}

/** What tinybench times for a variant; call it once the variant is warm (after verification). */
function timedTask(variant: Variant): Fn {
  if (variant.inFlight === undefined) return batched(variant.once, callsPerSample(variant.once));
  return variant.inFlight === 1 ? variant.once : concurrent(variant.once, variant.inFlight);
}

function variantsOf(
  testCase: Case,
  sync: Readonly<Record<"wasm" | "auto", CoreSync>>,
  pool: CorePool,
): Variant[] {
  const id = (impl: Impl, note?: string): string =>
    `${testCase.path}/${testCase.size}/${impl}${note === undefined ? "" : ` (${note})`}`;
  const variant = (impl: Impl, once: () => unknown, note?: string): Variant => ({
    id: id(impl, note),
    impl,
    ...(note !== undefined && { note }),
    once,
  });
  const poolOnce = async (): Promise<unknown> => testCase.async(pool);
  const variants: Variant[] = [
    variant("ts", () => testCase.sync(tsCore)),
    variant("wasm", () => testCase.sync(sync.wasm)),
    { ...variant("pool", poolOnce), inFlight: 1 },
    variant("auto", () => testCase.sync(sync.auto)),
  ];
  if (testCase.native) variants.push(variant("native", testCase.native.run, testCase.native.note));
  if (testCase.poolInFlight !== undefined) {
    const inFlight = testCase.poolInFlight;
    variants.push({ ...variant("pool", poolOnce, `${inFlight} in flight`), inFlight });
  }
  return variants;
}

const median = (values: readonly number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
};

const rotated = <T>(items: readonly T[], by: number): T[] => {
  const shift = by % items.length;
  return [...items.slice(shift), ...items.slice(0, shift)];
};

interface Timing {
  /** The median over rounds of each round's median, in ns. */
  readonly medianNs: number;
  /** The slowest round's median over the fastest's, less one: how much to trust the row. */
  readonly spread: number;
}

/** Times a case's variants in `profile.rounds` rounds. */
async function measure(
  variants: ReadonlyMap<Variant, Fn>,
  profile: Profile,
  onTaskDone: () => void,
): Promise<Map<Variant, Timing>> {
  const roundMedians = new Map<Variant, number[]>([...variants.keys()].map((variant) => [variant, []]));
  for (let round = 0; round < profile.rounds; round++) {
    const bench = new Bench({
      time: profile.timeMs,
      warmupTime: profile.warmupMs,
      iterations: profile.iterations,
      warmupIterations: profile.warmupIterations,
      timestampProvider: "hrtimeNow",
      throws: true,
    });
    for (const [variant, fn] of rotated([...variants], round)) {
      bench.add(variant.id, fn, { async: variant.inFlight !== undefined });
    }
    bench.addEventListener("cycle", onTaskDone);
    await bench.run();
    for (const variant of variants.keys()) {
      const result = bench.getTask(variant.id)?.result;
      if (result?.state !== "completed") throw new Error(`${variant.id}: ${result?.state ?? "missing"}`);
      roundMedians.get(variant)!.push(result.latency.p50 * 1e6);
    }
  }
  return new Map(
    [...roundMedians].map(([variant, medians]) => [
      variant,
      { medianNs: median(medians), spread: Math.max(...medians) / Math.min(...medians) - 1 },
    ]),
  );
}

// ---------------------------------------------------------------------------------------------
// Reporting

interface ResultRow {
  readonly path: CorePath;
  readonly impl: Impl;
  readonly size: string;
  readonly size_bytes: number;
  readonly median_ns: number;
  readonly throughput_bytes_per_s: number;
  readonly ratio_vs_ts: number | null;
  /** Slowest round's median over the fastest's, in percent above it. */
  readonly spread_pct: number;
  readonly note?: string;
}

type SuggestedThreshold =
  | {
      readonly size: string;
      readonly threshold: number;
      /** The loser's median over the winner's at that size: how far the crossover is from noise. */
      readonly speedup: number;
    }
  | "never";

interface PathSuggestion {
  readonly unit: string;
  /** Smallest measured size from which WASM inline beats the TypeScript twin (see crossover). */
  readonly wasm: SuggestedThreshold;
  /** The same for the pool (one call at a time) against WASM inline. */
  readonly pool: SuggestedThreshold;
  readonly current: { readonly wasm: number | "never"; readonly pool: number | "never" };
}

interface Measured {
  readonly testCase: Case;
  readonly ns: Partial<Record<Impl, number>>;
}

/**
 * The smallest measured size from which `candidate` is at least WIN_MARGIN faster than
 * `incumbent` at every larger measured size too; a single noisy win below a loss does not count.
 */
function crossover(
  cases: readonly Measured[],
  candidate: Impl,
  incumbent: Impl,
): SuggestedThreshold | undefined {
  const comparable = cases
    .filter((m) => m.ns[candidate] !== undefined && m.ns[incumbent] !== undefined)
    .sort((a, b) => a.testCase.thresholdSize - b.testCase.thresholdSize);
  if (comparable.length === 0) return undefined;
  let suggestion: SuggestedThreshold = "never";
  for (let i = comparable.length - 1; i >= 0; i--) {
    const m = comparable[i]!;
    if (m.ns[candidate]! * WIN_MARGIN > m.ns[incumbent]!) break;
    suggestion = {
      size: m.testCase.size,
      threshold: m.testCase.thresholdSize,
      speedup: Number((m.ns[incumbent]! / m.ns[candidate]!).toFixed(3)),
    };
  }
  return suggestion;
}

function summarize(
  selected: readonly { readonly testCase: Case; readonly variants: readonly Variant[] }[],
  timings: ReadonlyMap<Variant, Timing>,
): { rows: ResultRow[]; measured: Measured[] } {
  const rows: ResultRow[] = [];
  const measured: Measured[] = [];
  for (const { testCase, variants } of selected) {
    const ns: Partial<Record<Impl, number>> = {};
    for (const variant of variants) {
      if (variant.note === undefined) ns[variant.impl] = timings.get(variant)!.medianNs;
    }
    measured.push({ testCase, ns });
    for (const variant of variants) {
      const { medianNs, spread } = timings.get(variant)!;
      rows.push({
        path: testCase.path,
        impl: variant.impl,
        size: testCase.size,
        size_bytes: testCase.sizeBytes,
        median_ns: Math.round(medianNs),
        throughput_bytes_per_s: Math.round((testCase.sizeBytes * 1e9) / medianNs),
        ratio_vs_ts: ns.ts === undefined ? null : Number((ns.ts / medianNs).toFixed(3)),
        spread_pct: Math.round(100 * spread),
        ...(variant.note !== undefined && { note: variant.note }),
      });
    }
  }
  return { rows, measured };
}

function suggestThresholds(measured: readonly Measured[]): Partial<Record<CorePath, PathSuggestion>> {
  const suggestions: Partial<Record<CorePath, PathSuggestion>> = {};
  for (const path of new Set(measured.map((m) => m.testCase.path))) {
    const ofPath = measured.filter((m) => m.testCase.path === path);
    const wasm = crossover(ofPath, "wasm", "ts");
    const pool = crossover(ofPath, "pool", "wasm");
    if (wasm === undefined && pool === undefined) continue;
    suggestions[path] = {
      unit: thresholdUnits[path],
      wasm: wasm ?? "never",
      pool: pool ?? "never",
      current: {
        wasm: formatThreshold(thresholdsDefault[path].wasm),
        pool: formatThreshold(thresholdsDefault[path].pool),
      },
    };
  }
  return suggestions;
}

const formatMicros = (ns: number): string => {
  const us = ns / 1000;
  return us < 10 ? us.toFixed(2) : us < 100 ? us.toFixed(1) : us.toFixed(0);
};
const formatRatio = (ratio: number | null): string =>
  ratio === null ? "-" : `${ratio < 10 ? ratio.toFixed(1) : ratio.toFixed(0)}x`;
const formatThreshold = (value: number): number | "never" => (value >= NEVER ? "never" : value);
const formatSuggestion = (s: SuggestedThreshold | undefined): string =>
  s === undefined
    ? "not measured"
    : s === "never"
      ? "never"
      : `>= ${s.threshold} (${s.size}, ${formatRatio(s.speedup)})`;

function printTable(rows: readonly ResultRow[]): void {
  const header = ["path", "size", "impl", "median µs", "MB/s", "vs ts", "spread", "note"];
  const cells = rows.map((row) => [
    row.path,
    row.size,
    row.impl,
    formatMicros(row.median_ns),
    (row.throughput_bytes_per_s / 1e6).toFixed(1),
    formatRatio(row.ratio_vs_ts),
    `${row.spread_pct}%`,
    row.note ?? "",
  ]);
  const widths = header.map((title, column) =>
    Math.max(title.length, ...cells.map((cell) => cell[column]!.length)),
  );
  const numeric = new Set([3, 4, 5, 6]);
  const line = (cell: readonly string[]): string =>
    cell
      .map((text, column) =>
        numeric.has(column) ? text.padStart(widths[column]!) : text.padEnd(widths[column]!),
      )
      .join("  ")
      .trimEnd();
  console.log(line(header));
  console.log(widths.map((width) => "-".repeat(width)).join("  "));
  for (const cell of cells) console.log(line(cell));
  console.log(
    "MB/s: 10^6 input bytes per second. vs ts: the ts median over this row's (higher is faster).\n" +
      "spread: the slowest round's median above the fastest's; rows whose gap is within it are a tie.",
  );
}

interface AutoCheck {
  readonly path: CorePath;
  readonly size: string;
  readonly auto_ns: number;
  /** What auto's sync side runs at this size under src/core/thresholds.ts. */
  readonly auto_runs: "ts" | "wasm";
  readonly best_impl: "ts" | "wasm" | "pool";
  readonly best_ns: number;
  readonly slower: boolean;
}

function autoChecks(measured: readonly Measured[]): AutoCheck[] {
  const checks: AutoCheck[] = [];
  for (const { testCase, ns } of measured) {
    const contenders = (["ts", "wasm", "pool"] as const).filter((impl) => ns[impl] !== undefined);
    if (ns.auto === undefined || contenders.length === 0) continue;
    const best = contenders.reduce((a, b) => (ns[a]! <= ns[b]! ? a : b));
    checks.push({
      path: testCase.path,
      size: testCase.size,
      auto_ns: Math.round(ns.auto),
      auto_runs: testCase.thresholdSize >= thresholdsDefault[testCase.path].wasm ? "wasm" : "ts",
      best_impl: best,
      best_ns: Math.round(ns[best]!),
      slower: ns.auto > AUTO_SLACK * ns[best]!,
    });
  }
  return checks;
}

function printAutoChecks(checks: readonly AutoCheck[]): void {
  console.log("\nauto check (auto's median against the fastest of ts, wasm and pool; one call at a time):");
  for (const check of checks) {
    const excess = 100 * (check.auto_ns / check.best_ns - 1);
    const verdict = !check.slower
      ? ""
      : check.auto_runs === check.best_impl
        ? `  <-- >10% SLOWER, though auto runs ${check.auto_runs} too: noise or dispatch cost`
        : `  <-- >10% SLOWER: auto runs ${check.auto_runs}, ${check.best_impl} is faster`;
    console.log(
      `  ${`${check.path} ${check.size}`.padEnd(20)} auto→${check.auto_runs.padEnd(4)} ` +
        `${formatMicros(check.auto_ns).padStart(8)} µs   best ${check.best_impl.padEnd(4)} ` +
        `${formatMicros(check.best_ns).padStart(8)} µs  ${`${excess >= 0 ? "+" : ""}${excess.toFixed(0)}%`.padStart(5)}${verdict}`,
    );
  }
}

function printSuggestions(suggestions: Partial<Record<CorePath, PathSuggestion>>): void {
  console.log(
    "\nsuggested thresholds (smallest measured size from which the faster side is >= 5% faster at every larger size):",
  );
  for (const [path, s] of Object.entries(suggestions)) {
    console.log(
      `  ${path.padEnd(8)} wasm over ts: ${formatSuggestion(s.wasm).padEnd(28)} pool over wasm: ` +
        `${formatSuggestion(s.pool).padEnd(28)} [${s.unit}; current: wasm ${s.current.wasm}, pool ${s.current.pool}]`,
    );
  }
}

// ---------------------------------------------------------------------------------------------

async function main(args: readonly string[]): Promise<void> {
  const started = performance.now();
  const { values: options } = parseArgs({
    args: [...args],
    options: { quick: { type: "boolean", default: false }, filter: { type: "string" } },
  });
  const profile: Profile = options.quick ? profiles.quick : profiles.full;
  const filter = options.filter;

  const cases = [crcCases, frameCases, deltaCases, keyCases, mergeCases, indexCases].flatMap((make) =>
    make(),
  );
  const auto = createCore({ mode: "auto" });
  const pool = new CorePool();
  const sync = { wasm: wasmCore(), auto: auto.sync };
  const bar = new cliProgress.SingleBar(
    { format: "{bar} {value}/{total} tasks | {duration_formatted} elapsed, ETA {eta_formatted} | {case}" },
    cliProgress.Presets.shades_classic,
  );
  try {
    if (zlibCrc32(utf8.encode("123456789")) !== 0xcbf43926) {
      throw new Error("zlib.crc32 is not CRC-32 (IEEE)");
    }

    const selected = cases
      .map((testCase) => ({
        testCase,
        variants: variantsOf(testCase, sync, pool).filter(
          (v) => filter === undefined || v.id.includes(filter),
        ),
      }))
      .filter(({ variants }) => variants.length > 0);
    if (selected.length === 0) throw new Error(`--filter ${filter} matches no task`);

    const tasks = new Map<Case, Map<Variant, Fn>>();
    for (const { testCase, variants } of selected) {
      await verify(testCase, sync, pool);
      tasks.set(testCase, new Map(variants.map((variant) => [variant, timedTask(variant)])));
    }
    console.log(`verified: every implementation reproduces the ts output on ${selected.length} cases`);

    const taskCount = selected.reduce((sum, { variants }) => sum + variants.length, 0) * profile.rounds;
    bar.start(taskCount, 0, { case: "" });
    const timings = new Map<Variant, Timing>();
    for (const [testCase, caseTasks] of tasks) {
      bar.update({ case: `${testCase.path} ${testCase.size}` });
      const caseTimings = await measure(caseTasks, profile, () => bar.increment());
      for (const [variant, timing] of caseTimings) timings.set(variant, timing);
    }
    bar.stop();

    const { rows, measured } = summarize(selected, timings);
    const suggestions = suggestThresholds(measured);
    console.log();
    printTable(rows);
    const checks = autoChecks(measured);
    printAutoChecks(checks);
    printSuggestions(suggestions);

    // A quick or filtered run must not overwrite the reference results thresholds.ts cites.
    const complete = !options.quick && filter === undefined;
    const file = new URL(`../../bench/results/${complete ? "core" : "core.partial"}.json`, import.meta.url);
    mkdirSync(new URL(".", file), { recursive: true });
    const report = {
      machine: {
        cpus: availableParallelism(),
        model: cpus()[0]?.model ?? "unknown",
        node: process.version,
        date: new Date().toISOString(),
      },
      options: { ...profile, pool_threads: pool.threads, quick: options.quick, filter: filter ?? null },
      results: rows,
      auto_check: checks,
      suggested_thresholds: suggestions,
    };
    writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`\nwrote ${file.pathname}`);
    console.log(`total runtime ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } finally {
    bar.stop();
    await pool.close();
    await auto.close();
  }
}

await main(process.argv.slice(2));
