/**
 * `npm run bench:locks`: lock handoffs through metaraft's Mutex (src/client/lock.ts) and through
 * etcd's (the algorithm of its Go client's concurrency.Mutex, bench/etcd.ts), in one run. Three
 * `metaraft start` node processes and three etcd 3.4 members on loopback, both up for the whole
 * run and both fsyncing. Per case, C contenders (each its own client, connection and session, or
 * lease) loop lock → one put of a counter key → unlock, for `--seconds` after a warm-up; cases
 * run interleaved, metaraft then etcd for each C, over `--repeat` rounds.
 *
 *   npm run bench:locks [-- --quick] [-- --seconds 8] [-- --contenders 1,4,16] [-- --repeat 2]
 *                       [-- --no-etcd] [-- --filter <substring of a case id, e.g. etcd/c16>]
 *
 * Reported per case: handoffs per second (lock acquisitions inside the window), acquire latency
 * (lock() called to lock held), each server process's CPU and CPU per handoff, this process's
 * (all the contenders') likewise, and whether the counter the holders wrote equals the handoffs
 * counted (a lost update means two holders at once). A `--quick` or otherwise non-default run
 * writes bench/results/locks.partial.json, never the reference locks.json.
 */
import { parseArgs } from "node:util";
import { Etcd3 } from "etcd3";
import { MetaraftClient } from "../src/client/client.js";
import { Mutex } from "../src/client/lock.js";
import { ProcessCluster } from "../test/helpers/cluster.js";
import {
  ClosedLoopLoad,
  type LatencyUs,
  latencyHistogram,
  latencySummary,
  type MachineShare,
  machineCpuSeconds,
  machineInfo,
  machineShare,
  medianRun,
  pct,
  positiveInt,
  processCpuSeconds,
  progressBar,
  writeResults,
} from "./common.js";
import { EtcdCluster, EtcdMutex, etcdVersion } from "./etcd.js";

/** metaraft's tick and election timeout in ticks; etcd's heartbeat and election timeout alike. */
const TIMING = { tickMs: 50, electionTicks: 10 } as const;
/** Lock loops run this long before a window opens. */
const WARMUP_MS = 1000;
/**
 * Before the first round each system runs `contenders` for `ms`, not measured: a fresh cluster's
 * first writes pay for JIT and LMDB maps growing.
 */
const PRIME = { ms: 5000, contenders: 4 } as const;
/** Session TTL (metaraft) and lease TTL (etcd): long enough that no contender loses its own. */
const TTL_MS = 10_000;
const CALL_TIMEOUT_MS = 30_000;
/** After a window, every loop must finish its cycle within this long (a stuck wait fails the run). */
const DRAIN_MS_MAX = 30_000;
/** The lock: every contender's key is under it. */
const PREFIX = "bench/lock/";
const DEFAULT_CONTENDERS = "1,4,16";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    /** Seconds per measured window. */
    seconds: { type: "string", default: "8" },
    contenders: { type: "string", default: DEFAULT_CONTENDERS },
    /** Rounds: each case runs once per round. */
    repeat: { type: "string", default: "2" },
    "no-etcd": { type: "boolean", default: false },
    /** `npm run bench -- --filter x` passes it to every benchmark: here a substring of a case id. */
    filter: { type: "string" },
  },
});

const quick = values.quick === true;
const seconds = quick ? 2 : Number(values.seconds);
if (!(seconds > 0)) throw new Error(`--seconds must be positive: ${values.seconds}`);
const repeat = quick ? 1 : positiveInt("repeat", values.repeat);
const contenderCounts = values.contenders
  .split(",")
  .map((s) => positiveInt("contenders", s.trim()))
  .sort((a, b) => a - b);
const filter = values.filter;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

type SystemName = "metaraft" | "etcd";

/** One contender: its lock, the critical section's put, and its end (session or lease closed). */
interface Locker {
  lock(): Promise<unknown>;
  unlock(): Promise<unknown>;
  put(key: string, value: string): Promise<unknown>;
  close(): Promise<void>;
}

interface ServerProc {
  readonly node: number;
  readonly role: "leader" | "follower";
  readonly pid: number | undefined;
}

/** The servers with their roles, the leader (node `leader`) first. */
function leaderFirst(servers: { node: number; pid: number | undefined }[], leader: number): ServerProc[] {
  const role = (node: number): ServerProc["role"] => (node === leader ? "leader" : "follower");
  return servers
    .map((p) => ({ ...p, role: role(p.node) }))
    .sort((a, b) => Number(b.role === "leader") - Number(a.role === "leader"));
}

/** What a case needs of a system under test. */
interface System {
  readonly name: SystemName;
  /** The three server processes, with the leader as it is now. */
  servers(): Promise<ServerProc[]>;
  contender(): Promise<Locker>;
  /** The counter key's value (null: absent). */
  readCounter(key: string): Promise<number | null>;
  /** Keys under the lock's prefix: none between cases (the last case's sessions are closed). */
  contendersLeft(): Promise<number>;
  stop(): Promise<void>;
}

/**
 * Every contender loops lock → put the counter → unlock. The counter's next value comes from
 * this process's memory, read before the put and advanced after it: two holders at once would
 * both put the same value, and the stored counter would fall behind the handoffs counted.
 */
class LockLoad extends ClosedLoopLoad {
  readonly acquireUs = latencyHistogram();
  /** Acquisitions that completed inside the window. */
  handoffs = 0;
  /** Acquisitions whose put succeeded, warm-up and drain included: the counter must end here. */
  handoffsTotal = 0;
  #counter = 0;
  #holders = 0;
  /** Contenders holding the lock at once, at most (1, unless the lock is broken). */
  holdersMax = 0;

  constructor(
    readonly lockers: readonly Locker[],
    readonly counterKey: string,
  ) {
    super(lockers.length);
  }

  protected async run(loop: number): Promise<void> {
    const locker = this.lockers[loop]!;
    const started = process.hrtime.bigint();
    await locker.lock();
    if (this.measuring) {
      this.handoffs++;
      this.acquireUs.recordValue(Math.max(1, Number((process.hrtime.bigint() - started) / 1000n)));
    }
    this.#holders++;
    this.holdersMax = Math.max(this.holdersMax, this.#holders);
    try {
      const next = this.#counter + 1;
      await locker.put(this.counterKey, String(next));
      this.#counter = next;
      this.handoffsTotal++;
    } finally {
      this.#holders--;
      await locker.unlock();
    }
  }
}

interface ProcCpu {
  readonly node: number | null;
  readonly role: ServerProc["role"] | "load";
  /** % of one core over the window. */
  readonly cpu_pct: number | null;
  /** CPU ms per handoff in the window. */
  readonly cpu_ms_per_handoff: number | null;
}

function procCpu(
  node: number | null,
  role: ProcCpu["role"],
  cpuS: number | null,
  elapsed: number,
  handoffs: number,
): ProcCpu {
  return {
    node,
    role,
    cpu_pct: cpuS === null ? null : pct(cpuS, elapsed),
    cpu_ms_per_handoff:
      cpuS === null || handoffs === 0 ? null : Number(((cpuS / handoffs) * 1000).toFixed(3)),
  };
}

interface CaseRun {
  readonly id: string;
  readonly system: SystemName;
  readonly contenders: number;
  readonly round: number;
  readonly seconds: number;
  readonly leader: number;
  readonly handoffs: number;
  readonly handoffs_per_s: number;
  readonly acquire_latency_us: LatencyUs;
  /** Handoffs in each whole second of the window (a stall shows as a dip). */
  readonly handoffs_by_second: number[];
  readonly errors: number;
  readonly error_codes: Record<string, number>;
  /** The stored counter against the handoffs whose put succeeded (warm-up and drain included). */
  readonly counter: { readonly stored: number | null; readonly handoffs: number; readonly ok: boolean };
  readonly holders_max: number;
  readonly contenders_left_at_start: number;
  /** Servers (leader first), then this process (role `load`: every contender's client). */
  readonly cpu: ProcCpu[];
  /** The whole machine, % of one core: busy, ours (the processes above), others (busy − ours). */
  readonly machine_cpu: MachineShare | null;
}

interface Ui {
  readonly bar: ReturnType<typeof progressBar>;
  label: string;
}

function show(ui: Ui, value: number, phase: string, rate = "-"): void {
  ui.bar.update(value, { label: ui.label, phase, rate });
}

async function startLoad(system: System, contenders: number, counterKey: string): Promise<LockLoad> {
  const lockers = await Promise.all(Array.from({ length: contenders }, () => system.contender()));
  const load = new LockLoad(lockers, counterKey);
  load.start();
  return load;
}

/** Stops the loops (each finishes its cycle) and closes every contender's session or lease. */
async function stopLoad(load: LockLoad): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      load.stop(),
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the lock loops did not finish within ${DRAIN_MS_MAX} ms`)),
          DRAIN_MS_MAX,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
    await Promise.all(load.lockers.map((l) => l.close()));
  }
}

async function prime(system: System, ui: Ui): Promise<void> {
  ui.label = `${system.name} priming`;
  show(ui, 0, `${PRIME.contenders} contenders, not measured`);
  const load = await startLoad(system, PRIME.contenders, `bench/counter/${system.name}/prime`);
  await sleep(PRIME.ms);
  await stopLoad(load);
}

async function runCase(system: System, contenders: number, round: number, ui: Ui): Promise<CaseRun> {
  const id = `${system.name}/c${contenders}`;
  const counterKey = `bench/counter/${id}/r${round}`;
  const left = await system.contendersLeft();
  const load = await startLoad(system, contenders, counterKey);
  const ticker = setInterval(() => {
    if (!load.measuring) return show(ui, 0, "warm-up");
    const elapsed = (Date.now() - load.measureStart) / 1000;
    show(
      ui,
      Math.min(elapsed, seconds),
      "measuring",
      elapsed > 0 ? (load.handoffs / elapsed).toFixed(0) : "-",
    );
  }, 250);
  let window: Omit<CaseRun, "counter" | "holders_max" | "errors" | "error_codes">;
  try {
    await sleep(WARMUP_MS);
    const servers = await system.servers();
    const cpuBefore = servers.map((p) => processCpuSeconds(p.pid));
    const machineBefore = machineCpuSeconds();
    const selfBefore = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    load.measure(true);
    await sleep(seconds * 1000);
    load.measure(false);
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpuAfter = servers.map((p) => processCpuSeconds(p.pid));
    const machineAfter = machineCpuSeconds();
    const self = process.cpuUsage(selfBefore);
    const { handoffs } = load;
    const used = (i: number) => {
      const a = cpuAfter[i];
      const b = cpuBefore[i];
      return a === undefined || b === undefined ? null : a - b;
    };
    const cpu = [
      ...servers.map((p, i) => procCpu(p.node, p.role, used(i), elapsed, handoffs)),
      procCpu(null, "load", (self.user + self.system) / 1e6, elapsed, handoffs),
    ];
    const ours = cpu.reduce((sum, p) => sum + (p.cpu_pct ?? 0), 0);
    const machine = machineShare(machineBefore, machineAfter, ours, elapsed);
    window = {
      id,
      system: system.name,
      contenders,
      round,
      seconds: Number(elapsed.toFixed(3)),
      leader: servers.find((p) => p.role === "leader")?.node ?? 0,
      handoffs,
      handoffs_per_s: Math.round(handoffs / elapsed),
      acquire_latency_us: latencySummary(load.acquireUs),
      handoffs_by_second: load.bySecond(elapsed),
      contenders_left_at_start: left,
      cpu,
      machine_cpu: machine,
    };
  } finally {
    clearInterval(ticker);
    show(ui, seconds, "draining");
    await stopLoad(load);
  }
  const stored = await system.readCounter(counterKey);
  return {
    ...window,
    errors: load.errors,
    error_codes: load.errorCodes,
    counter: { stored, handoffs: load.handoffsTotal, ok: stored === load.handoffsTotal },
    holders_max: load.holdersMax,
  };
}

async function startMetaraft(): Promise<System> {
  const cluster = await ProcessCluster.start({
    nodes: 3,
    kind: "metaraft",
    ...TIMING,
    extraArgs: ["--log-level=error"],
  });
  const leader0 = await cluster.leader();
  // The leader first: a contender's first call goes straight to it, as etcd's are given the leader.
  const endpoints = [
    cluster.endpoints[leader0 - 1]!,
    ...cluster.endpoints.filter((_, i) => i !== leader0 - 1),
  ];
  const connect = () =>
    new MetaraftClient({ endpoints, clusterId: cluster.clusterId, timeoutMs: CALL_TIMEOUT_MS });
  const admin = connect();
  return {
    name: "metaraft",
    async servers() {
      const leader = await cluster.leader();
      return leaderFirst(
        cluster.members.map((m) => ({ node: m.id, pid: cluster.pid(m.id) })),
        leader,
      );
    },
    async contender() {
      const client = connect();
      const session = await client.createSession({ ttlMs: TTL_MS });
      const mutex = new Mutex(client, session, PREFIX);
      return {
        lock: () => mutex.lock(),
        unlock: () => mutex.unlock(),
        put: (key, value) => client.kvPut(key, value),
        async close() {
          await session.close().catch(() => undefined);
          client.close();
        },
      };
    },
    async readCounter(key) {
      const kv = (await admin.kvGet(key)).kv as { value: string } | null;
      return kv ? Number(kv.value) : null;
    },
    async contendersLeft() {
      return ((await admin.kvRange(PREFIX)).items as unknown[]).length;
    },
    async stop() {
      admin.close();
      await cluster.stop();
    },
  };
}

async function startEtcd(): Promise<System> {
  const cluster = await EtcdCluster.start({
    ...TIMING,
    token: "bench-locks",
  });
  const leader0 = await cluster.leader();
  const connect = () => new Etcd3({ hosts: [cluster.host(leader0)] });
  const admin = connect();
  return {
    name: "etcd",
    async servers() {
      const leader = (await cluster.leader()) + 1;
      return leaderFirst(
        cluster.members.map((_, i) => ({ node: i + 1, pid: cluster.pid(i) })),
        leader,
      );
    },
    async contender() {
      const client = connect();
      const lease = client.lease(TTL_MS / 1000);
      const mutex = new EtcdMutex(client, await lease.grant(), PREFIX);
      return {
        lock: () => mutex.lock(),
        unlock: () => mutex.unlock(),
        put: (key, value) => client.put(key).value(value).exec(),
        async close() {
          await lease.revoke().catch(() => undefined);
          client.close();
        },
      };
    },
    async readCounter(key) {
      const value = await admin.get(key).string();
      return value === null ? null : Number(value);
    },
    contendersLeft: () => admin.getAll().prefix(PREFIX).count(),
    async stop() {
      admin.close();
      await cluster.stop();
    },
  };
}

interface CaseSummary {
  readonly id: string;
  readonly system: SystemName;
  readonly contenders: number;
  /** Handoffs/s of every round; the fields below are the median round's, whole. */
  readonly rounds_handoffs_per_s: number[];
  readonly median: CaseRun;
}

const ms = (us: number) => Number((us / 1000).toFixed(2));
const txt = (v: number | null | undefined, digits = 1) =>
  v === null || v === undefined ? "-" : v.toFixed(digits);
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a === null || a === undefined || !b ? null : Number((a / b).toFixed(2));
/** CPU ms per handoff of the leader, the two followers together, every server, and the load. */
function perHandoff(run: CaseRun) {
  const of = (ps: ProcCpu[]) =>
    ps.some((p) => p.cpu_ms_per_handoff === null)
      ? null
      : Number(ps.reduce((s, p) => s + p.cpu_ms_per_handoff!, 0).toFixed(3));
  return {
    leader: of(run.cpu.filter((p) => p.role === "leader")),
    followers: of(run.cpu.filter((p) => p.role === "follower")),
    servers: of(run.cpu.filter((p) => p.role !== "load")),
    load: of(run.cpu.filter((p) => p.role === "load")),
  };
}

function printTable(summaries: readonly CaseSummary[]): void {
  console.table(
    summaries.map(({ id, median: r, rounds_handoffs_per_s }) => {
      const servers = r.cpu.filter((p) => p.role !== "load");
      const load = r.cpu.find((p) => p.role === "load");
      return {
        case: id,
        "handoffs/s": r.handoffs_per_s,
        rounds: rounds_handoffs_per_s.join(" "),
        "acquire p50/p99 ms": `${ms(r.acquire_latency_us.p50)} / ${ms(r.acquire_latency_us.p99)}`,
        "leader CPU%": txt(servers[0]?.cpu_pct),
        "CPU ms/handoff ldr/fol/fol": servers.map((p) => txt(p.cpu_ms_per_handoff, 3)).join(" / "),
        "load CPU% (ms/handoff)": `${txt(load?.cpu_pct)} (${txt(load?.cpu_ms_per_handoff, 3)})`,
        counter: r.counter.ok ? "ok" : `LOST ${r.counter.stored} vs ${r.counter.handoffs}`,
        errors: r.errors,
        "others CPU%": txt(r.machine_cpu?.others_pct, 0),
      };
    }),
  );
}

function compare(summaries: readonly CaseSummary[]) {
  return contenderCounts.flatMap((c) => {
    const m = summaries.find((s) => s.id === `metaraft/c${c}`)?.median;
    const e = summaries.find((s) => s.id === `etcd/c${c}`)?.median;
    if (!m || !e) return [];
    const pm = perHandoff(m);
    const pe = perHandoff(e);
    return [
      {
        contenders: c,
        handoffs_per_s: ratio(m.handoffs_per_s, e.handoffs_per_s),
        acquire_p50: ratio(m.acquire_latency_us.p50, e.acquire_latency_us.p50),
        acquire_p99: ratio(m.acquire_latency_us.p99, e.acquire_latency_us.p99),
        cpu_per_handoff: {
          leader: ratio(pm.leader, pe.leader),
          followers: ratio(pm.followers, pe.followers),
          servers: ratio(pm.servers, pe.servers),
          load: ratio(pm.load, pe.load),
        },
      },
    ];
  });
}

async function main(): Promise<boolean> {
  const etcdAvailable = etcdVersion();
  const wanted = (system: SystemName) =>
    contenderCounts.some((c) => filter === undefined || `${system}/c${c}`.includes(filter));
  const etcdSkipped =
    values["no-etcd"] === true || !wanted("etcd")
      ? "--no-etcd (or --filter)"
      : etcdAvailable === null
        ? "etcd is not installed (apt-get install -y etcd-server etcd-client)"
        : null;
  const names: SystemName[] = [
    ...(wanted("metaraft") ? ["metaraft" as const] : []),
    ...(etcdSkipped ? [] : ["etcd" as const]),
  ];
  const cases = Array.from({ length: repeat }, (_, round) =>
    contenderCounts.flatMap((c) =>
      names
        .filter((n) => filter === undefined || `${n}/c${c}`.includes(filter))
        .map((n) => ({ system: n, c, round })),
    ),
  ).flat();
  if (cases.length === 0) {
    process.stderr.write(`bench:locks: --filter ${filter} matches no case; nothing to run\n`);
    return true;
  }
  process.stderr.write(
    `bench:locks: ${names.join(" and ")} with ${contenderCounts.join(", ")} contenders; ${repeat} round(s) of ` +
      `${seconds} s windows after ${WARMUP_MS} ms warm-up; lock → put → unlock${etcdSkipped ? `; etcd skipped: ${etcdSkipped}` : ""}\n`,
  );
  const ui: Ui = { bar: progressBar("handoffs/s"), label: "" };
  ui.bar.start(seconds, 0, { label: "", phase: "", rate: "-" });
  const systems = new Map<SystemName, System>();
  const runs: CaseRun[] = [];
  try {
    for (const name of names) {
      ui.label = name;
      show(ui, 0, `starting ${name}`);
      systems.set(name, name === "metaraft" ? await startMetaraft() : await startEtcd());
    }
    for (const system of systems.values()) await prime(system, ui);
    for (const [i, { system, c, round }] of cases.entries()) {
      ui.label = `[${i + 1}/${cases.length}] ${system}/c${c}`;
      runs.push(await runCase(systems.get(system)!, c, round, ui));
    }
  } finally {
    ui.bar.stop();
    for (const system of systems.values()) await system.stop();
  }

  const summaries: CaseSummary[] = [...new Set(runs.map((r) => r.id))].map((id) => {
    const caseRuns = runs.filter((r) => r.id === id);
    const median = medianRun(caseRuns, (r) => r.handoffs_per_s);
    return {
      id,
      system: median.system,
      contenders: median.contenders,
      rounds_handoffs_per_s: caseRuns.map((r) => r.handoffs_per_s),
      median,
    };
  });
  printTable(summaries);
  const comparison = compare(summaries);
  for (const c of comparison) {
    console.log(
      `${c.contenders} contender(s), metaraft / etcd: handoffs/s ${txt(c.handoffs_per_s, 2)}x, acquire p50 ` +
        `${txt(c.acquire_p50, 2)}x, p99 ${txt(c.acquire_p99, 2)}x; CPU per handoff: leader ${txt(c.cpu_per_handoff.leader, 2)}x, ` +
        `followers ${txt(c.cpu_per_handoff.followers, 2)}x, all servers ${txt(c.cpu_per_handoff.servers, 2)}x, ` +
        `load ${txt(c.cpu_per_handoff.load, 2)}x`,
    );
  }
  const broken = runs.filter((r) => !r.counter.ok || r.holders_max > 1);
  for (const r of broken) {
    console.log(
      `LOST UPDATE in ${r.id} round ${r.round}: the counter reads ${r.counter.stored} after ${r.counter.handoffs} ` +
        `handoffs; ${r.holders_max} holders at once at most`,
    );
  }
  if (broken.length === 0) {
    console.log(
      `no lost update: every case's counter equals its handoffs (${runs.length} runs), one holder at a time`,
    );
  }

  const complete =
    !quick &&
    filter === undefined &&
    etcdSkipped === null &&
    values.contenders === DEFAULT_CONTENDERS &&
    values.seconds === "8" &&
    values.repeat === "2";
  writeResults(complete ? "locks" : "locks.partial", {
    machine: machineInfo(),
    config: {
      nodes: 3,
      transport: "loopback",
      fsync: true,
      contenders: contenderCounts,
      seconds,
      repeat,
      warmup_ms: WARMUP_MS,
      prime: `${PRIME.contenders} contenders for ${PRIME.ms} ms per system before the first round, not measured`,
      ttl_ms: TTL_MS,
      cycle:
        "lock → put of a counter key (its next value) → unlock, one contender per client, connection and session (etcd: lease)",
      metaraft: `src/client/lock.ts Mutex under ${JSON.stringify(PREFIX)}; clients find the leader and stay`,
      etcd: etcdSkipped
        ? { skipped: etcdSkipped }
        : {
            version: etcdAvailable,
            client: "etcd3 npm package (gRPC) to the leader",
            mutex: "bench/etcd.ts EtcdMutex: the algorithm of etcd's Go concurrency.Mutex",
          },
      timing: {
        tick_ms: TIMING.tickMs,
        election_ticks: TIMING.electionTicks,
        etcd_heartbeat_ms: TIMING.tickMs,
        etcd_election_ms: TIMING.tickMs * TIMING.electionTicks,
      },
      order: "both clusters up for the whole run; per round, for each C: metaraft, then etcd",
      handoffs: "lock acquisitions that completed inside the window",
      acquire_latency: "lock() called until it resolved (held), for acquisitions inside the window",
      cpu_pct:
        "% of one core over the window (/proc/<pid>/stat utime+stime; load: this process, process.cpuUsage)",
      median: "each case's median round by handoffs/s, whole (its latency and CPU are that round's)",
      quick,
      filter: filter ?? null,
    },
    cases: summaries,
    comparison_metaraft_over_etcd: comparison,
    lost_updates: broken.map((r) => ({
      id: r.id,
      round: r.round,
      counter: r.counter,
      holders_max: r.holders_max,
    })),
  });
  return broken.length === 0;
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
