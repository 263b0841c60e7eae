/**
 * `npm run bench:faults`: three `metaraft start` node processes on loopback, every peer link
 * through an in-process TCP proxy (one per directed link), continuous key creates
 * (openKey + commitKey) through MetaraftClient with per-call deadlines, and one fault per case:
 * kill -9 of the leader, SIGSTOP of the leader, isolation of the leader, a follower killed under
 * load and restarted, and a learner added (`member add`, then `metaraft start --join`) once the
 * leader's log reaches 100,000 entries: with the node's default snapshot settings
 * (`learner-100k`, it is sent a copy of the state) and with snapshots out of the way
 * (`learner-100k-log`, it replicates the whole log).
 *
 *   npm run bench:faults [-- --repeat 3] [-- --quick] [-- --filter <substring of a fault>]
 *                        [-- --learner-entries 100000]
 *
 * Reports per fault: the longest gap between successful write completions from the fault's
 * injection to AFTER_S after it ends, write p99, and the leader's worst event-loop delay over
 * that window, measured inside the node (`status.eventLoop`, monitorEventLoopDelay): every node's
 * window is reset at the injection and read at the end. A `--quick` or `--filter` run writes
 * bench/results/faults.partial.json, never the reference faults.json.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect as dialTcp, type Server, type Socket } from "node:net";
import { cpus, loadavg, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import hdr from "hdr-histogram-js";
import { MetaraftClient } from "../src/client/client.js";
import { RpcClient } from "../src/client/rpc-client.js";
import { EVENT_LOOP_RESOLUTION_MS, LEARNER_PROMOTE_LAG_ENTRIES_MAX } from "../src/server/node.js";
import { SETTINGS } from "../src/settings.js";
import { freePort } from "../test/helpers/cluster.js";
import { positiveInt, writeResults } from "./common.js";

const cli = fileURLToPath(new URL("../src/cli/metaraft.js", import.meta.url));
const TICK_MS = 50;
const ELECTION_TICKS = 10;
/** Randomized election timeout is electionTicks..2*electionTicks ticks. */
const ELECTION_MAX_MS = ELECTION_TICKS * TICK_MS * 2;
const GAP_TARGET_MS = 2 * ELECTION_MAX_MS;
const STALL_TARGET_MS = 100;
const CLUSTER_ID = "bench-faults";
/** The learner's node id: the next after the three voters. */
const LEARNER_ID = 4;
/** `learner-100k-log`: a snapshot interval the preload never reaches, so the learner replicates the log. */
const NO_SNAPSHOT_ENTRIES = 1_000_000_000;
/** A learner not caught up by then is reported as such (the run goes on to its window). */
const LEARNER_CATCH_UP_MAX_MS = 180_000;
/** The preload gives up (the run fails) if the log grows this slowly. */
const PRELOAD_MAX_MS = 600_000;

const { values } = parseArgs({
  options: {
    repeat: { type: "string" },
    quick: { type: "boolean", default: false },
    connections: { type: "string", default: "4" },
    inflight: { type: "string", default: "32" },
    "deadline-ms": { type: "string", default: "10000" },
    "learner-entries": { type: "string" },
    filter: { type: "string" },
  },
});
const quick = values.quick === true;
const repeat = positiveInt("repeat", values.repeat ?? (quick ? "1" : "3"));
const connections = positiveInt("connections", values.connections);
const inflight = positiveInt("inflight", values.inflight);
const deadlineMs = positiveInt("deadline-ms", values["deadline-ms"]);
const learnerEntries = positiveInt(
  "learner-entries",
  values["learner-entries"] ?? (quick ? "20000" : "100000"),
);
const FAULT_S = quick ? 3 : 5;
const AFTER_S = quick ? 5 : 10;
const WARMUP_S = 2;

type FaultId =
  | "kill-leader"
  | "stop-leader"
  | "isolate-leader"
  | "restart-follower"
  | "learner-100k"
  | "learner-100k-log";
const FAULTS: FaultId[] = [
  "kill-leader",
  "stop-leader",
  "isolate-leader",
  "restart-follower",
  "learner-100k",
  "learner-100k-log",
];
const faults = FAULTS.filter((f) => values.filter === undefined || f.includes(values.filter));
const isLearnerFault = (f: FaultId) => f === "learner-100k" || f === "learner-100k-log";

type Status = Record<string, unknown>;
const num = (s: Status | null | undefined, key: string): number | null =>
  typeof s?.[key] === "number" ? (s[key] as number) : null;

interface EventLoop {
  delayMaxMs: number;
  delayP99Ms: number;
  window: number;
  windowMs: number;
  samples: number;
}
const eventLoopOf = (s: Status | null): EventLoop | null => (s?.eventLoop as EventLoop | undefined) ?? null;

/** Bytes the node whose status this is has written to peer `id` (frames, heartbeats included). */
const sentTo = (s: Status | null, id: number): number | null =>
  (s?.transport as { nodeId: number; sentBytes: number }[] | undefined)?.find((p) => p.nodeId === id)
    ?.sentBytes ?? null;
const minus = (a: number | null, b: number | null) => (a === null || b === null ? null : a - b);

interface Member {
  id: number;
  raftPort: number;
  clientPort: number;
  proc: ChildProcess | null;
  stderr: string;
}

/** One directed peer link a → b: a dials the proxy, the proxy dials b's real raft port. */
class LinkProxy {
  cut = false;
  readonly sockets = new Set<Socket>();
  server!: Server;
  constructor(
    readonly port: number,
    readonly target: number,
  ) {}
  async start() {
    this.server = createServer((inbound) => {
      if (this.cut) return inbound.destroy();
      const out = dialTcp(this.target, "127.0.0.1");
      this.sockets.add(inbound);
      this.sockets.add(out);
      const drop = () => {
        inbound.destroy();
        out.destroy();
        this.sockets.delete(inbound);
        this.sockets.delete(out);
      };
      inbound.on("error", drop).on("close", drop);
      out.on("error", drop).on("close", drop);
      inbound.pipe(out);
      out.pipe(inbound);
    });
    await new Promise<void>((r) => this.server.listen(this.port, "127.0.0.1", () => r()));
  }
  sever() {
    this.cut = true;
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }
  heal() {
    this.cut = false;
  }
  close() {
    this.sever();
    return new Promise<void>((r) => this.server.close(() => r()));
  }
}

class FaultCluster {
  readonly dir = mkdtempSync(join(tmpdir(), "metaraft-faults-"));
  readonly members: Member[] = [];
  readonly proxies = new Map<string, LinkProxy>();
  constructor(readonly snapshotEntries: number | undefined) {}
  static async start(snapshotEntries?: number): Promise<FaultCluster> {
    const c = new FaultCluster(snapshotEntries);
    for (let id = 1; id <= 3; id++)
      c.members.push({
        id,
        raftPort: await freePort(),
        clientPort: await freePort(),
        proc: null,
        stderr: "",
      });
    for (const a of c.members)
      for (const b of c.members)
        if (a.id !== b.id) {
          const p = new LinkProxy(await freePort(), b.raftPort);
          await p.start();
          c.proxies.set(`${a.id}>${b.id}`, p);
        }
    await Promise.all(c.members.map((m) => c.startNode(m.id)));
    return c;
  }
  get endpoints() {
    return this.members.map((m) => ({ host: "127.0.0.1", port: m.clientPort }));
  }
  member(id: number): Member {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }
  spec(self: number): string {
    return this.members
      .map((m) => {
        const port = m.id === self ? m.raftPort : this.proxies.get(`${self}>${m.id}`)!.port;
        return `${m.id}@127.0.0.1:${port}:${m.clientPort}`;
      })
      .join(",");
  }
  /** A voter of the initial three, or (with `join`) a new node that joins through that client address. */
  async startNode(id: number, join_?: string) {
    const m = this.member(id);
    const child = spawn(
      process.execPath,
      [
        cli,
        "start",
        `--id=${id}`,
        // A joining node names only itself: it learns the members from the cluster.
        `--cluster=${join_ ? `${id}@127.0.0.1:${m.raftPort}:${m.clientPort}` : this.spec(id)}`,
        `--data=${join(this.dir, `node-${id}`)}`,
        `--cluster-id=${CLUSTER_ID}`,
        `--tick-ms=${TICK_MS}`,
        `--election-ticks=${ELECTION_TICKS}`,
        ...(this.snapshotEntries === undefined ? [] : [`--snapshot-entries=${this.snapshotEntries}`]),
        ...(join_ ? [`--join=${join_}`] : []),
        "--log-level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    m.proc = child;
    child.stderr!.on("data", (b: Buffer) => {
      m.stderr = (m.stderr + b.toString()).slice(-16384);
    });
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: child.stdout! }).once("line", () => resolve());
      child.once("exit", (code) =>
        reject(new Error(`node ${id} exited (${code}) before ready: ${m.stderr}`)),
      );
    });
  }
  async addMember(id: number): Promise<Member> {
    const m = { id, raftPort: await freePort(), clientPort: await freePort(), proc: null, stderr: "" };
    this.members.push(m);
    return m;
  }
  kill(id: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    const m = this.member(id);
    const child = m.proc;
    m.proc = null;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      child.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      child.kill("SIGCONT");
      child.kill(signal);
    });
  }
  signal(id: number, s: NodeJS.Signals) {
    this.member(id).proc?.kill(s);
  }
  isolate(id: number, cut: boolean) {
    for (const [k, p] of this.proxies) {
      const [a, b] = k.split(">").map(Number);
      if (a === id || b === id) cut ? p.sever() : p.heal();
    }
  }
  /** Node `id`'s own status, or null (an RpcClient moves on to other members when its endpoint fails). */
  async status(id: number, timeoutMs = 1000, fields: Status = {}): Promise<Status | null> {
    const m = this.member(id);
    const c = new RpcClient({
      endpoints: [{ host: "127.0.0.1", port: m.clientPort }],
      clusterId: CLUSTER_ID,
      timeoutMs,
    });
    try {
      const s = await c.call("status", fields);
      return s.node === id ? s : null;
    } catch {
      return null;
    } finally {
      c.close();
    }
  }
  async leader(timeoutMs = 15000): Promise<number> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      for (const m of this.members) {
        if (!m.proc) continue;
        const s = await this.status(m.id, 500);
        if (s?.role === "leader") return m.id;
      }
      await sleep(50);
    }
    throw new Error("no leader");
  }
  async stop() {
    await Promise.all(this.members.map((m) => this.kill(m.id, "SIGTERM")));
    for (const p of this.proxies.values()) await p.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Every node's event-loop window over the fault: opened (reset) at the injection, or when a
 * node (re)starts or resumes, and read at the end. A window number other than the one expected
 * means someone else reset it meanwhile, and its figure is not used.
 */
class EventLoopWindows {
  readonly expected = new Map<number, number>();
  readonly notes = new Map<number, string>();
  /**
   * The bench process's own loop over the same window, as a control: the machine's two cores are
   * shared, and a node's loop also runs late while the process waits for a core. A delay that
   * every process shows at once is the machine, not one node's code.
   */
  readonly #control = monitorEventLoopDelay({ resolution: EVENT_LOOP_RESOLUTION_MS });
  constructor(readonly cluster: FaultCluster) {
    this.#control.enable();
  }
  /** Starts the control's window (at the injection). */
  reset() {
    this.#control.reset();
  }
  get controlDelayMaxMs(): number {
    const h = this.#control;
    return h.count === 0 ? 0 : Math.round(Math.max(0, h.max / 1e6 - EVENT_LOOP_RESOLUTION_MS) * 10) / 10;
  }
  async open(id: number, note?: string) {
    const s = await this.cluster.status(id, 1000, { eventLoopReset: true });
    const el = eventLoopOf(s);
    if (el) this.expected.set(id, el.window + 1);
    if (note) this.notes.set(id, note);
  }
  /** A process started during the fault: its first window (0) covers it from its start. */
  started(id: number, note: string) {
    this.expected.set(id, 0);
    this.notes.set(id, note);
  }
  async close(): Promise<
    {
      node: number;
      role: string | null;
      delay_max_ms: number | null;
      delay_p99_ms: number | null;
      note?: string;
    }[]
  > {
    this.#control.disable();
    const out = [];
    for (const m of this.cluster.members) {
      if (!m.proc) continue;
      const s = await this.cluster.status(m.id, 2000);
      const el = eventLoopOf(s);
      const valid = el !== null && this.expected.get(m.id) === el.window;
      const note = this.notes.get(m.id);
      out.push({
        node: m.id,
        role: typeof s?.role === "string" ? s.role : null,
        delay_max_ms: valid ? el.delayMaxMs : null,
        delay_p99_ms: valid ? el.delayP99Ms : null,
        ...(note ? { note } : {}),
        ...(el && !valid
          ? { note: `window ${el.window}, expected ${this.expected.get(m.id)}: not used` }
          : {}),
      });
    }
    return out;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now();

interface Sample {
  node: number;
  sent: number;
  ms: number;
  role: string | null;
  term: number | null;
}

interface RunResult {
  fault: FaultId;
  leader: number;
  target_node: number;
  longest_write_gap_ms: number;
  first_write_after_fault_ms: number | null;
  new_leader_elected_ms: number | null;
  /** Each node and term that answered a probe as leader, first seen at first_ms from the injection (negative: before it). */
  leaders_seen: { node: number; term: number; first_ms: number }[];
  writes_in_window: number;
  errors_in_window: number;
  error_codes: Record<string, number>;
  write_latency_ms: { p50: number; p99: number; max: number };
  baseline_write_p99_ms: number;
  /** In-process (status.eventLoop) worst delay of the node leading at the end of the window. */
  leader_event_loop_delay_max_ms: number | null;
  leader_at_end: number | null;
  event_loop_by_node: Awaited<ReturnType<EventLoopWindows["close"]>>;
  /** The control: the bench process's own worst event-loop delay over the window. */
  bench_process_event_loop_delay_max_ms: number;
  /** A client-side view: the longest status call answered by a leader (see the notes). */
  leader_status_latency_max_ms_external_probe: number | null;
  window_s: number;
  catch_up?: Record<string, unknown>;
}

async function runFault(fault: FaultId, label: string, bar: cliProgress.SingleBar): Promise<RunResult> {
  bar.update(0, { label, phase: "starting" });
  const cluster = await FaultCluster.start(fault === "learner-100k-log" ? NO_SNAPSHOT_ENTRIES : undefined);
  const clients: MetaraftClient[] = [];
  let stop = false;
  try {
    const leader = await cluster.leader();
    for (let i = 0; i < connections; i++)
      clients.push(
        new MetaraftClient({ endpoints: cluster.endpoints, clusterId: CLUSTER_ID, timeoutMs: deadlineMs }),
      );
    await clients[0]!.createVolume("bench");
    await clients[0]!.createBucket("bench", "faults");
    const hist = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
    const base = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
    let tFault = Number.POSITIVE_INFINITY;
    let tEnd = Number.POSITIVE_INFINITY;
    const completions: number[] = [];
    let errors = 0;
    const codes: Record<string, number> = {};
    const record = (started: number) => {
      const t = now();
      const us = Math.max(1, Math.round((t - started) * 1000));
      if (t >= tFault && t <= tEnd) {
        completions.push(t);
        hist.recordValue(us);
      } else if (t < tFault) base.recordValue(us);
    };
    const loop = async (id: number) => {
      const c = clients[id % connections]!;
      for (let n = 0; !stop; n++) {
        const key = `k-${id}-${n}`;
        try {
          let s = now();
          const { openKeyId } = await c.openKey("bench", "faults", key, 1024);
          record(s);
          s = now();
          await c.commitKey("bench", "faults", key, openKeyId, { size: 1024, etag: "e" });
          record(s);
        } catch (e) {
          const t = now();
          if (t >= tFault && t <= tEnd) {
            errors++;
            const code = (e as { code?: string }).code ?? "unknown";
            codes[code] = (codes[code] ?? 0) + 1;
          }
          await sleep(10);
        }
      }
    };
    // Probes: a cheap status call to every voter every 10 ms, one at a time per node.
    const samples: Sample[] = [];
    const down = new Map<number, [number, number][]>();
    const markDown = (id: number, from: number, to: number) =>
      down.set(id, [...(down.get(id) ?? []), [from, to]]);
    const probe = async (id: number) => {
      const m = cluster.member(id);
      const c = new RpcClient({
        endpoints: [{ host: "127.0.0.1", port: m.clientPort }],
        clusterId: CLUSTER_ID,
        timeoutMs: 1000,
      });
      let lastRole: string | null = null;
      try {
        while (!stop) {
          const sent = now();
          try {
            const s = await c.call("status", {}, 1000);
            // Its endpoint down, the client moves on to another member: that answer is not this node's.
            if (s.node !== id) throw new Error(`answered by node ${String(s.node)}`);
            lastRole = String(s.role);
            samples.push({ node: id, sent, ms: now() - sent, role: lastRole, term: Number(s.term) });
          } catch {
            samples.push({ node: id, sent, ms: now() - sent, role: lastRole, term: null });
            c.close();
          }
          await sleep(10);
        }
      } finally {
        c.close();
      }
    };
    const loops = Array.from({ length: inflight }, (_, i) => loop(i));
    const probes = cluster.members.map((m) => probe(m.id));
    const total = WARMUP_S + FAULT_S + AFTER_S;
    const t0 = now();
    const ticker = setInterval(() => bar.update(Math.min(total, (now() - t0) / 1000), { label }), 250);
    let target = leader;
    let catchUp: Record<string, unknown> | undefined;
    const windows = new EventLoopWindows(cluster);
    const openWindows = async () => {
      for (const m of cluster.members) if (m.proc) await windows.open(m.id);
      windows.reset();
    };
    try {
      if (isLearnerFault(fault)) {
        // The log must hold learnerEntries entries before the learner is added.
        const tPreload = now();
        for (;;) {
          const last = num(await cluster.status(leader), "lastIndex") ?? 0;
          bar.update({ phase: `preload ${last}/${learnerEntries} entries` });
          if (last >= learnerEntries) break;
          if (now() - tPreload > PRELOAD_MAX_MS)
            throw new Error(`preload: ${last} entries in ${PRELOAD_MAX_MS} ms`);
          await sleep(500);
        }
        catchUp = { preload_s: Math.round((now() - tPreload) / 100) / 10 };
      }
      bar.update({ phase: "warm-up" });
      await sleep(WARMUP_S * 1000);
      const follower = cluster.members.find((m) => m.id !== leader)!.id;
      const other = cluster.members.find((m) => m.id !== leader && m.id !== follower)!.id;
      bar.update({ phase: fault });
      if (fault === "kill-leader") {
        await openWindows();
        tFault = now();
        await cluster.kill(leader);
        markDown(leader, tFault, Number.POSITIVE_INFINITY);
        await sleep(FAULT_S * 1000);
        await cluster.startNode(leader);
        windows.started(leader, "old leader, restarted: its window starts with the new process");
        down.set(leader, [[tFault, now()]]);
      } else if (fault === "stop-leader") {
        await openWindows();
        tFault = now();
        cluster.signal(leader, "SIGSTOP");
        await sleep(FAULT_S * 1000);
        cluster.signal(leader, "SIGCONT");
        markDown(leader, tFault, now());
        // The pause itself would show as one 5 s delay: the old leader's window starts after it.
        await windows.open(leader, "old leader: window opened after SIGCONT");
      } else if (fault === "isolate-leader") {
        await openWindows();
        tFault = now();
        cluster.isolate(leader, true);
        await sleep(FAULT_S * 1000);
        cluster.isolate(leader, false);
      } else if (fault === "restart-follower") {
        target = follower;
        const sBefore = await cluster.status(leader);
        const fBefore = await cluster.status(follower);
        await openWindows();
        tFault = now();
        await cluster.kill(follower);
        markDown(follower, tFault, Number.POSITIVE_INFINITY);
        await sleep(FAULT_S * 1000);
        const sAtRestart = await cluster.status(leader);
        await cluster.startNode(follower);
        windows.started(follower, "restarted follower: its window starts with the new process");
        const tRestart = now();
        down.set(follower, [[tFault, tRestart]]);
        let caughtUpMs: number | null = null;
        let sCaught: Status | null = null;
        const goal = num(sAtRestart, "commit") ?? 0;
        while (now() - tRestart < AFTER_S * 1000) {
          const f = await cluster.status(follower, 500);
          if (f && (num(f, "applied") ?? 0) >= goal) {
            caughtUpMs = now() - tRestart;
            sCaught = await cluster.status(leader);
            break;
          }
          await sleep(50);
        }
        const missedEntries = minus(num(sAtRestart, "lastIndex"), num(fBefore, "lastIndex"));
        const outageEntries = minus(num(sAtRestart, "lastIndex"), num(sBefore, "lastIndex"));
        const otherBytes = minus(sentTo(sAtRestart, other), sentTo(sBefore, other));
        const bytesPerEntry = otherBytes !== null && outageEntries ? otherBytes / outageEntries : null;
        catchUp = {
          follower,
          caught_up_ms_after_restart: caughtUpMs === null ? null : Math.round(caughtUpMs),
          leader_sent_bytes_to_follower_during_catch_up: minus(
            sentTo(sCaught, follower),
            sentTo(sAtRestart, follower),
          ),
          missed_entries: missedEntries,
          missed_log_bytes_estimate:
            missedEntries !== null && bytesPerEntry !== null
              ? Math.round(missedEntries * bytesPerEntry)
              : null,
          missed_log_bytes_estimate_method:
            "missed entries (leader lastIndex at restart - follower lastIndex before kill) x bytes the leader sent " +
            "the live follower per entry appended during the outage (includes heartbeats: an overestimate)",
          leader_snapshot_index_at_restart:
            (sAtRestart?.snapshot as { index?: number } | undefined)?.index ?? null,
          follower_last_index_before_kill: num(fBefore, "lastIndex"),
        };
      } else {
        target = LEARNER_ID;
        const added = await addLearner(cluster, leader, other, clients[0]!, openWindows, windows, (t) => {
          tFault = t;
        });
        catchUp = { ...catchUp, ...added };
      }
      const endOfFault = now();
      tEnd = endOfFault + AFTER_S * 1000;
      await sleep(Math.max(0, tEnd - now()));
    } finally {
      stop = true;
      clearInterval(ticker);
    }
    bar.update({ phase: "draining" });
    const controlDelayMaxMs = windows.controlDelayMaxMs;
    await Promise.all([...loops, ...probes]);
    const byNode = await windows.close();
    if (isLearnerFault(fault)) {
      // Out of the measured window: the cluster is discarded after this run anyway.
      const removed = await clients[0]!.memberRemove(LEARNER_ID).then(
        () => true,
        (e: unknown) => String(e),
      );
      catchUp = { ...catchUp, learner_removed: removed };
    }
    completions.sort((a, b) => a - b);
    let gap = 0;
    let prev = tFault;
    for (const t of completions) {
      gap = Math.max(gap, t - prev);
      prev = t;
    }
    gap = Math.max(gap, tEnd - prev);
    const isDown = (s: Sample) =>
      (down.get(s.node) ?? []).some(([a, b]) => s.sent <= b + 50 && s.sent + s.ms >= a - 50);
    const leaderSamples = samples.filter(
      (s) => s.sent >= tFault && s.sent <= tEnd && s.role === "leader" && !isDown(s),
    );
    const elected = samples.find(
      (s) => s.sent >= tFault && s.node !== leader && s.role === "leader" && s.term !== null,
    );
    // Every (node, term) that answered as leader from just before the fault to the window's end.
    const leadersSeen = new Map<string, { node: number; term: number; first_ms: number }>();
    for (const s of samples) {
      if (s.role !== "leader" || s.term === null || s.sent < tFault - 1000 || s.sent > tEnd) continue;
      const k = `${s.node}/${s.term}`;
      if (!leadersSeen.has(k))
        leadersSeen.set(k, { node: s.node, term: s.term, first_ms: Math.round(s.sent - tFault) });
    }
    const q = (h: typeof hist, p: number) =>
      h.totalCount ? Math.min(h.getValueAtPercentile(p), h.maxValue) / 1000 : 0;
    const endLeader = byNode.find((n) => n.role === "leader");
    return {
      fault,
      leader,
      target_node: target,
      longest_write_gap_ms: Math.round(gap),
      first_write_after_fault_ms: completions.length ? Math.round(completions[0]! - tFault) : null,
      new_leader_elected_ms: elected ? Math.round(elected.sent + elected.ms - tFault) : null,
      leaders_seen: [...leadersSeen.values()],
      writes_in_window: completions.length,
      errors_in_window: errors,
      error_codes: codes,
      write_latency_ms: {
        p50: q(hist, 50),
        p99: q(hist, 99),
        max: hist.totalCount ? hist.maxValue / 1000 : 0,
      },
      baseline_write_p99_ms: q(base, 99),
      leader_event_loop_delay_max_ms: endLeader?.delay_max_ms ?? null,
      leader_at_end: endLeader?.node ?? null,
      event_loop_by_node: byNode,
      bench_process_event_loop_delay_max_ms: controlDelayMaxMs,
      leader_status_latency_max_ms_external_probe: leaderSamples.length
        ? Math.round(Math.max(...leaderSamples.map((s) => s.ms)) * 10) / 10
        : null,
      window_s: Math.round((tEnd - tFault) / 100) / 10,
      ...(catchUp ? { catch_up: catchUp } : {}),
    };
  } finally {
    stop = true;
    for (const c of clients) c.close();
    await cluster.stop();
  }
}

/**
 * The learner fault: `member add 4`, then node 4 started with `--join` through the leader, under
 * the write loops; returns when the leader holds its log to the index the leader's log had at
 * the add (or after LEARNER_CATCH_UP_MAX_MS), with what it was sent and which way.
 */
async function addLearner(
  cluster: FaultCluster,
  leader: number,
  follower: number,
  admin: MetaraftClient,
  openWindows: () => Promise<void>,
  windows: EventLoopWindows,
  injected: (t: number) => void,
): Promise<Record<string, unknown>> {
  const m = await cluster.addMember(LEARNER_ID);
  const sAdd = await cluster.status(leader);
  const lastAtAdd = num(sAdd, "lastIndex") ?? 0;
  await openWindows();
  const tAdd = now();
  injected(tAdd);
  await admin.memberAdd(LEARNER_ID, {
    peer: `127.0.0.1:${m.raftPort}`,
    client: `127.0.0.1:${m.clientPort}`,
  });
  const leaderClient = cluster.member(leader).clientPort;
  await cluster.startNode(LEARNER_ID, `127.0.0.1:${leaderClient}`);
  windows.started(LEARNER_ID, "the learner: its window starts with its process");
  const tStarted = now();
  let caughtUpMs: number | null = null;
  let promotableMs: number | null = null;
  let sCaught: Status | null = null;
  let lastRow: Record<string, unknown> | undefined;
  // Caught up: it holds what the log held at the add (the bytes are counted there). Promotable:
  // within LEARNER_PROMOTE_LAG_ENTRIES_MAX of the leader's log as it is then (the writes go on).
  while (now() - tAdd < LEARNER_CATCH_UP_MAX_MS && (caughtUpMs === null || promotableMs === null)) {
    const list = (await admin.memberList().catch(() => null)) as {
      members: { id: number; match?: number; lag?: number }[];
    } | null;
    const row = list?.members.find((r) => r.id === LEARNER_ID);
    if (row) lastRow = row;
    if (caughtUpMs === null && row?.match !== undefined && row.match >= lastAtAdd) {
      caughtUpMs = now() - tAdd;
      sCaught = await cluster.status(leader);
    }
    if (promotableMs === null && row?.lag !== undefined && row.lag <= LEARNER_PROMOTE_LAG_ENTRIES_MAX) {
      promotableMs = now() - tAdd;
    }
    await sleep(50);
  }
  const learner = await cluster.status(LEARNER_ID, 2000);
  const restores = (learner?.raftStats as { restores?: number } | undefined)?.restores ?? null;
  const snapshotAtAdd = (sAdd?.snapshot as { index?: number } | undefined)?.index ?? null;
  const firstAtAdd = num(sAdd, "firstIndex");
  return {
    learner: LEARNER_ID,
    path:
      restores === null
        ? "unknown (the learner did not answer status)"
        : restores > 0
          ? "snapshot: sent a copy of the state, then the log after it"
          : "log: replicated the log from its start",
    learner_restores: restores,
    leader_last_index_at_add: lastAtAdd,
    leader_first_index_at_add: firstAtAdd,
    leader_snapshot_index_at_add: snapshotAtAdd,
    learner_started_ms_after_add: Math.round(tStarted - tAdd),
    caught_up_ms_after_add: caughtUpMs === null ? null : Math.round(caughtUpMs),
    within_promote_lag_ms_after_add: promotableMs === null ? null : Math.round(promotableMs),
    last_member_row: lastRow ?? null,
    leader_sent_bytes_to_learner: sentTo(sCaught, LEARNER_ID),
    // The whole log, as the leader sent it once to a follower that was there from the start.
    log_bytes_missed_estimate: sentTo(sAdd, follower),
    log_bytes_missed_estimate_method:
      "bytes the leader had sent a follower up to the add (the log from index 1, once, plus heartbeats: an overestimate)",
    learner_first_index: num(learner, "firstIndex"),
    learner_snapshot_index: (learner?.snapshot as { index?: number } | undefined)?.index ?? null,
  };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.floor((s.length - 1) / 2)]! : null;
};

async function main() {
  const bar = new cliProgress.SingleBar(
    {
      format: "{label} {bar} {value}/{total} s  {phase}",
      formatValue: (v, _o, type) => (type === "value" ? Number(v).toFixed(1) : String(v)),
      hideCursor: true,
      noTTYOutput: true,
      notTTYSchedule: 2000,
    },
    cliProgress.Presets.shades_classic,
  );
  const loadBefore = loadavg();
  const runs = new Map<FaultId, RunResult[]>(faults.map((f) => [f, []]));
  bar.start(WARMUP_S + FAULT_S + AFTER_S, 0, { label: "", phase: "" });
  try {
    for (let r = 0; r < repeat; r++)
      for (const [i, f] of faults.entries())
        runs
          .get(f)!
          .push(await runFault(f, `[${r * faults.length + i + 1}/${repeat * faults.length}] ${f}`, bar));
  } finally {
    bar.stop();
  }
  const loadAfter = loadavg();
  const summary = faults.map((f) => {
    const rs = runs.get(f)!;
    const gaps = rs.map((r) => r.longest_write_gap_ms);
    const stalls = rs.map((r) => r.leader_event_loop_delay_max_ms);
    const gapPass = gaps.every((g) => g <= GAP_TARGET_MS);
    const stallPass = stalls.every((s) => s !== null && s <= STALL_TARGET_MS);
    const catchUps = rs.map((r) => r.catch_up ?? null);
    return {
      fault: f,
      measured: true,
      longest_write_gap_ms_median: median(gaps),
      longest_write_gap_ms_runs: gaps,
      write_p99_ms_median: median(rs.map((r) => r.write_latency_ms.p99)),
      write_p99_ms_runs: rs.map((r) => r.write_latency_ms.p99),
      new_leader_elected_ms_runs: rs.map((r) => r.new_leader_elected_ms),
      leader_event_loop_delay_max_ms_median: median(stalls.filter((s): s is number => s !== null)),
      leader_event_loop_delay_max_ms_runs: stalls,
      any_node_event_loop_delay_max_ms_runs: rs.map((r) =>
        Math.max(...r.event_loop_by_node.map((n) => n.delay_max_ms ?? 0)),
      ),
      bench_process_event_loop_delay_max_ms_runs: rs.map((r) => r.bench_process_event_loop_delay_max_ms),
      leader_status_latency_max_ms_external_probe_runs: rs.map(
        (r) => r.leader_status_latency_max_ms_external_probe,
      ),
      errors_runs: rs.map((r) => r.errors_in_window),
      ...(isLearnerFault(f)
        ? {
            learner_path_runs: catchUps.map((c) => c?.path ?? null),
            learner_caught_up_ms_runs: catchUps.map((c) => c?.caught_up_ms_after_add ?? null),
            learner_promotable_ms_runs: catchUps.map((c) => c?.within_promote_lag_ms_after_add ?? null),
            learner_sent_bytes_runs: catchUps.map((c) => c?.leader_sent_bytes_to_learner ?? null),
            learner_log_bytes_missed_estimate_runs: catchUps.map((c) => c?.log_bytes_missed_estimate ?? null),
          }
        : {}),
      ...(f === "restart-follower"
        ? {
            follower_sent_bytes_runs: catchUps.map(
              (c) => c?.leader_sent_bytes_to_follower_during_catch_up ?? null,
            ),
            follower_missed_bytes_estimate_runs: catchUps.map((c) => c?.missed_log_bytes_estimate ?? null),
          }
        : {}),
      gap_pass: gapPass,
      stall_pass: stallPass,
      pass: gapPass && stallPass,
    };
  });
  const runsText = (xs: readonly (number | null)[]) => xs.map((v) => v ?? "-").join(" ");
  console.table(
    summary.map((s) => ({
      fault: s.fault,
      "longest gap ms (median)": s.longest_write_gap_ms_median,
      "gap runs": s.longest_write_gap_ms_runs.join(" "),
      "write p99 ms": s.write_p99_ms_median,
      "leader event-loop delay max ms": runsText(s.leader_event_loop_delay_max_ms_runs),
      "bench process (control)": runsText(s.bench_process_event_loop_delay_max_ms_runs),
      errors: s.errors_runs.join(" "),
      [`gap<=${GAP_TARGET_MS}ms`]: s.gap_pass ? "PASS" : "FAIL",
      [`stall<=${STALL_TARGET_MS}ms`]: s.stall_pass ? "PASS" : "FAIL",
    })),
  );
  for (const f of faults)
    if (f === "restart-follower" || isLearnerFault(f))
      for (const r of runs.get(f) ?? []) console.log(`${f} catch-up:`, JSON.stringify(r.catch_up));
  const result = {
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      memory_gb: Number((totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      date: new Date().toISOString(),
      load_average_1_5_15_before: loadBefore.map((l) => Number(l.toFixed(2))),
      load_average_1_5_15_after: loadAfter.map((l) => Number(l.toFixed(2))),
    },
    settings: {
      nodes: 3,
      transport: "loopback; every directed peer link through an in-process TCP proxy in the bench process",
      workload: "openKey + commitKey on unique keys; a write = one openKey or commitKey request",
      connections,
      inflight,
      call_deadline_ms: deadlineMs,
      warmup_s: WARMUP_S,
      fault_s: FAULT_S,
      after_s: AFTER_S,
      repeat,
      quick,
      tick_ms: TICK_MS,
      election_ticks: ELECTION_TICKS,
      learner_entries: learnerEntries,
      snapshot_entries: {
        default: SETTINGS.raft.snapshotEntries.default,
        trailing_default: SETTINGS.raft.snapshotTrailingEntries.default,
        "learner-100k-log": NO_SNAPSHOT_ENTRIES,
      },
      targets: {
        longest_write_gap_ms: GAP_TARGET_MS,
        gap_target_rule:
          "2 x max election timeout (electionTicks x tickMs x 2); PASS only if every run meets it",
        stall_ms: STALL_TARGET_MS,
        stall_target_rule:
          "leader_event_loop_delay_max_ms (the node leading at the window's end) <= stall_ms in every run",
      },
      notes: [
        "longest write gap: longest interval between consecutive successful write completions from fault " +
          "injection to after_s after the fault ends (including the edges). For the learner faults the fault " +
          "starts at `member add` and ends when the leader holds the learner's log to the index the leader's " +
          "log had at the add.",
        "leader_event_loop_delay_max_ms: status.eventLoop.delayMaxMs of the node leading at the end of the " +
          "window (monitorEventLoopDelay at 10 ms resolution inside the node, how late its timer fired: the " +
          "loop was blocked at least that long and at most 10 ms more). Every node's window is reset at the " +
          "injection; a node that (re)starts during the fault has its process's first window; the SIGSTOPped " +
          "leader's window is opened after SIGCONT, so that the pause itself is not counted. event_loop_by_node " +
          "has every node's figure, and bench_process_event_loop_delay_max_ms the bench process's own over the " +
          "same window: a control for the machine (2 shared cores: a process waiting for a core shows a late " +
          "loop too).",
        "leader_status_latency_max_ms_external_probe: a status call every 10 ms per node from the bench " +
          "process, max response time of samples answered as leader, excluding samples overlapping a " +
          "stop/kill of that node (what the bench measured before the in-process figure; it also counts the " +
          "bench process's own delays).",
        "learner faults: the log holds learner_entries entries first (the same write loops, from a fresh " +
          "cluster); with the default snapshot settings the leader has snapshotted every snapshot_entries.default " +
          "entries and keeps trailing_default behind the last, so the learner is sent a copy of the state; " +
          "learner-100k-log runs the nodes with --snapshot-entries 1e9, so it replicates the log from index 1.",
      ],
    },
    summary,
    runs: Object.fromEntries(runs),
  };
  const name = quick || values.filter ? "faults.partial" : "faults";
  writeResults(name, result);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
