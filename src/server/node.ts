import { renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SESSION_INTERNAL_OPS } from "../coordination/index.js";
import { type Core, createCore } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { type ListenerDeclaration, readSummary } from "../events/index.js";
import { checkAddress, encodeMemberContext, type MemberRecord, readMembers } from "../execution/members.js";
import type { WritePipeline } from "../execution/pipeline.js";
import type { ApplyResult } from "../execution/state-machine.js";
import { StateStore } from "../execution/state-store.js";
import type { Request } from "../execution/types.js";
import type { RaftHost } from "../host/index.js";
import { QUEUE_INTERNAL_OPS, type QueueDeclaration, type QueueLog, QueueManager } from "../queues/index.js";
import type { ConfChange, ConfState, NodeId } from "../raft/index.js";
import { type Runtime, systemRuntime } from "../runtime.js";
import { type NodeAddress, SETTINGS, type Settings } from "../settings.js";
import {
  type ClusterIdentity,
  LmdbRaftLog,
  openEnvironment,
  type StorageEnvironment,
} from "../storage/index.js";
import { bootstrapFingerprint, PeerTransport, type TransportLogger } from "../transport/index.js";
import { establishIdentity, type IdentityOutcome } from "./bootstrap.js";
import { EventLoopMonitor } from "./event-loop.js";
import { NodeListeners } from "./node-listeners.js";
import { lifecycleQueue, NodeServices } from "./node-services.js";
import { NodeSessions } from "./node-sessions.js";
import { assembleReplica } from "./replica.js";
import { type RpcConnection, type RpcRequest, RpcServer } from "./rpc-server.js";
import { WatchHub } from "./watch-hub.js";

/** The settings of `SETTINGS` that a node itself runs with (the others locate or log it). */
export type NodeSettings = Omit<Settings, "id" | "cluster" | "data" | "clusterId" | "secret" | "log">;

/**
 * Every setting of a node; `metaraft start` reads them from YAML and flags (see `SETTINGS` for
 * what each does). The `raft` section's settings (tickMs, electionTicks, snapshotEntries,
 * snapshotTrailingEntries) sit at the top level; an omitted one takes the table's default.
 */
export interface NodeConfig extends Partial<NodeSettings["raft"]> {
  readonly id: NodeId;
  readonly cluster: readonly NodeAddress[];
  readonly dataDir: string;
  readonly clusterId: string;
  readonly secret: string;
  readonly execution?: Partial<NodeSettings["execution"]>;
  readonly core?: Partial<NodeSettings["core"]>;
  readonly events?: Partial<NodeSettings["events"]>;
  readonly watch?: Partial<NodeSettings["watch"]>;
  readonly queue?: Partial<NodeSettings["queue"]>;
  /** The coordination keyspace's limits. */
  readonly kv?: Partial<NodeSettings["kv"]>;
  /** Sessions: TTL bounds, how often expiry and checkpoints run, and the limits. */
  readonly session?: Partial<NodeSettings["session"]>;
  readonly requestBytesMax?: NodeSettings["requestBytesMax"];
  /** For tests and benchmarks only: commits are not fsynced. */
  readonly noSync?: NodeSettings["noSync"];
  readonly logger?: TransportLogger;
  readonly onFatal?: (error: Error) => void;
  /** The clock, timers and random source of the host, the write path and the transport. */
  readonly runtime?: Runtime;
  /** Injected clock for the gatekeeper (tests); default the runtime's. */
  readonly clock?: () => number;
  /**
   * Rebuilds a one-node cluster from this node's data (etcd's --force-new-cluster): the other
   * members are removed and everything in the log is committed. For disaster recovery only.
   */
  readonly forceNewCluster?: boolean;
  /**
   * `--join host:port`: a member's client address. A blank node asks it for the members (it must
   * have been added with `member add` first) and starts with no membership of its own: the
   * leader sends it the state and the log.
   */
  readonly join?: string;
  /** Listener plugins this node registers when it leads (the config file's `listeners:`). */
  readonly listeners?: readonly ListenerDeclaration[];
  readonly lifecycle?: Partial<NodeSettings["lifecycle"]>;
  /** Queue consumers this node runs when it leads (the config file's `queues:`). */
  readonly queues?: readonly QueueDeclaration[];
  /** Relative plugin module paths resolve against it; the working directory by default. */
  readonly baseDir?: string;
}

/**
 * Written into the data directory at start: how `metaraft listeners run --data DIR` finds the
 * node whose data it reads (its client address and cluster id; no secret).
 */
export const NODE_INFO_FILE = "node.json";

/** What a node runs with: the config's settings, else the defaults of `SETTINGS`. */
export function nodeSettings(config: NodeConfig): NodeSettings {
  const { raft, execution, core, events, watch, lifecycle, queue, kv, session } = SETTINGS;
  return {
    raft: {
      tickMs: config.tickMs ?? raft.tickMs.default,
      electionTicks: config.electionTicks ?? raft.electionTicks.default,
      snapshotEntries: config.snapshotEntries ?? raft.snapshotEntries.default,
      snapshotTrailingEntries: config.snapshotTrailingEntries ?? raft.snapshotTrailingEntries.default,
    },
    execution: {
      mode: config.execution?.mode ?? execution.mode.default,
      batchers: config.execution?.batchers ?? execution.batchers.default,
      batchBytesMax: config.execution?.batchBytesMax ?? execution.batchBytesMax.default,
    },
    events: {
      disabled: config.events?.disabled ?? events.disabled.default,
      max: config.events?.max ?? events.max.default,
      hardMax: config.events?.hardMax ?? events.hardMax.default,
    },
    lifecycle: {
      tickMs: config.lifecycle?.tickMs ?? lifecycle.tickMs.default,
      pageKeys: config.lifecycle?.pageKeys ?? lifecycle.pageKeys.default,
      passIntervalMs: config.lifecycle?.passIntervalMs ?? lifecycle.passIntervalMs.default,
    },
    watch: {
      progressMs: config.watch?.progressMs ?? watch.progressMs.default,
      bufferBytesMax: config.watch?.bufferBytesMax ?? watch.bufferBytesMax.default,
      watchersMax: config.watch?.watchersMax ?? watch.watchersMax.default,
    },
    queue: {
      segmentBytes: config.queue?.segmentBytes ?? queue.segmentBytes.default,
      truncationBytes: config.queue?.truncationBytes ?? queue.truncationBytes.default,
      outstandingBytesMax: config.queue?.outstandingBytesMax ?? queue.outstandingBytesMax.default,
    },
    kv: {
      keyBytesMax: config.kv?.keyBytesMax ?? kv.keyBytesMax.default,
      longKeyGroupMax: config.kv?.longKeyGroupMax ?? kv.longKeyGroupMax.default,
      valueBytesMax: config.kv?.valueBytesMax ?? kv.valueBytesMax.default,
      txnOpsMax: config.kv?.txnOpsMax ?? kv.txnOpsMax.default,
      deleteKeysMax: config.kv?.deleteKeysMax ?? kv.deleteKeysMax.default,
    },
    session: {
      ttlMaxMs: config.session?.ttlMaxMs ?? session.ttlMaxMs.default,
      expiryCheckMs: config.session?.expiryCheckMs ?? session.expiryCheckMs.default,
      checkpointMs: config.session?.checkpointMs ?? session.checkpointMs.default,
      sessionsMax: config.session?.sessionsMax ?? session.sessionsMax.default,
      ephemeralKeysMax: config.session?.ephemeralKeysMax ?? session.ephemeralKeysMax.default,
    },
    core: { mode: config.core?.mode ?? core.mode.default },
    requestBytesMax: config.requestBytesMax ?? SETTINGS.requestBytesMax.default,
    noSync: config.noSync ?? SETTINGS.noSync.default,
  };
}

const CLIENT_ID_BYTES_MAX = 128;

/** How long `leader transfer` waits for the new leader: the core gives up after an election timeout. */
export const LEADER_TRANSFER_WAIT_MS = 5_000;
/** A removed member's link is kept this long, so the message telling it of its removal goes out. */
export const REMOVED_PEER_LINGER_MS = 2_000;
/** A learner is promoted only once the leader replicates to it and it is at most this far behind. */
export const LEARNER_PROMOTE_LAG_ENTRIES_MAX = 64;
/**
 * The event-loop monitor's sampling interval (`status.eventLoop`): a stall is seen to within
 * this much. Fine enough for the 100 ms stall target, and only 100 timer firings a second.
 */
export const EVENT_LOOP_RESOLUTION_MS = 10;

function splitAddress(address: string): { host: string; port: number } {
  const at = address.lastIndexOf(":");
  return { host: address.slice(0, at).replace(/^\[|\]$/g, ""), port: Number(address.slice(at + 1)) };
}

/** The queues' log lines through the node's logger (which names the node already). */
function queueLog(logger: TransportLogger): QueueLog {
  return {
    info: (message, fields) => logger.info({ ...fields }, message),
    warn: (message, fields) => logger.warn({ ...fields }, message),
    error: (message, fields) => logger.error({ ...fields }, message),
  };
}

/** Asks a member for the membership; this node must already be in it (added by `member add`). */
async function askToJoin(config: NodeConfig): Promise<NonNullable<ClusterIdentity["joinedWith"]>> {
  const { RpcClient } = await import("../client/rpc-client.js");
  const at = splitAddress(checkAddress("--join", config.join));
  const client = new RpcClient({ endpoints: [at], clusterId: config.clusterId, timeoutMs: 10_000 });
  try {
    const reply = (await client.call("memberList", { stale: true })) as {
      members: { id: number; role: string; peer: string | null; client: string | null }[];
    };
    const me = reply.members.find((m) => m.id === config.id);
    if (!me) {
      throw new MetaraftError(
        "MR_ERR_CLUSTER_MISMATCH",
        `node ${config.id} is not a member of the cluster at ${config.join} (members ${reply.members.map((m) => m.id).join(",")}): ` +
          `add it first with 'metaraft member add ${config.id} --peer HOST:PORT --client HOST:PORT'`,
      );
    }
    return reply.members
      .filter((m) => m.peer !== null && m.client !== null)
      .map((m) => ({ id: m.id, peer: m.peer!, client: m.client! }));
  } finally {
    client.close();
  }
}

function nodeIdOf(raw: Record<string, unknown>): NodeId {
  const node = raw.node;
  if (!Number.isSafeInteger(node) || (node as number) < 1) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "node must be an integer >= 1");
  }
  return node as NodeId;
}

function leaderOnly(node: MetaraftNode): void {
  if (!node.host.isLeader) {
    throw new MetaraftError("MR_ERR_NOT_LEADER", undefined, { details: { leader: node.host.leader } });
  }
}

async function change(node: MetaraftNode, change: ConfChange): Promise<Record<string, unknown>> {
  leaderOnly(node);
  const members = await node.host.proposeConfChange(change);
  return { members };
}

/** The membership verbs; each runs on the leader (a follower answers NOT_LEADER, and the client moves on). */
const MEMBER_OPS: Record<
  string,
  (
    node: MetaraftNode,
    raw: Record<string, unknown>,
  ) => Promise<Record<string, unknown>> | Record<string, unknown>
> = {
  listenerStatus: async (node) => {
    leaderOnly(node);
    return { from: node.config.id, ...(await node.listeners.rows()) };
  },
  listenerReport: (node, raw) => node.listeners.report(raw),
  serviceList: (node, raw) => {
    if (raw.stale !== true) leaderOnly(node);
    return { from: node.config.id, ...node.services.list() };
  },
  metrics: async (node) => ({
    text:
      (await node.listeners.metricsText()) +
      (await node.queues.metrics.metrics()) +
      (await node.sessions.metrics.metrics()),
  }),
  sessionKeepAlive: (node, raw) => node.sessions.keepAlive(raw),
  sessionStatus: (node, raw) => {
    leaderOnly(node);
    return node.sessions.status(raw);
  },
  queueStatus: async (node) => {
    leaderOnly(node);
    return { from: node.config.id, queues: await node.queues.statuses() };
  },
  memberList: (node, raw) => {
    if (raw.stale !== true) leaderOnly(node);
    return node.memberList();
  },
  memberAdd: (node, raw) => {
    const id = nodeIdOf(raw);
    const record = { id, peer: checkAddress("peer", raw.peer), client: checkAddress("client", raw.client) };
    if (node.host.confState.voters.includes(id) || node.host.confState.learners.includes(id)) {
      throw new MetaraftError("MR_ERR_CONF_CHANGE_REJECTED", `node ${id} is already a member`);
    }
    return change(node, { kind: "addLearner", node: id, context: encodeMemberContext(record) });
  },
  memberPromote: (node, raw) => {
    const id = nodeIdOf(raw);
    if (!node.host.confState.learners.includes(id)) {
      throw new MetaraftError("MR_ERR_CONF_CHANGE_REJECTED", `node ${id} is not a learner`);
    }
    leaderOnly(node);
    const raft = node.host.raft;
    const progress = raft.progress.get(id);
    const last = raft.log.lastIndex();
    const lag = last - (progress?.match ?? 0);
    if (progress?.state !== "replicate" || lag > LEARNER_PROMOTE_LAG_ENTRIES_MAX) {
      throw new MetaraftError(
        "MR_ERR_CONF_CHANGE_REJECTED",
        `learner ${id} has not caught up: it holds the log to index ${progress?.match ?? 0} of ${last} ` +
          `(${lag} behind, at most ${LEARNER_PROMOTE_LAG_ENTRIES_MAX} allowed${progress && progress.state !== "replicate" ? `, and it is still being ${progress.state === "snapshot" ? "sent a copy of the state" : "probed"}` : ""}); try again once it has`,
      );
    }
    return change(node, { kind: "addVoter", node: id });
  },
  memberRemove: (node, raw) => change(node, { kind: "removeNode", node: nodeIdOf(raw) }),
  leaderTransfer: async (node, raw) => {
    const id = nodeIdOf(raw);
    leaderOnly(node);
    if (!node.host.confState.voters.includes(id)) {
      throw new MetaraftError("MR_ERR_CONF_CHANGE_REJECTED", `node ${id} is not a voter`);
    }
    if (id === node.config.id) return { leader: id };
    node.host.transferLeader(id);
    await new Promise<void>((resolve, reject) => {
      let settled = false;
      const settle = (error?: MetaraftError) => {
        if (settled) return;
        settled = true;
        timer.cancel();
        unsubscribe?.();
        if (error) reject(error);
        else resolve();
      };
      const timer = node.runtime.after(LEADER_TRANSFER_WAIT_MS, () =>
        settle(
          new MetaraftError(
            "MR_ERR_TIMEOUT",
            `leadership did not move to node ${id} in ${LEADER_TRANSFER_WAIT_MS} ms`,
          ),
        ),
      );
      // Told at once if node `id` already leads; `unsubscribe` is then still unset.
      let unsubscribe: (() => void) | undefined;
      unsubscribe = node.host.leadership.subscribe({
        leaderChanged: (_term, leader) => {
          if (leader === id) settle();
        },
      });
      if (settled) unsubscribe();
    });
    return { leader: id };
  },
};

/**
 * A metaraft node: Raft over LMDB and TCP, the namespace executed once on the leader and
 * applied everywhere, and the client port. `start` returns once it serves.
 */
export class MetaraftNode {
  readonly config: NodeConfig;
  readonly runtime: Runtime;
  /** The settings it runs with: the config's, the rest defaulted. */
  readonly settings: NodeSettings;
  readonly env: StorageEnvironment;
  readonly store: StateStore;
  readonly host: RaftHost<ApplyResult>;
  readonly pipeline: WritePipeline;
  readonly core: Core;
  readonly #transport: PeerTransport;
  readonly #rpc: RpcServer;
  readonly #log: LmdbRaftLog;
  readonly #logEnv: StorageEnvironment;
  /** The cluster this node's data belongs to, recorded once at bootstrap. */
  readonly identity: ClusterIdentity;
  /** What the start found that the operator must be told (a forced new cluster, old data). */
  readonly warnings: readonly string[];
  /**
   * The membership the log held at start (its snapshot and every committed change): Raft's own
   * view lags until those entries are applied, which on a first start is after the banner.
   */
  readonly startMembers: ConfState;
  readonly #eventLoop = new EventLoopMonitor(EVENT_LOOP_RESOLUTION_MS);
  /** The listener plugins this node runs in worker threads while it leads, and what `listeners ls` shows. */
  readonly listeners: NodeListeners;
  /** Sessions: on the ready leader their heartbeats and expiry; elsewhere heartbeats forwarded to it. */
  readonly sessions: NodeSessions;
  /** The services this node runs while it is the ready leader (the lifecycle service). */
  readonly services: NodeServices;
  /** The watches this node serves (any member serves them, from what it has applied). */
  readonly watches: WatchHub;
  /** The durable queues: their consumers' tails run while this node is the ready leader. */
  readonly queues: QueueManager;

  private constructor(
    config: NodeConfig,
    self: NodeAddress,
    logEnv: StorageEnvironment,
    stateEnv: StorageEnvironment,
    log: LmdbRaftLog,
    store: StateStore,
    outcome: IdentityOutcome,
  ) {
    this.config = config;
    this.runtime = config.runtime ?? systemRuntime;
    const settings = nodeSettings(config);
    this.settings = settings;
    this.identity = outcome.identity;
    this.warnings = outcome.warnings;
    this.startMembers = outcome.members;
    this.core = createCore({ mode: settings.core.mode });
    this.#logEnv = logEnv;
    this.env = stateEnv;
    this.#log = log;
    this.store = store;
    // Membership comes from the log; the flags only say where the members are.
    const known = [...outcome.members.voters, ...outcome.members.learners];
    // A node that joined knows no membership until the leader's copy arrives: accept every member.
    const members = new Set(known.length > 0 ? known : config.cluster.map((n) => n.id));
    this.#transport = new PeerTransport({
      runtime: this.runtime,
      nodeId: config.id,
      clusterId: config.clusterId,
      secret: config.secret,
      listen: { host: self.host, port: self.raftPort },
      clientAddress: `${self.host}:${self.clientPort}`,
      ...(outcome.identity.bootstrapVoters.length > 0
        ? { bootstrap: bootstrapFingerprint(outcome.identity.bootstrapVoters) }
        : {}),
      peers: new Map(
        config.cluster
          .filter((n) => n.id !== config.id && members.has(n.id))
          .map((n) => [n.id, { host: n.host, port: n.raftPort }]),
      ),
      core: this.core.sync,
      ...(config.logger ? { logger: config.logger } : {}),
    });
    // Members the flags do not name (added online) are found in the replicated member records.
    const named = new Set(config.cluster.map((n) => n.id));
    for (const record of readMembers(this.store)) {
      if (record.id !== config.id && members.has(record.id) && !named.has(record.id)) {
        this.#transport.addPeer(record.id, splitAddress(record.peer));
      }
    }
    const replica = assembleReplica({
      id: config.id,
      storage: this.#log,
      store: this.store,
      transport: this.#transport,
      runtime: this.runtime,
      core: this.core.sync,
      raft: settings.raft,
      execution: settings.execution,
      events: settings.events,
      kv: settings.kv,
      session: settings.session,
      onConfChange: (change, members) => this.#onConfChange(change, members),
      ...(config.onFatal ? { onFatal: config.onFatal } : {}),
      ...(config.clock ? { clock: config.clock } : {}),
    });
    this.host = replica.host;
    this.pipeline = replica.pipeline;
    this.listeners = new NodeListeners({
      nodeId: config.id,
      stateDir: stateEnv.path,
      baseDir: config.baseDir ?? process.cwd(),
      coreMode: settings.core.mode,
      store,
      pipeline: this.pipeline,
      leadership: this.host.leadership,
      runtime: this.runtime,
      declared: config.listeners ?? [],
      ...(config.logger ? { logger: config.logger } : {}),
    });
    replica.stateMachine.onEventsApplied = (_record, lastTxid) => this.listeners.appended(lastTxid);
    this.queues = new QueueManager({
      store,
      core: this.core.sync,
      leadership: this.host.leadership,
      runtime: this.runtime,
      pipeline: this.pipeline,
      settings: settings.queue,
      baseDir: config.baseDir ?? process.cwd(),
      ...(config.logger ? { log: queueLog(config.logger) } : {}),
    });
    this.services = new NodeServices({
      nodeId: config.id,
      store,
      pipeline: this.pipeline,
      leadership: this.host.leadership,
      runtime: this.runtime,
      // The expired keys go through a durable queue, whose handler deletes each one that still
      // holds the object it was found with: a failover loses none and deletes none twice.
      expiry: (submit) => lifecycleQueue(this.queues, store, submit),
      lifecycle: settings.lifecycle,
    });
    this.sessions = new NodeSessions({
      nodeId: config.id,
      clusterId: config.clusterId,
      store,
      pipeline: this.pipeline,
      leadership: this.host.leadership,
      runtime: this.runtime,
      settings: settings.session,
      // The longest election timeout (randomised up to twice electionTicks): a client finds
      // the new leader within it.
      graceMs: 2 * settings.raft.electionTicks * settings.raft.tickMs,
      leaderClient: () => {
        const leader = this.host.leader;
        return leader > 0 ? this.#addressOf(leader)?.client : undefined;
      },
    });
    this.watches = new WatchHub({
      store: this.store,
      core: this.core.sync,
      runtime: this.runtime,
      nodeId: config.id,
      ...settings.watch,
    });
    // Chained, so that whatever else wakes on applied events keeps its hook.
    const applied = replica.stateMachine.onEventsApplied;
    replica.stateMachine.onEventsApplied = (record, lastTxid) => {
      applied(record, lastTxid);
      this.watches.onEventsApplied(record, lastTxid);
    };
    this.#rpc = new RpcServer({
      host: self.host,
      port: self.clientPort,
      clusterId: config.clusterId,
      hello: () => ({ nodeId: config.id, leader: this.host.leader, members: this.#memberAddresses() }),
      frameBytesMax: settings.requestBytesMax,
      handler: (request, connection) => this.#handle(request, connection),
      runtime: this.runtime,
    });
  }

  static async start(config: NodeConfig): Promise<MetaraftNode> {
    const self = config.cluster.find((n) => n.id === config.id);
    if (!self) throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `node ${config.id} is not in the cluster`);
    // The log and the state machine's tables live in two environments, so that neither's
    // commits queue behind the other's fsync. Only the log's commits must be durable before the
    // node answers: the tables hold applied entries only, so after a crash the node re-applies
    // from the log whatever their last commits lost (or restores the latest snapshot).
    const sync = nodeSettings(config).noSync ? { noSync: true } : {};
    const logEnv = openEnvironment(join(config.dataDir, "raft"), sync);
    let stateEnv: StorageEnvironment | undefined;
    let log: LmdbRaftLog | undefined;
    let node: MetaraftNode;
    try {
      stateEnv = openEnvironment(join(config.dataDir, "state"), { ...sync, overlappingSync: true });
      log = new LmdbRaftLog(logEnv);
      const store = StateStore.open(stateEnv);
      const joinedWith = config.join && log.blank ? await askToJoin(config) : undefined;
      // Before anything else reads the data: whose is it, and do the flags agree with it?
      const outcome = await establishIdentity(log, {
        ...(joinedWith ? { joinedWith } : {}),
        id: config.id,
        clusterId: config.clusterId,
        named: config.cluster.map((n) => n.id),
        dataDir: config.dataDir,
        stateApplied: store.appliedIndex,
        recorded: readMembers(store).map((m) => m.id),
        ...(config.forceNewCluster ? { forceNewCluster: true } : {}),
      });
      for (const warning of outcome.warnings) config.logger?.warn({ node: config.id }, warning);
      // Members the flags do not name: the addresses the cluster gave when this node joined.
      const cluster = [...config.cluster];
      for (const m of outcome.identity.joinedWith ?? []) {
        if (cluster.some((n) => n.id === m.id)) continue;
        const peer = splitAddress(m.peer);
        cluster.push({
          id: m.id,
          host: peer.host,
          raftPort: peer.port,
          clientPort: splitAddress(m.client).port,
        });
      }
      node = new MetaraftNode({ ...config, cluster }, self, logEnv, stateEnv, log, store, outcome);
    } catch (error) {
      // A node that cannot start (a corrupt log, a state behind it, another cluster's data)
      // leaves nothing open.
      await log?.close().catch(() => undefined);
      await stateEnv?.close();
      await logEnv.close();
      throw error;
    }
    await node.queues.startDeclared(config.queues ?? []);
    await node.#transport.start();
    node.host.start();
    const client = await node.#rpc.listen();
    node.#writeNodeInfo(client);
    node.listeners.start();
    node.services.start();
    return node;
  }

  /** Every member's client and peer address, so one reachable endpoint finds all the others. */
  /** Every member's addresses, from the replicated member records and the flags. */
  #memberAddresses(): { id: NodeId; client: string; peer: string }[] {
    const members = this.host.confState;
    const ids = [...members.voters, ...members.learners].sort((a, b) => a - b);
    return ids.flatMap((id) => {
      const address = this.#addressOf(id);
      return address ? [{ id, client: address.client, peer: address.peer }] : [];
    });
  }

  async #handle(rpc: RpcRequest, connection: RpcConnection): Promise<Record<string, unknown>> {
    try {
      return await this.#dispatch(rpc, connection);
    } catch (error) {
      // A client may not have been given the leader's endpoint: name its client address.
      if (error instanceof MetaraftError && error.code === "MR_ERR_NOT_LEADER") {
        const leader = error.details?.leader;
        const member = typeof leader === "number" && leader > 0 ? this.#addressOf(leader) : undefined;
        if (member && error.details?.leaderClient === undefined) {
          const enriched = new MetaraftError("MR_ERR_NOT_LEADER", undefined, {
            details: { ...error.details, leaderClient: member.client },
            cause: error,
          });
          enriched.message = error.message;
          throw enriched;
        }
      }
      throw error;
    }
  }

  async #dispatch(rpc: RpcRequest, connection: RpcConnection): Promise<Record<string, unknown>> {
    const { id: _id, ...raw } = rpc;
    if (raw.op === "status") return this.status({ eventLoopReset: raw.eventLoopReset === true });
    // Watches are served by every member: each streams what it has applied, resumed by txid.
    if (raw.op === "watch") return { ...this.watches.open(connection, raw) };
    if (raw.op === "cancelWatch") return { ...this.watches.cancel(connection, raw) };
    const admin = MEMBER_OPS[raw.op as keyof typeof MEMBER_OPS];
    if (admin) return admin(this, raw);
    if (this.pipeline.isRead(raw.op)) return this.pipeline.read(raw as Request, raw.stale === true);
    const { clientId, callId } = raw;
    if (typeof clientId !== "string" || clientId.length === 0 || clientId.length > CLIENT_ID_BYTES_MAX) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        "a write needs a clientId (a non-empty string of at most 128 characters)",
      );
    }
    if (!Number.isSafeInteger(callId) || (callId as number) < 0) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "a write needs a callId (a non-negative integer)");
    }
    if (raw.op === "listenerAdd" || raw.op === "listenerUpdate") await this.listeners.precheck(raw);
    if (SESSION_INTERNAL_OPS.has(raw.op)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `${raw.op} is the leader's own request, not a client's`,
      );
    }
    if (QUEUE_INTERNAL_OPS.has(raw.op)) {
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `${raw.op} is a queue tail's own request, not a client's`,
      );
    }
    const reply = this.pipeline.submit(clientId, callId as number, raw as Request);
    this.queues.observe(raw, reply);
    this.sessions.observe(raw, reply);
    return reply;
  }

  /** With `eventLoopReset`, `eventLoop` is the window that ends here and a new one starts. */
  status(options: { eventLoopReset?: boolean } = {}): Record<string, unknown> {
    return {
      ...this.host.status(),
      eventLoop: this.#eventLoop.read(options.eventLoopReset === true),
      lastTxid: this.store.lastTxid,
      ledger: readSummary(this.store),
      watches: this.watches.stats(),
      sessions: { tracked: this.sessions.tracker.size, ...this.sessions.tracker.stats },
      execution: { mode: this.pipeline.mode, ...this.pipeline.stats },
      raftStats: this.host.stats,
      transport: this.#transport
        .stats()
        .peers.map(({ nodeId, sent, sentBytes, writes, received, dropped }) => ({
          nodeId,
          sent,
          sentBytes,
          writes,
          received,
          dropped,
        })),
    };
  }

  /** A membership change applied here: reach a new member, forget a removed one. */
  #onConfChange(change: ConfChange, members: ConfState): void {
    const log = this.config.logger;
    if (change.kind === "removeNode") {
      if (change.node === this.config.id) {
        log?.warn(
          { node: this.config.id },
          "this node was removed from the cluster: it no longer takes part (its data is kept; start it again only with --force-new-cluster or fresh data)",
        );
      } else {
        // Not at once: the leader's last heartbeat tells the removed member the commit of its
        // removal, and it must still reach it.
        const gone = change.node;
        this.runtime
          .after(REMOVED_PEER_LINGER_MS, () => {
            const now = this.host.confState;
            if (!now.voters.includes(gone) && !now.learners.includes(gone)) this.#transport.removePeer(gone);
          })
          .unref();
      }
    } else if (change.node !== this.config.id) {
      const address = this.#addressOf(change.node);
      if (address) this.#transport.addPeer(change.node, splitAddress(address.peer));
    }
    log?.info(
      { node: this.config.id, change: { kind: change.kind, node: change.node }, members },
      "membership changed",
    );
  }

  /** A member's addresses: its replicated record, else the flags. */
  #addressOf(id: NodeId): MemberRecord | undefined {
    const record = readMembers(this.store).find((m) => m.id === id);
    if (record) return record;
    const flagged = this.config.cluster.find((m) => m.id === id);
    return flagged
      ? { id, peer: `${flagged.host}:${flagged.raftPort}`, client: `${flagged.host}:${flagged.clientPort}` }
      : undefined;
  }

  /** `member ls`: every member with its addresses, role, and on the leader its match index, lag and reachability. */
  memberList(): Record<string, unknown> {
    const raft = this.host.raft;
    const members = this.host.confState;
    const leading = raft.role === "leader";
    const last = raft.log.lastIndex();
    const rows = [
      ...members.voters.map((id) => [id, "voter"] as const),
      ...members.learners.map((id) => [id, "learner"] as const),
    ]
      .sort((a, b) => a[0] - b[0])
      .map(([id, role]) => {
        const address = this.#addressOf(id);
        const progress = leading ? raft.progress.get(id) : undefined;
        const self = id === this.config.id;
        return {
          id,
          role,
          peer: address?.peer ?? null,
          client: address?.client ?? null,
          ...(progress ? { match: self ? last : progress.match, lag: self ? 0 : last - progress.match } : {}),
          ...(leading ? { reachable: self || progress?.recentActive === true } : {}),
        };
      });
    return { leader: raft.leader, term: raft.term, from: this.config.id, members: rows };
  }

  #writeNodeInfo(client: { host: string; port: number }): void {
    const host = client.host === "0.0.0.0" || client.host === "::" ? "127.0.0.1" : client.host;
    const file = join(this.config.dataDir, NODE_INFO_FILE);
    const info = { id: this.config.id, clusterId: this.config.clusterId, client: `${host}:${client.port}` };
    // Renamed into place, so a runner never reads half a file.
    writeFileSync(`${file}.tmp`, `${JSON.stringify(info)}\n`);
    renameSync(`${file}.tmp`, file);
  }

  async close(): Promise<void> {
    // Services first: the lifecycle service adds to a queue.
    await this.services.close();
    await this.queues.close();
    await this.listeners.close();
    this.watches.close();
    this.sessions.close();
    await this.#rpc.close();
    await this.host.stop();
    await this.#transport.close();
    await this.store.flushed().catch(() => undefined);
    await this.#log.close();
    await this.#logEnv.close();
    await this.env.close();
    await this.core.close();
    this.#eventLoop.close();
  }
}
