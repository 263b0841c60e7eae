import { MetaraftError } from "../../src/errors.js";
import {
  type ConfChange,
  type ConfChangeKind,
  type Entry,
  MemoryStorage,
  type Message,
  type NodeId,
  Raft,
  type RaftConfig,
} from "../../src/raft/index.js";

/** A seeded PRNG (mulberry32): the only randomness the Raft cores see. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const text = (data: Uint8Array): string => Buffer.from(data).toString("utf8");

export function describeEntry(e: Entry): string {
  if (e.type === "confChange") {
    const cc = Raft.decodeConfChange(e);
    return `${e.term}/${e.index} ${cc.kind} ${cc.node}`;
  }
  return `${e.term}/${e.index}${e.data.length ? ` ${text(e.data)}` : " (no-op)"}`;
}

export function describeMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case "vote":
    case "preVote":
      return `${head} last=${m.lastTerm}/${m.lastIndex}${m.transfer ? " transfer" : ""}`;
    case "voteResp":
    case "preVoteResp":
      return `${head}${m.reject ? " rejected" : ""}`;
    case "app":
      return `${head} prev=${m.prevTerm}/${m.prevIndex} commit=${m.commit} entries=[${m.entries.map(describeEntry).join(", ")}]`;
    case "appResp":
      return m.reject
        ? `${head} rejected index=${m.index} hint=${m.hintTerm}/${m.rejectHint}`
        : `${head} index=${m.index}`;
    case "heartbeat":
      return `${head} commit=${m.commit}${m.ctx ? ` ctx=${text(m.ctx)}` : ""}`;
    case "heartbeatResp":
      return `${head}${m.ctx ? ` ctx=${text(m.ctx)}` : ""}`;
    case "snap":
      return `${head} snapshot=${m.snapshot.meta.term}/${m.snapshot.meta.index} voters=${m.snapshot.meta.confState.voters}`;
    case "timeoutNow":
      return head;
  }
}

export interface HarnessNode {
  readonly id: NodeId;
  storage: MemoryStorage;
  raft: Raft;
  /** Committed entries in the order this node applied them. */
  applied: Entry[];
  /** Outbound messages waiting for delivery (from processed Readies). */
  outbox: Message[];
  reads: string[];
  /** The node's state machine: the data of every applied normal entry, concatenated. */
  machine: string[];
}

export interface HarnessOptions {
  readonly seed?: number;
  readonly raft?: Partial<RaftConfig>;
}

/**
 * A synchronous in-process cluster for interaction scripts: every Ready is persisted, sent
 * and applied immediately; messages wait in outboxes until delivered.
 */
export class Harness {
  readonly nodes = new Map<NodeId, HarnessNode>();
  /** Blocked directed links "from->to". */
  readonly cut = new Set<string>();
  readonly #random: () => number;
  readonly #raftOptions: Partial<RaftConfig>;

  constructor(options: HarnessOptions = {}) {
    this.#random = seededRandom(options.seed ?? 1);
    this.#raftOptions = options.raft ?? {};
  }

  readonly #nodeOptions = new Map<NodeId, Partial<RaftConfig>>();

  addNodes(
    count: number,
    voters: NodeId[],
    learners: NodeId[] = [],
    options: Partial<RaftConfig> = {},
  ): NodeId[] {
    const added: NodeId[] = [];
    const first = this.nodes.size + 1;
    for (let id = first; id < first + count; id++) {
      const storage = new MemoryStorage({ voters, learners });
      this.#nodeOptions.set(id, options);
      this.nodes.set(id, this.#newNode(id, storage));
      added.push(id);
    }
    return added;
  }

  #newNode(id: NodeId, storage: MemoryStorage, applied = 0): HarnessNode {
    const options = { ...this.#raftOptions, ...this.#nodeOptions.get(id) };
    const raft = new Raft({ ...options, id, storage, random: this.#random, applied });
    return { id, storage, raft, applied: [], outbox: [], reads: [], machine: [] };
  }

  node(id: NodeId): HarnessNode {
    const node = this.nodes.get(id);
    if (!node) throw new Error(`no node ${id}`);
    return node;
  }

  /** Processes every pending Ready of `id`; returns a trace. */
  processReady(id: NodeId): string[] {
    const node = this.node(id);
    const trace: string[] = [];
    while (node.raft.hasReady()) {
      const rd = node.raft.ready();
      if (rd.softState)
        trace.push(`${id}: ${rd.softState.role} leader=${rd.softState.leader} term=${node.raft.term}`);
      node.storage.save({ hardState: rd.hardState, entries: rd.entries, snapshot: rd.snapshot });
      if (rd.snapshot) {
        trace.push(`${id}: applied snapshot ${rd.snapshot.meta.term}/${rd.snapshot.meta.index}`);
        node.machine = JSON.parse(text(rd.snapshot.data)) as string[];
      }
      node.outbox.push(...rd.eagerMessages, ...rd.messages);
      for (const entry of rd.committedEntries) {
        node.applied.push(entry);
        if (entry.type === "confChange") {
          const cs = node.raft.applyConfChange(Raft.decodeConfChange(entry));
          trace.push(`${id}: conf voters=${cs.voters} learners=${cs.learners}`);
        } else if (entry.data.length > 0) {
          node.machine.push(text(entry.data));
        }
      }
      for (const read of rd.readStates) {
        const line = `${id}: read ${text(read.ctx)} at index ${read.index}`;
        node.reads.push(line);
        trace.push(line);
      }
      node.raft.advance();
    }
    return trace;
  }

  /** Delivers every message in `from`'s outbox (or everyone's); returns a trace. */
  deliver(from?: NodeId): string[] {
    const trace: string[] = [];
    for (const node of this.nodes.values()) {
      if (from !== undefined && node.id !== from) continue;
      const outbox = node.outbox;
      node.outbox = [];
      for (const m of outbox) {
        const target = this.nodes.get(m.to);
        if (!target || this.cut.has(`${m.from}->${m.to}`)) {
          trace.push(`${describeMessage(m)} DROPPED`);
          continue;
        }
        trace.push(describeMessage(m));
        target.raft.step(m);
      }
    }
    return trace;
  }

  /** Ready, deliver, repeat until nothing moves. */
  stabilize(): string[] {
    const trace: string[] = [];
    for (let round = 0; round < 1000; round++) {
      let moved = false;
      for (const id of this.nodes.keys()) {
        const t = this.processReady(id);
        if (t.length > 0) moved = true;
        trace.push(...t);
      }
      const t = this.deliver();
      if (t.length > 0) moved = true;
      trace.push(...t);
      if (!moved && [...this.nodes.values()].every((n) => !n.raft.hasReady())) return trace;
    }
    throw new Error("stabilize did not converge");
  }

  tickElection(id: NodeId): void {
    const raft = this.node(id).raft;
    // Enough ticks to pass any randomised timeout in [n, 2n).
    for (let i = 0; i < 2 * 10; i++) raft.tick();
  }

  /** Restarts `id` from what its storage holds (unsynced state is already in it here). */
  restart(id: NodeId): void {
    const node = this.node(id);
    this.nodes.set(id, this.#newNode(id, node.storage, 0));
  }

  state(): string[] {
    return [...this.nodes.values()].map((n) => {
      const r = n.raft;
      return `${n.id}: ${r.role} term=${r.term} vote=${r.vote} leader=${r.leader} commit=${r.log.committed} applied=${r.log.applied} last=${r.log.lastIndex()}`;
    });
  }

  log(id: NodeId): string[] {
    const raft = this.node(id).raft;
    const entries =
      raft.log.slice(raft.log.firstIndex(), raft.log.lastIndex() + 1, Number.MAX_SAFE_INTEGER) ?? [];
    return entries.length === 0 ? ["(empty)"] : entries.map(describeEntry);
  }

  propose(id: NodeId, data: string): string {
    return this.#attempt(() => {
      const p = this.node(id).raft.propose(new TextEncoder().encode(data));
      return `proposed ${p.term}/${p.index}`;
    });
  }

  proposeConfChange(id: NodeId, kind: ConfChangeKind, node: NodeId): string {
    return this.#attempt(() => {
      const change: ConfChange = { kind, node };
      const p = this.node(id).raft.proposeConfChange(change);
      return `proposed ${p.term}/${p.index}`;
    });
  }

  #attempt(call: () => string): string {
    try {
      return call();
    } catch (error) {
      if (error instanceof MetaraftError)
        return `error ${error.code}${error.details ? ` ${JSON.stringify(error.details)}` : ""}`;
      throw error;
    }
  }

  attempt(call: () => string): string {
    return this.#attempt(call);
  }
}
