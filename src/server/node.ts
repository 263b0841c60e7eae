import { join } from "node:path";
import { type Core, type CoreMode, createCore } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { type ExecutionMode, PIPELINE_DEFAULTS, WritePipeline } from "../execution/pipeline.js";
import { type ApplyResult, NamespaceStateMachine } from "../execution/state-machine.js";
import { StateStore } from "../execution/state-store.js";
import type { Request, RequestSpec } from "../execution/types.js";
import { namespaceSpecsByOp } from "../namespace/index.js";
import type { NodeId } from "../raft/index.js";
import { LmdbRaftLog, openEnvironment, type StorageEnvironment } from "../storage/index.js";
import { PeerTransport, type TransportLogger } from "../transport/index.js";
import type { NodeAddress } from "./kv-node.js";
import { RaftHost } from "./raft-host.js";
import { type RpcRequest, RpcServer } from "./rpc-server.js";

/** Every setting of a node; `metaraft start` reads them from YAML and flags. */
export interface NodeConfig {
  readonly id: NodeId;
  readonly cluster: readonly NodeAddress[];
  readonly dataDir: string;
  readonly clusterId: string;
  readonly secret: string;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly snapshotEntries?: number;
  /** Entries kept in the log behind a snapshot, for followers slightly behind (tests lower it). */
  readonly snapshotTrailingEntries?: number;
  readonly execution?: {
    readonly mode?: ExecutionMode;
    readonly batchers?: number;
    readonly batchBytesMax?: number;
  };
  readonly core?: { readonly mode?: CoreMode };
  /** The largest request frame a client may send. */
  readonly requestBytesMax?: number;
  /** For tests and benchmarks only: commits are not fsynced. */
  readonly noSync?: boolean;
  readonly logger?: TransportLogger;
  readonly onFatal?: (error: Error) => void;
  /** Injected clock for the gatekeeper (tests); default Date.now. */
  readonly clock?: () => number;
}

export const NODE_DEFAULTS = {
  tickMs: 50,
  electionTicks: 10,
  snapshotEntries: 10_000,
  requestBytesMax: 4 * 1024 * 1024,
} as const;

const CLIENT_ID_BYTES_MAX = 128;

/**
 * A metaraft node: Raft over LMDB and TCP, the namespace executed once on the leader and
 * applied everywhere, and the client port. `start` returns once it serves.
 */
export class MetaraftNode {
  readonly config: NodeConfig;
  readonly env: StorageEnvironment;
  readonly store: StateStore;
  readonly host: RaftHost<ApplyResult>;
  readonly pipeline: WritePipeline;
  readonly core: Core;
  readonly #transport: PeerTransport;
  readonly #rpc: RpcServer;
  readonly #log: LmdbRaftLog;
  readonly #logEnv: StorageEnvironment;

  private constructor(
    config: NodeConfig,
    self: NodeAddress,
    logEnv: StorageEnvironment,
    stateEnv: StorageEnvironment,
  ) {
    this.config = config;
    this.core = createCore({ mode: config.core?.mode ?? "auto" });
    this.#logEnv = logEnv;
    this.env = stateEnv;
    this.#log = new LmdbRaftLog(this.#logEnv);
    this.store = new StateStore(this.env);
    const specs: ReadonlyMap<string, RequestSpec> = namespaceSpecsByOp;
    const stateMachine = new NamespaceStateMachine(this.store, specs, this.core.sync);
    this.#transport = new PeerTransport({
      nodeId: config.id,
      clusterId: config.clusterId,
      secret: config.secret,
      listen: { host: self.host, port: self.raftPort },
      peers: new Map(
        config.cluster
          .filter((n) => n.id !== config.id)
          .map((n) => [n.id, { host: n.host, port: n.raftPort }]),
      ),
      core: this.core.sync,
      ...(config.logger ? { logger: config.logger } : {}),
    });
    let pipeline: WritePipeline | undefined;
    this.host = new RaftHost<ApplyResult>({
      id: config.id,
      peers: config.cluster.map((n) => n.id),
      storage: this.#log,
      transport: this.#transport,
      stateMachine,
      tickMs: config.tickMs ?? NODE_DEFAULTS.tickMs,
      raft: { electionTicks: config.electionTicks ?? NODE_DEFAULTS.electionTicks },
      snapshotEntries: config.snapshotEntries ?? NODE_DEFAULTS.snapshotEntries,
      ...(config.snapshotTrailingEntries === undefined
        ? {}
        : { snapshotTrailingEntries: config.snapshotTrailingEntries }),
      onSoftState: (state) => pipeline?.onSoftState(state),
      ...(config.onFatal ? { onFatal: config.onFatal } : {}),
    });
    pipeline = new WritePipeline(this.host, this.store, specs, this.core.sync, {
      mode: config.execution?.mode ?? PIPELINE_DEFAULTS.mode,
      batchers: config.execution?.batchers ?? PIPELINE_DEFAULTS.batchers,
      batchBytesMax: config.execution?.batchBytesMax ?? PIPELINE_DEFAULTS.batchBytesMax,
      ...(config.clock ? { clock: config.clock } : {}),
    });
    this.pipeline = pipeline;
    stateMachine.onBatchApplied = (lastTxid) => pipeline.onBatchApplied(lastTxid);
    this.#rpc = new RpcServer({
      host: self.host,
      port: self.clientPort,
      clusterId: config.clusterId,
      hello: () => ({ nodeId: config.id, leader: this.host.leader, members: this.#memberAddresses() }),
      frameBytesMax: config.requestBytesMax ?? NODE_DEFAULTS.requestBytesMax,
      handler: (request) => this.#handle(request),
    });
  }

  static async start(config: NodeConfig): Promise<MetaraftNode> {
    const self = config.cluster.find((n) => n.id === config.id);
    if (!self) throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `node ${config.id} is not in the cluster`);
    // The log and the state machine's tables live in two environments, so that neither's
    // commits queue behind the other's fsync. Only the log's commits must be durable before the
    // node answers: the tables hold applied entries only, so after a crash the node re-applies
    // from the log whatever their last commits lost (or restores the latest snapshot).
    const sync = config.noSync ? { noSync: true } : {};
    const logEnv = openEnvironment(join(config.dataDir, "raft"), sync);
    let stateEnv: StorageEnvironment | undefined;
    let node: MetaraftNode;
    try {
      stateEnv = openEnvironment(join(config.dataDir, "state"), { ...sync, overlappingSync: true });
      node = new MetaraftNode(config, self, logEnv, stateEnv);
    } catch (error) {
      // A node that cannot start (a corrupt log, a state behind it) leaves nothing open.
      await stateEnv?.close();
      await logEnv.close();
      throw error;
    }
    await node.#transport.start();
    node.host.start();
    await node.#rpc.listen();
    return node;
  }

  /** Every member's client and peer address, so one reachable endpoint finds all the others. */
  #memberAddresses(): { id: NodeId; client: string; peer: string }[] {
    return this.config.cluster.map((n) => ({
      id: n.id,
      client: `${n.host}:${n.clientPort}`,
      peer: `${n.host}:${n.raftPort}`,
    }));
  }

  async #handle(rpc: RpcRequest): Promise<Record<string, unknown>> {
    try {
      return await this.#dispatch(rpc);
    } catch (error) {
      // A client may not have been given the leader's endpoint: name its client address.
      if (error instanceof MetaraftError && error.code === "MR_ERR_NOT_LEADER") {
        const leader = error.details?.leader;
        const member = this.config.cluster.find((n) => n.id === leader);
        if (member && error.details?.leaderClient === undefined) {
          const enriched = new MetaraftError("MR_ERR_NOT_LEADER", undefined, {
            details: { ...error.details, leaderClient: `${member.host}:${member.clientPort}` },
            cause: error,
          });
          enriched.message = error.message;
          throw enriched;
        }
      }
      throw error;
    }
  }

  async #dispatch(rpc: RpcRequest): Promise<Record<string, unknown>> {
    const { id: _id, ...raw } = rpc;
    if (raw.op === "status") return this.status();
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
    return this.pipeline.submit(clientId, callId as number, raw as Request);
  }

  status(): Record<string, unknown> {
    return {
      ...this.host.status(),
      lastTxid: this.store.lastTxid,
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

  async close(): Promise<void> {
    await this.#rpc.close();
    await this.host.stop();
    await this.#transport.close();
    await this.store.flushed().catch(() => undefined);
    await this.#log.close();
    await this.#logEnv.close();
    await this.env.close();
    await this.core.close();
  }
}
