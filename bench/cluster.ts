/**
 * `npm run bench:cluster`: three `metaraft start` node processes on loopback and a load
 * generator doing open-key + commit-key pairs on unique keys (like Ozone's freon `omkg`), for
 * `leader-execution` (at each batchers value) and `replicated-request`. Reports key creates per
 * second, pair latency (HdrHistogram), requests per Raft entry and CPU per process.
 *
 *   npm run bench:cluster [-- --seconds 8] [-- --connections 4] [-- --inflight 256]
 *                         [-- --modes leader-execution,replicated-request] [-- --batchers 1,2,4,6,8,16]
 *                         [-- --snapshot-entries 10000] [-- --quick] [-- --filter <substring of the case id>]
 *                         [-- --repeat 3] [-- --no-sync]
 *
 * Every case runs `--repeat` times (3 by default, 1 with --quick), the rounds interleaved so that
 * a machine that slows down for a while slows every case alike; a case reports its median run.
 *
 * Case ids: `replicated-request`, `leader-execution/batchers-<n>`. A `--quick` or `--filter`
 * run writes bench/results/cluster.partial.json, never the reference cluster.json.
 */
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import type cliProgress from "cli-progress";
import { MetaraftClient } from "../src/client/client.js";
import { ProcessCluster } from "../test/helpers/cluster.js";
import {
  KeyCreateLoad,
  latencySummary,
  machineInfo,
  medianRun,
  pct,
  positiveInt,
  processCpuSeconds,
  progressBar,
  showLoadProgress,
  writeResults,
} from "./common.js";

type Mode = "leader-execution" | "replicated-request";
const MODES: readonly Mode[] = ["leader-execution", "replicated-request"];
const WARMUP_MS = 1000;
const CALL_TIMEOUT_MS = 30_000;
const TICK_MS = 50;
const ELECTION_TICKS = 10;
/** The case the target is stated for. */
const REFERENCE_BATCHERS = 6;
const TARGET_SPEEDUP = 3;

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    connections: { type: "string", default: "4" },
    inflight: { type: "string", default: "256" },
    modes: { type: "string", default: MODES.join(",") },
    batchers: { type: "string", default: "1,2,4,6,8,16" },
    /**
     * Applied entries between snapshots: the node's default. A namespace snapshot is metadata
     * only (the state is in LMDB), so one falling inside a case costs a compaction, not a copy
     * of the state; replicated-request, one entry per request, takes one every few seconds.
     */
    "snapshot-entries": { type: "string", default: "10000" },
    quick: { type: "boolean", default: false },
    repeat: { type: "string" },
    /** No fsync on the nodes: measures CPU cost per request, not durable throughput. */
    "no-sync": { type: "boolean", default: false },
    /** `npm run bench -- --filter x` passes it to every benchmark: here it selects cases by id. */
    filter: { type: "string" },
  },
});

const quick = values.quick === true;
const filter = values.filter;
const seconds = quick ? 2 : Number(values.seconds);
const repeat = positiveInt("repeat", values.repeat ?? (quick ? "1" : "3"));
const noSync = values["no-sync"] === true;
if (!(seconds > 0)) throw new Error(`--seconds must be positive: ${values.seconds}`);
const connections = positiveInt("connections", values.connections);
const snapshotEntries = positiveInt("snapshot-entries", values["snapshot-entries"]);
const inflight = positiveInt("inflight", values.inflight);
const modes = values.modes.split(",").map((m) => m.trim()) as Mode[];
for (const m of modes) if (!MODES.includes(m)) throw new Error(`--modes: unknown mode ${m}`);
const batcherValues = quick
  ? [REFERENCE_BATCHERS]
  : values.batchers.split(",").map((b) => positiveInt("batchers", b.trim()));

interface CaseSpec {
  readonly id: string;
  readonly mode: Mode;
  /** null: not applicable (replicated-request proposes every request as its own entry). */
  readonly batchers: number | null;
}

const allCases: CaseSpec[] = [];
for (const mode of modes) {
  if (mode === "replicated-request") allCases.push({ id: mode, mode, batchers: null });
  else for (const b of batcherValues) allCases.push({ id: `${mode}/batchers-${b}`, mode, batchers: b });
}
const cases = allCases.filter((c) => filter === undefined || c.id.includes(filter));

interface ExecutionStats {
  mode?: string;
  batches: number;
  requestsBatched: number;
  queuedMs: number;
  batchMs: number;
}
interface RaftStats {
  entriesApplied: number;
  saves: number;
  saveMs: number;
}
interface Status {
  transport?: { sent: number; sentBytes: number; writes: number }[];
  role?: string;
  term?: number;
  execution?: ExecutionStats;
  raftStats?: RaftStats;
}

/**
 * Where a request's time goes on the leader, averaged over the window: a durable write of its
 * log, a request waiting for a free batcher, a batch from proposal until applied.
 */
function leaderTiming(before: Status | null, after: Status | null) {
  const r0 = before?.raftStats;
  const r1 = after?.raftStats;
  const e0 = before?.execution;
  const e1 = after?.execution;
  const avg = (sum: number, n: number) => (n > 0 ? Number((sum / n).toFixed(2)) : null);
  return {
    save: r0 && r1 ? avg(r1.saveMs - r0.saveMs, r1.saves - r0.saves) : null,
    queued: e0 && e1 ? avg(e1.queuedMs - e0.queuedMs, e1.requestsBatched - e0.requestsBatched) : null,
    batch: e0 && e1 ? avg(e1.batchMs - e0.batchMs, e1.batches - e0.batches) : null,
  };
}

/** Peer messages and bytes the leader sent per request answered (both followers together). */
function leaderSent(before: Status | null, after: Status | null, requests: number) {
  const sum = (s: Status | null, f: (p: { sent: number; sentBytes: number; writes: number }) => number) =>
    (s?.transport ?? []).reduce((acc, p) => acc + f(p), 0);
  if (!before?.transport || !after?.transport || requests <= 0) return null;
  return {
    messages: Number(((sum(after, (p) => p.sent) - sum(before, (p) => p.sent)) / requests).toFixed(3)),
    bytes: Math.round((sum(after, (p) => p.sentBytes) - sum(before, (p) => p.sentBytes)) / requests),
    socket_writes: Number(
      ((sum(after, (p) => p.writes) - sum(before, (p) => p.writes)) / requests).toFixed(3),
    ),
  };
}

/**
 * CPU per process, as % of one core and as CPU time per key create: when the machine is
 * saturated, the ratio of two cases' totals per key create is the ratio of their throughputs.
 */
function cpuSummary(nodes: NodeCpu[], loadgenPct: number, createsPerS: number) {
  const perCreate = (p: number | null) =>
    p === null || createsPerS <= 0 ? null : Math.round((p / 100 / createsPerS) * 1e6);
  const leaderPct = nodes.find((n) => n.leader)?.cpu_pct ?? null;
  const followersPct = nodes.filter((n) => !n.leader).map((n) => n.cpu_pct);
  const all = [leaderPct, ...followersPct, loadgenPct];
  return {
    nodes,
    leader_pct: leaderPct,
    followers_pct: followersPct,
    loadgen_pct: loadgenPct,
    us_per_create: {
      leader: perCreate(leaderPct),
      followers: followersPct.map(perCreate),
      loadgen: perCreate(loadgenPct),
      total: all.includes(null) ? null : perCreate(all.reduce<number>((a, b) => a + (b ?? 0), 0)),
    },
  };
}

interface NodeCpu {
  readonly node: number;
  readonly leader: boolean;
  /** % of one core over the measured window. */
  readonly cpu_pct: number | null;
}

interface CaseResult {
  readonly id: string;
  readonly mode: Mode;
  readonly batchers: number | null;
  readonly seconds: number;
  readonly key_creates: number;
  readonly creates_per_s: number;
  /** Every run's rate, in run order (the case reports its median run). */
  readonly creates_per_s_runs?: number[];
  readonly requests_per_s: number;
  readonly errors: number;
  readonly error_codes: Record<string, number>;
  readonly latency_us: { p50: number; p99: number; p999: number; max: number; mean: number };
  readonly requests_per_entry: number | null;
  readonly requests_per_entry_source: string;
  readonly leader_entries_applied: number | null;
  readonly leader_batches: number | null;
  readonly leader_timing_ms: ReturnType<typeof leaderTiming>;
  readonly leader_sent_per_request: ReturnType<typeof leaderSent>;
  readonly leader: number;
  /** null: the leader did not answer a status call in time (before or after the window). */
  readonly leader_changed: boolean | null;
  /** Key creates completed in each whole second of the window. */
  readonly creates_by_second: number[];
  readonly cpu: ReturnType<typeof cpuSummary>;
  readonly startup_ms: number;
}

async function runCase(spec: CaseSpec, label: string, bar: cliProgress.SingleBar): Promise<CaseResult> {
  const t0 = Date.now();
  bar.update(0, { label, phase: "starting", rate: "-" });
  const cluster = await ProcessCluster.start({
    nodes: 3,
    kind: "metaraft",
    executionMode: spec.mode,
    batchers: spec.batchers ?? REFERENCE_BATCHERS,
    tickMs: TICK_MS,
    electionTicks: ELECTION_TICKS,
    snapshotEntries,
    noSync,
  });
  const clients: MetaraftClient[] = [];
  try {
    const leader = await cluster.leader();
    const startupMs = Date.now() - t0;
    for (let i = 0; i < connections; i++) {
      clients.push(
        new MetaraftClient({
          endpoints: cluster.endpoints,
          clusterId: cluster.clusterId,
          timeoutMs: CALL_TIMEOUT_MS,
          inflightMax: inflight,
        }),
      );
    }
    const volume = "bench";
    const bucket = "omkg";
    await clients[0]!.createVolume(volume);
    await clients[0]!.createBucket(volume, bucket);

    const load = new KeyCreateLoad({ clients, volume, bucket, inflight });
    /** The leader's status, or null if it does not answer in time (it is busy or gone). */
    const leaderStatus = () =>
      cluster.status(leader).then(
        (s) => s as Status,
        () => null,
      );
    load.start();
    const warmupEnd = Date.now() + WARMUP_MS;
    const ticker = showLoadProgress(load, bar, label, seconds);
    let before: Status | null;
    let after: Status | null;
    let requestsBefore: number;
    let requestsAfter: number;
    let elapsed: number;
    const pids = cluster.members.map((m) => cluster.pid(m.id));
    let cpuBefore: (number | undefined)[];
    let cpuAfter: (number | undefined)[];
    let loadgenBefore: NodeJS.CpuUsage;
    let loadgenCpu: NodeJS.CpuUsage;
    try {
      await new Promise((r) => setTimeout(r, Math.max(0, warmupEnd - Date.now())));
      before = await leaderStatus();
      requestsBefore = load.requestsDone;
      cpuBefore = pids.map(processCpuSeconds);
      loadgenBefore = process.cpuUsage();
      const startHr = process.hrtime.bigint();
      load.measure(true);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      load.measure(false);
      elapsed = Number(process.hrtime.bigint() - startHr) / 1e9;
      cpuAfter = pids.map(processCpuSeconds);
      loadgenCpu = process.cpuUsage(loadgenBefore);
      requestsAfter = load.requestsDone;
      after = await leaderStatus();
    } finally {
      clearInterval(ticker);
      bar.update(seconds, { label, phase: "draining", rate: (load.creates / seconds).toFixed(0) });
      await load.stop();
    }

    const leaderChanged =
      before === null || after === null ? null : after.role !== "leader" || after.term !== before.term;
    const bySecond = load.bySecond(elapsed);
    const nodes: NodeCpu[] = cluster.members.map((m, i) => {
      const b = cpuBefore[i];
      const a = cpuAfter[i];
      return {
        node: m.id,
        leader: m.id === leader,
        cpu_pct: a === undefined || b === undefined ? null : pct(a - b, elapsed),
      };
    });
    const entriesApplied =
      before?.raftStats && after?.raftStats
        ? after.raftStats.entriesApplied - before.raftStats.entriesApplied
        : null;
    let requestsPerEntry: number | null = null;
    let source: string;
    let batches: number | null = null;
    if (spec.mode === "leader-execution") {
      batches =
        before?.execution && after?.execution ? after.execution.batches - before.execution.batches : null;
      const batched =
        before?.execution && after?.execution
          ? after.execution.requestsBatched - before.execution.requestsBatched
          : null;
      requestsPerEntry = batches && batched !== null ? batched / batches : null;
      source = "leader execution.requestsBatched / execution.batches (deltas over the window)";
    } else {
      // Each request is its own entry; check it against the leader's applied entries.
      const requests = requestsAfter - requestsBefore;
      requestsPerEntry = entriesApplied ? requests / entriesApplied : null;
      source =
        "requests answered to the load generator / leader raftStats.entriesApplied (deltas over the window; " +
        "1 by construction, off by the requests in flight at the window's edges)";
    }
    const completed = load.creates;
    return {
      id: spec.id,
      mode: spec.mode,
      batchers: spec.batchers,
      seconds: Number(elapsed.toFixed(3)),
      key_creates: completed,
      creates_per_s: Math.round(completed / elapsed),
      requests_per_s: Math.round((requestsAfter - requestsBefore) / elapsed),
      errors: load.errors,
      error_codes: load.errorCodes,
      latency_us: latencySummary(load.histogram),
      requests_per_entry: requestsPerEntry === null ? null : Number(requestsPerEntry.toFixed(2)),
      requests_per_entry_source: source,
      leader_entries_applied: entriesApplied,
      leader_batches: batches,
      leader_timing_ms: leaderTiming(before, after),
      leader_sent_per_request: leaderSent(before, after, requestsAfter - requestsBefore),
      leader,
      leader_changed: leaderChanged,
      creates_by_second: bySecond,
      cpu: cpuSummary(nodes, pct((loadgenCpu.user + loadgenCpu.system) / 1e6, elapsed), completed / elapsed),
      startup_ms: startupMs,
    };
  } finally {
    for (const client of clients) client.close();
    bar.update({ phase: "stopping" });
    await cluster.stop();
  }
}

const ms = (us: number) => (us / 1000).toFixed(2);
const cpuText = (v: number | null) => (v === null ? "?" : v.toFixed(0));

async function main(): Promise<void> {
  if (cases.length === 0) {
    process.stderr.write(
      `bench:cluster: --filter ${filter} matches none of ${allCases.map((c) => c.id).join(", ")}; nothing to run\n`,
    );
    return;
  }
  process.stderr.write(
    `bench:cluster: ${cases.length} case(s), 3 nodes each, ${connections} connections, ${inflight} pairs in flight, ` +
      `${WARMUP_MS / 1000} s warm-up + ${seconds} s measured per case\n`,
  );
  const bar = progressBar();
  const runs: CaseResult[][] = cases.map(() => []);
  bar.start(seconds, 0, { label: "", phase: "", rate: "-" });
  try {
    for (let round = 0; round < repeat; round++) {
      for (const [i, spec] of cases.entries()) {
        const label = `[${round * cases.length + i + 1}/${repeat * cases.length}] ${spec.id}`;
        runs[i]!.push(await runCase(spec, label, bar));
      }
    }
  } finally {
    bar.stop();
  }
  // Each case's median run (by key creates per second), whole, so that its latencies and CPU
  // belong to the same run, with every run's rate beside it.
  const results: CaseResult[] = runs.map((caseRuns) => ({
    ...medianRun(caseRuns, (r) => r.creates_per_s),
    creates_per_s_runs: caseRuns.map((r) => r.creates_per_s),
  }));

  console.table(
    results.map((r) => ({
      mode: r.mode,
      batchers: r.batchers ?? "-",
      "creates/s": r.creates_per_s,
      "runs (creates/s)": (r.creates_per_s_runs ?? []).join(" "),
      "p50 ms": ms(r.latency_us.p50),
      "p99 ms": ms(r.latency_us.p99),
      "p999 ms": ms(r.latency_us.p999),
      "req/entry": r.requests_per_entry ?? "?",
      "CPU% leader": cpuText(r.cpu.leader_pct),
      "CPU% followers": r.cpu.followers_pct.map(cpuText).join("/"),
      "CPU% loadgen": cpuText(r.cpu.loadgen_pct),
      "CPU µs/create": r.cpu.us_per_create.total ?? "?",
      "save/queue/batch ms": [r.leader_timing_ms.save, r.leader_timing_ms.queued, r.leader_timing_ms.batch]
        .map((v) => (v === null ? "-" : v.toFixed(1)))
        .join(" / "),
      errors: r.errors,
    })),
  );
  for (const r of results) {
    if (r.errors > 0) process.stderr.write(`${r.id}: ${r.errors} errors ${JSON.stringify(r.error_codes)}\n`);
    if (r.leader_changed) process.stderr.write(`${r.id}: the leader changed during the measured window\n`);
    if (r.leader_changed === null) process.stderr.write(`${r.id}: the leader did not answer a status call\n`);
    const slowest = Math.min(...r.creates_by_second);
    if (r.creates_by_second.length > 0 && slowest < r.creates_per_s / 4) {
      process.stderr.write(
        `${r.id}: stalled: one second completed ${slowest} key creates against ${r.creates_per_s}/s on average ` +
          `(per second: ${r.creates_by_second.join(" ")})\n`,
      );
    }
  }

  const replicated = results.find((r) => r.mode === "replicated-request");
  const leaderCases = results.filter((r) => r.mode === "leader-execution");
  const reference =
    leaderCases.find((r) => r.batchers === REFERENCE_BATCHERS) ??
    leaderCases.reduce<CaseResult | undefined>(
      (best, r) => (best === undefined || r.creates_per_s > best.creates_per_s ? r : best),
      undefined,
    );
  let comparison: Record<string, unknown> | null = null;
  if (replicated && reference) {
    const speedup = reference.creates_per_s / Math.max(1, replicated.creates_per_s);
    const p99Lower = reference.latency_us.p99 < replicated.latency_us.p99;
    const met = speedup >= TARGET_SPEEDUP && p99Lower;
    const le = reference.cpu.us_per_create.total;
    const rr = replicated.cpu.us_per_create.total;
    const cpuRatio = le && rr ? Number((rr / le).toFixed(2)) : null;
    comparison = {
      leader_execution_case: reference.id,
      replicated_request_case: replicated.id,
      speedup: Number(speedup.toFixed(2)),
      /** CPU per key create (all processes), replicated-request over leader-execution. */
      cpu_per_create_ratio: cpuRatio,
      p99_ms: {
        leader_execution: reference.latency_us.p99 / 1000,
        replicated_request: replicated.latency_us.p99 / 1000,
      },
      target: `leader-execution >= ${TARGET_SPEEDUP}x replicated-request creates/s at ${inflight} in flight, with lower p99`,
      target_stated_for_cpus: 2,
      cpus: cpus().length,
      target_met: met,
    };
    console.log(
      `leader-execution (batchers ${reference.batchers}) vs replicated-request: ${speedup.toFixed(1)}x creates/s, ` +
        `p99 ${ms(reference.latency_us.p99)} ms vs ${ms(replicated.latency_us.p99)} ms — ` +
        `target (>= ${TARGET_SPEEDUP}x with lower p99) ${met ? "met" : "NOT met"}; ` +
        `CPU per key create ${rr ?? "?"} µs vs ${le ?? "?"} µs (${cpuRatio ?? "?"}x)` +
        (reference.batchers === REFERENCE_BATCHERS ? "" : ` (batchers ${REFERENCE_BATCHERS} was not run)`),
    );
  } else {
    console.log("no comparison: needs a replicated-request case and a leader-execution case");
  }

  const result = {
    machine: machineInfo(),
    config: {
      nodes: 3,
      transport: "loopback",
      workload: "openKey + commitKey on unique keys (freon omkg-like), 1024-byte size",
      connections,
      inflight,
      seconds_per_case: seconds,
      repeat,
      warmup_s: WARMUP_MS / 1000,
      modes,
      batchers: batcherValues,
      tick_ms: TICK_MS,
      election_ticks: ELECTION_TICKS,
      snapshot_entries: snapshotEntries,
      call_timeout_ms: CALL_TIMEOUT_MS,
      fsync: !noSync,
      quick,
      filter: filter ?? null,
      cpu_pct:
        "% of one core over the measured window (/proc/<pid>/stat utime+stime; loadgen: process.cpuUsage)",
    },
    results,
    comparison,
  };
  // A quick or filtered run must not overwrite the reference results; a complete one without
  // fsync has its own file.
  const complete = !quick && filter === undefined;
  const name = !complete ? "cluster.partial" : noSync ? "cluster.nosync" : "cluster";
  writeResults(name, result);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
