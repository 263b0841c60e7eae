import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  Raft,
  type RaftConfig,
  type RaftLogStore,
  type Ready,
  type SoftState,
} from "../raft/index.js";
import { type Runtime, sleep, systemRuntime, type Timer } from "../runtime.js";
import { SETTINGS } from "../settings.js";
import { Leadership } from "./leadership.js";

/** What the host needs of a transport: opaque payloads to and from peers, best effort. */
export interface HostTransport {
  send(to: NodeId, payload: Uint8Array): boolean;
  onMessage(handler: (from: NodeId, payload: Uint8Array) => void): void;
  /** Bytes queued for `to` and not yet written: a state copy waits while there are too many. */
  queuedBytes?(to: NodeId): number;
}

/** The replicated state machine the host drives. */
export interface StateMachine<Result> {
  /**
   * Applies one committed entry (also the empty no-op); returns the proposer's result. A
   * request the state machine refuses is a result too: throwing means the state machine is
   * broken (a corrupt entry, a failed write), and stops the node.
   */
  apply(entry: Entry): Result;
  /** A consistent copy of the applied state, for snapshots. */
  snapshot(): Uint8Array;
  /**
   * Replaces the state with a snapshot's. A promise means the new state is not readable until
   * it resolves: the host applies nothing before then.
   */
  restore(data: Uint8Array, index: number): void | Promise<void>;
  /** The last index the state machine holds (after a restart: what it persisted). */
  readonly appliedIndex: number;
  /**
   * Only for a state machine that keeps its own state on disk: the applied index known to be
   * synced there. Its Raft snapshots then carry no data, which makes taking one free instead
   * of a copy of the whole state every `snapshotEntries`: the log is compacted only below this
   * index (a restart replays the rest), and the state is copied only when a follower needs it.
   */
  readonly durableIndex?: number;
  /**
   * The snapshot as parts whose concatenation is `snapshot()`, produced without blocking the
   * event loop for long (a leader that stalls while it copies a large state loses its
   * leadership). A durable state machine's state is sent to a follower this way, part by part.
   */
  snapshotStream?(): AsyncIterable<Uint8Array>;
}

export interface RaftHostOptions<Result> {
  readonly id: NodeId;
  /** Voters of a new cluster whose storage holds no membership yet (tests; nodes bootstrap their log). */
  readonly peers?: readonly NodeId[];
  readonly storage: RaftLogStore;
  readonly transport: HostTransport;
  readonly stateMachine: StateMachine<Result>;
  /** Milliseconds per Raft tick; the election timeout is `electionTicks` ticks (randomised up to twice). */
  readonly tickMs?: number;
  readonly raft?: Partial<Omit<RaftConfig, "id" | "storage" | "random" | "peers" | "applied">>;
  /** Applied entries between snapshots (the setting `raft.snapshotEntries`). */
  readonly snapshotEntries?: number;
  /** Entries kept behind a snapshot so slightly lagging followers catch up from the log. */
  readonly snapshotTrailingEntries?: number;
  /** Snapshot data crosses the wire in pieces of at most this size (see StateStreamPiece). */
  readonly snapshotChunkBytes?: number;
  /** Proposals and reads waiting for their entry or read state; more fail at once. */
  readonly pendingMax?: number;
  /** A ReadIndex round not confirmed by then (its heartbeats or acks lost) is started again. */
  readonly readRetryMs?: number;
  /** A state copy being streamed waits while more than this is queued for its follower. */
  readonly snapshotStreamQueuedBytesMax?: number;
  /** The clock, timers and random source (the simulator passes a virtual one). */
  readonly runtime?: Runtime;
  /** The election jitter's random source, if not the runtime's. */
  readonly random?: () => number;
  /** A membership change was applied here (after the state machine applied its entry). */
  readonly onConfChange?: (change: ConfChange, members: ConfState) => void;
  /** The node cannot go on (a corrupt log record, a failed write); the default only warns. */
  readonly onFatal?: (error: Error) => void;
}

/** Limits an operator does not set; tickMs and the snapshot spacing default to `SETTINGS.raft`'s. */
export const HOST_DEFAULTS = {
  snapshotChunkBytes: 1024 * 1024,
  pendingMax: 65_536,
  /** As etcd's readIndexRetryTime. */
  readRetryMs: 500,
  /** Reassembly buffer for an incoming snapshot, per sender. */
  snapshotBytesMax: 1024 * 1024 * 1024,
  /** A state copy being streamed waits while more than this is queued for its follower. */
  snapshotStreamQueuedBytesMax: 8 * 1024 * 1024,
  /** How often a waiting state copy looks at the queue again. */
  snapshotStreamWaitMs: 5,
  /** A state copy whose follower takes nothing for this long is abandoned (and retried later). */
  snapshotStreamStallMs: 30_000,
} as const;

const EMPTY_SNAPSHOT_DATA = new Uint8Array(0);
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

interface Pending<T> {
  readonly resolve: (value: T) => void;
  readonly reject: (error: Error) => void;
}

/**
 * A state copy streamed as it is produced: parts of the data in order, then the snapshot
 * message itself (without data) as `head`, which completes it. The sender does not know the
 * size in advance, and never holds more than a part of it.
 */
interface StateStreamPiece {
  readonly stream: {
    readonly id: number;
    readonly seq: number;
    readonly part?: Uint8Array;
    readonly head?: Message & { type: "snap" };
  };
}

/**
 * Drives one Raft node: ticks its clock, steps peer messages, persists each Ready to LMDB
 * (fsync) before sending what depends on it, applies committed entries, and answers
 * proposals and linearizable reads. Steps are serialised: messages that arrive while a Ready
 * is being written wait and are stepped together, which batches the next write.
 */
export class RaftHost<Result> {
  readonly raft: Raft;
  /** Every change of leadership this node sees; subscribe to run leader-only work. */
  readonly leadership: Leadership;
  readonly #options: RaftHostOptions<Result>;
  readonly #inbox: Message[] = [];
  readonly #proposals = new Map<number, Pending<Result> & { term: number }>();
  /** The ReadIndex round in flight, by its context (at most one). */
  readonly #reads = new Map<string, Pending<void>>();
  /** Reads that arrived after the round in flight began: they go in the next round. */
  #readWaiters: Pending<void>[] = [];
  #readRetryTimer: Timer | undefined;
  /** Bounded by the one conf change the core lets be in flight. */
  #advanceWaiters: { index: number; resolve: () => void }[] = [];
  readonly #readsWaitingForApply: { index: number; key: string }[] = [];
  /** State copies being received, per sender (see StateStreamPiece). */
  readonly #streams = new Map<NodeId, { id: number; parts: Uint8Array[]; bytes: number }>();
  /** Followers whose copy of the state is being built (see #sendStateCopy). */
  readonly #copying = new Set<NodeId>();
  /** A restore at start that is still being written: nothing is applied before it is done. */
  #restoring: Promise<void> | undefined;
  #applied: number;
  #lastSnapshotIndex: number;
  #running = false;
  #stopped = false;
  #processing = false;
  #again = false;
  #timer: Timer | undefined;
  readonly #runtime: Runtime;
  #readSeq = 0;
  #snapshotSeq = 0;
  #confState: ConfState;
  #fatal: Error | undefined;
  /** Counters for status and benchmarks: durable writes, and what they carried. */
  readonly stats = {
    saves: 0,
    entriesSaved: 0,
    entriesApplied: 0,
    messagesSent: 0,
    saveMs: 0,
    snapshots: 0,
    restores: 0,
    /** Linearizable reads, and the ReadIndex rounds that served them. */
    reads: 0,
    readRounds: 0,
  };

  constructor(options: RaftHostOptions<Result>) {
    this.#options = options;
    const stored = options.storage.snapshot();
    const machine = options.stateMachine;
    if (stored.meta.index > machine.appliedIndex) {
      if (stored.data.length > 0) {
        // A state machine kept only in memory, or one that crashed while restoring a snapshot
        // it was sent, starts again from the stored snapshot.
        this.#restoring = machine.restore(stored.data, stored.meta.index) ?? undefined;
      } else if (machine.appliedIndex < options.storage.firstIndex() - 1) {
        // A snapshot without data stands for the state machine's own durable state, and the log
        // is never compacted past that: a state this far behind was not the one on this disk.
        throw new MetaraftError(
          "MR_ERR_LOG_CORRUPT",
          `the state is at index ${machine.appliedIndex}, but the log starts after ${options.storage.firstIndex() - 1}`,
        );
      }
    }
    const applied = options.stateMachine.appliedIndex;
    const runtime = options.runtime ?? systemRuntime;
    this.#runtime = runtime;
    this.raft = new Raft({
      ...options.raft,
      id: options.id,
      storage: options.storage,
      ...(options.peers ? { peers: options.peers } : {}),
      applied,
      random: options.random ?? runtime.random,
    });
    this.#applied = applied;
    this.leadership = new Leadership(options.id);
    this.#lastSnapshotIndex = options.storage.snapshot().meta.index;
    this.#replayConfChanges(applied);
    this.#confState = this.raft.confState();
    options.transport.onMessage((from, payload) => this.#receive(from, payload));
  }

  get appliedIndex(): number {
    return this.#applied;
  }

  /**
   * The stored snapshot holds the membership at its index; changes applied after it are in the
   * state machine but not handed out again (they are at or below its applied index), so they
   * are re-applied to the core here, or a restart would forget every change since the snapshot.
   */
  #replayConfChanges(applied: number): void {
    const storage = this.#options.storage;
    let next = Math.max(storage.snapshot().meta.index + 1, storage.firstIndex());
    const to = Math.min(applied, storage.lastIndex());
    while (next <= to) {
      const entries = storage.entries(next, to + 1, HOST_DEFAULTS.snapshotChunkBytes);
      for (const entry of entries) {
        if (entry.type === "confChange") this.raft.applyConfChange(Raft.decodeConfChange(entry));
      }
      next = entries[entries.length - 1]!.index + 1;
    }
  }

  /** What `status` shows of consensus: role, term, leader, commit and applied index, members. */
  status(): Record<string, unknown> {
    const raft = this.raft;
    const snapshot = this.#options.storage.snapshot();
    return {
      node: raft.id,
      role: raft.role,
      term: raft.term,
      leader: raft.leader,
      // Leader-only work (listeners in the separate runner) starts only once this is true.
      ready: this.leadership.ready,
      commit: raft.log.committed,
      applied: this.#applied,
      firstIndex: raft.log.firstIndex(),
      lastIndex: raft.log.lastIndex(),
      snapshot: { index: snapshot.meta.index, dataBytes: snapshot.data.length },
      members: raft.confState(),
      ...(this.removed ? { removed: true } : {}),
    };
  }

  get isLeader(): boolean {
    return this.raft.role === "leader";
  }

  get leader(): NodeId {
    return this.raft.leader;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#timer = this.#runtime.every(this.#options.tickMs ?? SETTINGS.raft.tickMs.default, () => {
      this.raft.tick();
      this.#kick();
    });
    this.#kick();
  }

  /** Stops ticking and fails everything pending; the storage stays open for the caller to close. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.cancel();
    while (this.#processing) await sleep(this.#runtime, 1);
    this.#failPending(
      new MetaraftError("MR_ERR_NOT_LEADER", "the node is shutting down", { details: { leader: 0 } }),
    );
  }

  /**
   * Proposes `data`; resolves with the state machine's result once the entry is applied here.
   * Throws at once (NOT_LEADER, PROPOSAL_DROPPED) when the entry was not even appended, so that
   * a caller proposing in order can stop before the next one.
   */
  propose(data: Uint8Array): Promise<Result> {
    this.#checkUsable();
    if (this.#proposals.size >= (this.#options.pendingMax ?? HOST_DEFAULTS.pendingMax)) {
      throw new MetaraftError("MR_ERR_PROPOSAL_DROPPED", "too many proposals pending");
    }
    const proposed = this.raft.propose(data);
    this.#kick();
    return new Promise<Result>((resolve, reject) => {
      this.#proposals.set(proposed.index, { resolve, reject, term: proposed.term });
    });
  }

  /**
   * Proposes one membership change (leader only); resolves with the membership once the change
   * is applied here. The core refuses a second change while one is being applied, a promotion
   * of a learner that lags, and a change before this leader committed an entry of its term.
   */
  proposeConfChange(change: ConfChange): Promise<ConfState> {
    this.#checkUsable();
    const proposed = this.raft.proposeConfChange(change);
    this.#kick();
    return new Promise<Result>((resolve, reject) => {
      this.#proposals.set(proposed.index, { resolve, reject, term: proposed.term });
    }).then(async () => {
      // The core counts the change as applied only once this Ready is advanced, and refuses the
      // next change before then: answer after that, so a caller may propose the next at once.
      // (Waited for, not polled: a leader that removed itself never advances again.)
      if (this.raft.log.applied < proposed.index && !this.#stopped) {
        await new Promise<void>((resolve) => this.#advanceWaiters.push({ index: proposed.index, resolve }));
      }
      return this.#confState;
    });
  }

  /** Hands leadership to `to` (leader only); the core abandons a transfer not done in an election timeout. */
  transferLeader(to: NodeId): void {
    this.#checkUsable();
    this.raft.transferLeader(to);
    this.#kick();
  }

  /** The membership as applied here. */
  get confState(): ConfState {
    return this.#confState;
  }

  /** True once this node has applied its own removal: it no longer takes part. */
  get removed(): boolean {
    const c = this.#confState;
    const known = c.voters.length + c.learners.length > 0;
    return known && !c.voters.includes(this.#options.id) && !c.learners.includes(this.#options.id);
  }

  /**
   * Resolves once this node may serve a linearizable read of its applied state. Reads share
   * ReadIndex rounds, as etcd's linearizable read loop does: one round at a time, and a read
   * that arrives while a round is in flight waits for the next one, which starts after it did.
   */
  readBarrier(): Promise<void> {
    this.#checkUsable();
    if (this.#readWaiters.length >= (this.#options.pendingMax ?? HOST_DEFAULTS.pendingMax)) {
      return Promise.reject(new MetaraftError("MR_ERR_PROPOSAL_DROPPED", "too many reads pending"));
    }
    this.stats.reads++;
    const read = new Promise<void>((resolve, reject) => this.#readWaiters.push({ resolve, reject }));
    if (this.#reads.size === 0) this.#startReadRound([]); // No round in flight: start one.
    return read;
  }

  /** Starts a ReadIndex round for `carried` (a retried round's reads) and every read waiting. */
  #startReadRound(carried: Pending<void>[]): void {
    const waiters = [...carried, ...this.#readWaiters.splice(0)];
    if (waiters.length === 0) return;
    const key = `${this.#options.id}.${++this.#readSeq}`;
    try {
      this.raft.readIndex(textEncoder.encode(key));
    } catch (error) {
      const failure = error instanceof Error ? error : new Error(String(error));
      for (const waiter of waiters) waiter.reject(failure);
      return;
    }
    this.stats.readRounds++;
    const done = () => {
      this.#readRetryTimer?.cancel();
      this.#reads.delete(key);
    };
    this.#reads.set(key, {
      resolve: () => {
        done();
        for (const waiter of waiters) waiter.resolve();
        this.#startReadRound([]);
      },
      reject: (error) => {
        done();
        for (const waiter of waiters) waiter.reject(error);
      },
    });
    this.#readRetryTimer?.cancel();
    this.#readRetryTimer = this.#runtime.after(this.#options.readRetryMs ?? HOST_DEFAULTS.readRetryMs, () => {
      // Its heartbeats or their answers were lost: a later confirmation of this round is
      // ignored, and a new round, begun after every one of these reads arrived, serves them.
      if (!this.#reads.has(key) || this.#stopped) return;
      done();
      this.#startReadRound(waiters);
    });
    this.#kick();
  }

  #checkUsable(): void {
    if (this.#fatal) throw this.#fatal;
    if (this.#stopped)
      throw new MetaraftError("MR_ERR_NOT_LEADER", "the node is stopped", { details: { leader: 0 } });
  }

  #receive(from: NodeId, payload: Uint8Array): void {
    let decoded: Message | StateStreamPiece;
    try {
      decoded = unpack(payload) as Message | StateStreamPiece;
    } catch {
      return; // A peer that sends garbage is ignored; authenticated peers do not.
    }
    if ("stream" in decoded) {
      const message = this.#reassembleStream(from, decoded.stream);
      if (message) this.#inbox.push(message);
    } else {
      if (decoded.from !== from) return;
      this.#inbox.push(decoded);
    }
    this.#kick();
  }

  #reassembleStream(from: NodeId, piece: StateStreamPiece["stream"]): Message | undefined {
    let partial = this.#streams.get(from);
    if (piece.seq === 0) {
      partial = { id: piece.id, parts: [], bytes: 0 };
      this.#streams.set(from, partial);
    }
    if (!partial || partial.id !== piece.id || partial.parts.length !== piece.seq) {
      this.#streams.delete(from); // A gap (a lost piece, a new copy): wait for the next copy.
      return undefined;
    }
    if (piece.head) {
      this.#streams.delete(from);
      if (piece.head.type !== "snap" || piece.head.from !== from) return undefined;
      return { ...piece.head, snapshot: { ...piece.head.snapshot, data: Buffer.concat(partial.parts) } };
    }
    if (!(piece.part instanceof Uint8Array)) {
      this.#streams.delete(from);
      return undefined;
    }
    partial.parts.push(piece.part);
    partial.bytes += piece.part.length;
    if (partial.bytes > HOST_DEFAULTS.snapshotBytesMax) this.#streams.delete(from);
    return undefined;
  }

  #send(message: Message): void {
    if (message.type === "snap") {
      this.#sendStateCopy(message);
      return;
    }
    this.#sendNow(message);
  }

  /**
   * Sends a snapshot as a stream of pieces (one snapshot per follower at a time), waiting while
   * the follower's queue is full. A durable state machine's snapshot stands for the state on
   * disk: its data is copied now, a slice at a time, each slice sent as it is made. That copy
   * may be ahead of the snapshot's index (it holds everything applied); the receiver skips what
   * it already has.
   */
  #sendStateCopy(message: Message & { type: "snap" }): void {
    const to = message.to;
    if (this.#copying.has(to)) return;
    this.#copying.add(to);
    this.#streamStateCopy(message)
      .then(
        (ok) => {
          if (this.#stopped) return;
          this.raft.reportSnapshot(to, ok);
          this.#kick(); // reportSnapshot may have let more appends go.
        },
        (error: unknown) => {
          process.emitWarning(
            `raft host ${this.#options.id}: copying the state for node ${to} failed: ${error}`,
          );
          if (this.#stopped) return;
          this.raft.reportSnapshot(to, false);
          this.#kick();
        },
      )
      .finally(() => this.#copying.delete(to));
  }

  /** Streams the copy; false when the follower could not take it (the leader tries again later). */
  async #streamStateCopy(message: Message & { type: "snap" }): Promise<boolean> {
    const to = message.to;
    const transport = this.#options.transport;
    const machine = this.#options.stateMachine;
    const chunkBytes = this.#options.snapshotChunkBytes ?? HOST_DEFAULTS.snapshotChunkBytes;
    const stored = message.snapshot.data;
    // A snapshot with data carries it; one without stands for a durable machine's state.
    const parts: AsyncIterable<Uint8Array> =
      stored.length > 0 || !this.#durableMachine
        ? (async function* () {
            yield stored;
          })()
        : machine.snapshotStream
          ? machine.snapshotStream()
          : (async function* () {
              yield machine.snapshot();
            })();
    const id = ++this.#snapshotSeq;
    let seq = 0;
    const send = async (piece: StateStreamPiece["stream"]): Promise<boolean> => {
      // Wait for room, so that a state larger than the queue still goes through.
      const stallDeadline = this.#runtime.now() + HOST_DEFAULTS.snapshotStreamStallMs;
      const queuedMax =
        this.#options.snapshotStreamQueuedBytesMax ?? HOST_DEFAULTS.snapshotStreamQueuedBytesMax;
      while ((transport.queuedBytes?.(to) ?? 0) > queuedMax) {
        if (this.#stopped || this.#runtime.now() > stallDeadline) return false;
        await sleep(this.#runtime, HOST_DEFAULTS.snapshotStreamWaitMs);
      }
      // A full queue: the copy waits while entries keep being applied and sent.
      if (this.#runtime.buggify?.("host.stream.slow"))
        await sleep(this.#runtime, 1 + Math.floor(this.#runtime.random() * 10));
      if (this.#stopped) return false;
      this.stats.messagesSent++;
      return transport.send(to, pack({ stream: piece }));
    };
    for await (const part of parts) {
      for (let offset = 0; offset < part.length; offset += chunkBytes) {
        if (!(await send({ id, seq: seq++, part: part.subarray(offset, offset + chunkBytes) }))) return false;
      }
    }
    return send({
      id,
      seq,
      head: { ...message, snapshot: { ...message.snapshot, data: EMPTY_SNAPSHOT_DATA } },
    });
  }

  #sendNow(message: Message): void {
    this.stats.messagesSent++;
    if (!this.#options.transport.send(message.to, pack(message))) this.raft.reportUnreachable(message.to);
  }

  #kick(): void {
    if (!this.#running || this.#stopped) return;
    if (this.#processing) {
      // A Ready is being written. Step what arrived now (acks can commit entries without this
      // node's write) and send the leader's appends at once; the rest waits for the next Ready.
      try {
        for (const message of this.#inbox.splice(0)) this.raft.step(message);
        for (const message of this.raft.takeEagerMessages()) this.#send(message);
      } catch (error) {
        this.#die(error);
        return;
      }
      this.#again = true;
      return;
    }
    this.#processing = true;
    this.#runtime.defer(() => {
      this.#process()
        .catch((error: unknown) => this.#die(error))
        .finally(() => {
          this.#processing = false;
          if (this.#again) {
            this.#again = false;
            this.#kick();
          }
        });
    });
  }

  async #process(): Promise<void> {
    if (this.#restoring) {
      await this.#restoring;
      this.#restoring = undefined;
    }
    for (;;) {
      for (const message of this.#inbox.splice(0)) this.raft.step(message);
      if (!this.raft.hasReady()) return;
      await this.#handle(this.raft.ready());
      if (this.#stopped) return;
    }
  }

  async #handle(ready: Ready): Promise<void> {
    if (ready.softState) this.#onSoftState(ready.softState);
    // After the host's own clean-up, so a subscriber never sees proposals of a lost term pending.
    if (ready.softState || ready.hardState) {
      this.leadership.observe(this.raft.term, this.raft.leader, this.raft.log.lastIndex());
    }
    // The leader's appends go out while its own write is under way.
    for (const message of ready.eagerMessages) this.#send(message);
    // Committed entries below the first new one are already in the durable log: apply them
    // now rather than after this write's fsync, which would add a whole save to every
    // request's latency (the commit usually arrives while the next entries are being saved).
    let early = 0;
    if (!ready.snapshot) {
      const firstNew = ready.entries[0]?.index ?? Number.POSITIVE_INFINITY;
      while (early < ready.committedEntries.length && ready.committedEntries[early]!.index < firstNew) {
        this.#apply(ready.committedEntries[early]!);
        early++;
      }
      if (early > 0) {
        this.#releaseReads();
        this.leadership.applied(this.#applied);
      }
    }
    if (ready.snapshot || ready.entries.length > 0 || ready.hardState) {
      this.stats.saves++;
      this.stats.entriesSaved += ready.entries.length;
      // A slow disk: acks, reads and proposals arrive while this node's write is held.
      if (this.#runtime.buggify?.("host.save.slow"))
        await sleep(this.#runtime, 1 + Math.floor(this.#runtime.random() * 20));
      const saveStarted = this.#runtime.elapsed();
      await this.#options.storage.save({
        hardState: ready.hardState,
        entries: ready.entries,
        snapshot: ready.snapshot,
      });
      this.stats.saveMs += this.#runtime.elapsed() - saveStarted;
    }
    for (const message of ready.messages) this.#send(message);
    if (ready.snapshot) {
      this.stats.restores++;
      await this.#options.stateMachine.restore(ready.snapshot.data, ready.snapshot.meta.index);
      this.#applied = ready.snapshot.meta.index;
      this.#lastSnapshotIndex = ready.snapshot.meta.index;
      this.#confState = ready.snapshot.meta.confState;
    }
    for (let i = early; i < ready.committedEntries.length; i++) this.#apply(ready.committedEntries[i]!);
    for (const read of ready.readStates) {
      this.#readsWaitingForApply.push({ index: read.index, key: textDecoder.decode(read.ctx) });
    }
    this.#releaseReads();
    this.leadership.applied(this.#applied);
    this.raft.advance();
    this.#releaseAdvanceWaiters();
    this.#maybeSnapshot();
  }

  #apply(entry: Entry): void {
    if (entry.index <= this.#applied) return; // Already in the state machine (restart replay).
    const change = entry.type === "confChange" ? Raft.decodeConfChange(entry) : undefined;
    if (change) this.#confState = this.raft.applyConfChange(change);
    // A state machine that throws cannot be trusted to have applied the entry, and going on
    // would diverge from the other nodes: the error stops the node (see #die). Deterministic
    // refusals are results, not exceptions.
    const result = this.#options.stateMachine.apply(entry);
    if (change) this.#options.onConfChange?.(change, this.#confState);
    this.#applied = entry.index;
    this.stats.entriesApplied++;
    const pending = this.#proposals.get(entry.index);
    if (!pending) return;
    this.#proposals.delete(entry.index);
    if (pending.term !== entry.term) {
      pending.reject(new MetaraftError("MR_ERR_PROPOSAL_DROPPED", "the entry was replaced by a new leader"));
    } else {
      pending.resolve(result);
    }
  }

  #releaseReads(): void {
    while (this.#readsWaitingForApply.length > 0 && this.#readsWaitingForApply[0]!.index <= this.#applied) {
      const { key } = this.#readsWaitingForApply.shift()!;
      this.#reads.get(key)?.resolve();
      this.#reads.delete(key);
    }
  }

  #onSoftState(state: SoftState): void {
    if (state.role !== "leader") {
      // Requests that depended on this node's leadership go back to the client to retry.
      const error = new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader: state.leader } });
      for (const pending of this.#proposals.values()) pending.reject(error);
      this.#proposals.clear();
      this.#failReads(error);
    }
  }

  get #durableMachine(): boolean {
    return this.#options.stateMachine.durableIndex !== undefined;
  }

  #maybeSnapshot(): void {
    const every = this.#options.snapshotEntries ?? SETTINGS.raft.snapshotEntries.default;
    if (this.#applied - this.#lastSnapshotIndex < every) return;
    const storage = this.#options.storage;
    if (this.#applied > storage.lastIndex()) return;
    const machine = this.#options.stateMachine;
    const durable = machine.durableIndex;
    // A stored snapshot that carries data (one this node was sent) is the only copy of that
    // state until the state machine has synced past it: replacing it by an empty one before
    // then would leave a crash with neither.
    if (durable !== undefined && durable < storage.snapshot().meta.index) return;
    storage.createSnapshot(
      this.#applied,
      this.#confState,
      durable === undefined ? machine.snapshot() : EMPTY_SNAPSHOT_DATA,
    );
    this.#lastSnapshotIndex = this.#applied;
    this.stats.snapshots++;
    const trailing = this.#options.snapshotTrailingEntries ?? SETTINGS.raft.snapshotTrailingEntries.default;
    // Entries the state machine has not synced yet stay in the log, to be replayed after a crash.
    const compactTo = Math.min(this.#applied, durable ?? this.#applied) + 1 - trailing;
    if (compactTo > storage.firstIndex()) storage.compact(compactTo);
  }

  /** Conf-change answers waiting for the core's applied index (or for the end of this host). */
  #releaseAdvanceWaiters(): void {
    if (this.#advanceWaiters.length === 0) return;
    const applied = this.raft.log.applied;
    const done = this.#stopped || this.removed;
    this.#advanceWaiters = this.#advanceWaiters.filter((w) => {
      if (!done && w.index > applied) return true;
      w.resolve();
      return false;
    });
  }

  #failPending(error: Error): void {
    this.#releaseAdvanceWaiters();
    for (const pending of this.#proposals.values()) pending.reject(error);
    this.#proposals.clear();
    this.#failReads(error);
  }

  /** Fails the round in flight and every read waiting for the next one. */
  #failReads(error: Error): void {
    for (const pending of [...this.#reads.values()]) pending.reject(error);
    this.#reads.clear();
    this.#readsWaitingForApply.length = 0;
    for (const waiter of this.#readWaiters.splice(0)) waiter.reject(error);
    this.#readRetryTimer?.cancel();
  }

  /** A storage failure (a corrupt record, a full disk) stops the node rather than risk wrong answers. */
  #die(error: unknown): void {
    this.#fatal = error instanceof Error ? error : new Error(String(error));
    this.#stopped = true;
    this.#timer?.cancel();
    this.#failPending(this.#fatal);
    if (this.#options.onFatal) this.#options.onFatal(this.#fatal);
    else process.emitWarning(`raft host ${this.#options.id} stopped: ${this.#fatal.message}`);
  }
}
