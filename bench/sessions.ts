/**
 * `npm run bench:sessions`: what holding sessions costs a metaraft cluster, and the same for
 * etcd's leases, in one run. Three `metaraft start` node processes on loopback (fsync on) and a
 * session load in its own process (bench/sessions-load.ts) holding 10,000, then 100,000 sessions
 * of a 10 s TTL, heartbeating each every TTL/3 spread evenly over the interval, over 4
 * connections, each message carrying a slice of ids; a write load (kvPut of unique keys, closed
 * loop) runs from this process in the write windows. Per level of sessions (0 before, each
 * `--sessions` count, 0 after they all expired), in alternating windows:
 *
 *   idle   no write load: heartbeats alone (the leader's CPU per 1,000 sessions comes from these)
 *   write  the write load on: puts/s against the 0-session levels, heartbeat latency under load
 *
 * Then, holding the largest count with the write load on, a `kill -9` of the leader: the time
 * to a new leader, how long heartbeats failed, and the false expiries over the 2 TTLs after the
 * new leader's election (target: 0). The killed node is started again and the load stops
 * heartbeating: how long the leader takes to expire every session. Then etcd (Debian's
 * etcd-server 3.4, 3 members on loopback, fsync on like metaraft: this build has no
 * --unsafe-no-fsync) under the same load: `--etcd-leases` leases of the same TTL kept alive
 * every TTL/3 over one LeaseKeepAlive stream per connection (the etcd3 package, as etcd's own
 * client does), and etcd puts.
 *
 *   npm run bench:sessions [-- --quick] [-- --sessions 10000,100000] [-- --no-etcd]
 *                          [-- --etcd-leases 10000] [-- --seconds 8] [-- --repeat 2]
 *                          [-- --ttl-ms 10000] [-- --connections 4] [-- --inflight 128]
 *
 * Both systems' clients (heartbeats and writes) talk to the leader: metaraft's client finds it
 * (a NOT_LEADER answer names it) and stays; etcd's are given the leader's address, so neither
 * pays a follower's forwarding. A `--quick` or otherwise non-default run writes
 * bench/results/sessions.partial.json, never the reference sessions.json.
 */
import { type ChildProcess, fork } from "node:child_process";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import type cliProgress from "cli-progress";
import { Etcd3 } from "etcd3";
import { MetaraftClient } from "../src/client/client.js";
import { ProcessCluster } from "../test/helpers/cluster.js";
import {
  ClosedLoopLoad,
  type LatencyUs,
  latencySummary,
  type MachineShare,
  machineCpuSeconds,
  machineInfo,
  machineShare,
  pct,
  positiveInt,
  processCpuSeconds,
  progressBar,
  waitUntil,
  writeResults,
} from "./common.js";
import { EtcdCluster, etcdVersion } from "./etcd.js";
import type { Command, CreateReply, WindowReply } from "./sessions-load.js";

const LOAD = fileURLToPath(new URL("./sessions-load.js", import.meta.url));
const TICK_MS = 50;
const ELECTION_TICKS = 10;
/** Write-load warm-up before a write window opens. */
const WARMUP_MS = 1000;
const CALL_TIMEOUT_MS = 30_000;
/** A status or admin call: a node busy past this is reported as not answering. */
const STATUS_TIMEOUT_MS = 5000;
/** Session creates (or lease grants) in flight at once, over the load's connections. */
const CREATE_INFLIGHT = 512;
/** The bytes of every put's value (metaraft kvPut and etcd put alike). */
const VALUE_BYTES = 100;
/** Before the kill, a second of undisturbed heartbeats in the failover window. */
const PRE_KILL_MS = 1000;
/** A new leader not elected by then fails the run. */
const ELECTION_WAIT_MS_MAX = 15_000;
/** The restarted node must catch up within this long (it replays the log or takes a snapshot). */
const CATCH_UP_MS_MAX = 120_000;
/** After the load stops heartbeating, every session must be gone within TTL plus this. */
const MASS_EXPIRY_SLACK_MS = 60_000;
/** A command to the session load (a create of 100k sessions takes the longest). */
const LOAD_CALL_MS_MAX = 600_000;
/**
 * A fresh cluster's first writes are slow (JIT, LMDB maps growing): this long of writes before any
 * window (with 3 s the first no-session windows still cost 30% more CPU per put than the last).
 */
const PRIME_MS = 10_000;
/** Other work on the machine a level waits to fall under (% of one core), if --quiet-wait-s allows. */
const QUIET_OTHERS_PCT_MAX = 20;

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    sessions: { type: "string", default: "10000,100000" },
    "no-etcd": { type: "boolean", default: false },
    "etcd-leases": { type: "string", default: "10000" },
    /** Seconds per measured window. */
    seconds: { type: "string", default: "8" },
    /** Windows of each kind (idle, write) per level, alternating. */
    repeat: { type: "string", default: "2" },
    "ttl-ms": { type: "string", default: "10000" },
    /** The session load's connections; also the write load's. */
    connections: { type: "string", default: "4" },
    /** Puts in flight in the write load (one loop each). */
    inflight: { type: "string", default: "128" },
    /** How often each session-load connection sends its next slice of ids. */
    "tick-ms": { type: "string", default: "100" },
    /**
     * Before each level, wait up to this long for other work on the machine (not this bench's
     * processes) to take under QUIET_OTHERS_PCT_MAX of a core; 0: do not wait.
     */
    "quiet-wait-s": { type: "string", default: "30" },
    /** `npm run bench -- --filter x` passes it to every benchmark: `metaraft` or `etcd` runs one. */
    filter: { type: "string" },
  },
});

const quick = values.quick === true;
const sessionLevels = (quick ? "1000,5000" : values.sessions)
  .split(",")
  .map((s) => positiveInt("sessions", s.trim()))
  .sort((a, b) => a - b);
const etcdLeases = (quick ? "1000" : values["etcd-leases"])
  .split(",")
  .map((s) => positiveInt("etcd-leases", s.trim()))
  .sort((a, b) => a - b);
const seconds = quick ? 2 : Number(values.seconds);
if (!(seconds > 0)) throw new Error(`--seconds must be positive: ${values.seconds}`);
const repeat = quick ? 1 : positiveInt("repeat", values.repeat);
const ttlMs = quick ? 4000 : positiveInt("ttl-ms", values["ttl-ms"]);
if (ttlMs < 2000) throw new Error("--ttl-ms must be at least 2000 (metaraft's shortest session TTL)");
const connections = positiveInt("connections", values.connections);
const inflight = positiveInt("inflight", values.inflight);
const tickMs = positiveInt("tick-ms", values["tick-ms"]);
const filter = values.filter;
const quietWaitS = quick ? 0 : Number(values["quiet-wait-s"]);
if (!(quietWaitS >= 0)) throw new Error(`--quiet-wait-s must be 0 or more: ${values["quiet-wait-s"]}`);
const runMetaraft = filter === undefined || "metaraft".includes(filter);
const runEtcd = values["no-etcd"] !== true && (filter === undefined || "etcd".includes(filter));
const intervalMs = Math.floor(ttlMs / 3);
const VALUE = "v".repeat(VALUE_BYTES);
const VALUE_BUFFER = Buffer.from(VALUE);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The session-load process and its request/reply IPC. */
class LoadChild {
  readonly child: ChildProcess;
  #nextId = 0;
  readonly #waiting = new Map<
    number,
    { resolve: (m: Record<string, unknown>) => void; reject: (e: Error) => void }
  >();

  constructor() {
    this.child = fork(LOAD, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    this.child.on("message", (m: { id: number; ok: boolean; error?: string }) => {
      const w = this.#waiting.get(m.id);
      if (!w) return;
      this.#waiting.delete(m.id);
      if (m.ok) w.resolve(m as unknown as Record<string, unknown>);
      else w.reject(new Error(`session load: ${m.error}`));
    });
    this.child.on("exit", (code, signal) => {
      for (const w of this.#waiting.values())
        w.reject(new Error(`the session load exited (${signal ?? code})`));
      this.#waiting.clear();
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  call<T = Record<string, unknown>>(command: Command): Promise<T> {
    const id = ++this.#nextId;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`the session load did not answer ${command.kind} in ${LOAD_CALL_MS_MAX} ms`));
      }, LOAD_CALL_MS_MAX);
      this.#waiting.set(id, {
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ ...command, id });
    });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once("exit", () => r()));
    this.call({ kind: "exit" }).catch(() => undefined);
    const timer = setTimeout(() => this.child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  }
}

/**
 * A closed-loop put load: `inflight` loops, each putting unique keys one after the other until
 * `stop()`. Only puts that start and end inside the measured window count.
 */
class PutLoad extends ClosedLoopLoad {
  constructor(
    readonly put: (loop: number, key: string) => Promise<unknown>,
    inflight: number,
    readonly prefix: string,
  ) {
    super(inflight);
  }

  /** Puts counted (inside the window). */
  get puts(): number {
    return this.completed;
  }

  protected run(loop: number, n: number): Promise<unknown> {
    return this.put(loop, `${this.prefix}/${loop}/${n}`);
  }
}

type Role = "leader" | "follower" | "session-load";
interface Proc {
  readonly role: Role;
  readonly node: number | null;
  readonly pid: number | undefined;
}
interface ProcCpu {
  readonly role: Role | "loadgen";
  readonly node: number | null;
  /** % of one core over the window. */
  readonly cpu_pct: number | null;
}

type WindowKind = "idle" | "write" | "failover";

interface WindowResult {
  readonly kind: WindowKind;
  readonly sessions: number;
  readonly seconds: number;
  readonly leader: number;
  /** null: no write load in this window. */
  readonly write: {
    readonly puts: number;
    readonly puts_per_s: number;
    readonly errors: number;
    readonly error_codes: Record<string, number>;
    readonly latency_us: LatencyUs;
  } | null;
  readonly heartbeat: WindowReply;
  readonly cpu: ProcCpu[];
  /** The whole machine, % of one core: busy, ours (the processes above), others (busy − ours), steal. */
  readonly machine_cpu: MachineShare | null;
  /** metaraft: what the leader's tracker counted in the window (heartbeats, messages, expiries). */
  readonly leader_tracker: Record<string, number> | null;
}

/** What a system under test offers a window: its processes, its put, its leader's counters. */
interface System {
  readonly name: "metaraft" | "etcd";
  /** The node processes and the session load, with the leader as it is now. */
  procs(): Promise<{ leader: number; procs: Proc[] }>;
  put(loop: number, key: string): Promise<unknown>;
  /** The leader's session counters (metaraft), or null. */
  trackerStats(leader: number): Promise<Record<string, number> | null>;
}

interface Ui {
  readonly bar: cliProgress.SingleBar;
  label: string;
  /** What a window is doing beyond measuring (the failover's steps). */
  note: string;
}

function show(ui: Ui, value: number, phase: string, rate = "-"): void {
  ui.bar.update(value, { label: ui.label, phase, rate });
}

let windowCount = 0;

/**
 * One measured window: heartbeats always (the session load runs), the write load in `write`
 * and `failover` windows. `during` runs inside the window (the failover's kill) and replaces the
 * fixed length; it returns when the window should end.
 */
async function measureWindow(
  system: System,
  load: LoadChild,
  kind: WindowKind,
  sessions: number,
  ui: Ui,
  during?: (leader: number) => Promise<void>,
): Promise<WindowResult> {
  const { leader, procs } = await system.procs();
  const writes =
    kind !== "idle" ? new PutLoad((l, k) => system.put(l, k), inflight, `w${++windowCount}`) : null;
  const ticker = setInterval(() => {
    if (writes && !writes.measuring) return show(ui, 0, `${kind}: warm-up`);
    const elapsed = writes ? (Date.now() - writes.measureStart) / 1000 : 0;
    show(
      ui,
      Math.min(elapsed, seconds),
      `${kind}, ${sessions} sessions${ui.note ? `: ${ui.note}` : ""}`,
      writes && elapsed > 0 ? `${(writes.puts / elapsed).toFixed(0)} puts/s` : "-",
    );
  }, 250);
  try {
    if (writes) {
      writes.start();
      await sleep(WARMUP_MS);
    }
    const trackerBefore = await system.trackerStats(leader);
    await load.call({ kind: "window", on: true });
    const cpuBefore = procs.map((p) => processCpuSeconds(p.pid));
    const machineBefore = machineCpuSeconds();
    const selfBefore = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    writes?.measure(true);
    const idleStart = Date.now();
    if (during) await during(leader);
    else await sleep(seconds * 1000);
    writes?.measure(false);
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpuAfter = procs.map((p) => processCpuSeconds(p.pid));
    const machineAfter = machineCpuSeconds();
    const self = process.cpuUsage(selfBefore);
    const heartbeat = await load.call<WindowReply>({ kind: "window", on: false });
    if (!writes) show(ui, (Date.now() - idleStart) / 1000, kind);
    const cpu: ProcCpu[] = procs.map((p, i) => {
      const a = cpuAfter[i];
      const b = cpuBefore[i];
      return {
        role: p.role,
        node: p.node,
        cpu_pct: a === undefined || b === undefined ? null : pct(a - b, elapsed),
      };
    });
    cpu.push({ role: "loadgen", node: null, cpu_pct: pct((self.user + self.system) / 1e6, elapsed) });
    const machine = machineShare(
      machineBefore,
      machineAfter,
      cpu.reduce((a, p) => a + (p.cpu_pct ?? 0), 0),
      elapsed,
    );
    // After a failover the old leader's counters are gone: the new leader's are read instead.
    const trackerAfter = kind === "failover" ? null : await system.trackerStats(leader);
    let tracker: Record<string, number> | null = null;
    if (trackerBefore && trackerAfter) {
      tracker = Object.fromEntries(
        Object.entries(trackerAfter).map(([k, v]) => [k, k === "tracked" ? v : v - (trackerBefore[k] ?? 0)]),
      );
    }
    return {
      kind,
      sessions,
      seconds: Number(elapsed.toFixed(3)),
      leader,
      write: writes
        ? {
            puts: writes.puts,
            puts_per_s: Math.round(writes.puts / elapsed),
            errors: writes.errors,
            error_codes: writes.errorCodes,
            latency_us: latencySummary(writes.histogram),
          }
        : null,
      heartbeat,
      cpu,
      machine_cpu: machine,
      leader_tracker: tracker,
    };
  } finally {
    clearInterval(ticker);
    if (writes) {
      show(ui, seconds, `${kind}: draining`);
      await writes.stop();
    }
  }
}

interface Level {
  /** "before" and "after": no sessions; "hold": the load holds `sessions`. */
  readonly phase: "before" | "hold" | "after";
  /** The wait for other work on the machine to quiet down before the windows, and its last sample. */
  readonly quiet_wait: { waited_ms: number; others_pct: number | null };
  readonly sessions: number;
  /** How the sessions (or leases) of this level were opened: the ones added to the last level's. */
  readonly create: (CreateReply & { per_s: number }) | null;
  /** Open sessions (leases) the cluster counts at the level's end (null: not asked). */
  readonly cluster_count: number | null;
  readonly windows: WindowResult[];
}

/** Creates to `target` sessions, then waits one heartbeat interval for the rotation to settle. */
async function grow(load: LoadChild, held: number, target: number, ui: Ui): Promise<Level["create"]> {
  if (target <= held) return null;
  show(ui, 0, `creating ${target - held} sessions`);
  const reply = await load.call<CreateReply>({
    kind: "create",
    count: target - held,
    inflight: CREATE_INFLIGHT,
  });
  show(ui, 0, `settling (${intervalMs} ms)`);
  // Every session is in the rotation now; one interval later each has its steady slice.
  await sleep(intervalMs);
  return { ...reply, per_s: Math.round((reply.created / Math.max(1, reply.ms)) * 1000) };
}

/**
 * Waits until other work on the machine (its busy CPU less this bench's processes) takes at most
 * QUIET_OTHERS_PCT_MAX of a core over a second, or `--quiet-wait-s` passed. On a machine shared
 * with other work this keeps a level from starting in the middle of someone's build; each
 * window records what other work took in it all the same.
 */
async function waitForQuietOthers(system: System, ui: Ui): Promise<Level["quiet_wait"]> {
  const t0 = Date.now();
  let others: number | null = null;
  if (quietWaitS === 0) return { waited_ms: 0, others_pct: null };
  const { procs } = await system.procs();
  for (;;) {
    const a = machineCpuSeconds();
    const ours0 = procs.map((p) => processCpuSeconds(p.pid) ?? 0);
    const self0 = process.cpuUsage();
    const s0 = process.hrtime.bigint();
    await sleep(1000);
    const b = machineCpuSeconds();
    const ours1 = procs.map((p) => processCpuSeconds(p.pid) ?? 0);
    const self = process.cpuUsage(self0);
    const wall = Number(process.hrtime.bigint() - s0) / 1e9;
    if (!a || !b) return { waited_ms: Date.now() - t0, others_pct: null };
    const ours = ours1.reduce((x, v, i) => x + v - ours0[i]!, 0) + (self.user + self.system) / 1e6;
    others = Math.max(0, pct(b.busy - a.busy - ours, wall));
    if (others <= QUIET_OTHERS_PCT_MAX || Date.now() - t0 >= quietWaitS * 1000) {
      return { waited_ms: Date.now() - t0, others_pct: others };
    }
    show(ui, 0, `waiting for a quiet machine (others ${others.toFixed(0)}% of a core)`);
  }
}

/** A closed-loop write load for PRIME_MS, not measured. */
async function prime(system: System, ui: Ui): Promise<void> {
  show(ui, 0, "priming (writes, not measured)");
  const writes = new PutLoad((l, k) => system.put(l, k), inflight, "prime");
  writes.start();
  await sleep(PRIME_MS);
  await writes.stop();
}

/**
 * Primes the system, then measures it holding none, then each count of sessions (or leases) in
 * turn: `count` says how many the cluster itself reports holding.
 */
async function measureLevels(
  system: System,
  load: LoadChild,
  ui: Ui,
  what: { name: string; unit: string; levels: readonly number[]; count: () => Promise<number | null> },
): Promise<Level[]> {
  ui.label = what.name;
  await prime(system, ui);
  const levels: Level[] = [];
  ui.label = `${what.name} 0 ${what.unit}`;
  levels.push({
    phase: "before",
    sessions: 0,
    create: null,
    cluster_count: null,
    ...(await levelWindows(system, load, 0, ui)),
  });
  let held = 0;
  for (const n of what.levels) {
    ui.label = `${what.name} ${n} ${what.unit}`;
    const create = await grow(load, held, n, ui);
    held = n;
    const windows = await levelWindows(system, load, n, ui);
    levels.push({ phase: "hold", sessions: n, create, cluster_count: await what.count(), ...windows });
  }
  return levels;
}

/** A level's windows, idle and write alternating, once the machine is quiet. */
async function levelWindows(
  system: System,
  load: LoadChild,
  sessions: number,
  ui: Ui,
): Promise<Pick<Level, "quiet_wait" | "windows">> {
  const quietWait = await waitForQuietOthers(system, ui);
  const windows: WindowResult[] = [];
  for (let r = 0; r < repeat; r++) {
    windows.push(await measureWindow(system, load, "idle", sessions, ui));
    windows.push(await measureWindow(system, load, "write", sessions, ui));
  }
  return { quiet_wait: quietWait, windows };
}

interface Failover {
  readonly killed: number;
  readonly new_leader: number;
  /** From the kill -9 until a survivor reported itself leader. */
  readonly election_ms: number;
  readonly sessions: number;
  /** The window: PRE_KILL_MS before the kill until 2 TTLs after the new leader was seen. */
  readonly window: WindowResult;
  /** The longest time without a successful heartbeat reply on any connection. */
  readonly heartbeat_gap_ms_max: number;
  /** Sessions the cluster reported expired in the window (target 0). */
  readonly false_expiries: number;
  /** The new leader's tracker at the window's end: sessions it tracks and has expired. */
  readonly new_leader_tracker: Record<string, number> | null;
  readonly open_sessions_after: number | null;
  /** The killed node, started again: how long until it had applied the new leader's commit. */
  readonly restarted_catch_up_ms: number;
  /**
   * An idle window once the killed node is back: a heartbeat connection that moved to a follower
   * at the kill stays there (heartbeats are forwarded, not redirected), which shows here as
   * follower CPU the idle windows before the kill did not have.
   */
  readonly after_restart_idle: WindowResult;
}

interface MassExpiry {
  readonly sessions: number;
  /** From the load's last heartbeats (it stopped) until the cluster held no open session. */
  readonly all_gone_ms: number;
  /** From the stop until the open count first fell. */
  readonly first_expiry_ms: number | null;
  /**
   * all_gone_ms − TTL: the sessions heartbeated last before the stop were due at about stop + TTL
   * (the leader looks every session.expiryCheckMs, 100 ms): how far the expiry fell behind.
   */
  readonly behind_ttl_ms: number;
  /** Sessions expired per second from the first expiry until all were gone. */
  readonly expired_per_s: number | null;
  /** The open count every poll: [ms after the stop, open sessions]. */
  readonly open_by_time: [number, number][];
  readonly expiry_entries: number | null;
  readonly expired: number | null;
}

interface SystemResult {
  readonly system: "metaraft" | "etcd";
  readonly startup_ms: number;
  readonly levels: Level[];
  readonly failover: Failover | null;
  readonly mass_expiry: MassExpiry | null;
  readonly false_expiries_total: number;
  readonly summary: Summary;
}

async function runMetaraftCase(ui: Ui): Promise<SystemResult> {
  const t0 = Date.now();
  show(ui, 0, "starting metaraft");
  const cluster = await ProcessCluster.start({
    nodes: 3,
    kind: "metaraft",
    tickMs: TICK_MS,
    electionTicks: ELECTION_TICKS,
    // Warnings (peer connections lost at the kill) would scroll the progress line away.
    extraArgs: [`--session-ttl-max-ms=${Math.max(ttlMs, 60_000)}`, "--log-level=error"],
  });
  const clients: MetaraftClient[] = [];
  let load: LoadChild | undefined;
  const admin = new MetaraftClient({
    endpoints: cluster.endpoints,
    clusterId: cluster.clusterId,
    timeoutMs: CALL_TIMEOUT_MS,
  });
  try {
    const leader0 = await cluster.leader();
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
    const statusOf = (id: number) =>
      Promise.race([
        cluster.status(id),
        sleep(STATUS_TIMEOUT_MS).then(() => {
          throw new Error(`node ${id} did not answer status`);
        }),
      ]) as Promise<Record<string, unknown>>;
    const system: System = {
      name: "metaraft",
      async procs() {
        const leader = await cluster.leader();
        return {
          leader,
          procs: [
            ...cluster.members.map((m) => ({
              role: (m.id === leader ? "leader" : "follower") as Role,
              node: m.id,
              pid: cluster.pid(m.id),
            })),
            { role: "session-load" as Role, node: null, pid: load?.pid },
          ],
        };
      },
      put: (loop, key) => clients[loop % clients.length]!.kvPut(key, VALUE),
      trackerStats: (leader) =>
        statusOf(leader).then(
          (s) => s.sessions as Record<string, number>,
          () => null,
        ),
    };
    const openSessions = () =>
      admin.sessionList({ limit: 1, timeoutMs: STATUS_TIMEOUT_MS }).then(
        (r) => r.open as number,
        () => null,
      );

    load = new LoadChild();
    // The leader first: the load's first calls go straight to it.
    const leaderFirst = [
      cluster.endpoints[leader0 - 1]!,
      ...cluster.endpoints.filter((_, i) => i !== leader0 - 1),
    ];
    await load.call({
      kind: "init",
      system: "metaraft",
      endpoints: leaderFirst,
      clusterId: cluster.clusterId,
      connections,
      ttlMs,
      tickMs,
    });

    const levels = await measureLevels(system, load, ui, {
      name: "metaraft",
      unit: "sessions",
      levels: sessionLevels,
      count: openSessions,
    });
    // The sessions the load holds now: the last level's.
    const held = levels.at(-1)!.sessions;

    // kill -9 of the leader, holding the largest level, with the write load on.
    ui.label = `metaraft failover, ${held} sessions`;
    let killed = 0;
    let newLeader = 0;
    let electionMs = 0;
    const window = await measureWindow(system, load, "failover", held, ui, async (leader) => {
      await sleep(PRE_KILL_MS);
      killed = leader;
      const killAt = Date.now();
      ui.note = `kill -9 of node ${leader}`;
      await cluster.kill(leader);
      newLeader = await cluster.leader(ELECTION_WAIT_MS_MAX);
      electionMs = Date.now() - killAt;
      ui.note = `node ${newLeader} leads; watching 2 TTLs`;
      await sleep(2 * ttlMs);
      ui.note = "";
    });
    const newLeaderTracker = await system.trackerStats(newLeader);
    const openAfter = await openSessions();
    show(ui, 0, `restarting node ${killed}`);
    await cluster.startNode(killed);
    const target = (await statusOf(newLeader)).commit as number;
    const catchUpMs = await waitUntil(`node ${killed} catching up`, CATCH_UP_MS_MAX, async () => {
      const s = await statusOf(killed);
      return (s.applied as number) >= target;
    });
    const afterRestart = await measureWindow(system, load, "idle", held, ui);
    const failover: Failover = {
      killed,
      new_leader: newLeader,
      election_ms: electionMs,
      sessions: held,
      window,
      heartbeat_gap_ms_max: Math.max(...window.heartbeat.max_gap_ms),
      false_expiries: window.heartbeat.false_expiries,
      new_leader_tracker: newLeaderTracker,
      open_sessions_after: openAfter,
      restarted_catch_up_ms: catchUpMs,
      after_restart_idle: afterRestart,
    };

    // The load stops heartbeating: every session must expire, in a few sessionExpire entries.
    ui.label = `metaraft expiry of ${held} sessions`;
    const leaderNow = await cluster.leader();
    const before = await system.trackerStats(leaderNow);
    const beforeCount = await openSessions();
    await load.call({ kind: "stop" });
    const stopAt = Date.now();
    const expiryTicker = setInterval(() => show(ui, (Date.now() - stopAt) / 1000, "waiting for expiry"), 250);
    let allGoneMs: number;
    let firstExpiryMs: number | null = null;
    const openByTime: [number, number][] = [];
    try {
      allGoneMs = await waitUntil("every session expired", ttlMs + MASS_EXPIRY_SLACK_MS, async () => {
        const open = await openSessions();
        if (open === null) return false;
        const at = Date.now() - stopAt;
        if (firstExpiryMs === null && open < (beforeCount ?? held)) firstExpiryMs = at;
        // Every poll once the expiry started (the polls before say nothing but "all open").
        if (firstExpiryMs !== null) openByTime.push([at, open]);
        return open === 0;
      });
    } finally {
      clearInterval(expiryTicker);
    }
    const after = await system.trackerStats(leaderNow);
    const massExpiry: MassExpiry = {
      sessions: beforeCount ?? held,
      all_gone_ms: allGoneMs,
      first_expiry_ms: firstExpiryMs,
      behind_ttl_ms: allGoneMs - ttlMs,
      expired_per_s:
        firstExpiryMs !== null && allGoneMs > firstExpiryMs
          ? Math.round(((beforeCount ?? held) / (allGoneMs - firstExpiryMs)) * 1000)
          : null,
      open_by_time: openByTime,
      expiry_entries: before && after ? after.expiryEntries! - before.expiryEntries! : null,
      expired: before && after ? after.expired! - before.expired! : null,
    };

    ui.label = "metaraft 0 sessions (after)";
    levels.push({
      phase: "after",
      sessions: 0,
      create: null,
      cluster_count: await openSessions(),
      ...(await levelWindows(system, load, 0, ui)),
    });
    const last = levels.at(-1)!.windows.at(-1)!;
    return {
      system: "metaraft",
      startup_ms: startupMs,
      levels,
      failover,
      mass_expiry: massExpiry,
      false_expiries_total: last.heartbeat.false_expiries_total,
      summary: summarize(levels),
    };
  } finally {
    show(ui, 0, "stopping metaraft");
    await load?.close();
    for (const c of clients) c.close();
    admin.close();
    await cluster.stop();
  }
}

async function runEtcdCase(ui: Ui): Promise<SystemResult> {
  const t0 = Date.now();
  show(ui, 0, "starting etcd");
  const cluster = await EtcdCluster.start({
    tickMs: TICK_MS,
    electionTicks: ELECTION_TICKS,
    token: "bench-sessions",
  });
  let load: LoadChild | undefined;
  const writers: Etcd3[] = [];
  try {
    const leader0 = await cluster.leader();
    const startupMs = Date.now() - t0;
    for (let i = 0; i < connections; i++) writers.push(new Etcd3({ hosts: [cluster.host(leader0)] }));
    const system: System = {
      name: "etcd",
      async procs() {
        const leader = await cluster.leader();
        return {
          leader: leader + 1,
          procs: [
            ...cluster.members.map((_, i) => ({
              role: (i === leader ? "leader" : "follower") as Role,
              node: i + 1,
              pid: cluster.pid(i),
            })),
            { role: "session-load" as Role, node: null, pid: load?.pid },
          ],
        };
      },
      put: (loop, key) =>
        writers[loop % writers.length]!.kv.put({ key: Buffer.from(key), value: VALUE_BUFFER }),
      trackerStats: async () => null,
    };
    load = new LoadChild();
    await load.call({
      kind: "init",
      system: "etcd",
      hosts: [cluster.host(leader0)],
      connections,
      ttlMs,
      tickMs,
    });
    const levels = await measureLevels(system, load, ui, {
      name: "etcd",
      unit: "leases",
      levels: etcdLeases,
      count: async () => cluster.leaseCount(Math.max(0, await cluster.leader())),
    });
    const last = levels.at(-1)!.windows.at(-1)!;
    return {
      system: "etcd",
      startup_ms: startupMs,
      levels,
      failover: null,
      mass_expiry: null,
      false_expiries_total: last.heartbeat.false_expiries_total,
      summary: summarize(levels),
    };
  } finally {
    show(ui, 0, "stopping etcd");
    await load?.close();
    for (const w of writers) w.close();
    await cluster.stop();
  }
}

/** The median of `xs` (null: empty); an even count takes the mean of the middle two. */
function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const cpuOf = (w: WindowResult, role: ProcCpu["role"]) =>
  w.cpu
    .filter((p) => p.role === role)
    .reduce<number | null>((a, p) => (a === null || p.cpu_pct === null ? null : a + p.cpu_pct), 0);

interface LevelSummary {
  readonly sessions: number;
  readonly phase: Level["phase"];
  readonly create_s: number | null;
  readonly creates_per_s: number | null;
  /** Heartbeat latency p99 in ms: idle windows, write windows (the windows' median). */
  readonly heartbeat_p99_ms: { idle: number | null; write: number | null };
  readonly heartbeat_p50_ms: { idle: number | null; write: number | null };
  readonly heartbeats_per_s: number | null;
  readonly messages_per_s: number | null;
  /** Medians over the level's windows, % of one core. */
  readonly cpu_pct: {
    readonly idle: { leader: number | null; followers: number | null; session_load: number | null };
    readonly write: {
      leader: number | null;
      followers: number | null;
      session_load: number | null;
      loadgen: number | null;
    };
  };
  readonly puts_per_s: number | null;
  /** Puts/s over the median of the 0-session levels' windows. */
  readonly puts_vs_no_sessions: number | null;
  /** Leader CPU ms per second per 1,000 sessions, over the 0-session levels: write load off, and on. */
  readonly leader_cpu_ms_per_s_per_1k: { write_load_off: number | null; write_load_on: number | null };
  /**
   * CPU seconds per 1,000 puts in the write windows (median), the leader's and all of this
   * bench's processes': other work on the machine moves these far less than it moves puts/s.
   */
  readonly cpu_s_per_1k_puts: { leader: number | null; total: number | null };
  /** total over the 0-session levels': what holding the sessions adds to each put. */
  readonly cpu_per_put_vs_no_sessions: number | null;
  /** Write windows in which other work took at most QUIET_OTHERS_PCT_MAX of a core, and their median puts/s. */
  readonly quiet_write_windows: { windows: number; puts_per_s: number | null };
  readonly write_errors: number;
  readonly false_expiries: number;
  readonly others_cpu_pct_max: number | null;
}

interface Summary {
  readonly baseline: {
    idle_leader_cpu_pct: number | null;
    write_leader_cpu_pct: number | null;
    puts_per_s: number | null;
    cpu_s_per_1k_puts: number | null;
    quiet_puts_per_s: number | null;
  };
  readonly levels: LevelSummary[];
}

const round = (v: number | null, digits = 2) => (v === null ? null : Number(v.toFixed(digits)));

/** CPU seconds of `roles` (all of ours when none) per 1,000 puts in a write window. */
function cpuPer1kPuts(w: WindowResult, ...roles: ProcCpu["role"][]): number | null {
  const ps = roles.length === 0 ? w.cpu : w.cpu.filter((p) => roles.includes(p.role));
  if (!w.write || w.write.puts === 0 || ps.some((p) => p.cpu_pct === null)) return null;
  const cpuS = (ps.reduce((a, p) => a + p.cpu_pct!, 0) / 100) * w.seconds;
  return Number(((cpuS / w.write.puts) * 1000).toFixed(4));
}

const quietWindow = (w: WindowResult) =>
  w.machine_cpu !== null && w.machine_cpu.others_pct <= QUIET_OTHERS_PCT_MAX;

function summarize(levels: Level[]): Summary {
  const of = (ls: Level[], kind: WindowKind) => ls.flatMap((l) => l.windows.filter((w) => w.kind === kind));
  const zero = levels.filter((l) => l.sessions === 0);
  const nums = (xs: (number | null)[]) => xs.filter((x): x is number => x !== null);
  const baseIdle = median(nums(of(zero, "idle").map((w) => cpuOf(w, "leader"))));
  const baseWrite = median(nums(of(zero, "write").map((w) => cpuOf(w, "leader"))));
  const basePuts = median(of(zero, "write").map((w) => w.write!.puts_per_s));
  const baseCpuPerPut = median(nums(of(zero, "write").map((w) => cpuPer1kPuts(w))));
  const baseQuietPuts = median(
    of(zero, "write")
      .filter(quietWindow)
      .map((w) => w.write!.puts_per_s),
  );
  const out: LevelSummary[] = levels.map((l) => {
    const idle = l.windows.filter((w) => w.kind === "idle");
    const write = l.windows.filter((w) => w.kind === "write");
    const med = (ws: WindowResult[], f: (w: WindowResult) => number | null) => median(nums(ws.map(f)));
    const idleLeader = med(idle, (w) => cpuOf(w, "leader"));
    const writeLeader = med(write, (w) => cpuOf(w, "leader"));
    const perK = (v: number | null, base: number | null) =>
      l.sessions === 0 || v === null || base === null
        ? null
        : round(((v - base) * 10) / (l.sessions / 1000), 3);
    const puts = med(write, (w) => w.write!.puts_per_s);
    const totalPerPut = med(write, (w) => cpuPer1kPuts(w));
    const quietWrites = write.filter(quietWindow);
    const all = l.windows;
    return {
      sessions: l.sessions,
      phase: l.phase,
      create_s: l.create ? round(l.create.ms / 1000, 1) : null,
      creates_per_s: l.create?.per_s ?? null,
      heartbeat_p99_ms: {
        idle: round(
          med(idle, (w) => (w.heartbeat.heartbeats > 0 ? w.heartbeat.latency_us.p99 / 1000 : null)),
        ),
        write: round(
          med(write, (w) => (w.heartbeat.heartbeats > 0 ? w.heartbeat.latency_us.p99 / 1000 : null)),
        ),
      },
      heartbeat_p50_ms: {
        idle: round(
          med(idle, (w) => (w.heartbeat.heartbeats > 0 ? w.heartbeat.latency_us.p50 / 1000 : null)),
        ),
        write: round(
          med(write, (w) => (w.heartbeat.heartbeats > 0 ? w.heartbeat.latency_us.p50 / 1000 : null)),
        ),
      },
      heartbeats_per_s: round(
        med(all, (w) => w.heartbeat.heartbeats / w.seconds),
        0,
      ),
      messages_per_s: round(
        med(all, (w) => w.heartbeat.messages / w.seconds),
        0,
      ),
      cpu_pct: {
        idle: {
          leader: idleLeader,
          followers: med(idle, (w) => cpuOf(w, "follower")),
          session_load: med(idle, (w) => cpuOf(w, "session-load")),
        },
        write: {
          leader: writeLeader,
          followers: med(write, (w) => cpuOf(w, "follower")),
          session_load: med(write, (w) => cpuOf(w, "session-load")),
          loadgen: med(write, (w) => cpuOf(w, "loadgen")),
        },
      },
      puts_per_s: puts,
      puts_vs_no_sessions: puts !== null && basePuts ? round(puts / basePuts, 3) : null,
      leader_cpu_ms_per_s_per_1k: {
        write_load_off: perK(idleLeader, baseIdle),
        write_load_on: perK(writeLeader, baseWrite),
      },
      cpu_s_per_1k_puts: { leader: med(write, (w) => cpuPer1kPuts(w, "leader")), total: totalPerPut },
      cpu_per_put_vs_no_sessions:
        totalPerPut !== null && baseCpuPerPut ? round(totalPerPut / baseCpuPerPut, 3) : null,
      quiet_write_windows: {
        windows: quietWrites.length,
        puts_per_s: median(quietWrites.map((w) => w.write!.puts_per_s)),
      },
      write_errors: write.reduce((a, w) => a + (w.write?.errors ?? 0), 0),
      false_expiries: all.reduce((a, w) => a + w.heartbeat.false_expiries, 0),
      others_cpu_pct_max: all.some((w) => w.machine_cpu)
        ? Math.max(...all.map((w) => w.machine_cpu?.others_pct ?? 0))
        : null,
    };
  });
  return {
    baseline: {
      idle_leader_cpu_pct: baseIdle,
      write_leader_cpu_pct: baseWrite,
      puts_per_s: basePuts,
      cpu_s_per_1k_puts: baseCpuPerPut,
      quiet_puts_per_s: baseQuietPuts,
    },
    levels: out,
  };
}

const txt = (v: number | null | undefined, digits = 1) =>
  v === null || v === undefined ? "-" : v.toFixed(digits);

function printTable(results: SystemResult[]): void {
  console.table(
    results.flatMap((r) =>
      r.summary.levels.map((l) => ({
        system: r.system,
        sessions: `${l.sessions}${l.phase === "hold" ? "" : ` (${l.phase})`}`,
        "create s": txt(l.create_s),
        "hb p99 ms idle/write": `${txt(l.heartbeat_p99_ms.idle, 2)} / ${txt(l.heartbeat_p99_ms.write, 2)}`,
        "leader CPU% idle": txt(l.cpu_pct.idle.leader),
        "ldr CPU ms/s per 1k": txt(l.leader_cpu_ms_per_s_per_1k.write_load_off, 2),
        "puts/s": l.puts_per_s ?? "-",
        "vs 0": txt(l.puts_vs_no_sessions, 3),
        "quiet: n, puts/s": `${l.quiet_write_windows.windows}, ${l.quiet_write_windows.puts_per_s ?? "-"}`,
        "CPU s/1k puts ldr/all": `${txt(l.cpu_s_per_1k_puts.leader, 3)} / ${txt(l.cpu_s_per_1k_puts.total, 3)}`,
        "CPU/put vs 0": txt(l.cpu_per_put_vs_no_sessions, 3),
        "CPU% ldr/fol/sess/gen (write)": [
          l.cpu_pct.write.leader,
          l.cpu_pct.write.followers,
          l.cpu_pct.write.session_load,
          l.cpu_pct.write.loadgen,
        ]
          .map((v) => txt(v, 0))
          .join(" / "),
        "false exp": l.false_expiries,
        "others CPU%": txt(l.others_cpu_pct_max, 0),
      })),
    ),
  );
}

async function main(): Promise<void> {
  if (!runMetaraft && !runEtcd) {
    process.stderr.write(
      `bench:sessions: --filter ${filter} matches neither metaraft nor etcd; nothing to run\n`,
    );
    return;
  }
  const etcdAvailable = etcdVersion();
  const etcdSkipped: string | null = !runEtcd
    ? "--no-etcd (or --filter)"
    : etcdAvailable === null
      ? "etcd is not installed (apt-get install -y etcd-server etcd-client)"
      : null;
  process.stderr.write(
    `bench:sessions: ${runMetaraft ? `metaraft at ${[0, ...sessionLevels].join(", ")} sessions` : ""}` +
      `${runMetaraft && !etcdSkipped ? "; " : ""}${etcdSkipped ? "" : `etcd at 0, ${etcdLeases.join(", ")} leases`}; ` +
      `TTL ${ttlMs} ms, heartbeats every ${intervalMs} ms over ${connections} connections (a slice every ${tickMs} ms); ` +
      `${repeat} idle + ${repeat} write windows of ${seconds} s per level, ${inflight} puts in flight\n`,
  );
  if (etcdSkipped && runEtcd) process.stderr.write(`bench:sessions: etcd skipped: ${etcdSkipped}\n`);
  const bar = progressBar("");
  const ui: Ui = { bar, label: "", note: "" };
  bar.start(seconds, 0, { label: "", phase: "", rate: "-" });
  const results: SystemResult[] = [];
  try {
    if (runMetaraft) results.push(await runMetaraftCase(ui));
    if (!etcdSkipped) results.push(await runEtcdCase(ui));
  } finally {
    bar.stop();
  }

  printTable(results);
  const metaraft = results.find((r) => r.system === "metaraft");
  const etcd = results.find((r) => r.system === "etcd");
  if (metaraft?.failover) {
    const f = metaraft.failover;
    console.log(
      `metaraft kill -9 of leader ${f.killed} holding ${f.sessions} sessions: node ${f.new_leader} led after ` +
        `${f.election_ms} ms; heartbeats failed for ${f.heartbeat_gap_ms_max} ms at most (longest time without a ` +
        `successful reply on a connection); false expiries over the 2 TTLs after: ${f.false_expiries} (target 0: ` +
        `${f.false_expiries === 0 ? "met" : "NOT met"}); open sessions after: ${f.open_sessions_after ?? "?"}; ` +
        `write errors ${f.window.write?.errors ?? 0}; heartbeat p99 over the window ` +
        `${(f.window.heartbeat.latency_us.p99 / 1000).toFixed(1)} ms, max ${(f.window.heartbeat.latency_us.max / 1000).toFixed(1)} ms`,
    );
    const cpu = f.after_restart_idle.cpu
      .filter((p) => p.role === "leader" || p.role === "follower")
      .map((p) => `node ${p.node} (${p.role}) ${txt(p.cpu_pct)}%`)
      .join(", ");
    console.log(
      `metaraft after the restart of node ${f.killed} (caught up in ${f.restarted_catch_up_ms} ms), idle with ` +
        `${f.sessions} sessions: ${cpu}; heartbeat p99 ${(f.after_restart_idle.heartbeat.latency_us.p99 / 1000).toFixed(2)} ms`,
    );
  }
  if (metaraft?.mass_expiry) {
    const m = metaraft.mass_expiry;
    console.log(
      `metaraft mass expiry: ${m.sessions} sessions gone ${m.all_gone_ms} ms after the load stopped heartbeating ` +
        `(TTL ${ttlMs} ms: ${m.behind_ttl_ms} ms behind it; first expiry at ${m.first_expiry_ms ?? "?"} ms, ` +
        `${m.expired_per_s ?? "?"} sessions/s from then) in ${m.expiry_entries ?? "?"} sessionExpire entries`,
    );
  }
  const comparison = compare(metaraft, etcd);
  if (comparison) console.log(comparison.text);

  const complete =
    !quick &&
    filter === undefined &&
    values["no-etcd"] !== true &&
    values.sessions === "10000,100000" &&
    values["etcd-leases"] === "10000";
  writeResults(complete ? "sessions" : "sessions.partial", {
    machine: machineInfo(),
    config: {
      nodes: 3,
      transport: "loopback",
      fsync: true,
      fsync_note: "both systems fsync: metaraft's default, and etcd 3.4.23 has no --unsafe-no-fsync",
      ttl_ms: ttlMs,
      heartbeat_interval_ms: intervalMs,
      heartbeat_tick_ms: tickMs,
      heartbeat_spread:
        "each connection sends the next slice of its sessions every tick, so a pass over all of them takes one interval",
      connections,
      metaraft_sessions: sessionLevels,
      etcd_leases: etcdLeases,
      etcd: etcdSkipped
        ? { skipped: etcdSkipped }
        : { version: etcdAvailable, client: "etcd3 npm package (gRPC)" },
      etcd_keepalive: "one LeaseKeepAlive stream per connection, one request per lease, to the leader",
      etcd_timing: { heartbeat_interval_ms: TICK_MS, election_timeout_ms: TICK_MS * ELECTION_TICKS },
      metaraft_timing: { tick_ms: TICK_MS, election_ticks: ELECTION_TICKS },
      write_load: `closed loop, ${inflight} puts in flight over ${connections} connections, unique keys, ${VALUE_BYTES}-byte values (metaraft kvPut, etcd put)`,
      windows: `per level ${repeat} idle + ${repeat} write windows of ${seconds} s, alternating; write windows after ${WARMUP_MS} ms warm-up`,
      heartbeat_latency:
        "per session heartbeat, from its first send to its acknowledgement (metaraft: every id of a message gets the message's latency)",
      leader_cpu_per_1k:
        "leader CPU ms per second while holding N sessions minus with none (median windows), / (N/1000): write_load_off from the idle windows (the headline), write_load_on from the write windows (the leader is near saturation there)",
      cpu_pct:
        "% of one core over the window (/proc/<pid>/stat utime+stime; loadgen: this process, process.cpuUsage)",
      quick,
      filter: filter ?? null,
    },
    results,
    comparison: comparison?.json ?? null,
  });
}

function compare(metaraft: SystemResult | undefined, etcd: SystemResult | undefined) {
  if (!metaraft || !etcd) return null;
  const eLevel = etcd.summary.levels.filter((l) => l.phase === "hold").at(-1);
  const mLevel = metaraft.summary.levels.find((l) => l.sessions === eLevel?.sessions && l.phase === "hold");
  if (!eLevel || !mLevel) return null;
  const json = {
    sessions: eLevel.sessions,
    heartbeat_p99_ms: { metaraft: mLevel.heartbeat_p99_ms, etcd: eLevel.heartbeat_p99_ms },
    leader_cpu_ms_per_s_per_1k: {
      metaraft: mLevel.leader_cpu_ms_per_s_per_1k,
      etcd: eLevel.leader_cpu_ms_per_s_per_1k,
    },
    puts_per_s: { metaraft: mLevel.puts_per_s, etcd: eLevel.puts_per_s },
    puts_vs_no_sessions: { metaraft: mLevel.puts_vs_no_sessions, etcd: eLevel.puts_vs_no_sessions },
    baseline_puts_per_s: {
      metaraft: metaraft.summary.baseline.puts_per_s,
      etcd: etcd.summary.baseline.puts_per_s,
    },
    create_s: { metaraft: mLevel.create_s, etcd: eLevel.create_s },
    cpu_s_per_1k_puts: { metaraft: mLevel.cpu_s_per_1k_puts, etcd: eLevel.cpu_s_per_1k_puts },
    cpu_per_put_vs_no_sessions: {
      metaraft: mLevel.cpu_per_put_vs_no_sessions,
      etcd: eLevel.cpu_per_put_vs_no_sessions,
    },
    /** Whether other work on the machine crowded the write windows (then go by CPU per put). */
    quiet_write_windows: { metaraft: mLevel.quiet_write_windows, etcd: eLevel.quiet_write_windows },
  };
  const text =
    `at ${eLevel.sessions} sessions/leases: heartbeat p99 idle ${txt(mLevel.heartbeat_p99_ms.idle, 2)} ms (metaraft) vs ` +
    `${txt(eLevel.heartbeat_p99_ms.idle, 2)} ms (etcd), under writes ${txt(mLevel.heartbeat_p99_ms.write, 2)} vs ` +
    `${txt(eLevel.heartbeat_p99_ms.write, 2)} ms; leader CPU per 1k (write load off) ` +
    `${txt(mLevel.leader_cpu_ms_per_s_per_1k.write_load_off, 2)} vs ${txt(eLevel.leader_cpu_ms_per_s_per_1k.write_load_off, 2)} ms/s; ` +
    `puts/s ${mLevel.puts_per_s ?? "-"} (${txt(mLevel.puts_vs_no_sessions, 3)}x none) vs ${eLevel.puts_per_s ?? "-"} ` +
    `(${txt(eLevel.puts_vs_no_sessions, 3)}x none); CPU per put ${txt(mLevel.cpu_per_put_vs_no_sessions, 3)}x ` +
    `vs ${txt(eLevel.cpu_per_put_vs_no_sessions, 3)}x none`;
  return { json, text };
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
