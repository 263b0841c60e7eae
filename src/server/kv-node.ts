import { MetaraftError } from "../errors.js";
import { RaftHost } from "../host/index.js";
import type { NodeId, RaftLogStore } from "../raft/index.js";
import { type NodeAddress, SETTINGS } from "../settings.js";
import { PeerTransport, type TransportLogger } from "../transport/index.js";
import { encodeKvCommand, KvStateMachine } from "./kv-state-machine.js";
import { type RpcRequest, RpcServer } from "./rpc-server.js";

export type { NodeAddress };

export interface KvNodeOptions {
  readonly id: NodeId;
  readonly cluster: readonly NodeAddress[];
  readonly clusterId: string;
  readonly secret: string;
  readonly storage: RaftLogStore;
  readonly tickMs?: number;
  readonly electionTicks?: number;
  readonly snapshotEntries?: number;
  /** Apply nothing: the Raft benchmark's no-op state machine. */
  readonly opaque?: boolean;
  readonly logger?: TransportLogger;
  readonly onFatal?: (error: Error) => void;
}

/** Parses `1@127.0.0.1:7001:8001,2@…` (id @ host : raft port : client port). */
export function parseCluster(spec: string): NodeAddress[] {
  return spec.split(",").map((part) => {
    const match = /^(\d+)@([^:]+):(\d+):(\d+)$/.exec(part.trim());
    if (!match)
      throw new MetaraftError(
        "MR_ERR_INVALID_ARGUMENT",
        `cluster member "${part}" is not id@host:raftPort:clientPort`,
      );
    return {
      id: Number(match[1]),
      host: match[2]!,
      raftPort: Number(match[3]),
      clientPort: Number(match[4]),
    };
  });
}

/**
 * A node of the minimal replicated key-value store: Raft over LMDB and TCP, with a client port
 * answering put, get (linearizable unless `stale`), propose (opaque bytes) and status.
 */
export class KvNode {
  readonly host: RaftHost<{ index: number }>;
  readonly stateMachine: KvStateMachine;
  readonly #transport: PeerTransport;
  readonly #rpc: RpcServer;
  readonly #options: KvNodeOptions;

  private constructor(options: KvNodeOptions, self: NodeAddress) {
    this.#options = options;
    const peers = new Map(
      options.cluster
        .filter((n) => n.id !== options.id)
        .map((n) => [n.id, { host: n.host, port: n.raftPort }]),
    );
    this.#transport = new PeerTransport({
      nodeId: options.id,
      clusterId: options.clusterId,
      secret: options.secret,
      listen: { host: self.host, port: self.raftPort },
      peers,
      ...(options.logger ? { logger: options.logger } : {}),
    });
    this.stateMachine = new KvStateMachine(options.opaque ?? false);
    this.host = new RaftHost({
      id: options.id,
      peers: options.cluster.map((n) => n.id),
      storage: options.storage,
      transport: this.#transport,
      stateMachine: this.stateMachine,
      tickMs: options.tickMs ?? SETTINGS.raft.tickMs.default,
      raft: { electionTicks: options.electionTicks ?? SETTINGS.raft.electionTicks.default },
      ...(options.snapshotEntries ? { snapshotEntries: options.snapshotEntries } : {}),
      ...(options.onFatal ? { onFatal: options.onFatal } : {}),
    });
    this.#rpc = new RpcServer({
      host: self.host,
      port: self.clientPort,
      clusterId: options.clusterId,
      hello: { nodeId: options.id },
      handler: (request) => this.#handle(request),
    });
  }

  static async start(options: KvNodeOptions): Promise<KvNode> {
    const self = options.cluster.find((n) => n.id === options.id);
    if (!self) throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `node ${options.id} is not in the cluster`);
    const node = new KvNode(options, self);
    await node.#transport.start();
    node.host.start();
    await node.#rpc.listen();
    return node;
  }

  async #handle(request: RpcRequest): Promise<Record<string, unknown>> {
    switch (request.op) {
      case "put": {
        const data = encodeKvCommand({
          op: "put",
          key: request.key as string,
          value: request.value as string,
        });
        return this.host.propose(data);
      }
      case "propose": {
        if (!(request.data instanceof Uint8Array)) {
          throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "propose needs binary data");
        }
        return this.host.propose(request.data);
      }
      case "get": {
        if (typeof request.key !== "string")
          throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "get needs a key");
        if (request.stale !== true) await this.host.readBarrier();
        return { value: this.stateMachine.get(request.key) ?? null, applied: this.host.appliedIndex };
      }
      case "status":
        return this.status();
      default:
        throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `unknown op "${String(request.op)}"`);
    }
  }

  status(): Record<string, unknown> {
    return { ...this.host.status(), stats: this.host.stats };
  }

  async close(): Promise<void> {
    await this.#rpc.close();
    await this.host.stop();
    await this.#transport.close();
    await this.#options.storage.close();
  }
}
