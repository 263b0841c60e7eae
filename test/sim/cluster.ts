import { MetaraftError } from "../../src/errors.js";
import {
  type Entry,
  MemoryStorage,
  type Message,
  type NodeId,
  Raft,
  type Ready,
  type Snapshot,
} from "../../src/raft/index.js";
import { seededRandom } from "../raft/harness.js";
import { checkKv, type KvOp } from "./linearizability.js";

/**
 * The deterministic simulator: whole clusters in one process, running the production Raft core
 * and storage logic against a virtual clock, a seeded random source, a network that drops,
 * delays, duplicates, reorders and partitions, and crashes that lose what was not yet synced.
 * Everything random comes from the seed, so `seed=N` replays a run exactly.
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
}

export interface SimOptions {
  readonly seed: number;
  readonly nodes?: 3 | 5;
  readonly safetyUnits?: number;
  readonly livenessUnits?: number;
  readonly clients?: number;
  /** Applied entries between state-machine snapshots (small, to exercise snapshot catch-up). */
  readonly snapshotEvery?: number;
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
  };
}

const TICK_UNITS = 10;
const OP_TIMEOUT_UNITS = 400;

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

/** A binary min-heap on (at, order): the network's delivery schedule. */
class Schedule {
  readonly #heap: InFlightMessage[] = [];

  get size(): number {
    return this.#heap.length;
  }

  push(item: InFlightMessage): void {
    const heap = this.#heap;
    heap.push(item);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  popDue(now: number): InFlightMessage | undefined {
    const heap = this.#heap;
    if (heap.length === 0 || heap[0]!.at > now) return undefined;
    const top = heap[0]!;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
        if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
        if (m === i) break;
        [heap[i], heap[m]] = [heap[m]!, heap[i]!];
        i = m;
      }
    }
    return top;
  }

  clear(): void {
    this.#heap.length = 0;
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
    diskDelayMax: pick([0, 2, 5]),
    driftMax: pick([0, 1, 2]),
  };
}

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

  // What the checks remember.
  readonly #leaderOfTerm = new Map<number, NodeId>();
  /** Every entry applied anywhere, by index: all nodes must apply the same one. */
  readonly #appliedEntries = new Map<number, { term: number; data: string }>();
  #elections = 0;
  #crashes = 0;
  #snapshotsSent = 0;

  constructor(readonly options: SimOptions) {
    this.seed = options.seed;
    this.#random = seededRandom(options.seed);
    this.faults = chooseFaults(this.#random);
    this.#snapshotEvery = options.snapshotEvery ?? 25 + Math.floor(this.#random() * 50);
    const count = options.nodes ?? 3;
    const voters = Array.from({ length: count }, (_, i) => i + 1);
    for (const id of voters) {
      const node = new SimNode(id, new MemoryStorage({ voters, learners: [] }));
      node.tickPeriod =
        TICK_UNITS + Math.floor(this.#random() * (2 * this.faults.driftMax + 1)) - this.faults.driftMax;
      this.#start(node);
      this.nodes.push(node);
    }
    for (let i = 0; i < (options.clients ?? 3); i++)
      this.#clients.push({ busy: false, leaderGuess: 1, seq: 0 });
  }

  #fail(message: string): never {
    throw new SimFailure(`t=${this.#time}: ${message}`);
  }

  /** (Re)starts a node from its durable storage: its state machine from the snapshot, then the log. */
  #start(node: SimNode): void {
    node.incarnation++;
    const snapshot = node.storage.snapshot();
    node.kv = decodeKv(snapshot);
    node.applied = snapshot.meta.index;
    node.persisting = null;
    node.raft = new Raft({
      id: node.id,
      storage: node.storage,
      random: seededRandom(this.seed * 31 + node.id * 1009 + node.incarnation),
      applied: node.applied,
      electionTicks: 10,
      heartbeatTicks: 1,
      messageBytesMax: 4096,
      inflightMessagesMax: 8,
    });
    node.nextTick = this.#time + 1 + Math.floor(this.#random() * node.tickPeriod);
  }

  #crash(node: SimNode): void {
    this.#crashes++;
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
    if (this.#faultsOn && this.#random() < this.faults.dropRate) return;
    const copies = this.#faultsOn && this.#random() < this.faults.duplicateRate ? 2 : 1;
    for (let c = 0; c < copies; c++) {
      const delay = 1 + Math.floor(this.#random() * this.faults.delayMax);
      this.#network.push({ at: this.#time + delay, order: this.#order++, message });
    }
    if (message.type === "snap") this.#snapshotsSent++;
  }

  run(): SimResult {
    const safetyUnits = this.options.safetyUnits ?? 3000;
    const livenessUnits = this.options.livenessUnits ?? 4000;
    try {
      for (let t = 0; t < safetyUnits; t++) this.#step();
      this.#checkLogMatching();
      this.#healAll();
      this.#liveness(livenessUnits);
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
      },
    };
  }

  #healAll(): void {
    this.#faultsOn = false;
    this.#cut.clear();
    for (const node of this.nodes) if (!node.raft) this.#start(node);
  }

  /** With faults gone, a leader must emerge, serve a write, and every node must catch up. */
  #liveness(units: number): void {
    const deadline = this.#time + units;
    let probe: PendingOp | null = null;
    while (this.#time < deadline) {
      this.#step();
      const leader = this.nodes.find((n) => n.raft?.role === "leader");
      if (probe && probe.op.ret === null && probe.deadline <= this.#time) probe = null;
      if (!probe && leader) probe = this.#startWrite(leader, this.#clients.length, "liveness", "done");
      if (probe?.op.ret !== null && probe?.op.ret !== undefined) {
        const commit = leader?.raft?.log.committed ?? -1;
        if (leader && this.nodes.every((n) => n.applied === commit && n.raft?.leader === leader.id)) return;
      }
    }
    const states = this.nodes
      .map((n) => `${n.id}:${n.raft?.role}/t${n.raft?.term}/applied=${n.applied}`)
      .join(" ");
    this.#fail(`liveness: no converged cluster with a committed write after ${units} units (${states})`);
  }

  #step(): void {
    this.#time++;
    for (let m = this.#network.popDue(this.#time); m; m = this.#network.popDue(this.#time))
      this.#deliver(m.message);
    for (const node of this.nodes) {
      if (!node.raft) continue;
      if (this.#time >= node.nextTick) {
        node.nextTick += node.tickPeriod;
        node.raft.tick();
      }
    }
    for (const node of this.nodes) this.#processNode(node);
    this.#runClients();
    if (this.#faultsOn) this.#injectFaults();
    if (this.#time % 500 === 0) this.#checkLogMatching();
  }

  #deliver(message: Message): void {
    const target = this.nodes[message.to - 1];
    if (!target?.raft || this.#cut.has(`${message.from}->${message.to}`)) return;
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
    const data = Buffer.from(entry.data).toString();
    const seen = this.#appliedEntries.get(entry.index);
    if (seen && (seen.term !== entry.term || seen.data !== data)) {
      this.#fail(
        `node ${node.id} applies ${entry.term}/${entry.index} "${data}" where another applied ${seen.term}/${entry.index} "${seen.data}"`,
      );
    }
    if (!seen) this.#appliedEntries.set(entry.index, { term: entry.term, data });
    if (entry.type === "confChange") {
      node.raft!.applyConfChange(Raft.decodeConfChange(entry));
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

  #maybeSnapshot(node: SimNode): void {
    const storage = node.storage;
    const snapshotIndex = storage.snapshot().meta.index;
    if (node.applied - snapshotIndex < this.#snapshotEvery || node.applied > storage.lastIndex()) return;
    storage.createSnapshot(node.applied, node.raft!.confState(), encodeKv(node.kv));
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
      else if (roll < 0.8) this.#startWrite(target, index, key, `v${index}.${client.seq}`);
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
        : `v${Math.floor(this.#random() * this.#clients.length)}.${Math.floor(this.#random() * 5)}`;
    return this.#propose(node, clientIndex, {
      kind: "cas",
      key,
      value: `c${clientIndex}.${this.#time}`,
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
    try {
      node.raft!.propose(new TextEncoder().encode(JSON.stringify(command)));
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
    for (const node of this.nodes) if (!node.raft && r() < f.restartRate) this.#start(node);
    if (r() < f.partitionRate) {
      const a = 1 + Math.floor(r() * this.nodes.length);
      if (r() < 0.5) {
        // Symmetric: isolate a group from the rest.
        const group = new Set(this.nodes.filter(() => r() < 0.4).map((n) => n.id));
        group.add(a);
        for (const x of group) {
          for (const y of this.nodes) {
            if (group.has(y.id)) continue;
            this.#cut.add(`${x}->${y.id}`);
            this.#cut.add(`${y.id}->${x}`);
          }
        }
      } else {
        const b = 1 + Math.floor(r() * this.nodes.length);
        if (a !== b) this.#cut.add(`${a}->${b}`);
      }
    }
    if (r() < f.healRate) this.#cut.clear();
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
          if (x.term !== y.term || Buffer.compare(Buffer.from(x.data), Buffer.from(y.data)) !== 0) {
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
