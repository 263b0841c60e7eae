import { unpack, unpackMultiple } from "msgpackr";
import { decodeKvRecord, SessionTracker } from "../../../src/coordination/index.js";
import { createCore } from "../../../src/core/index.js";
import { MetaraftError } from "../../../src/errors.js";
import { encodeMemberContext } from "../../../src/execution/members.js";
import { MemoryStateStore } from "../../../src/execution/memory-state-store.js";
import type { ExecutionMode } from "../../../src/execution/pipeline.js";
import { TABLE_IDS } from "../../../src/execution/types.js";
import type { HostTransport } from "../../../src/host/index.js";
import { type ConfChange, encodeConfChange, MemoryStorage, type NodeId } from "../../../src/raft/index.js";
import { sleep } from "../../../src/runtime.js";
import { assembleReplica, type Replica } from "../../../src/server/replica.js";
import { seededRandom } from "../../raft/harness.js";
import { checkModel } from "../linearizability.js";
import { formatNsOp, listing, type NsOp, namespaceModel, volumeListing } from "./namespace-model.js";
import { type NetworkFaults, SimNetwork } from "./network.js";
import { SimRuntime } from "./runtime.js";

/**
 * The node simulator: 3 or 5 replicas of the production namespace node (the state machine, the
 * Raft host and the write path, wired by `assembleReplica` as the node wires them) over memory
 * disks and a virtual network, driven by one seed. The seed picks the faults (loss,
 * duplication, delay, partitions, crashes that lose the state's unsynced commits, leadership
 * transfers), the settings (execution mode, batchers, snapshot spacing, so that lagging followers
 * catch up from streamed state copies) and the clients' operations. A run checks election
 * safety, that the clients' history of key puts and lookups is linearizable, that no object id
 * is handed out twice, and that after a healthy phase every replica holds identical state.
 * Session clients beside them (each node runs the leader's `SessionTracker` as the node does)
 * check that no session expires sooner than its TTL after its last acknowledged heartbeat,
 * that every session whose client died does expire, and that an ended session leaves no
 * ephemeral entry.
 */

export interface NodeSimOptions {
  readonly seed: number;
  readonly nodes?: 3 | 5;
  /** Default: chosen by the seed. */
  readonly mode?: ExecutionMode;
  /** Virtual ms with faults, then with a healthy majority. */
  readonly safetyMs?: number;
  readonly livenessMs?: number;
  readonly clients?: number;
}

export interface NodeSimResult {
  readonly seed: number;
  readonly ok: boolean;
  readonly failure?: string;
  readonly stats: {
    readonly nodes: number;
    readonly mode: ExecutionMode;
    readonly events: number;
    readonly operations: number;
    readonly completed: number;
    readonly crashes: number;
    readonly transfers: number;
    readonly membershipChanges: number;
    readonly restores: number;
    readonly leaders: number;
    /** Sessions opened, whose clients died, ended (expired or closed), and told expired. */
    readonly sessions: { opened: number; died: number; ended: number; told: number };
    readonly buggified: Readonly<Record<string, number>>;
  };
}

/** The fault points in src/ (grep `buggify?.(`), and the simulated disk's. */
export const BUGGIFY_POINTS = [
  "host.save.slow",
  "host.stream.slow",
  "pipeline.cut.late",
  "disk.slow",
] as const;

/** Nodes a run may ever have (the first ones and those added later). */
const MEMBERS_EVER_MAX = 7;
const VOLUME = "vol";
const BUCKET = "bkt";
const TICK_MS = 10;
const ELECTION_TICKS = 10;
/** A client gives up on one node after this and tries another (a frozen or cut-off leader). */
const ATTEMPT_MS = 400;
/** ...and on the operation after this: it is then pending, and may or may not take effect. */
const OPERATION_MS = 3_000;
/** Search steps for one run's history; a run that needs more is reported, not passed. */
const LINEARIZABILITY_STEPS_MAX = 2_000_000;
const RETRYABLE = new Set([
  "MR_ERR_NOT_LEADER",
  "MR_ERR_NOT_READY",
  "MR_ERR_PROPOSAL_DROPPED",
  "MR_ERR_TIMEOUT",
  "MR_ERR_CONNECTION_CLOSED",
]);

/** Sessions: the leader's expiry check, and the grace a new leader gives (as the node computes it). */
const SESSION_EXPIRY_CHECK_MS = 50;
const SESSION_GRACE_MS = 2 * ELECTION_TICKS * TICK_MS;
/** Session clients per run. */
const SESSION_CLIENTS = 4;

/** What a session client saw of its session. */
interface SessionLog {
  readonly id: number;
  readonly ttlMs: number;
  readonly key: string;
  /** The client's clock when it last had a heartbeat acknowledged (or its create). */
  lastAck: number;
  /** The client stopped heartbeating (it died); the session must then expire. */
  stopped: boolean;
  /** A heartbeat was answered `expired`. */
  toldExpired: boolean;
  /** The longest the client went without an acknowledgement. */
  longestGapMs: number;
}

class Failure extends Error {}

/** One replica and its incarnations: the log and the state's disk outlive a crash. */
class SimNode {
  readonly log: MemoryStorage;
  store: MemoryStateStore;
  replica: Replica | undefined;
  /** The leader's session tracker, as `NodeSessions` runs it beside the replica. */
  tracker: SessionTracker | undefined;
  #incarnation = 0;
  /** Its removal is applied: it takes no part any more, and is left out of the checks. */
  removed = false;
  #alive: { value: boolean } = { value: false };

  constructor(
    readonly id: NodeId,
    voters: readonly NodeId[],
    readonly sim: NodeSimulation,
  ) {
    // Bootstrapped as the node bootstraps its LMDB log (src/server/bootstrap.ts): the voters
    // as committed membership changes 1..n of term 1, so a member added later learns them from
    // the log. (A membership in the initial snapshot let a joiner count itself the only voter.)
    this.log = new MemoryStorage({ voters: [], learners: [] });
    if (voters.length > 0) {
      this.log.save({
        hardState: { term: 1, vote: 0, commit: voters.length },
        entries: voters.map((node, i) => ({
          term: 1,
          index: i + 1,
          type: "confChange" as const,
          data: encodeConfChange({ kind: "addVoter", node }),
        })),
        snapshot: null,
      });
    }
    this.store = new MemoryStateStore(undefined, { defer: (fn) => sim.diskDefer(fn) });
  }

  get up(): boolean {
    return this.replica !== undefined;
  }

  /** A member of the cluster as far as the checks go: started once and not removed. */
  get member(): boolean {
    return !this.removed;
  }

  start(): void {
    const alive = { value: true };
    this.#alive = alive;
    const inner = this.sim.network.transport(this.id);
    // What an old incarnation still sends after its crash never leaves the machine.
    const transport: HostTransport = {
      send: (to, payload) => (alive.value ? inner.send(to, payload) : true),
      onMessage: (handler) => inner.onMessage((from, payload) => alive.value && handler(from, payload)),
    };
    const replica = assembleReplica({
      id: this.id,
      storage: this.log,
      store: this.store,
      transport,
      runtime: this.sim.runtime,
      core: this.sim.core,
      raft: {
        tickMs: TICK_MS,
        electionTicks: ELECTION_TICKS,
        snapshotEntries: this.sim.snapshotEntries,
        snapshotTrailingEntries: this.sim.snapshotTrailing,
      },
      execution: this.sim.execution,
      onFatal: (error) => this.sim.fail(`node ${this.id} stopped: ${error.message}`),
    });
    replica.host.leadership.subscribe({
      leaderReady: (term) => this.sim.onLeaderReady(this.id, term),
    });
    const trackerClient = `tracker-${this.id}-${++this.#incarnation}`;
    let trackerCall = 0;
    this.tracker = new SessionTracker({
      leadership: replica.host.leadership,
      runtime: this.sim.runtime,
      store: this.store,
      submit: (request) => replica.pipeline.submit(trackerClient, trackerCall++, request),
      expiryCheckMs: SESSION_EXPIRY_CHECK_MS,
      checkpointMs: this.sim.sessionCheckpointMs,
      graceMs: SESSION_GRACE_MS,
    });
    this.replica = replica;
    replica.host.start();
  }

  /** Gone at once; the state keeps what was synced and the first `keep` unsynced commits. */
  crash(keep: number): void {
    const replica = this.replica;
    if (!replica) return;
    this.#alive.value = false;
    this.sim.network.detach(this.id);
    this.replica = undefined;
    this.tracker?.close();
    this.tracker = undefined;
    this.sim.restores += replica.host.stats.restores;
    void replica.host.stop().catch(() => undefined);
    this.store = this.store.crash(keep);
  }
}

type Reply = Record<string, unknown>;
type Outcome = { ok: true; reply: Reply } | { ok: false; code: string } | { ok: false; code: "pending" };

class NodeSimulation {
  readonly random: () => number;
  readonly runtime: SimRuntime;
  readonly network: SimNetwork;
  readonly core = createCore({ mode: "ts" }).sync;
  readonly nodes: SimNode[] = [];
  readonly history: NsOp[] = [];
  /** Every etag a client tried to put, by key (what a stale read may return). */
  readonly written = new Map<string, string[]>();
  readonly objectIds = new Map<number, string>();
  readonly leaderOfTerm = new Map<number, NodeId>();
  readonly mode: ExecutionMode;
  readonly execution: { mode: ExecutionMode; batchers: number; batchBytesMax: number };
  readonly snapshotEntries: number;
  readonly snapshotTrailing: number;
  readonly faults: NetworkFaults;
  /** Checkpoints every half TTL in half the seeds; in the others none (longer than any TTL). */
  readonly sessionCheckpointMs: number;
  readonly sessions: SessionLog[] = [];
  readonly #sessionRandom: () => number;
  crashes = 0;
  transfers = 0;
  membershipChanges = 0;
  restores = 0;
  #failure: string | undefined;

  constructor(readonly options: NodeSimOptions) {
    this.random = seededRandom(options.seed);
    const r = this.random;
    this.runtime = new SimRuntime(r);
    this.runtime.enableBuggify(BUGGIFY_POINTS);
    this.faults = { dropRate: r() * 0.08, duplicateRate: r() * 0.04, delayMaxMs: 1 + Math.floor(r() * 15) };
    this.network = new SimNetwork(this.runtime, this.faults);
    this.mode = options.mode ?? (r() < 0.5 ? "leader-execution" : "replicated-request");
    this.execution = { mode: this.mode, batchers: 1 + Math.floor(r() * 6), batchBytesMax: 4 * 1024 * 1024 };
    // Small snapshots and a short trail: a node back from a crash or a partition often finds
    // the log it needs compacted away and is sent a copy of the state.
    this.snapshotEntries = 10 + Math.floor(r() * 60);
    this.snapshotTrailing = Math.floor(r() * 10);
    // The sessions' own random source, so that they leave the seed's other choices as they were.
    this.#sessionRandom = seededRandom(options.seed * 7919 + 17);
    this.sessionCheckpointMs = this.#sessionRandom() < 0.5 ? 1_000 : 60_000;
    const count = options.nodes ?? 3;
    const voters = Array.from({ length: count }, (_, i) => i + 1);
    for (const id of voters) this.nodes.push(new SimNode(id, voters, this));
  }

  /**
   * The state disk's latency: its commits and syncs land a turn later, or (a slow disk, when the
   * seed says so) a few virtual ms later, while the host goes on applying and serving.
   */
  diskDefer(fn: () => void): void {
    if (this.runtime.buggify("disk.slow")) this.runtime.after(1 + Math.floor(this.random() * 10), fn);
    else this.runtime.defer(fn);
  }

  fail(why: string): void {
    this.#failure ??= `t=${this.runtime.time}ms: ${why}`;
  }

  get failed(): boolean {
    return this.#failure !== undefined;
  }

  onLeaderReady(id: NodeId, term: number): void {
    const other = this.leaderOfTerm.get(term);
    if (other !== undefined && other !== id) this.fail(`two leaders in term ${term}: ${other} and ${id}`);
    this.leaderOfTerm.set(term, id);
  }

  #leader(): SimNode | undefined {
    return this.nodes.find((n) => n.replica?.host.isLeader);
  }

  /**
   * One call as the real client makes it: to the leader it believes in, following NOT_LEADER,
   * moving on from a node that does not answer within an attempt, until the operation's deadline.
   */
  async #call(
    guess: { node: number },
    invoke: (replica: Replica, node: SimNode) => Promise<Reply>,
  ): Promise<Outcome> {
    const deadline = this.runtime.time + OPERATION_MS;
    while (this.runtime.time < deadline && !this.failed) {
      const node = this.nodes[guess.node % this.nodes.length]!;
      const replica = node.replica;
      if (!replica) {
        guess.node++;
        await sleep(this.runtime, 5);
        continue;
      }
      const outcome = await new Promise<Outcome>((resolve) => {
        const timer = this.runtime.after(ATTEMPT_MS, () => resolve({ ok: false, code: "MR_ERR_TIMEOUT" }));
        let promise: Promise<Reply>;
        try {
          promise = invoke(replica, node);
        } catch (error) {
          promise = Promise.reject(error);
        }
        promise.then(
          (reply) => {
            timer.cancel();
            resolve({ ok: true, reply });
          },
          (error: unknown) => {
            timer.cancel();
            resolve({
              ok: false,
              code: error instanceof MetaraftError ? error.code : `thrown: ${String(error)}`,
            });
            if (error instanceof MetaraftError) {
              const leader = error.details?.leader;
              if (typeof leader === "number" && leader > 0) guess.node = leader - 1;
              else guess.node++;
            } else this.fail(`a call threw ${String(error)}`);
          },
        );
      });
      if (outcome.ok || !RETRYABLE.has(outcome.code)) return outcome;
      if (outcome.code === "MR_ERR_TIMEOUT") guess.node++;
      await sleep(this.runtime, 2 + Math.floor(this.random() * 20));
    }
    return { ok: false, code: "pending" };
  }

  /** Settles a write: completed with `output`, pending (may or may not take effect), or dropped. */
  #record(op: NsOp): void {
    this.history.push(op);
  }

  async #client(index: number, until: number): Promise<void> {
    const clientId = `client-${index}`;
    let callId = 0;
    let written = 0;
    const guess = { node: index };
    const keys = ["a", "b", "c"];
    const address = { volume: VOLUME, bucket: BUCKET };
    const pick = <T>(from: readonly T[]): T => from[Math.floor(this.random() * from.length)]!;
    // A write keeps its call id across retries, as the client does: the replay cache answers.
    const write = (op: string, fields: Record<string, unknown>) => {
      const id = ++callId;
      return this.#call(guess, (r) => r.pipeline.submit(clientId, id, { op, ...fields } as never));
    };
    const read = (op: string, fields: Record<string, unknown>, stale = false) =>
      this.#call(guess, (r) => r.pipeline.read({ op, ...fields } as never, stale));
    /** A refusal the workload expects, or else a harness failure. */
    const refused = (what: string, code: string, expected: Record<string, string>): string | undefined => {
      if (code in expected) return expected[code];
      if (code !== "pending") this.fail(`${what} refused with ${code}`);
      return undefined;
    };
    while (this.runtime.time < until && !this.failed) {
      const key = pick(keys);
      const roll = this.random();
      const call = this.runtime.time;
      if (roll < 0.35) {
        const value = `${index}.${written++}`;
        const open = await write("openKey", { ...address, key, size: 1 });
        // An open key changes no key's state: a put whose open failed never happened.
        if (!open.ok) continue;
        const openKeyId = open.reply.openKeyId as number;
        // Known before the commit goes out: another client's stale read may see it first.
        this.written.set(key, [...(this.written.get(key) ?? []), value]);
        const commit = await write("commitKey", { ...address, key, openKeyId, size: 1, etag: value });
        if (commit.ok) {
          const objectId = commit.reply.objectId as number;
          const holder = this.objectIds.get(objectId);
          if (holder !== undefined && holder !== value)
            this.fail(`object id ${objectId} given to ${holder} and to ${value}`);
          this.objectIds.set(objectId, value);
          this.#record({ client: index, kind: "put", key, value, call, ret: this.runtime.time });
        } else if (commit.code === "pending") {
          this.#record({ client: index, kind: "put", key, value, call, ret: null });
        } else this.fail(`commitKey refused with ${commit.code}`);
      } else if (roll < 0.45) {
        const done = await write("deleteKey", { ...address, key });
        const output = done.ok ? "ok" : refused("deleteKey", done.code, { MR_ERR_KEY_NOT_FOUND: "absent" });
        if (done.ok || output || done.code === "pending") {
          this.#record({
            client: index,
            kind: "delete",
            key,
            ...(output ? { output: output as "ok" | "absent" } : {}),
            call,
            ret: done.ok || output ? this.runtime.time : null,
          });
        }
      } else if (roll < 0.55) {
        const toKey = pick(keys);
        const done = await write("renameKey", { ...address, key, toKey });
        const output = done.ok
          ? "ok"
          : refused("renameKey", done.code, { MR_ERR_KEY_NOT_FOUND: "absent", MR_ERR_KEY_EXISTS: "exists" });
        if (done.ok || output || done.code === "pending") {
          this.#record({
            client: index,
            kind: "rename",
            key,
            toKey,
            ...(output ? { output: output as "ok" | "absent" | "exists" } : {}),
            call,
            ret: done.ok || output ? this.runtime.time : null,
          });
        }
      } else if (roll < 0.8) {
        const done = await read("lookupKey", { ...address, key });
        if (done.ok) {
          const etag = (done.reply.key as { etag: string }).etag;
          this.#record({ client: index, kind: "lookup", key, output: etag, call, ret: this.runtime.time });
        } else if (refused("lookupKey", done.code, { MR_ERR_KEY_NOT_FOUND: "absent" })) {
          this.#record({ client: index, kind: "lookup", key, output: null, call, ret: this.runtime.time });
        }
      } else if (roll < 0.88) {
        const done = await read("listKeys", { ...address });
        if (done.ok) {
          const items = done.reply.items as { key: string; etag: string }[];
          const output = listing(items.map((i) => [i.key, i.etag] as [string, string]));
          this.#record({ client: index, kind: "list", output, call, ret: this.runtime.time });
        } else refused("listKeys", done.code, {});
      } else if (roll < 0.93) {
        // A stale read may be behind, so it is not in the linearizable history; but what it
        // returns must have been written (a put, or carried by a rename) at some point.
        const node = pick(this.nodes.filter((n) => n.up));
        const done = await new Promise<Outcome>((resolve) => {
          node.replica!.pipeline.read({ op: "lookupKey", ...address, key } as never, true).then(
            (reply) => resolve({ ok: true, reply }),
            (error: unknown) =>
              resolve({ ok: false, code: error instanceof MetaraftError ? error.code : String(error) }),
          );
        });
        if (done.ok) {
          const etag = (done.reply.key as { etag: string }).etag;
          const ever = [...this.written.values()].some((values) => values.includes(etag));
          if (!ever) this.fail(`a stale lookup of ${key} returned ${etag}, which no client wrote`);
        } else if (
          !["MR_ERR_KEY_NOT_FOUND", "MR_ERR_BUCKET_NOT_FOUND", "MR_ERR_VOLUME_NOT_FOUND"].includes(done.code)
        ) {
          this.fail(`a stale lookup failed with ${done.code}`);
        }
      } else if (roll < 0.97) {
        const volume = `v${index}-${written++}`;
        const done = await write("createVolume", { volume });
        if (done.ok)
          this.#record({ client: index, kind: "createVolume", volume, call, ret: this.runtime.time });
        else if (done.code === "pending")
          this.#record({ client: index, kind: "createVolume", volume, call, ret: null });
        else this.fail(`createVolume refused with ${done.code}`);
      } else {
        const done = await read("listVolumes", {});
        if (done.ok) {
          const items = done.reply.items as { volume?: string; name?: string }[];
          const output = volumeListing(items.map((v) => (v.volume ?? v.name)!).filter((v) => v !== "final"));
          this.#record({ client: index, kind: "listVolumes", output, call, ret: this.runtime.time });
        } else refused("listVolumes", done.code, {});
      }
      await sleep(this.runtime, Math.floor(this.random() * 15));
    }
  }

  /** Session clients heartbeat until this is set (the run's checks are about to start). */
  sessionsStop = false;

  /**
   * A client of one session, as `Session` and the agent are: it creates the session, puts one
   * ephemeral entry, and heartbeats every TTL/3 to the leader it believes in (a follower's
   * NOT_LEADER moves it on, standing in for the node's forwarding) until it dies (half the
   * clients, at a random time in the faulty phase) or the run ends.
   */
  async #sessionClient(index: number, until: number): Promise<void> {
    const r = this.#sessionRandom;
    const clientId = `session-client-${index}`;
    let callId = 0;
    const guess = { node: index };
    const ttlMs = 2_000 + Math.floor(r() * 1_000);
    const dieAt = r() < 0.5 ? this.runtime.time + Math.floor(r() * (until - this.runtime.time)) : Infinity;
    const createId = ++callId;
    const created = await this.#call(guess, async (replica, node) => {
      const reply = await replica.pipeline.submit(clientId, createId, {
        op: "sessionCreate",
        ttlMs,
      } as never);
      node.tracker?.created(reply.sessionId as number, ttlMs);
      return reply;
    });
    if (!created.ok) {
      if (created.code !== "pending") this.fail(`sessionCreate refused with ${created.code}`);
      return;
    }
    const log: SessionLog = {
      id: created.reply.sessionId as number,
      ttlMs,
      key: `eph/${index}`,
      lastAck: this.runtime.now(),
      stopped: false,
      toldExpired: false,
      longestGapMs: 0,
    };
    this.sessions.push(log);
    const putId = ++callId;
    const put = await this.#call(guess, (replica) =>
      replica.pipeline.submit(clientId, putId, {
        op: "kvPut",
        key: log.key,
        value: "up",
        session: log.id,
      } as never),
    );
    if (!put.ok && put.code !== "pending" && put.code !== "MR_ERR_SESSION_EXPIRED") {
      this.fail(`an ephemeral put refused with ${put.code}`);
    }
    while (!this.failed && !this.sessionsStop) {
      if (this.runtime.time >= dieAt) {
        log.stopped = true;
        return;
      }
      await sleep(this.runtime, Math.floor(ttlMs / 3));
      const beat = await this.#call(guess, (replica, node) => {
        if (!node.tracker?.ready) {
          throw new MetaraftError("MR_ERR_NOT_LEADER", undefined, {
            details: { leader: replica.host.leader },
          });
        }
        return Promise.resolve({ ...node.tracker.keepAlive([log.id]) });
      });
      if (!beat.ok) continue;
      if ((beat.reply.expired as number[]).includes(log.id)) {
        log.toldExpired = true;
        return;
      }
      if (((beat.reply.expiring as number[] | undefined) ?? []).includes(log.id)) continue;
      const now = this.runtime.now();
      log.longestGapMs = Math.max(log.longestGapMs, now - log.lastAck);
      log.lastAck = now;
    }
  }

  /**
   * Sessions: none expired before TTL after its last acknowledged heartbeat (less one
   * checkpoint interval when checkpoints ran, the price docs/sessions.md states); every dead
   * one expired; an ended session holds no ephemeral entry and a live one its entry.
   */
  #checkSessions(store: MemoryStateStore): void {
    for (const log of this.sessions) {
      const tomb = store.get("sessions", `x/${log.id.toString(16).padStart(16, "0")}`);
      const open = store.get("sessions", `s/${log.id.toString(16).padStart(16, "0")}`) !== undefined;
      const entry = store.get("kv", log.key);
      if (tomb) {
        const [, , endedAt, , reason] = unpack(tomb) as [number, number, number, number, string];
        const slack = this.sessionCheckpointMs < log.ttlMs ? this.sessionCheckpointMs : 0;
        if (reason === "expired" && endedAt < log.lastAck + log.ttlMs - slack) {
          this.fail(
            `session ${log.id} (TTL ${log.ttlMs} ms) expired at ${endedAt}, ${log.lastAck + log.ttlMs - endedAt} ms before its TTL after the last acknowledged heartbeat at ${log.lastAck}`,
          );
        }
        if (entry && decodeKvRecord(entry).session === log.id) {
          this.fail(`session ${log.id} ended, yet its ephemeral ${log.key} remains`);
        }
      } else {
        if (!open) this.fail(`session ${log.id} is neither open nor ended`);
        if (log.toldExpired) this.fail(`session ${log.id}'s client was told it expired, but it is open`);
        if (log.stopped) this.fail(`session ${log.id}'s client died at ${log.lastAck}, yet it is still open`);
      }
    }
  }

  /** The seed's faults, one decision every few tens of virtual ms. */
  async #nemesis(until: number): Promise<void> {
    const r = this.random;
    const crashRate = r() * 0.15;
    const partitionRate = r() * 0.1;
    const transferRate = r() * 0.08;
    const membershipRate = r() < 0.5 ? r() * 0.08 : 0;
    while (this.runtime.time < until && !this.failed) {
      await sleep(this.runtime, 20 + Math.floor(r() * 80));
      this.#retireRemoved();
      const members = this.nodes.filter((n) => n.member);
      const down = members.filter((n) => !n.up);
      const up = members.filter((n) => n.up);
      // Crashes only while a majority of the voters stays up: a fault Raft promises to survive.
      const voters = this.#leader()?.replica?.host.confState.voters ?? [];
      const tolerated = Math.floor((Math.max(voters.length, 3) - 1) / 2);
      const roll = r();
      if (roll < crashRate && down.length < tolerated && this.#leader() !== undefined) {
        // The leader more often than its share: its failover is what the host must get right.
        const leader = this.#leader();
        const victim = leader && r() < 0.5 ? leader : up[Math.floor(r() * up.length)]!;
        victim.crash(Math.floor(r() * (victim.store.disk.unsyncedCommits + 1)));
        this.crashes++;
      } else if (roll < crashRate * 2 && down.length > 0) {
        down[Math.floor(r() * down.length)]!.start();
      } else if (roll < crashRate * 2 + partitionRate) {
        this.network.heal();
        const cut = this.nodes[Math.floor(r() * this.nodes.length)]!.id;
        const oneWay = r() < 0.3;
        for (const other of this.nodes) {
          if (other.id === cut) continue;
          this.network.cut(cut, other.id);
          if (!oneWay) this.network.cut(other.id, cut);
        }
      } else if (roll < crashRate * 2 + partitionRate * 2) {
        this.network.heal();
      } else if (
        roll >= crashRate * 2 + partitionRate * 2 + transferRate &&
        roll < crashRate * 2 + partitionRate * 2 + transferRate + membershipRate
      ) {
        this.#changeMembership();
      } else if (roll < crashRate * 2 + partitionRate * 2 + transferRate) {
        const leader = this.#leader();
        const others = up.filter((n) => n !== leader);
        if (leader && others.length > 0) {
          try {
            leader.replica!.host.transferLeader(others[Math.floor(r() * others.length)]!.id);
            this.transfers++;
          } catch {
            // Refused (not ready, a transfer under way): a transfer is only ever a request.
          }
        }
      }
    }
  }

  /**
   * One membership change, as an operator makes them: add a learner (a new node with an empty
   * log), promote a learner once it caught up, or remove a member (the leader itself too) while
   * at least three voters stay. One change at a time; the core refuses a second, and a promotion
   * of a learner that lags.
   */
  #changeMembership(): void {
    const leader = this.#leader();
    if (!leader) return;
    const host = leader.replica!.host;
    const { voters, learners } = host.confState;
    const r = this.random;
    let change: ConfChange;
    let joining: SimNode | undefined;
    if (learners.length > 0) {
      change = { kind: "addVoter", node: learners[0]! };
    } else if (voters.length < 5 && this.nodes.length < MEMBERS_EVER_MAX && r() < 0.6) {
      const id = this.nodes.length + 1;
      joining = new SimNode(id, [], this);
      change = {
        kind: "addLearner",
        node: id,
        context: encodeMemberContext({ id, peer: `sim-${id}:7000`, client: `sim-${id}:8000` }),
      };
    } else if (voters.length > 3) {
      change = { kind: "removeNode", node: voters[Math.floor(r() * voters.length)]! };
    } else return;
    let proposed: Promise<unknown>;
    try {
      proposed = host.proposeConfChange(change);
    } catch {
      return; // Refused (a change under way, a learner that lags, no commit in this term yet).
    }
    if (joining) {
      // Started once the change is in the log, as an operator starts it after `member add`.
      this.nodes.push(joining);
      joining.start();
    }
    proposed.then(
      () => {
        this.membershipChanges++;
      },
      () => undefined, // Lost with the leadership: a change is only ever a request.
    );
  }

  /** Nodes whose removal is applied stop, as a removed node does. */
  #retireRemoved(): void {
    for (const node of this.nodes) {
      if (!node.removed && node.replica?.host.removed) {
        node.removed = true;
        node.crash(0);
      }
    }
  }

  async #setUp(): Promise<void> {
    const guess = { node: 0 };
    for (const [op, fields] of [
      ["createVolume", { volume: VOLUME }],
      ["createBucket", { volume: VOLUME, bucket: BUCKET }],
    ] as const) {
      const outcome = await this.#call(guess, (r) =>
        r.pipeline.submit("setup", op === "createVolume" ? 1 : 2, { op, ...fields } as never),
      );
      if (!outcome.ok && outcome.code !== "MR_ERR_VOLUME_EXISTS" && outcome.code !== "MR_ERR_BUCKET_EXISTS") {
        this.fail(`setup ${op}: ${outcome.code}`);
      }
    }
  }

  async run(): Promise<NodeSimResult> {
    const safetyMs = this.options.safetyMs ?? 3_000;
    const livenessMs = this.options.livenessMs ?? 4_000;
    const clients = this.options.clients ?? 3;
    for (const node of this.nodes) node.start();
    const done = (async () => {
      await this.#setUp();
      const until = this.runtime.time + safetyMs;
      const sessionClients = Array.from({ length: SESSION_CLIENTS }, (_, i) => this.#sessionClient(i, until));
      await Promise.all([
        this.#nemesis(until),
        ...Array.from({ length: clients }, (_, i) => this.#client(i, until)),
      ]);
      // Liveness: heal everything, restart the crashed, and the cluster must converge.
      this.network.heal();
      this.network.faults = { dropRate: 0, duplicateRate: 0, delayMaxMs: this.faults.delayMaxMs };
      this.#retireRemoved();
      for (const node of this.nodes) if (node.member && !node.up) node.start();
      const final = await this.#call({ node: 0 }, (r) =>
        r.pipeline.submit("final", 1, { op: "createVolume", volume: "final" } as never),
      );
      if (!final.ok) this.fail(`no write succeeded in the healthy phase: ${final.code}`);
      // Every dead session expires in the healthy phase: within its TTL and the grace of the
      // last leader change, plus a check and a commit.
      const sessionsBy = this.runtime.time + 3_000 + SESSION_GRACE_MS + 1_000;
      const leaderStore = () => this.#leader()?.store;
      while (!this.failed && this.runtime.time < sessionsBy) {
        const store = leaderStore();
        const dead = this.sessions.filter((l) => l.stopped);
        if (store && dead.every((l) => store.get("sessions", `x/${l.id.toString(16).padStart(16, "0")}`)))
          break;
        await sleep(this.runtime, 50);
      }
      this.sessionsStop = true;
      await Promise.all(sessionClients);
      const converged = this.runtime.time + livenessMs;
      while (!this.failed && this.runtime.time < converged) {
        this.#retireRemoved();
        const leader = this.#leader();
        if (leader) {
          // A node removed while it was down never applies its removal: the leader's
          // membership says who is still in.
          const { voters, learners } = leader.replica!.host.confState;
          for (const node of this.nodes) {
            if (node.member && !voters.includes(node.id) && !learners.includes(node.id)) {
              node.removed = true;
              node.crash(0);
            }
          }
          const applied = this.nodes.filter((n) => n.member).map((n) => n.replica?.host.appliedIndex ?? -1);
          if (applied.every((a) => a === leader.replica!.host.raft.log.committed)) break;
        }
        await sleep(this.runtime, 20);
      }
    })();
    let finished = false;
    void done.then(
      () => {
        finished = true;
      },
      (error: unknown) => {
        finished = true;
        this.fail(`the harness threw: ${error instanceof Error ? error.stack : String(error)}`);
      },
    );
    // The sessions' wait: every dead one expires, and the clients' last heartbeats settle.
    const horizon =
      safetyMs + livenessMs + 2 * OPERATION_MS + 2_000 + 3_000 + SESSION_GRACE_MS + 1_000 + OPERATION_MS;
    while (!finished && this.runtime.time < horizon)
      await this.runtime.runUntil(this.runtime.time + 50, 5_000_000);
    if (!finished) this.fail(`the run did not finish in ${horizon} virtual ms`);
    this.#check();
    return this.#result();
  }

  #check(): void {
    if (this.failed) return;
    const members = this.nodes.filter((n) => n.member);
    const applied = members.map((n) => n.replica?.host.appliedIndex ?? -1);
    if (new Set(applied).size !== 1) {
      const status = this.nodes.map((n) => {
        const host = n.replica?.host;
        if (!host) return `${n.id}: down`;
        const s = host.status();
        const progress = host.isLeader
          ? ` progress ${JSON.stringify([...host.raft.progress].map(([id, p]) => ({ id, match: p.match, next: p.next, state: p.state })))}`
          : "";
        return `${n.id}: ${s.role} term ${s.term} leader ${s.leader} commit ${s.commit} applied ${s.applied} log ${s.firstIndex}..${s.lastIndex} snapshot ${JSON.stringify(s.snapshot)} restores ${host.stats.restores}${progress}`;
      });
      this.fail(`the replicas did not converge: applied ${applied.join(", ")}\n  ${status.join("\n  ")}`);
      return;
    }
    // The copies must match row for row. The store's own meta rows hold the index its disk has
    // committed, which a slow disk leaves behind the applied one; the header holds the applied.
    const states = members.map((n) => n.store.snapshot());
    for (let i = 1; i < states.length; i++) {
      const difference = describeDifference(states[0]!, states[i]!);
      if (difference) {
        this.fail(
          `node ${i + 1}'s state differs from node 1's at applied index ${applied[0]}: ${difference}`,
        );
        return;
      }
    }
    this.#checkSessions(members[0]!.store);
    if (this.failed) return;
    const verdict = checkModel(this.history, namespaceModel, { stepsMax: LINEARIZABILITY_STEPS_MAX });
    if (verdict.kind !== "ok") {
      const prefix = verdict.longestPrefix.length;
      const next = this.history
        .map((op, i) => ({ op, i }))
        .filter(({ i }) => !verdict.longestPrefix.includes(i))
        .slice(0, 6)
        .map(({ op, i }) => formatNsOp(op, i));
      this.fail(
        `the namespace history is ${verdict.kind === "violation" ? "not linearizable" : "too hard to check"}: ` +
          `${prefix} of ${this.history.length} ops linearize; next ones:\n  ${next.join("\n  ")}`,
      );
    }
  }

  #result(): NodeSimResult {
    for (const node of this.nodes) this.restores += node.replica?.host.stats.restores ?? 0;
    return {
      seed: this.options.seed,
      ok: !this.failed,
      ...(this.#failure ? { failure: this.#failure } : {}),
      stats: {
        nodes: this.nodes.length,
        mode: this.mode,
        events: this.runtime.events,
        operations: this.history.length,
        completed: this.history.filter((op) => op.ret !== null).length,
        crashes: this.crashes,
        transfers: this.transfers,
        membershipChanges: this.membershipChanges,
        restores: this.restores,
        leaders: this.leaderOfTerm.size,
        sessions: {
          opened: this.sessions.length,
          died: this.sessions.filter((l) => l.stopped).length,
          ended: this.sessions.filter((l) => {
            const store = this.nodes.find((n) => n.member)?.store;
            return store?.get("sessions", `x/${l.id.toString(16).padStart(16, "0")}`) !== undefined;
          }).length,
          told: this.sessions.filter((l) => l.toldExpired).length,
        },
        buggified: Object.fromEntries(this.runtime.buggified),
      },
    };
  }

  /** For a failure report: the history as lines. */
  describeHistory(): string {
    return this.history.map((op, i) => formatNsOp(op, i)).join("\n");
  }
}

/** Meta rows that record what the disk committed, not what was applied. */
const COMMITTED_META = new Set(["appliedIndex", "lastTxid"]);

/** The first rows in which two state copies differ (header, then `[table, rows]` slices). */
function describeDifference(a: Uint8Array, b: Uint8Array): string {
  const rows = (data: Uint8Array) => {
    const out = new Map<string, string>();
    const [header, ...slices] = unpackMultiple(data) as [unknown, ...[number, [Uint8Array, Uint8Array][]][]];
    out.set("header", JSON.stringify(header));
    for (const [table, entries] of slices) {
      for (const [key, value] of entries) {
        const name = Buffer.from(key).toString("latin1");
        if (table === TABLE_IDS.meta && COMMITTED_META.has(name)) continue;
        out.set(`${table}/${Buffer.from(key).toString("latin1")}`, Buffer.from(value).toString("hex"));
      }
    }
    return out;
  };
  const ra = rows(a);
  const rb = rows(b);
  const diffs: string[] = [];
  for (const key of new Set([...ra.keys(), ...rb.keys()])) {
    if (ra.get(key) !== rb.get(key))
      diffs.push(
        `${JSON.stringify(key)}: ${ra.get(key)?.slice(0, 80) ?? "absent"} vs ${rb.get(key)?.slice(0, 80) ?? "absent"}`,
      );
  }
  return diffs.slice(0, 5).join("; ");
}

export async function simulateNodes(options: NodeSimOptions): Promise<NodeSimResult> {
  const sim = new NodeSimulation(options);
  const result = await sim.run();
  // For a replay's report (`globalThis.__simHistory = true`): the whole history as lines.
  const debug = globalThis as { __simHistory?: boolean; __lastHistory?: string };
  if (debug.__simHistory) debug.__lastHistory = sim.describeHistory();
  // Stop every replica's timers so nothing of this run lingers into the next. A host busy with a
  // Ready waits for it on the virtual clock, so the clock runs a little longer.
  for (const node of sim.nodes) void node.replica?.host.stop().catch(() => undefined);
  await sim.runtime.runUntil(sim.runtime.time + 100);
  return result;
}

export { Failure };
