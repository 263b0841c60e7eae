import { MetaraftError } from "../errors.js";
import type { NodeId } from "../raft/index.js";

/**
 * A node's cluster identity, written once when the node bootstraps an empty data directory (as
 * etcd writes its bootstrap configuration into the log): which cluster the data belongs to,
 * which node wrote it, and the voters it started with. From then on membership comes only
 * from the log and snapshots; flags give peer addresses only.
 */
export interface ClusterIdentity {
  readonly version: 1;
  readonly clusterId: string;
  readonly nodeId: NodeId;
  /** The voters of the bootstrap (empty for a node that joined an existing cluster). */
  readonly bootstrapVoters: readonly NodeId[];
  /** ISO 8601 time of the bootstrap. */
  readonly createdAt: string;
  /**
   * For a node that joined (`--join`): the members' addresses as the cluster reported them then.
   * Members added later are in the replicated member records; these cover the ones before.
   */
  readonly joinedWith?: readonly { readonly id: NodeId; readonly peer: string; readonly client: string }[];
  /** Set when `--force-new-cluster` rebuilt the cluster from this node's data: when, and at which index. */
  readonly forcedNewCluster?: { readonly at: string; readonly index: number };
}

const IDENTITY_BYTES_MAX = 64 * 1024;

export function encodeIdentity(identity: ClusterIdentity): Buffer {
  return Buffer.from(JSON.stringify(identity), "utf8");
}

export function decodeIdentity(value: Uint8Array): ClusterIdentity {
  const bad = (why: string) => new MetaraftError("MR_ERR_LOG_CORRUPT", `raftState identity: ${why}`);
  if (value.length > IDENTITY_BYTES_MAX) throw bad(`${value.length} bytes`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(value).toString("utf8"));
  } catch {
    throw bad("not JSON");
  }
  const r = parsed as Partial<ClusterIdentity>;
  if (typeof r !== "object" || r === null || r.version !== 1) throw bad("unknown version");
  if (typeof r.clusterId !== "string" || r.clusterId.length === 0) throw bad("no cluster id");
  if (!Number.isSafeInteger(r.nodeId) || (r.nodeId as number) < 1) throw bad("no node id");
  if (
    !Array.isArray(r.bootstrapVoters) ||
    !r.bootstrapVoters.every((v) => Number.isSafeInteger(v) && v > 0)
  ) {
    throw bad("bad bootstrap voters");
  }
  if (typeof r.createdAt !== "string") throw bad("no creation time");
  return r as ClusterIdentity;
}
