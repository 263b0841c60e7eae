import { MetaraftError } from "../../src/errors.js";
import {
  type ConfChange,
  type ConfState,
  EMPTY_CONF_STATE,
  type Entry,
  encodeConfChange,
  MemoryStorage,
  type Message,
  type NodeId,
  RAFT_DEFAULTS,
  Raft,
  type Ready,
  type Snapshot,
} from "../../src/raft/index.js";
import { seededRandom } from "../raft/harness.js";
import { type CatchUpLimits, CatchUpMonitor, type CatchUpStats, linkKey } from "./catch-up.js";
import { MinHeap } from "./heap.js";
import { checkKv, type KvOp } from "./linearizability.js";

/**
 * The deterministic simulator: whole clusters in one process, running the production Raft core
 * and storage logic against a virtual clock, a seeded random source, a network that drops,
 * delays, duplicates, reorders and partitions, and crashes that lose what was not yet synced.
 * An operator changes the membership meanwhile, one change at a time as production does: new
 * nodes join as learners from an empty log, learners are promoted, members (the leader among
 * them) are removed and then shut down, and leadership is handed to random voters.
 * Everything random comes from the seed, so `seed=N` replays a run exactly.
 *
 * Checked: one leader per term, and only a voter of its membership; leader completeness; log
 * matching; every node applies the same entries, and the same membership after each change
 * (snapshots included); at most one change in flight; the catch-up bound (catch-up.ts); the
 * KV history is linearizable; and, faults over, a healthy majority of the final membership
 * elects a leader, commits a write and converges, then so does everyone.
 */

export interface FaultLevels {
  readonly dropRate: number;
  readonly duplicateRate: number;
  readonly delayMax: number;
  /** Chance per time unit of a new partition (half of them asymmetric). */
  readonly partitionRate: number;
  readonly healRate: number;
  readonly crashRate: number;
  readonly restartRate: number;
  /** Largest disk latency, in time units, between a Ready and its durable write. */
  readonly diskDelayMax: number;
  /** Each node's tick period differs by up to this many time units (clock drift). */
  readonly driftMax: number;
  /**
   * Whether messages on one link overtake each other. When false every link delivers in the
   * order it was sent, as production's TCP links do (they still lose messages, as a reset
   * connection does).
   */
  readonly reorder: boolean;
  /** Chance per time unit that the leader is asked for a membership change. */
  readonly membershipRate: number;
  /** Chance per time unit that the leader is asked to hand leadership to a random voter. */
  readonly transferRate: number;
}

export interface SimOptions {
  readonly seed: number;
  readonly nodes?: 3 | 5;
  readonly safetyUnits?: number;
  readonly livenessUnits?: number;
  readonly clients?: number;
  /** Applied entries between state-machine snapshots (small, to exercise snapshot catch-up). */
  readonly snapshotEvery?: number;
  /** Receives one line per schedule event (elections, crashes, membership), for replaying a seed. */
  readonly trace?: (line: string) => void;
}

export interface SimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly failure?: string;
  readonly stats: {
    readonly nodes: number;
    readonly faults: FaultLevels;
    readonly elections: number;
    readonly committed: number;
    readonly operations: number;
    readonly completed: number;
    readonly crashes: number;
    readonly snapshotsSent: number;
    readonly limits: CatchUpLimits;
    /** The committed membership at the end. */
    readonly members: ConfState;
    readonly membership: MembershipStats;
    readonly catchUp: CatchUpStats;
    /** Voters kept down while the liveness phase had to converge without them. */
    readonly livenessDown: number;
  };
}

export interface MembershipStats {
  /** Committed changes, bootstrap excluded. */
  readonly learnersAdded: number;
  readonly promotions: number;
  readonly removals: number;
  /** Removals of the leader that proposed them. */
  readonly leaderRemovals: number;
  /** Proposals the core refused (one already in flight, a lagging learner, a transfer under way). */
  readonly refused: number;
  readonly transfers: number;
  /** Transfers whose target was elected. */
  readonly transfersDone: number;
  /** Removed nodes shut down once every voter had applied their removal. */
  readonly stopped: number;
  readonly votersMax: number;
}

const TICK_UNITS = 10;
const OP_TIMEOUT_UNITS = 400;
/** The schedule grows the voters to at most this many, the members to at most MEMBERS_MAX. */
const VOTERS_MAX = 7;
const MEMBERS_MAX = 9;
/** Node ids are never reused (a removed member comes back only with fresh data and a new id). */
const NODES_MAX = 16;
/** A learner within this many entries of the leader may be promoted (the core refuses others). */
const LEARNER_LAG_ENTRIES_MAX = 10;

class SimFailure extends Error {}

interface Command {
  readonly client: number;
  readonly seq: number;
  readonly kind: "put" | "cas";
  readonly key: string;
  readonly value: string;
  readonly expected?: string | null;
}

interface InFlightMessage {
  readonly at: number;
  readonly order: number;
  readonly message: Message;
}

/** The network's delivery schedule: a min-heap on (at, order). */
class Schedule {
  readonly #heap = new MinHeap<InFlightMessage>(before);

  get size(): number {
    return this.#heap.size;
  }

  push(item: InFlightMessage): void {
    this.#heap.push(item);
  }

  popDue(now: number): InFlightMessage | undefined {
    const next = this.#heap.peek();
    if (next === undefined || next.at > now) return undefined;
    return this.#heap.pop();
  }

  clear(): void {
    this.#heap.clear();
  }
}

const before = (a: InFlightMessage, b: InFlightMessage): boolean =>
  a.at < b.at || (a.at === b.at && a.order < b.order);

interface PendingOp {
  readonly op: KvOp & { ret: number | null; output?: string | null | boolean };
  readonly deadline: number;
  readonly clientIndex: number;
}

class SimNode {
  raft: Raft | null = null;
  /** The state machine: applied by this node from the log or a snapshot. */
  kv = new Map<string, string>();
  applied = 0;
  /** The highest index this node ever applied: its durable commit is at least this. */
  appliedMax = 0;
  /** The membership as this node applied it (what a host's confState is). */
  conf: ConfState = EMPTY_CONF_STATE;
  /** Removed, and shut down for good: it never restarts. */
  stopped = false;
  persisting: { ready: Ready; doneAt: number } | null = null;
  readonly proposals = new Map<string, PendingOp>();
  readonly reads = new Map<string, PendingOp & { key: string }>();
  readonly releasedReads: { index: number; ctx: string }[] = [];
  tickPeriod = TICK_UNITS;
  nextTick = 0;
  incarnation = 0;

  constructor(
    readonly id: NodeId,
    readonly storage: MemoryStorage,
  ) {}
}

interface Client {
  busy: boolean;
  leaderGuess: NodeId;
  seq: number;
}

export function chooseFaults(random: () => number): FaultLevels {
  const pick = (values: readonly number[]): number => values[Math.floor(random() * values.length)]!;
  return {
    dropRate: pick([0, 0.01, 0.05, 0.15]),
    duplicateRate: pick([0, 0.01, 0.05]),
    delayMax: pick([1, 3, 10, 30]),
    partitionRate: pick([0, 0.001, 0.004]),
    healRate: pick([0.002, 0.01]),
    crashRate: pick([0, 0.001, 0.003]),
    restartRate: pick([0.005, 0.02]),
    diskDelayMax: pick([0, 2, 5, 20]),
    driftMax: pick([0, 1, 2]),
    reorder: pick([0, 1]) === 1,
    membershipRate: pick([0, 0.002, 0.005]),
    transferRate: pick([0, 0.001, 0.003]),
  };
}

/**
 * Replication limits, small enough that a catch-up spans many appends and windows, so that the
 * catch-up bound is tested on more than one message (the production default for the byte
 * window is among them: there the message count closes the window).
 */
export function chooseLimits(random: () => number): CatchUpLimits {
  const pick = (values: readonly number[]): number => values[Math.floor(random() * values.length)]!;
  return {
    messageBytesMax: pick([128, 512, 4096]),
    inflightMessagesMax: pick([2, 4, 16]),
    inflightBytesMax: pick([512, 4096, RAFT_DEFAULTS.inflightBytesMax]),
  };
}

/** The membership after `change`, as Raft.applyConfChange computes it (sorted, as confState()). */
function nextConf(conf: ConfState, change: ConfChange): ConfState {
  const voters = new Set(conf.voters);
  const learners = new Set(conf.learners);
  voters.delete(change.node);
  learners.delete(change.node);
  if (change.kind === "addVoter") voters.add(change.node);
  if (change.kind === "addLearner") learners.add(change.node);
  const sorted = (ids: Set<NodeId>): NodeId[] => [...ids].sort((a, b) => a - b);
  return { voters: sorted(voters), learners: sorted(learners) };
}

const sameConf = (a: ConfState, b: ConfState): boolean =>
  a.voters.join() === b.voters.join() && a.learners.join() === b.learners.join();

const describeConf = (c: ConfState): string => `voters=[${c.voters}] learners=[${c.learners}]`;

/** A new cluster's log, as production bootstraps it: its voters as committed entries 1..n of term 1. */
function bootstrapEntries(voters: readonly NodeId[]): Entry[] {
  return voters.map((node, i) => ({
    term: 1,
    index: i + 1,
    type: "confChange",
    data: encodeConfChange({ kind: "addVoter", node }),
  }));
}

const memberContext = (node: NodeId): Uint8Array => new TextEncoder().encode(`member ${node}`);

export class Simulation {
  readonly seed: number;
  readonly #random: () => number;
  readonly faults: FaultLevels;
  readonly nodes: SimNode[] = [];
  readonly #network = new Schedule();
  /** Blocked directed links, "from->to". */
  readonly #cut = new Set<string>();
  #time = 0;
  #order = 0;
  #faultsOn = true;
  readonly #clients: Client[] = [];
  readonly history: (KvOp & { ret: number | null })[] = [];
  readonly #snapshotEvery: number;
  /** Appended to every value written: entries of some 60 to 900 bytes, by seed. */
  readonly #valuePad: string;
  /** No command is larger (checked at each proposal): a CAS carries two padded values. */
  get #entryBytesMax(): number {
    return 2 * this.#valuePad.length + 160;
  }
  readonly limits: CatchUpLimits;
  readonly #catchUp: CatchUpMonitor;
  /** Per directed link: when its last message is due (FIFO links), and the last order delivered. */
  readonly #linkDueAt = new Map<number, number>();
  readonly #linkDelivered = new Map<number, number>();

  // What the checks remember.
  readonly #leaderOfTerm = new Map<number, NodeId>();
  /** Every entry applied anywhere, by index: all nodes must apply the same one. */
  readonly #appliedEntries = new Map<number, { term: number; data: string }>();
  #elections = 0;
  #crashes = 0;
  #snapshotsSent = 0;
  /**
   * The committed membership after each committed conf change, by index (from the empty one
   * at 0): every node must apply the same sequence, and every snapshot carry the one of its index.
   */
  readonly #confHistory: { index: number; conf: ConfState }[] = [{ index: 0, conf: EMPTY_CONF_STATE }];
  /** Removed nodes not yet shut down, with the index of their removal. */
  readonly #removals = new Map<NodeId, number>();
  /** Nodes whose addition as a learner committed: they are never added again. */
  readonly #joined = new Set<NodeId>();
  #transferTo: { to: NodeId; term: number } | null = null;
  #livenessDown = 0;
  readonly #membership = {
    learnersAdded: 0,
    promotions: 0,
    removals: 0,
    leaderRemovals: 0,
    refused: 0,
    transfers: 0,
    transfersDone: 0,
    stopped: 0,
    votersMax: 0,
  };

  constructor(readonly options: SimOptions) {
    this.seed = options.seed;
    this.#random = seededRandom(options.seed);
    this.faults = chooseFaults(this.#random);
    // Short logs exercise snapshot catch-up; long ones, catch-ups of many appends.
    this.#snapshotEvery =
      options.snapshotEvery ??
      (this.#random() < 0.5 ? 25 + Math.floor(this.#random() * 50) : 150 + Math.floor(this.#random() * 150));
    this.limits = chooseLimits(this.#random);
    this.#valuePad = "~".repeat([0, 64, 400][Math.floor(this.#random() * 3)]!);
    this.#catchUp = new CatchUpMonitor(
      { ...this.limits, entryBytesMax: this.#entryBytesMax },
      (id) => this.nodes[id - 1],
      (index) => this.#appliedEntries.get(index)?.term,
      (message) => this.#fail(message),
    );
    const count = options.nodes ?? 3;
    const voters = Array.from({ length: count }, (_, i) => i + 1);
    for (const id of voters) this.#joined.add(id);
    for (let i = 0; i < count; i++) this.#addNode(voters);
    for (let i = 0; i < (options.clients ?? 3); i++)
      this.#clients.push({ busy: false, leaderGuess: 1, seq: 0 });
  }

  /** A new node: one of the bootstrapping voters, or (`bootstrap` null) one that will join. */
  #addNode(bootstrap: readonly NodeId[] | null): SimNode {
    const storage = new MemoryStorage();
    if (bootstrap) {
      const entries = bootstrapEntries(bootstrap);
      storage.save({ hardState: { term: 1, vote: 0, commit: entries.length }, entries, snapshot: null });
    }
    const node = new SimNode(this.nodes.length + 1, storage);
    node.tickPeriod =
      TICK_UNITS + Math.floor(this.#random() * (2 * this.faults.driftMax + 1)) - this.faults.driftMax;
    this.nodes.push(node);
    this.#start(node);
    return node;
  }

  get #committedConf(): ConfState {
    return this.#confHistory[this.#confHistory.length - 1]!.conf;
  }

  /** The committed membership as of `index`. */
  #confAt(index: number): ConfState {
    for (let i = this.#confHistory.length - 1; ; i--) {
      const at = this.#confHistory[i]!;
      if (at.index <= index) return at.conf;
    }
  }

  /** The leader of the highest term among the live nodes (a stale one may still think it leads). */
  #leader(): SimNode | undefined {
    let leader: SimNode | undefined;
    for (const node of this.nodes) {
      if (node.raft?.role === "leader" && (!leader || node.raft.term > leader.raft!.term)) leader = node;
    }
    return leader;
  }

  #trace(line: string): void {
    this.options.trace?.(`t=${this.#time} ${line}`);
  }

  #fail(message: string): never {
    throw new SimFailure(`t=${this.#time}: ${message}`);
  }

  /** (Re)starts a node from its durable storage: its state machine from the snapshot, then the log. */
  #start(node: SimNode): void {
    if (node.stopped) this.#fail(`node ${node.id} was shut down for good and restarted`);
    node.incarnation++;
    const snapshot = node.storage.snapshot();
    node.kv = decodeKv(snapshot);
    node.applied = snapshot.meta.index;
    node.conf = snapshot.meta.confState;
    this.#checkSnapshotConf(node, snapshot);
    node.persisting = null;
    node.raft = new Raft({
      id: node.id,
      storage: node.storage,
      random: seededRandom(this.seed * 31 + node.id * 1009 + node.incarnation),
      applied: node.applied,
      electionTicks: 10,
      heartbeatTicks: 1,
      ...this.limits,
      learnerLagEntriesMax: LEARNER_LAG_ENTRIES_MAX,
    });
    node.nextTick = this.#time + 1 + Math.floor(this.#random() * node.tickPeriod);
    if (node.incarnation > 1) {
      this.#trace(`restart ${node.id}`);
      this.#comesBack(node, "restart");
    }
  }

  /** `node` is reachable again: a catch-up by the current leader begins. */
  #comesBack(node: SimNode, reason: string): void {
    const leader = this.#leader();
    if (leader) this.#catchUp.begin(leader.id, node.id, reason, this.#time);
  }

  #checkSnapshotConf(node: SimNode, snapshot: Snapshot): void {
    const expected = this.#confAt(snapshot.meta.index);
    if (!sameConf(snapshot.meta.confState, expected)) {
      this.#fail(
        `node ${node.id} holds a snapshot at ${snapshot.meta.index} with ${describeConf(snapshot.meta.confState)}, ` +
          `but the membership committed there is ${describeConf(expected)}`,
      );
    }
  }

  /** A removed member is shut down for good, as an operator would once it is out of the cluster. */
  #stop(node: SimNode): void {
    this.#trace(`stop ${node.id} (removed)`);
    this.#membership.stopped++;
    node.stopped = true;
    this.#takeDown(node);
  }

  #crash(node: SimNode): void {
    this.#trace(`crash ${node.id}`);
    this.#crashes++;
    this.#takeDown(node);
  }

  #takeDown(node: SimNode): void {
    // Whatever was being written is lost, as are the node's in-memory state and pending requests.
    node.raft = null;
    node.persisting = null;
    node.releasedReads.length = 0;
    for (const pending of [...node.proposals.values(), ...node.reads.values()]) this.#abandon(pending);
    node.proposals.clear();
    node.reads.clear();
  }

  #abandon(pending: PendingOp): void {
    this.#clients[pending.clientIndex]!.busy = false;
  }

  #send(message: Message): void {
    this.#catchUp.sent(message);
    if (this.#faultsOn && this.#random() < this.faults.dropRate) {
      this.#catchUp.linkFault(message.from, message.to);
      return;
    }
    const copies = this.#faultsOn && this.#random() < this.faults.duplicateRate ? 2 : 1;
    if (copies > 1) this.#catchUp.linkFault(message.from, message.to);
    const link = linkKey(message.from, message.to);
    for (let c = 0; c < copies; c++) {
      const delay = 1 + Math.floor(this.#random() * this.faults.delayMax);
      let at = this.#time + delay;
      if (!this.faults.reorder) {
        // FIFO: never due before the link's previous message (equal times keep send order).
        at = Math.max(at, this.#linkDueAt.get(link) ?? 0);
        this.#linkDueAt.set(link, at);
      }
      this.#network.push({ at, order: this.#order++, message });
    }
    if (message.type === "snap") this.#snapshotsSent++;
  }

  run(): SimResult {
    const safetyUnits = this.options.safetyUnits ?? 3000;
    const livenessUnits = this.options.livenessUnits ?? 4000;
    try {
      for (let t = 0; t < safetyUnits; t++) this.#step();
      this.#checkLogMatching();
      const down = this.#healAll();
      this.#liveness(livenessUnits, down);
      if (down.size > 0) {
        // The minority comes back and catches up too.
        for (const id of down) this.#start(this.nodes[id - 1]!);
        this.#liveness(livenessUnits, new Set());
      }
      this.#checkLogMatching();
      this.#checkLinearizable();
      return this.#result(true);
    } catch (error) {
      if (error instanceof SimFailure || error instanceof MetaraftError) {
        return this.#result(false, error.message);
      }
      throw error;
    }
  }

  #result(ok: boolean, failure?: string): SimResult {
    return {
      seed: this.seed,
      ok,
      ...(failure === undefined ? {} : { failure }),
      stats: {
        nodes: this.nodes.length,
        faults: this.faults,
        elections: this.#elections,
        committed: this.#appliedEntries.size,
        operations: this.history.length,
        completed: this.history.filter((op) => op.ret !== null).length,
        crashes: this.#crashes,
        snapshotsSent: this.#snapshotsSent,
        limits: this.limits,
        members: this.#committedConf,
        membership: { ...this.#membership },
        catchUp: this.#catchUp.stats(),
        livenessDown: this.#livenessDown,
      },
    };
  }

  /**
   * Faults stop, partitions heal and every node restarts, except a random minority of the
   * committed voters (returned), which Raft must do without: the liveness phase runs with a
   * healthy majority of the final membership. Only when that membership is settled, though
   * (every voter has applied it, and no log holds a later change): a change still pending
   * could commit and need the absent voters for its quorum.
   */
  #healAll(): Set<NodeId> {
    this.#faultsOn = false;
    this.#heal();
    const { voters } = this.#committedConf;
    const down = new Set<NodeId>();
    if (this.#membershipSettled()) {
      const count = Math.floor(this.#random() * (Math.floor((voters.length - 1) / 2) + 1));
      const candidates = [...voters];
      while (down.size < count) {
        down.add(candidates.splice(Math.floor(this.#random() * candidates.length), 1)[0]!);
      }
    }
    for (const node of this.nodes) {
      if (down.has(node.id)) {
        if (node.raft) this.#crash(node);
      } else if (!node.raft && !node.stopped) {
        this.#start(node);
      }
    }
    if (down.size > 0) this.#trace(`liveness without ${[...down]}`);
    this.#livenessDown = down.size;
    return down;
  }

  #membershipSettled(): boolean {
    const since = this.#confHistory[this.#confHistory.length - 1]!.index;
    if (this.#committedConf.voters.some((v) => this.nodes[v - 1]!.appliedMax < since)) return false;
    return this.nodes.every(
      (n) => n.stopped || !this.#logFrom(n, since + 1).some((e) => e.type === "confChange"),
    );
  }

  /** The entries `node` holds from `from` on: in its core's log if it is up, else on its disk. */
  #logFrom(node: SimNode, from: number): Entry[] {
    const log = node.raft?.log;
    const first = log?.firstIndex() ?? node.storage.firstIndex();
    const last = log?.lastIndex() ?? node.storage.lastIndex();
    const lo = Math.max(from, first);
    if (lo > last) return [];
    if (log) return log.slice(lo, last + 1, Number.MAX_SAFE_INTEGER) ?? [];
    return node.storage.entries(lo, last + 1, Number.MAX_SAFE_INTEGER);
  }

  /** Every partition heals: the leader's followers on the other side come back. */
  #heal(): void {
    if (this.#cut.size === 0) return;
    this.#trace("heal");
    this.#cut.clear();
    const leader = this.#leader();
    if (!leader) return;
    for (const id of leader.raft!.progress.keys()) {
      if (id !== leader.id) this.#catchUp.begin(leader.id, id, "heal", this.#time);
    }
  }

  /**
   * With faults gone, a leader must emerge, serve a write, and every member of the membership
   * but those kept `down` must catch up.
   */
  #liveness(units: number, down: ReadonlySet<NodeId>): void {
    const deadline = this.#time + units;
    let probe: PendingOp | null = null;
    while (this.#time < deadline) {
      this.#step();
      const leader = this.#leader();
      if (probe && probe.op.ret === null && probe.deadline <= this.#time) probe = null;
      if (!probe && leader) probe = this.#startWrite(leader, this.#clients.length, "liveness", "done");
      if (leader && probe?.op.ret !== null && probe?.op.ret !== undefined) {
        // Converged: every member of the leader's membership (which, once the leader has
        // applied all it committed, is the committed one) applied all and follows it.
        const raft = leader.raft!;
        const { voters, learners } = raft.confState();
        const converged = [...voters, ...learners].every((id) => {
          const n = this.nodes[id - 1]!;
          return down.has(id) || (n.raft?.leader === leader.id && n.applied === raft.log.committed);
        });
        if (leader.applied === raft.log.committed && converged) return;
      }
    }
    const states = this.nodes
      .filter((n) => !n.stopped)
      .map((n) => `${n.id}:${n.raft?.role}/t${n.raft?.term}/applied=${n.applied}`)
      .join(" ");
    const without = down.size > 0 ? ` without ${[...down]}` : "";
    this.#fail(
      `liveness: no converged cluster with a committed write${without} after ${units} units (${states}; committed ${describeConf(this.#committedConf)})`,
    );
  }

  #step(): void {
    this.#time++;
    for (let m = this.#network.popDue(this.#time); m; m = this.#network.popDue(this.#time)) this.#deliver(m);
    for (const node of this.nodes) {
      if (!node.raft) continue;
      if (this.#time >= node.nextTick) {
        node.nextTick += node.tickPeriod;
        node.raft.tick();
      }
    }
    for (const node of this.nodes) this.#processNode(node);
    this.#runClients();
    if (this.#faultsOn) {
      this.#injectFaults();
      this.#changeMembership();
    }
    this.#stopRemoved();
    this.#catchUp.poll();
    if (this.#time % 500 === 0) this.#checkLogMatching();
  }

  #deliver(scheduled: InFlightMessage): void {
    const { message } = scheduled;
    const link = linkKey(message.from, message.to);
    const target = this.nodes[message.to - 1];
    if (!target?.raft || (this.#cut.size > 0 && this.#cut.has(`${message.from}->${message.to}`))) {
      this.#catchUp.linkFault(message.from, message.to);
      return;
    }
    if (scheduled.order < (this.#linkDelivered.get(link) ?? -1))
      this.#catchUp.linkFault(message.from, message.to);
    else this.#linkDelivered.set(link, scheduled.order);
    target.raft.step(message);
  }

  #processNode(node: SimNode): void {
    const raft = node.raft;
    if (!raft) return;
    if (node.persisting && node.persisting.doneAt <= this.#time) {
      const { ready } = node.persisting;
      node.persisting = null;
      node.storage.save({ hardState: ready.hardState, entries: ready.entries, snapshot: ready.snapshot });
      for (const m of ready.messages) this.#send(m);
      if (ready.snapshot) {
        node.kv = decodeKv(ready.snapshot);
        node.applied = ready.snapshot.meta.index;
        node.appliedMax = Math.max(node.appliedMax, node.applied);
        node.conf = ready.snapshot.meta.confState;
        this.#checkSnapshotConf(node, ready.snapshot);
      }
      for (const entry of ready.committedEntries) this.#apply(node, entry);
      for (const read of ready.readStates) {
        node.releasedReads.push({ index: read.index, ctx: Buffer.from(read.ctx).toString() });
      }
      raft.advance();
      this.#maybeSnapshot(node);
    }
    this.#serveReads(node);
    // As RaftHost does: while a Ready is being written, the leader's appends go out at once.
    if (node.persisting) for (const m of raft.takeEagerMessages()) this.#send(m);
    if (!node.persisting && raft.hasReady()) {
      const ready = raft.ready();
      if (ready.softState?.role === "leader") this.#onLeader(node);
      if (ready.softState && ready.softState.role !== "leader") {
        // Reads waiting for this node's leadership confirmation will never be released.
        for (const pending of node.reads.values()) this.#abandon(pending);
        node.reads.clear();
      }
      for (const m of ready.eagerMessages) this.#send(m);
      node.persisting = {
        ready,
        doneAt: this.#time + Math.floor(this.#random() * (this.faults.diskDelayMax + 1)),
      };
      if (this.faults.diskDelayMax === 0) this.#processNode(node);
    }
  }

  #onLeader(node: SimNode): void {
    const raft = node.raft!;
    this.#elections++;
    const previous = this.#leaderOfTerm.get(raft.term);
    if (previous !== undefined && previous !== node.id) {
      this.#fail(`two leaders in term ${raft.term}: ${previous} and ${node.id}`);
    }
    this.#leaderOfTerm.set(raft.term, node.id);
    this.#trace(
      `leader ${node.id} term ${raft.term} ${describeConf(raft.confState())} last=${raft.log.lastIndex()}`,
    );
    if (!raft.confState().voters.includes(node.id)) {
      this.#fail(
        `node ${node.id} leads term ${raft.term} but is no voter of ${describeConf(raft.confState())}`,
      );
    }
    if (this.#transferTo?.to === node.id && raft.term > this.#transferTo.term) {
      this.#membership.transfersDone++;
      this.#transferTo = null;
    }
    for (const id of raft.progress.keys()) {
      if (id !== node.id) this.#catchUp.begin(node.id, id, "elected", this.#time);
    }
    // Leader completeness: every entry applied anywhere is in the new leader's log.
    const first = raft.log.firstIndex();
    for (const [index, applied] of this.#appliedEntries) {
      if (index < first) continue;
      const term = raft.log.term(index);
      if (term !== applied.term) {
        this.#fail(
          `leader ${node.id} of term ${raft.term} lacks committed entry ${applied.term}/${index} (has ${term})`,
        );
      }
    }
  }

  #apply(node: SimNode, entry: Entry): void {
    if (entry.index !== node.applied + 1) {
      this.#fail(`node ${node.id} applies ${entry.index} after ${node.applied}`);
    }
    node.applied = entry.index;
    node.appliedMax = Math.max(node.appliedMax, node.applied);
    const data = Buffer.from(entry.data).toString();
    const seen = this.#appliedEntries.get(entry.index);
    if (seen && (seen.term !== entry.term || seen.data !== data)) {
      this.#fail(
        `node ${node.id} applies ${entry.term}/${entry.index} "${data}" where another applied ${seen.term}/${entry.index} "${seen.data}"`,
      );
    }
    if (!seen) this.#appliedEntries.set(entry.index, { term: entry.term, data });
    if (entry.type === "confChange") {
      this.#applyConfChange(node, entry, !seen);
      return;
    }
    if (data === "") return;
    const command = JSON.parse(data) as Command;
    let output: boolean | string | null = null;
    if (command.kind === "put") {
      node.kv.set(command.key, command.value);
    } else {
      const current = node.kv.get(command.key) ?? null;
      output = current === command.expected;
      if (output) node.kv.set(command.key, command.value);
    }
    const pending = node.proposals.get(`${command.client}:${command.seq}`);
    if (pending) {
      node.proposals.delete(`${command.client}:${command.seq}`);
      pending.op.ret = this.#time;
      if (command.kind === "cas") pending.op.output = output;
      this.#clients[pending.clientIndex]!.busy = false;
    }
  }

  #applyConfChange(node: SimNode, entry: Entry, firstApplied: boolean): void {
    const raft = node.raft!;
    const change = Raft.decodeConfChange(entry);
    const context = change.context ? Buffer.from(change.context).toString() : undefined;
    if (context !== undefined && context !== `member ${change.node}`) {
      this.#fail(`conf change ${entry.index} for node ${change.node} carries the context "${context}"`);
    }
    node.conf = raft.applyConfChange(change);
    if (firstApplied) this.#committed(entry, change);
    const expected = this.#confAt(entry.index);
    if (!sameConf(node.conf, expected)) {
      this.#fail(
        `node ${node.id} has ${describeConf(node.conf)} after conf change ${entry.index}, where ${describeConf(expected)} was committed`,
      );
    }
    // The new learner's catch-up starts now: the leader sends it its first append at once.
    if (change.kind === "addLearner" && raft.role === "leader")
      this.#catchUp.begin(node.id, change.node, "added", this.#time);
  }

  /** A conf change committed (applied for the first time anywhere; entries are, in index order). */
  #committed(entry: Entry, change: ConfChange): void {
    const conf = nextConf(this.#committedConf, change);
    this.#confHistory.push({ index: entry.index, conf });
    this.#trace(
      `committed ${entry.term}/${entry.index} ${change.kind} ${change.node}: ${describeConf(conf)}`,
    );
    this.#membership.votersMax = Math.max(this.#membership.votersMax, conf.voters.length);
    if (conf.voters.length > VOTERS_MAX) this.#fail(`${conf.voters.length} voters: ${describeConf(conf)}`);
    if (entry.term === 1) return; // bootstrap
    switch (change.kind) {
      case "addLearner":
        this.#joined.add(change.node);
        this.#membership.learnersAdded++;
        break;
      case "addVoter":
        this.#membership.promotions++;
        break;
      case "removeNode":
        this.#removals.set(change.node, entry.index);
        this.#membership.removals++;
        if (this.#leaderOfTerm.get(entry.term) === change.node) this.#membership.leaderRemovals++;
        break;
    }
  }

  /**
   * Shuts down each removed node once every voter of the committed membership has applied its
   * removal (and will again after a restart: its durable commit covers it). Before then a voter
   * that has not may still count the removed node as a voter and need its vote, as production's
   * removed member keeps answering until its peers drop their links to it.
   */
  #stopRemoved(): void {
    for (const [id, index] of this.#removals) {
      if (this.#committedConf.voters.some((v) => this.nodes[v - 1]!.appliedMax < index)) continue;
      this.#removals.delete(id);
      this.#stop(this.nodes[id - 1]!);
    }
  }

  /** The seeded operator: membership changes and leadership transfers, asked of the leader. */
  #changeMembership(): void {
    const r = this.#random;
    if (r() < this.faults.transferRate) this.#transfer();
    if (r() < this.faults.membershipRate) this.#proposeConfChange();
  }

  #transfer(): void {
    const leader = this.#leader();
    if (!leader) return;
    const voters = leader.raft!.confState().voters.filter((v) => v !== leader.id);
    if (voters.length === 0) return;
    const to = voters[Math.floor(this.#random() * voters.length)]!;
    this.#trace(`transfer ${leader.id} -> ${to}`);
    leader.raft!.transferLeader(to);
    this.#membership.transfers++;
    this.#transferTo = { to, term: leader.raft!.term };
  }

  /**
   * One change at a time, as production: add a learner (a fresh node that catches up from an
   * empty log), promote a learner (the core refuses one that lags), or remove a member, the
   * leader included. Every member can be up, so a majority of any committed membership can be.
   */
  #proposeConfChange(): void {
    const leader = this.#leader();
    if (!leader) return;
    const raft = leader.raft!;
    const { voters, learners } = raft.confState();
    const r = this.#random;
    const spare = this.nodes.find((n) => !n.stopped && !this.#joined.has(n.id));
    const kinds: ConfChange["kind"][] = [];
    if (voters.length + learners.length < MEMBERS_MAX && (spare || this.nodes.length < NODES_MAX))
      kinds.push("addLearner");
    if (learners.length > 0 && voters.length < VOTERS_MAX) kinds.push("addVoter");
    if (voters.length + learners.length > 1) kinds.push("removeNode");
    if (kinds.length === 0) return;
    const kind = kinds[Math.floor(r() * kinds.length)]!;
    let node: NodeId;
    if (kind === "addLearner") {
      node = (spare ?? this.#addNode(null)).id;
    } else if (kind === "addVoter") {
      node = learners[Math.floor(r() * learners.length)]!;
    } else {
      const removable = voters.length > 1 ? [...voters, ...learners] : [...learners];
      node = removable[Math.floor(r() * removable.length)]!;
    }
    let index: number;
    try {
      index = raft.proposeConfChange({ kind, node, context: memberContext(node) }).index;
      this.#trace(`propose ${leader.id}: ${kind} ${node} at ${index}`);
    } catch (error) {
      if (
        error instanceof MetaraftError &&
        (error.code === "MR_ERR_CONF_CHANGE_REJECTED" || error.code === "MR_ERR_PROPOSAL_DROPPED")
      ) {
        this.#membership.refused++;
        this.#trace(`refused ${leader.id}: ${kind} ${node}: ${error.message}`);
        return;
      }
      throw error;
    }
    // At most one change in flight: every earlier one in the leader's log is applied.
    const unapplied = raft.log.slice(raft.log.applied + 1, index, Number.MAX_SAFE_INTEGER) ?? [];
    const other = unapplied.find((e) => e.type === "confChange");
    if (other) {
      this.#fail(
        `leader ${leader.id} took conf change ${index} while ${other.index} was not applied (applied ${raft.log.applied})`,
      );
    }
  }

  #maybeSnapshot(node: SimNode): void {
    const storage = node.storage;
    const snapshotIndex = storage.snapshot().meta.index;
    if (node.applied - snapshotIndex < this.#snapshotEvery || node.applied > storage.lastIndex()) return;
    storage.createSnapshot(node.applied, node.conf, encodeKv(node.kv));
    // Keep a short tail so that slightly lagging followers still catch up from the log.
    const keep = Math.floor(this.#random() * 10);
    storage.compact(Math.max(storage.firstIndex(), node.applied + 1 - keep));
  }

  #serveReads(node: SimNode): void {
    for (let i = 0; i < node.releasedReads.length; ) {
      const read = node.releasedReads[i]!;
      if (node.applied < read.index) {
        i++;
        continue;
      }
      node.releasedReads.splice(i, 1);
      const pending = node.reads.get(read.ctx);
      if (!pending) continue;
      node.reads.delete(read.ctx);
      pending.op.ret = this.#time;
      pending.op.output = node.kv.get(pending.key) ?? null;
      this.#clients[pending.clientIndex]!.busy = false;
    }
  }

  #runClients(): void {
    // Time out requests that got lost: the client gives up and the operation stays open-ended.
    for (const node of this.nodes) {
      for (const [key, pending] of node.proposals) {
        if (pending.deadline <= this.#time) {
          node.proposals.delete(key);
          this.#abandon(pending);
        }
      }
      for (const [key, pending] of node.reads) {
        if (pending.deadline <= this.#time) {
          node.reads.delete(key);
          this.#abandon(pending);
        }
      }
    }
    if (!this.#faultsOn) return;
    this.#clients.forEach((client, index) => {
      if (client.busy || this.#random() > 0.05) return;
      const target = this.nodes[client.leaderGuess - 1];
      if (!target?.raft) {
        client.leaderGuess = 1 + Math.floor(this.#random() * this.nodes.length);
        return;
      }
      const key = `k${Math.floor(this.#random() * 3)}`;
      const roll = this.#random();
      if (roll < 0.4) this.#startRead(target, index, key);
      else if (roll < 0.8) this.#startWrite(target, index, key, `v${index}.${client.seq}${this.#valuePad}`);
      else this.#startCas(target, index, key);
    });
  }

  #redirect(client: Client, error: unknown): void {
    if (!(error instanceof MetaraftError)) throw error;
    const leader = error.details?.leader;
    client.leaderGuess =
      typeof leader === "number" && leader > 0 ? leader : 1 + Math.floor(this.#random() * this.nodes.length);
  }

  #startWrite(node: SimNode, clientIndex: number, key: string, value: string): PendingOp | null {
    return this.#propose(node, clientIndex, { kind: "put", key, value });
  }

  #startCas(node: SimNode, clientIndex: number, key: string): PendingOp | null {
    const expected =
      this.#random() < 0.3
        ? null
        : `v${Math.floor(this.#random() * this.#clients.length)}.${Math.floor(this.#random() * 5)}${this.#valuePad}`;
    return this.#propose(node, clientIndex, {
      kind: "cas",
      key,
      value: `c${clientIndex}.${this.#time}${this.#valuePad}`,
      expected,
    });
  }

  #propose(
    node: SimNode,
    clientIndex: number,
    request: { kind: "put" | "cas"; key: string; value: string; expected?: string | null },
  ): PendingOp | null {
    const client = this.#clients[clientIndex] ?? { busy: false, leaderGuess: node.id, seq: 0 };
    this.#clients[clientIndex] = client;
    const seq = ++client.seq;
    const command: Command = { client: clientIndex, seq, ...request };
    const data = new TextEncoder().encode(JSON.stringify(command));
    if (data.length > this.#entryBytesMax) this.#fail(`a command of ${data.length} bytes`);
    try {
      node.raft!.propose(data);
    } catch (error) {
      this.#redirect(client, error);
      return null;
    }
    const op: KvOp & { ret: number | null } = {
      client: clientIndex,
      kind: request.kind,
      key: request.key,
      value: request.value,
      ...(request.kind === "cas" ? { expected: request.expected ?? null } : {}),
      call: this.#time,
      ret: null,
    };
    this.history.push(op);
    const pending: PendingOp = { op, deadline: this.#time + OP_TIMEOUT_UNITS, clientIndex };
    node.proposals.set(`${clientIndex}:${seq}`, pending);
    client.busy = true;
    return pending;
  }

  #startRead(node: SimNode, clientIndex: number, key: string): void {
    const client = this.#clients[clientIndex]!;
    const ctx = `r${clientIndex}.${++client.seq}`;
    try {
      node.raft!.readIndex(new TextEncoder().encode(ctx));
    } catch (error) {
      this.#redirect(client, error);
      return;
    }
    const op: KvOp & { ret: number | null } = {
      client: clientIndex,
      kind: "get",
      key,
      call: this.#time,
      ret: null,
    };
    this.history.push(op);
    node.reads.set(ctx, { op, deadline: this.#time + OP_TIMEOUT_UNITS, clientIndex, key });
    client.busy = true;
  }

  #injectFaults(): void {
    const f = this.faults;
    const r = this.#random;
    if (r() < f.crashRate) {
      const alive = this.nodes.filter((n) => n.raft);
      const victim = alive[Math.floor(r() * alive.length)];
      if (victim) this.#crash(victim);
    }
    for (const node of this.nodes) if (!node.raft && !node.stopped && r() < f.restartRate) this.#start(node);
    if (r() < f.partitionRate) {
      const a = 1 + Math.floor(r() * this.nodes.length);
      if (r() < 0.5) {
        // Symmetric: isolate a group from the rest.
        const group = new Set(this.nodes.filter(() => r() < 0.4).map((n) => n.id));
        group.add(a);
        this.#trace(`partition {${[...group]}} from the rest`);
        for (const x of group) {
          for (const y of this.nodes) {
            if (group.has(y.id)) continue;
            this.#cut.add(`${x}->${y.id}`);
            this.#cut.add(`${y.id}->${x}`);
          }
        }
      } else {
        const b = 1 + Math.floor(r() * this.nodes.length);
        if (a !== b) {
          this.#trace(`cut ${a}->${b}`);
          this.#cut.add(`${a}->${b}`);
        }
      }
    }
    if (r() < f.healRate) this.#heal();
  }

  /** Log matching on every pair of durable logs: same index and term means the same prefix. */
  #checkLogMatching(): void {
    for (let i = 0; i < this.nodes.length; i++) {
      for (let j = i + 1; j < this.nodes.length; j++) {
        const a = this.nodes[i]!.storage;
        const b = this.nodes[j]!.storage;
        const lo = Math.max(a.firstIndex(), b.firstIndex());
        const hi = Math.min(a.lastIndex(), b.lastIndex());
        let matchFrom = -1;
        for (let k = hi; k >= lo; k--) {
          if (a.term(k) === b.term(k)) {
            matchFrom = k;
            break;
          }
        }
        if (matchFrom < lo) continue;
        const left = a.entries(lo, matchFrom + 1, Number.MAX_SAFE_INTEGER);
        const right = b.entries(lo, matchFrom + 1, Number.MAX_SAFE_INTEGER);
        for (let k = 0; k < left.length; k++) {
          const x = left[k]!;
          const y = right[k]!;
          // Replicated entries are mostly the very same object on both nodes.
          if (x === y) continue;
          if (x.term !== y.term || Buffer.compare(x.data, y.data) !== 0) {
            this.#fail(
              `log matching: nodes ${i + 1} and ${j + 1} agree at ${matchFrom} but differ at ${x.index} (${x.term} vs ${y.term})`,
            );
          }
        }
      }
    }
  }

  #checkLinearizable(): void {
    const result = checkKv(this.history);
    if (result.kind === "violation")
      this.#fail(`history not linearizable on key ${result.key}: ${result.explanation}`);
  }
}

function encodeKv(kv: Map<string, string>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify([...kv]));
}

function decodeKv(snapshot: Snapshot): Map<string, string> {
  if (snapshot.data.length === 0) return new Map();
  return new Map(JSON.parse(Buffer.from(snapshot.data).toString()) as [string, string][]);
}

export function simulate(options: SimOptions): SimResult {
  return new Simulation(options).run();
}
