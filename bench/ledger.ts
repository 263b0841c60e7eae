/**
 * `npm run bench:ledger`: what the event ledger and its listeners cost the write path (issue
 * 10). Three `metaraft start` node processes on loopback at the reference configuration
 * (leader-execution, batchers 6) under bench:cluster's load (open-key + commit-key pairs on
 * unique keys), in six cases side by side in the same run:
 *
 *   ledger-off   `--no-events`: no event is recorded (the baseline)
 *   ledger-on    events recorded, no listener
 *   node-1/4     1 or 4 webhook listeners in worker threads of the leader (runner "node")
 *   process-1/4  the same listeners in `metaraft listeners run` beside each node (runner "process")
 *
 * The webhook receiver is a node:http server in its own process (bench/webhook-receiver.ts),
 * one path per listener. Per case: key creates/s, its ratio to ledger-off (and to ledger-on for
 * the listener cases), CPU per process (leader, followers, runners, receiver, load generator) as
 * % of a core and as CPU seconds per 1000 key creates, the listener lag (receive time − the
 * event's `time`, for the events written in the measured window) p50/p99/max, and events received
 * per listener against events written. Then, in the listener cases, a light load (key creates
 * one at a time, 200 ms apart) and its lag. The target: the ledger costs at most 10% of key creates/s.
 *
 *   npm run bench:ledger [-- --seconds 8] [-- --repeat 3] [-- --connections 4] [-- --inflight 256]
 *                        [-- --quick] [-- --filter <substring of the case id>] [-- --no-sync]
 *                        [-- --quiet-wait-s 60] [-- --sparse-writes 20]
 *
 * Every round runs every case once, the rounds interleaved (and each round starting one case
 * later than the last) so that a machine that slows down for a while slows every case alike; a
 * case reports its median run. A `--quick` or `--filter` run writes
 * bench/results/ledger.partial.json, never the reference ledger.json.
 *
 * On a machine shared with other work, a case first waits (up to `--quiet-wait-s`) for the
 * machine to be quiet, and every run records how much CPU other work took in its window
 * (`machine_cpu.others_pct`, and `runs` per case). Where other work crowded the runs, compare the
 * cases by CPU per key create (which other work barely moves) rather than by creates/s.
 */
import { type ChildProcess, fork, spawn } from "node:child_process";
import { cpus } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type cliProgress from "cli-progress";
import { MetaraftClient } from "../src/client/client.js";
import type { ListenerRow } from "../src/server/node-listeners.js";
import { ProcessCluster } from "../test/helpers/cluster.js";
import {
  KeyCreateLoad,
  type LatencyUs,
  latencySummary,
  machineCpuSeconds,
  machineInfo,
  medianRun,
  pct,
  positiveInt,
  processCpuSeconds,
  progressBar,
  showLoadProgress,
  stopChild,
  waitForQuiet,
  writeResults,
} from "./common.js";

const WARMUP_MS = 1000;
const CALL_TIMEOUT_MS = 30_000;
const TICK_MS = 50;
const ELECTION_TICKS = 10;
/** bench:cluster's reference case: leader-execution with 6 batchers. */
const BATCHERS = 6;
/** The issue's target: the ledger (0 listeners) costs at most this share of key creates/s. */
const TARGET_COST_MAX = 0.1;
/** How long listeners may take to report `running` once added. */
const LISTENER_START_MS_MAX = 30_000;
/** How long, after the load stopped, the receiver may take to get every event written. */
const DRAIN_MS_MAX = 60_000;
/** How long a runner may take to print its ready line (it waits for its node's node.json). */
const RUNNER_START_MS_MAX = 30_000;
/** How long the receiver may take to answer a stats request. */
const RECEIVER_CALL_MS_MAX = 30_000;
const POLL_MS = 100;
/** The light-load phase: key creates one at a time, this far apart. */
const SPARSE_GAP_MS = 200;
/** How long after the last sparse write every listener may take to have them all. */
const SPARSE_DRAIN_MS_MAX = 10_000;

const CLI = fileURLToPath(new URL("../src/cli/metaraft.js", import.meta.url));
const RECEIVER = fileURLToPath(new URL("./webhook-receiver.js", import.meta.url));

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "8" },
    connections: { type: "string", default: "4" },
    inflight: { type: "string", default: "256" },
    "snapshot-entries": { type: "string", default: "10000" },
    quick: { type: "boolean", default: false },
    repeat: { type: "string" },
    /** No fsync on the nodes: measures CPU cost per request, not durable throughput. */
    "no-sync": { type: "boolean", default: false },
    /** `npm run bench -- --filter x` passes it to every benchmark: here it selects cases by id. */
    filter: { type: "string" },
    /**
     * Before each case, wait up to this long for the machine to be quiet (other work under
     * QUIET_BUSY_PCT_MAX of a core); 0: do not wait.
     */
    "quiet-wait-s": { type: "string", default: "60" },
    /** Key creates in the light-load phase of each listener case (0: no such phase). */
    "sparse-writes": { type: "string", default: "20" },
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
const quietWaitS = Number(values["quiet-wait-s"]);
const sparseWrites = quick ? 5 : Number(values["sparse-writes"]);
if (!Number.isInteger(sparseWrites) || sparseWrites < 0) {
  throw new Error(`--sparse-writes must be 0 or a positive integer: ${values["sparse-writes"]}`);
}
if (!(quietWaitS >= 0)) throw new Error(`--quiet-wait-s must be 0 or more: ${values["quiet-wait-s"]}`);
/** Other work the machine may carry before a case starts (% of one core), if --quiet-wait-s allows. */
const QUIET_BUSY_PCT_MAX = 20;

type Runner = "node" | "process";
interface CaseSpec {
  readonly id: string;
  /** false: the nodes run with `--no-events`. */
  readonly events: boolean;
  readonly listeners: number;
  readonly runner: Runner | null;
}

const allCases: readonly CaseSpec[] = [
  { id: "ledger-off", events: false, listeners: 0, runner: null },
  { id: "ledger-on", events: true, listeners: 0, runner: null },
  { id: "node-1", events: true, listeners: 1, runner: "node" },
  { id: "node-4", events: true, listeners: 4, runner: "node" },
  { id: "process-1", events: true, listeners: 1, runner: "process" },
  { id: "process-4", events: true, listeners: 4, runner: "process" },
];
const cases = allCases.filter((c) => filter === undefined || c.id.includes(filter));

/** The webhook listener's options: the sink's defaults, named here so the results say them. */
const WEBHOOK = { format: "native" } as const;

interface Status {
  role?: string;
  term?: number;
}

type ProcessRole = "leader" | "follower" | "runner-leader" | "runner-follower" | "receiver" | "loadgen";
interface ProcessCpu {
  readonly role: ProcessRole;
  /** The node this process is or runs beside (null: the receiver, the load generator). */
  readonly node: number | null;
  /** % of one core over the measured window. */
  readonly cpu_pct: number | null;
  /** CPU seconds per 1000 key creates in the window. */
  readonly cpu_s_per_1k_creates: number | null;
}

interface ListenerDelivery {
  readonly name: string;
  readonly requests: number;
  /** Events received, duplicates included. */
  readonly events: number;
  readonly distinct: number;
  readonly duplicates: number;
}

interface Delivery {
  /** Events the ledger wrote from the listeners' start to the end of the load: each listener's due. */
  readonly expected: number;
  readonly listeners: ListenerDelivery[];
  /** Every listener received every event written (within DRAIN_MS_MAX of the load's end). */
  readonly all_received: boolean;
  /** From the load's end until every listener had every event (null: not within DRAIN_MS_MAX). */
  readonly caught_up_ms: number | null;
  /** The largest `lagTxids` and `lagMs` of `listeners ls` at the window's end. */
  readonly lag_txids_at_window_end: number | null;
  readonly lag_ms_at_window_end: number | null;
  readonly bad_requests: number;
}

interface CaseResult {
  readonly id: string;
  readonly events: boolean;
  readonly listeners: number;
  readonly runner: Runner | null;
  readonly seconds: number;
  readonly key_creates: number;
  readonly creates_per_s: number;
  /** Every run's rate, in run order (the case reports its median run). */
  readonly creates_per_s_runs?: number[];
  /** Every run in brief, in run order: how busy other work kept the machine beside each rate. */
  readonly runs?: RunBrief[];
  readonly errors: number;
  readonly error_codes: Record<string, number>;
  /** Open-key + commit-key pair latency. */
  readonly latency_us: LatencyUs;
  /** Events the ledger wrote during the measured window (0 with the ledger off). */
  readonly events_written_in_window: number | null;
  /** Listener lag of the events written in the window, first deliveries, every listener together. */
  readonly lag_ms: LagMs | null;
  readonly delivery: Delivery | null;
  /**
   * Light load, after the full one: `--sparse-writes` key creates one at a time, SPARSE_GAP_MS
   * apart; the lag of their events (every listener together). null: not run.
   */
  readonly sparse: { writes: number; all_received: boolean; lag_ms: LagMs } | null;
  readonly cpu: { processes: ProcessCpu[]; total_cpu_s_per_1k_creates: number | null };
  /**
   * The whole machine over the window, % of one core (200: both cores of two): busy, what this
   * benchmark's processes took of it, what other work took (busy − ours), and steal.
   */
  readonly machine_cpu: { busy_pct: number; ours_pct: number; others_pct: number; steal_pct: number } | null;
  readonly leader: number;
  /** null: the leader did not answer a status call in time (before or after the window). */
  readonly leader_changed: boolean | null;
  readonly creates_by_second: number[];
  readonly startup_ms: number;
  /** The wait for a quiet machine before the case started, and the machine's busy % then. */
  readonly quiet_wait: { waited_ms: number; busy_pct: number | null } | null;
  /**
   * Over the case's quiet runs only (other work took at most OTHERS_PCT_MAX of a core in the
   * window): how many, their median rate and median CPU per 1000 key creates (null: none quiet).
   */
  readonly quiet_runs?: QuietRuns;
  /** The median over every run of the total CPU per 1000 key creates. */
  readonly total_cpu_s_per_1k_creates_median?: number | null;
  /** The same for the leader's process alone (the busiest: its event loop sets the pace). */
  readonly leader_cpu_s_per_1k_creates_median?: number | null;
}

interface QuietRuns {
  readonly runs: number;
  readonly creates_per_s_median: number | null;
  readonly total_cpu_s_per_1k_creates_median: number | null;
}

/** The median of `xs` (null: empty); an even count takes the lower middle, as medianRun does. */
function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

function quietRuns(caseRuns: readonly CaseResult[]): QuietRuns {
  const quiet = caseRuns.filter((r) => r.machine_cpu !== null && r.machine_cpu.others_pct <= OTHERS_PCT_MAX);
  return {
    runs: quiet.length,
    creates_per_s_median: median(quiet.map((r) => r.creates_per_s)),
    total_cpu_s_per_1k_creates_median: median(
      quiet.flatMap((r) =>
        r.cpu.total_cpu_s_per_1k_creates === null ? [] : [r.cpu.total_cpu_s_per_1k_creates],
      ),
    ),
  };
}

interface LagMs {
  readonly count: number;
  readonly p50: number;
  readonly p99: number;
  readonly p999: number;
  readonly max: number;
  readonly mean: number;
}

function lagSummary(l: LatencyUs & { count: number }): LagMs {
  const toMs = (us: number) => Number((us / 1000).toFixed(2));
  return {
    count: l.count,
    p50: toMs(l.p50),
    p99: toMs(l.p99),
    p999: toMs(l.p999),
    max: toMs(l.max),
    mean: toMs(l.mean),
  };
}

interface RunBrief {
  readonly creates_per_s: number;
  readonly total_cpu_s_per_1k_creates: number | null;
  readonly others_cpu_pct: number | null;
  readonly lag_p99_ms: number | null;
  readonly sparse_lag_max_ms: number | null;
}

/**
 * A run during which other work on the machine took more than this (% of one core) is not quiet:
 * it is called out, and left out of the quiet-runs medians.
 */
const OTHERS_PCT_MAX = 20;

/** `metaraft listeners run --data DIR` beside a node, as an operator starts it. */
async function startRunner(dataDir: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI, "listeners", "run", "--data", dataDir, "--log-level", "warn"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(new Error(`the runner for ${dataDir} printed no ready line in ${RUNNER_START_MS_MAX} ms`)),
        RUNNER_START_MS_MAX,
      );
      createInterface({ input: child.stdout! }).once("line", () => {
        clearTimeout(timer);
        resolve();
      });
      child.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the runner for ${dataDir} exited with ${code} before it was ready`));
      });
    });
  } catch (error) {
    child.kill("SIGKILL");
    throw error;
  }
  // Its stdout is not read after the ready line: drain it so a chatty runner never blocks.
  child.stdout!.resume();
  return child;
}

interface ReceiverStats {
  readonly paths: Record<string, { requests: number; events: number; distinct: number; duplicates: number }>;
  readonly lag_us: LatencyUs & { count: number };
  readonly unrecorded: number;
  readonly bad_requests: number;
}

/** The webhook receiver's process, and its stats over IPC. */
class Receiver {
  readonly child: ChildProcess;
  readonly port: number;
  #nextId = 0;

  private constructor(child: ChildProcess, port: number) {
    this.child = child;
    this.port = port;
  }

  static async start(): Promise<Receiver> {
    const child = fork(RECEIVER, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    const port = await new Promise<number>((resolve, reject) => {
      child.once("message", (m: { kind?: string; port?: number }) =>
        m?.kind === "ready" && typeof m.port === "number"
          ? resolve(m.port)
          : reject(new Error(`the receiver sent ${JSON.stringify(m)} before ready`)),
      );
      child.once("exit", (code) => reject(new Error(`the receiver exited with ${code} before it was ready`)));
    });
    return new Receiver(child, port);
  }

  url(listener: number): string {
    return `http://127.0.0.1:${this.port}/l${listener}`;
  }

  stats(windowStart = 0, windowEnd = 0): Promise<ReceiverStats> {
    const id = ++this.#nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.child.off("message", onMessage);
        reject(new Error(`the receiver did not answer in ${RECEIVER_CALL_MS_MAX} ms`));
      }, RECEIVER_CALL_MS_MAX);
      const onMessage = (m: ReceiverStats & { kind?: string; id?: number }) => {
        if (m?.kind !== "stats" || m.id !== id) return;
        clearTimeout(timer);
        this.child.off("message", onMessage);
        resolve(m);
      };
      this.child.on("message", onMessage);
      this.child.send({ kind: "stats", id, windowStart, windowEnd });
    });
  }

  async stop(): Promise<void> {
    await stopChild(this.child);
  }
}

async function waitUntil(what: string, limitMs: number, check: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + limitMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

interface LedgerStatus {
  readonly ledger: { written: number; lastTxid: number };
  readonly listeners: ListenerRow[];
}

async function runCase(spec: CaseSpec, label: string, bar: cliProgress.SingleBar): Promise<CaseResult> {
  let quietWait: CaseResult["quiet_wait"] = null;
  if (quietWaitS > 0) {
    bar.update(0, { label, phase: "waiting for a quiet machine", rate: "-" });
    quietWait = await waitForQuiet(QUIET_BUSY_PCT_MAX, quietWaitS * 1000);
  }
  const t0 = Date.now();
  bar.update(0, { label, phase: "starting", rate: "-" });
  const cluster = await ProcessCluster.start({
    nodes: 3,
    kind: "metaraft",
    executionMode: "leader-execution",
    batchers: BATCHERS,
    tickMs: TICK_MS,
    electionTicks: ELECTION_TICKS,
    snapshotEntries,
    noSync,
    extraArgs: spec.events ? [] : ["--no-events"],
  });
  const clients: MetaraftClient[] = [];
  const runners = new Map<number, ChildProcess>();
  let receiver: Receiver | undefined;
  let leaderClient: MetaraftClient | undefined;
  try {
    if (spec.runner === "process") {
      await Promise.all(
        cluster.members.map(async (m) =>
          runners.set(m.id, await startRunner(join(cluster.dir, `node-${m.id}`))),
        ),
      );
    }
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
    // `listeners ls` is the view of the node asked: ask the leader alone.
    const leaderMember = cluster.members[leader - 1]!;
    leaderClient = new MetaraftClient({
      endpoints: [{ host: "127.0.0.1", port: leaderMember.clientPort }],
      clusterId: cluster.clusterId,
      timeoutMs: CALL_TIMEOUT_MS,
    });
    const ledgerStatus = async () => (await leaderClient!.listenerStatus()) as unknown as LedgerStatus;
    const volume = "bench";
    const bucket = "omkg";
    await clients[0]!.createVolume(volume);
    await clients[0]!.createBucket(volume, bucket);

    const names = Array.from({ length: spec.listeners }, (_, i) => `bench-${i + 1}`);
    if (spec.listeners > 0) {
      bar.update(0, { label, phase: "listeners", rate: "-" });
      receiver = await Receiver.start();
      for (const [i, name] of names.entries()) {
        await clients[0]!.listenerAdd({
          name,
          module: "webhook",
          options: { ...WEBHOOK, url: receiver.url(i + 1) },
          runner: spec.runner!,
          from: "now",
        });
      }
      await waitUntil(`listeners ${names.join(", ")} running`, LISTENER_START_MS_MAX, async () => {
        const rows = (await ledgerStatus()).listeners;
        return names.every((n) => rows.find((r) => r.name === n)?.state === "running");
      });
    }
    const writtenAtStart = (await ledgerStatus()).ledger.written;

    const load = new KeyCreateLoad({ clients, volume, bucket, inflight });
    const leaderStatus = () =>
      cluster.status(leader).then(
        (s) => s as Status,
        () => null,
      );
    load.start();
    const warmupEnd = Date.now() + WARMUP_MS;
    const ticker = showLoadProgress(load, bar, label, seconds);

    // Every process that may spend CPU on the load, in a fixed order.
    const watched: { role: ProcessRole; node: number | null; pid: number | undefined }[] = [
      ...cluster.members.map((m) => ({
        role: (m.id === leader ? "leader" : "follower") as ProcessRole,
        node: m.id,
        pid: cluster.pid(m.id),
      })),
      ...[...runners].map(([id, child]) => ({
        role: (id === leader ? "runner-leader" : "runner-follower") as ProcessRole,
        node: id,
        pid: child.pid,
      })),
      ...(receiver ? [{ role: "receiver" as ProcessRole, node: null, pid: receiver.child.pid }] : []),
    ];
    let before: Status | null;
    let after: Status | null;
    let elapsed: number;
    let windowStart: number;
    let windowEnd: number;
    let cpuBefore: (number | undefined)[];
    let cpuAfter: (number | undefined)[];
    let machineBefore: ReturnType<typeof machineCpuSeconds>;
    let machineAfter: ReturnType<typeof machineCpuSeconds>;
    let loadgenBefore: NodeJS.CpuUsage;
    let loadgenCpu: NodeJS.CpuUsage;
    let writtenBefore: number | null;
    let writtenAfter: number | null;
    let atWindowEnd: LedgerStatus | null;
    try {
      await new Promise((r) => setTimeout(r, Math.max(0, warmupEnd - Date.now())));
      before = await leaderStatus();
      writtenBefore = await ledgerStatus().then(
        (s) => s.ledger.written,
        () => null,
      );
      cpuBefore = watched.map((p) => processCpuSeconds(p.pid));
      machineBefore = machineCpuSeconds();
      loadgenBefore = process.cpuUsage();
      const startHr = process.hrtime.bigint();
      load.measure(true);
      windowStart = load.measureStart;
      await new Promise((r) => setTimeout(r, seconds * 1000));
      load.measure(false);
      windowEnd = Date.now();
      elapsed = Number(process.hrtime.bigint() - startHr) / 1e9;
      cpuAfter = watched.map((p) => processCpuSeconds(p.pid));
      machineAfter = machineCpuSeconds();
      loadgenCpu = process.cpuUsage(loadgenBefore);
      atWindowEnd = await ledgerStatus().catch(() => null);
      writtenAfter = atWindowEnd?.ledger.written ?? null;
      after = await leaderStatus();
    } finally {
      clearInterval(ticker);
      bar.update(seconds, { label, phase: "draining", rate: (load.creates / seconds).toFixed(0) });
      await load.stop();
    }
    const loadEnd = Date.now();

    let delivery: Delivery | null = null;
    let lagMs: CaseResult["lag_ms"] = null;
    let sparse: CaseResult["sparse"] = null;
    if (receiver) {
      const r = receiver;
      /** Waits until every listener received `due` distinct events: the ms it took, or null. */
      const received = async (due: number, since: number, limitMs: number): Promise<number | null> => {
        for (;;) {
          const stats = await r.stats();
          if (names.every((_, i) => (stats.paths[`/l${i + 1}`]?.distinct ?? 0) >= due))
            return Date.now() - since;
          if (Date.now() - since > limitMs) return null;
          await new Promise((resolve) => setTimeout(resolve, POLL_MS));
        }
      };
      const expected = (await ledgerStatus()).ledger.written - writtenAtStart;
      const caughtUp = await received(expected, loadEnd, DRAIN_MS_MAX);
      const stats = await r.stats(windowStart, windowEnd);
      const rows = atWindowEnd?.listeners.filter((row) => names.includes(row.name)) ?? [];
      delivery = {
        expected,
        listeners: names.map((name, i) => {
          const p = stats.paths[`/l${i + 1}`];
          return {
            name,
            requests: p?.requests ?? 0,
            events: p?.events ?? 0,
            distinct: p?.distinct ?? 0,
            duplicates: p?.duplicates ?? 0,
          };
        }),
        all_received: caughtUp !== null,
        caught_up_ms: caughtUp,
        lag_txids_at_window_end: atWindowEnd ? Math.max(0, ...rows.map((row) => row.lagTxids)) : null,
        lag_ms_at_window_end: atWindowEnd ? Math.max(0, ...rows.map((row) => row.lagMs)) : null,
        bad_requests: stats.bad_requests,
      };
      lagMs = lagSummary(stats.lag_us);
      if (stats.unrecorded > 0) {
        process.stderr.write(`${spec.id}: the receiver recorded no lag for ${stats.unrecorded} events\n`);
      }

      // Light load: one key create at a time, SPARSE_GAP_MS apart, once the listeners caught up.
      if (caughtUp !== null && sparseWrites > 0) {
        bar.update(seconds, { label, phase: "sparse writes", rate: "-" });
        const sparseStart = Date.now();
        let done = 0;
        for (let i = 0; i < sparseWrites; i++) {
          const key = `sparse-${i}`;
          try {
            const { openKeyId } = await clients[0]!.openKey(volume, bucket, key, 1024);
            await clients[0]!.commitKey(volume, bucket, key, openKeyId, { size: 1024, etag: "sparse" });
            done++;
          } catch (error) {
            process.stderr.write(`${spec.id}: a sparse write failed: ${(error as Error).message}\n`);
          }
          await new Promise((resolve) => setTimeout(resolve, SPARSE_GAP_MS));
        }
        const sparseEnd = Date.now();
        const due = (await ledgerStatus()).ledger.written - writtenAtStart;
        const all = await received(due, sparseEnd, SPARSE_DRAIN_MS_MAX);
        const sparseStats = await r.stats(sparseStart, sparseEnd);
        sparse = { writes: done, all_received: all !== null, lag_ms: lagSummary(sparseStats.lag_us) };
      }
    }

    const createsPerS = load.creates / elapsed;
    const perK = (cpuS: number | null) =>
      cpuS === null || load.creates <= 0 ? null : Number(((cpuS / load.creates) * 1000).toFixed(4));
    const processes: ProcessCpu[] = watched.map((p, i) => {
      const b = cpuBefore[i];
      const a = cpuAfter[i];
      const cpuS = a === undefined || b === undefined ? null : a - b;
      return {
        role: p.role,
        node: p.node,
        cpu_pct: cpuS === null ? null : pct(cpuS, elapsed),
        cpu_s_per_1k_creates: perK(cpuS),
      };
    });
    const loadgenS = (loadgenCpu.user + loadgenCpu.system) / 1e6;
    processes.push({
      role: "loadgen",
      node: null,
      cpu_pct: pct(loadgenS, elapsed),
      cpu_s_per_1k_creates: perK(loadgenS),
    });
    const totals = processes.map((p) => p.cpu_s_per_1k_creates);
    let machineCpu: CaseResult["machine_cpu"] = null;
    if (machineBefore && machineAfter) {
      const busy = pct(machineAfter.busy - machineBefore.busy, elapsed);
      const ours = Number(processes.reduce((a, p) => a + (p.cpu_pct ?? 0), 0).toFixed(1));
      machineCpu = {
        busy_pct: busy,
        ours_pct: ours,
        // Both are sampled a moment apart: a small negative difference is noise.
        others_pct: Math.max(0, Number((busy - ours).toFixed(1))),
        steal_pct: pct(machineAfter.steal - machineBefore.steal, elapsed),
      };
    }
    return {
      id: spec.id,
      events: spec.events,
      listeners: spec.listeners,
      runner: spec.runner,
      seconds: Number(elapsed.toFixed(3)),
      key_creates: load.creates,
      creates_per_s: Math.round(createsPerS),
      errors: load.errors,
      error_codes: load.errorCodes,
      latency_us: latencySummary(load.histogram),
      events_written_in_window:
        writtenBefore === null || writtenAfter === null ? null : writtenAfter - writtenBefore,
      lag_ms: lagMs,
      delivery,
      sparse,
      cpu: {
        processes,
        total_cpu_s_per_1k_creates: totals.includes(null)
          ? null
          : Number(totals.reduce<number>((a, b) => a + (b ?? 0), 0).toFixed(4)),
      },
      machine_cpu: machineCpu,
      leader,
      leader_changed:
        before === null || after === null ? null : after.role !== "leader" || after.term !== before.term,
      creates_by_second: load.bySecond(elapsed),
      startup_ms: startupMs,
      quiet_wait: quietWait,
    };
  } finally {
    bar.update({ phase: "stopping" });
    for (const client of clients) client.close();
    leaderClient?.close();
    await receiver?.stop();
    await Promise.all([...runners.values()].map(stopChild));
    await cluster.stop();
  }
}

/** CPU seconds per 1000 key creates of the processes with `role`, summed (null: none, or one unknown). */
function cpuOf(r: CaseResult, ...roles: ProcessRole[]): number | null {
  const ps = r.cpu.processes.filter((p) => roles.includes(p.role));
  if (ps.length === 0 || ps.some((p) => p.cpu_s_per_1k_creates === null)) return null;
  return Number(ps.reduce((a, p) => a + p.cpu_s_per_1k_creates!, 0).toFixed(4));
}
const pctOf = (r: CaseResult, role: ProcessRole) =>
  r.cpu.processes
    .filter((p) => p.role === role)
    .map((p) => (p.cpu_pct === null ? "?" : p.cpu_pct.toFixed(0)))
    .join("/") || "-";
const fixed = (v: number | null, digits = 3) => (v === null ? "-" : v.toFixed(digits));
const ratio = (a: CaseResult, b: CaseResult | undefined) =>
  b && b.creates_per_s > 0 ? Number((a.creates_per_s / b.creates_per_s).toFixed(3)) : null;

async function main(): Promise<void> {
  if (cases.length === 0) {
    process.stderr.write(
      `bench:ledger: --filter ${filter} matches none of ${allCases.map((c) => c.id).join(", ")}; nothing to run\n`,
    );
    return;
  }
  process.stderr.write(
    `bench:ledger: ${cases.length} case(s) x ${repeat} round(s), 3 nodes each (leader-execution, batchers ${BATCHERS}), ` +
      `${connections} connections, ${inflight} pairs in flight, ${WARMUP_MS / 1000} s warm-up + ${seconds} s measured per case\n`,
  );
  const bar = progressBar();
  const runs: CaseResult[][] = cases.map(() => []);
  bar.start(seconds, 0, { label: "", phase: "", rate: "-" });
  try {
    for (let round = 0; round < repeat; round++) {
      // Each round starts one case later, so that no case always follows the same one.
      for (let k = 0; k < cases.length; k++) {
        const i = (round + k) % cases.length;
        const spec = cases[i]!;
        const label = `[${round * cases.length + k + 1}/${repeat * cases.length}] ${spec.id}`;
        runs[i]!.push(await runCase(spec, label, bar));
      }
    }
  } finally {
    bar.stop();
  }
  const results: CaseResult[] = runs.map((caseRuns) => ({
    ...medianRun(caseRuns, (r) => r.creates_per_s),
    creates_per_s_runs: caseRuns.map((r) => r.creates_per_s),
    runs: caseRuns.map((r) => ({
      creates_per_s: r.creates_per_s,
      total_cpu_s_per_1k_creates: r.cpu.total_cpu_s_per_1k_creates,
      others_cpu_pct: r.machine_cpu?.others_pct ?? null,
      lag_p99_ms: r.lag_ms?.p99 ?? null,
      sparse_lag_max_ms: r.sparse?.lag_ms.max ?? null,
    })),
    quiet_runs: quietRuns(caseRuns),
    leader_cpu_s_per_1k_creates_median: median(
      caseRuns.flatMap((r) => {
        const v = cpuOf(r, "leader");
        return v === null ? [] : [v];
      }),
    ),
    total_cpu_s_per_1k_creates_median: median(
      caseRuns.flatMap((r) =>
        r.cpu.total_cpu_s_per_1k_creates === null ? [] : [r.cpu.total_cpu_s_per_1k_creates],
      ),
    ),
  }));
  const off = results.find((r) => r.id === "ledger-off");
  const on = results.find((r) => r.id === "ledger-on");
  /**
   * Case `a`'s rate over case `b`'s, round by round (the two ran minutes apart at most, so a
   * slow spell of the machine cancels out), and the median of those.
   */
  const byRound = (a: string, b: string) => {
    const ra = runs[cases.findIndex((c) => c.id === a)];
    const rb = runs[cases.findIndex((c) => c.id === b)];
    if (!ra || !rb) return null;
    const ratios = ra.map((r, k) => Number((r.creates_per_s / Math.max(1, rb[k]!.creates_per_s)).toFixed(3)));
    const sorted = [...ratios].sort((x, y) => x - y);
    return { rounds: ratios, median: sorted[Math.floor((sorted.length - 1) / 2)]! };
  };

  console.table(
    results.map((r) => ({
      case: r.id,
      "creates/s": r.creates_per_s,
      "runs (creates/s)": (r.creates_per_s_runs ?? []).join(" "),
      "quiet runs: n, median": r.quiet_runs
        ? `${r.quiet_runs.runs}, ${r.quiet_runs.creates_per_s_median ?? "-"}`
        : "-",
      "vs off": fixed(ratio(r, off), 2),
      "vs on": r.listeners > 0 ? fixed(ratio(r, on), 2) : "-",
      "p99 ms": (r.latency_us.p99 / 1000).toFixed(1),
      "lag p50/p99/max ms": r.lag_ms ? `${r.lag_ms.p50} / ${r.lag_ms.p99} / ${r.lag_ms.max}` : "-",
      "sparse lag p50/max ms": r.sparse ? `${r.sparse.lag_ms.p50} / ${r.sparse.lag_ms.max}` : "-",
      "received/written": r.delivery
        ? `${r.delivery.listeners.map((l) => l.distinct).join("+")} / ${r.delivery.expected} each`
        : "-",
      "CPU% ldr/fol": `${pctOf(r, "leader")} / ${pctOf(r, "follower")}`,
      "CPU% run/recv/gen": `${pctOf(r, "runner-leader")} / ${pctOf(r, "receiver")} / ${pctOf(r, "loadgen")}`,
      "CPU% others": r.machine_cpu ? r.machine_cpu.others_pct.toFixed(0) : "?",
      "CPU s/1k: leader": fixed(cpuOf(r, "leader")),
      followers: fixed(cpuOf(r, "follower")),
      runners: fixed(cpuOf(r, "runner-leader", "runner-follower")),
      receiver: fixed(cpuOf(r, "receiver")),
      loadgen: fixed(cpuOf(r, "loadgen")),
      total: fixed(r.cpu.total_cpu_s_per_1k_creates),
      errors: r.errors,
    })),
  );
  for (const r of results) {
    if (r.errors > 0) process.stderr.write(`${r.id}: ${r.errors} errors ${JSON.stringify(r.error_codes)}\n`);
    const busy = (r.runs ?? []).filter((b) => (b.others_cpu_pct ?? 0) > OTHERS_PCT_MAX);
    if (busy.length > 0) {
      process.stderr.write(
        `${r.id}: other work took more than ${OTHERS_PCT_MAX}% of a core in ${busy.length} of its runs ` +
          `(creates/s with others' CPU%: ${(r.runs ?? []).map((b) => `${b.creates_per_s}@${b.others_cpu_pct ?? "?"}%`).join(" ")}); ` +
          "compare CPU per create rather than rates for it\n",
      );
    }
    if (r.leader_changed) process.stderr.write(`${r.id}: the leader changed during the measured window\n`);
    if (r.leader_changed === null) process.stderr.write(`${r.id}: the leader did not answer a status call\n`);
    if (!r.events && r.events_written_in_window !== 0) {
      process.stderr.write(`${r.id}: the ledger was off but wrote ${r.events_written_in_window} events\n`);
    }
    if (r.delivery && !r.delivery.all_received) {
      process.stderr.write(
        `${r.id}: NOT every event reached every listener within ${DRAIN_MS_MAX / 1000} s of the load's end: ` +
          `received ${r.delivery.listeners.map((l) => l.distinct).join(", ")} of ${r.delivery.expected}\n`,
      );
    }
    if (r.sparse && !r.sparse.all_received) {
      process.stderr.write(
        `${r.id}: NOT every sparse write's event reached every listener within ${SPARSE_DRAIN_MS_MAX / 1000} s\n`,
      );
    }
    const slowest = Math.min(...r.creates_by_second);
    if (r.creates_by_second.length > 0 && slowest < r.creates_per_s / 4) {
      process.stderr.write(
        `${r.id}: stalled: one second completed ${slowest} key creates against ${r.creates_per_s}/s on average ` +
          `(per second: ${r.creates_by_second.join(" ")})\n`,
      );
    }
  }

  let comparison: Record<string, unknown> | null = null;
  if (off && on) {
    const cost = 1 - on.creates_per_s / Math.max(1, off.creates_per_s);
    const met = cost <= TARGET_COST_MAX;
    const cpuOn = on.cpu.total_cpu_s_per_1k_creates;
    const cpuOff = off.cpu.total_cpu_s_per_1k_creates;
    const rounds = byRound("ledger-on", "ledger-off");
    const listenerCase = (id: string) => {
      const r = results.find((x) => x.id === id);
      return r
        ? {
            creates_per_s: r.creates_per_s,
            vs_ledger_off: ratio(r, off),
            vs_ledger_on: ratio(r, on),
            vs_ledger_on_by_round: byRound(id, "ledger-on"),
            quiet_runs: r.quiet_runs?.runs ?? 0,
            quiet_vs_ledger_on:
              r.quiet_runs?.creates_per_s_median && qOn
                ? Number((r.quiet_runs.creates_per_s_median / qOn).toFixed(3))
                : null,
            lag_p99_ms: r.lag_ms?.p99 ?? null,
            sparse_lag_ms: r.sparse ? { p50: r.sparse.lag_ms.p50, max: r.sparse.lag_ms.max } : null,
            all_received: r.delivery?.all_received ?? null,
            cpu_s_per_1k_creates: {
              leader: cpuOf(r, "leader"),
              runners: cpuOf(r, "runner-leader", "runner-follower"),
              receiver: cpuOf(r, "receiver"),
              total: r.cpu.total_cpu_s_per_1k_creates,
            },
          }
        : null;
    };
    // The same over the quiet runs only, and by CPU per key create (the median over all runs),
    // which other work on the machine moves far less than it moves the rates.
    const qOn = on.quiet_runs?.creates_per_s_median ?? null;
    const qOff = off.quiet_runs?.creates_per_s_median ?? null;
    const quietCost = qOn !== null && qOff !== null ? 1 - qOn / Math.max(1, qOff) : null;
    const cpuMedOn = on.total_cpu_s_per_1k_creates_median ?? null;
    const cpuMedOff = off.total_cpu_s_per_1k_creates_median ?? null;
    const cpuCost = cpuMedOn !== null && cpuMedOff ? cpuMedOn / cpuMedOff - 1 : null;
    const leaderOn = on.leader_cpu_s_per_1k_creates_median ?? null;
    const leaderOff = off.leader_cpu_s_per_1k_creates_median ?? null;
    const leaderCost = leaderOn !== null && leaderOff ? leaderOn / leaderOff - 1 : null;
    const mostlyQuiet = (r: CaseResult) => (r.quiet_runs?.runs ?? 0) * 2 > (r.runs?.length ?? 0);
    const ratesReliable = mostlyQuiet(on) && mostlyQuiet(off);
    comparison = {
      ledger_cost: Number(cost.toFixed(3)),
      /**
       * Whether most runs of both cases were quiet; if not, other work on the machine moved the
       * rates more than the ledger could, and the CPU per key create is the figure to go by.
       */
      rates_reliable: ratesReliable,
      quiet_runs: {
        other_work_pct_max: OTHERS_PCT_MAX,
        ledger_off_runs: off.quiet_runs?.runs ?? 0,
        ledger_on_runs: on.quiet_runs?.runs ?? 0,
        ledger_cost: quietCost === null ? null : Number(quietCost.toFixed(3)),
        target_met: quietCost === null ? null : quietCost <= TARGET_COST_MAX,
      },
      /** Extra CPU per key create (all processes, median over every run) with the ledger on. */
      cpu_cost: cpuCost === null ? null : Number(cpuCost.toFixed(3)),
      /** The same for the leader's process alone. */
      leader_cpu_cost: leaderCost === null ? null : Number(leaderCost.toFixed(3)),
      ledger_on_vs_off: ratio(on, off),
      ledger_on_vs_off_by_round: rounds,
      /** CPU per key create, all processes, ledger on over off. */
      cpu_per_create_on_vs_off: cpuOn && cpuOff ? Number((cpuOn / cpuOff).toFixed(3)) : null,
      target: `the ledger (0 listeners) costs at most ${TARGET_COST_MAX * 100}% of key creates/s`,
      target_met: met,
      listeners: Object.fromEntries(
        ["node-1", "node-4", "process-1", "process-4"].map((id) => [id, listenerCase(id)]),
      ),
      cpus: cpus().length,
    };
    console.log(
      `ledger on vs off: ${on.creates_per_s} vs ${off.creates_per_s} creates/s — the ledger costs ` +
        `${(cost * 100).toFixed(1)}% (target <= ${TARGET_COST_MAX * 100}%: ${met ? "met" : "NOT met"}); ` +
        `CPU per 1000 key creates ${fixed(cpuOn)} s vs ${fixed(cpuOff)} s (all processes); ` +
        `on/off round by round ${rounds ? `${rounds.rounds.join(" ")} (median ${rounds.median})` : "-"}`,
    );
    console.log(
      `quiet runs only (other work <= ${OTHERS_PCT_MAX}% of a core; ${on.quiet_runs?.runs ?? 0} on, ` +
        `${off.quiet_runs?.runs ?? 0} off): ` +
        (quietCost === null
          ? "none to compare"
          : `${qOn} vs ${qOff} creates/s — the ledger costs ${(quietCost * 100).toFixed(1)}% ` +
            `(target: ${quietCost <= TARGET_COST_MAX ? "met" : "NOT met"})`) +
        `; CPU per key create, median of every run: ${cpuCost === null ? "?" : `${(cpuCost * 100).toFixed(1)}% more`} ` +
        `(the leader's: ${leaderCost === null ? "?" : `${(leaderCost * 100).toFixed(1)}% more`}) with the ledger on`,
    );
    if (!ratesReliable) {
      console.log(
        `RATES UNRELIABLE: other work took more than ${OTHERS_PCT_MAX}% of a core in most runs of ledger-on or ` +
          "ledger-off; the creates/s verdict above says little; go by CPU per key create",
      );
    }
  } else {
    console.log("no ledger comparison: needs the ledger-off and ledger-on cases");
  }
  for (const r of results.filter((x) => x.listeners > 0)) {
    console.log(
      `${r.id}: ${r.creates_per_s} creates/s (${fixed(ratio(r, off), 2)}x ledger-off, ${fixed(ratio(r, on), 2)}x ledger-on; ` +
        `quiet runs ${r.quiet_runs?.runs ?? 0}, median ${r.quiet_runs?.creates_per_s_median ?? "-"}), ` +
        `listener lag p99 ${r.lag_ms?.p99 ?? "?"} ms` +
        (r.sparse ? ` (light load: p50 ${r.sparse.lag_ms.p50} ms, max ${r.sparse.lag_ms.max} ms)` : "") +
        ", " +
        (r.delivery?.all_received
          ? `every event received (caught up ${r.delivery.caught_up_ms} ms after the load)`
          : "NOT every event received"),
    );
  }

  const result = {
    machine: machineInfo(),
    config: {
      nodes: 3,
      transport: "loopback",
      workload: "openKey + commitKey on unique keys (freon omkg-like), 1024-byte size",
      execution_mode: "leader-execution",
      batchers: BATCHERS,
      connections,
      inflight,
      seconds_per_case: seconds,
      repeat,
      order: "interleaved rounds, each round starting one case later; a case reports its median run",
      warmup_s: WARMUP_MS / 1000,
      tick_ms: TICK_MS,
      election_ticks: ELECTION_TICKS,
      snapshot_entries: snapshotEntries,
      call_timeout_ms: CALL_TIMEOUT_MS,
      fsync: !noSync,
      quick,
      filter: filter ?? null,
      listener: {
        module: "webhook",
        options: { ...WEBHOOK, rest: "the sink's and LedgerListener's defaults" },
        from: "now",
        receiver: "node:http in its own process, one path per listener",
      },
      lag:
        "receiver's wall clock when a request's body is in, minus the event's time (the leader's ms for the request), " +
        "first delivery of each event whose time is in the measured window; up to 1 ms long (time is whole ms)",
      cpu_pct:
        "% of one core over the measured window (/proc/<pid>/stat utime+stime; loadgen: process.cpuUsage)",
      cpu_s_per_1k_creates: "CPU seconds in the measured window per 1000 key creates completed in it",
      drain_ms_max: DRAIN_MS_MAX,
      quiet_wait_s: quietWaitS,
      sparse_writes: sparseWrites,
      sparse_gap_ms: SPARSE_GAP_MS,
      quiet_busy_pct_max: QUIET_BUSY_PCT_MAX,
      quiet_run_other_work_pct_max: OTHERS_PCT_MAX,
      machine_cpu:
        "/proc/stat over the window: busy (all but idle, iowait, steal), ours (the processes above), " +
        "others = busy - ours: work on the machine that is not this benchmark's",
    },
    results,
    comparison,
  };
  const complete = !quick && filter === undefined;
  const name = !complete ? "ledger.partial" : noSync ? "ledger.nosync" : "ledger";
  writeResults(name, result);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
