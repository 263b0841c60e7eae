import { MetaraftError } from "../errors.js";
import {
  type ConfChange,
  type ConfState,
  decodeConfChange,
  type Entry,
  encodeConfChange,
  type NodeId,
} from "../raft/index.js";
import type { ClusterIdentity, LmdbRaftLog } from "../storage/index.js";

/** Entry data read per step while scanning the log for membership changes at start. */
const SCAN_BYTES_MAX = 4 * 1024 * 1024;

export interface IdentityRequest {
  readonly id: NodeId;
  readonly clusterId: string;
  /** The ids that `--cluster` names (addresses only, once the cluster is bootstrapped). */
  readonly named: readonly NodeId[];
  readonly dataDir: string;
  /** `--force-new-cluster`: rebuild a one-node cluster from this node's data. */
  readonly forceNewCluster?: boolean;
  /** `--join`: the members as the cluster reported them; a blank log then starts with no membership. */
  readonly joinedWith?: ClusterIdentity["joinedWith"];
  /** The state machine's applied index: a state ahead of a blank log is not this log's. */
  readonly stateApplied: number;
  /** Members whose addresses the replicated member records hold (added online). */
  readonly recorded?: readonly NodeId[];
  readonly now?: () => Date;
}

export interface IdentityOutcome {
  readonly identity: ClusterIdentity;
  /** The membership the log holds now (its snapshot and every committed change after it). */
  readonly members: ConfState;
  /** What the operator must be told (printed at start and logged). */
  readonly warnings: readonly string[];
  readonly bootstrapped: boolean;
}

const list = (ids: readonly NodeId[]): string =>
  ids.length === 0 ? "none" : [...ids].sort((a, b) => a - b).join(",");

function describe(members: ConfState): string {
  const learners = members.learners.length > 0 ? `, learners ${list(members.learners)}` : "";
  return `voters ${list(members.voters)}${learners}`;
}

function mismatch(detail: string): MetaraftError {
  return new MetaraftError("MR_ERR_CLUSTER_MISMATCH", detail);
}

/** Applies one change to a membership, as Raft's applyConfChange does. */
export function applyChange(members: ConfState, change: ConfChange): ConfState {
  const voters = new Set(members.voters);
  const learners = new Set(members.learners);
  switch (change.kind) {
    case "addVoter":
      learners.delete(change.node);
      voters.add(change.node);
      break;
    case "addLearner":
      voters.delete(change.node);
      learners.add(change.node);
      break;
    case "removeNode":
      voters.delete(change.node);
      learners.delete(change.node);
      break;
  }
  const sorted = (s: Set<NodeId>) => [...s].sort((a, b) => a - b);
  return { voters: sorted(voters), learners: sorted(learners) };
}

/** The membership changes in the log in (from, to], in order. */
export function confChangesIn(
  log: LmdbRaftLog,
  from: number,
  to: number,
): { index: number; change: ConfChange }[] {
  const out: { index: number; change: ConfChange }[] = [];
  let next = Math.max(from + 1, log.firstIndex());
  while (next <= to) {
    const entries: Entry[] = log.entries(next, to + 1, SCAN_BYTES_MAX);
    for (const entry of entries) {
      if (entry.type === "confChange") out.push({ index: entry.index, change: decodeConfChange(entry.data) });
    }
    next = entries[entries.length - 1]!.index + 1;
  }
  return out;
}

/** The membership as of the log's commit index: its snapshot's, then every committed change. */
export function committedMembership(log: LmdbRaftLog): ConfState {
  const snapshot = log.snapshot();
  let members = snapshot.meta.confState;
  const commit = log.initialState().hardState.commit;
  for (const { change } of confChangesIn(log, snapshot.meta.index, commit))
    members = applyChange(members, change);
  return members;
}

/**
 * Establishes which cluster this data belongs to, before anything else opens it. A blank data
 * directory is bootstrapped once: its identity and the voters named by `--cluster` are recorded
 * durably. Afterwards membership comes only from the log; a node whose flags contradict its
 * data refuses to start with MR_ERR_CLUSTER_MISMATCH and writes nothing. `--force-new-cluster`
 * is the one explicit way to rebuild a cluster from one node's data.
 */
export async function establishIdentity(
  log: LmdbRaftLog,
  request: IdentityRequest,
): Promise<IdentityOutcome> {
  const now = request.now ?? (() => new Date());
  const named = [...new Set(request.named)].sort((a, b) => a - b);
  const warnings: string[] = [];

  if (log.blank) {
    if (request.stateApplied > 0) {
      throw new MetaraftError(
        "MR_ERR_LOG_CORRUPT",
        `${request.dataDir}: the state is at index ${request.stateApplied}, but the Raft log is empty (was raft/ deleted?)`,
      );
    }
    if (request.forceNewCluster) {
      throw mismatch(
        `${request.dataDir} holds no data: --force-new-cluster rebuilds a cluster from existing data only`,
      );
    }
    if (request.joinedWith) {
      // A joining node learns its membership from the leader (a snapshot, then the log).
      const identity: ClusterIdentity = {
        version: 1,
        clusterId: request.clusterId,
        nodeId: request.id,
        bootstrapVoters: [],
        createdAt: now().toISOString(),
        joinedWith: request.joinedWith,
      };
      const members: ConfState = { voters: [], learners: [] };
      await log.bootstrap(identity, []);
      return { identity, members, warnings, bootstrapped: true };
    }
    if (!named.includes(request.id)) {
      throw mismatch(`node ${request.id} is not among the members --cluster names (${list(named)})`);
    }
    const identity: ClusterIdentity = {
      version: 1,
      clusterId: request.clusterId,
      nodeId: request.id,
      bootstrapVoters: named,
      createdAt: now().toISOString(),
    };
    const members: ConfState = { voters: named, learners: [] };
    // Ids only: every bootstrapping node writes the same entries, whatever addresses its flags give.
    const entries: Entry[] = named.map((node, i) => ({
      term: 1,
      index: i + 1,
      type: "confChange",
      data: encodeConfChange({ kind: "addVoter", node }),
    }));
    await log.bootstrap(identity, entries);
    return { identity, members, warnings, bootstrapped: true };
  }

  let identity = log.identity();
  let members = committedMembership(log);
  if (!identity) {
    // Data written before identities were recorded: its voters were the flags of every start.
    if (members.voters.length === 0 && members.learners.length === 0)
      members = { voters: named, learners: [] };
    identity = {
      version: 1,
      clusterId: request.clusterId,
      nodeId: request.id,
      bootstrapVoters: members.voters,
      createdAt: now().toISOString(),
    };
    warnings.push(
      `${request.dataDir} has no recorded cluster identity (written by an older version): recording cluster ` +
        `${request.clusterId}, node ${request.id}, ${describe(members)}`,
    );
    if (!request.forceNewCluster) await log.recordIdentity(identity);
  }
  if (identity.clusterId !== request.clusterId) {
    throw mismatch(
      `${request.dataDir} belongs to cluster "${identity.clusterId}", but this node was started with --cluster-id "${request.clusterId}"`,
    );
  }
  if (identity.nodeId !== request.id) {
    throw mismatch(
      `${request.dataDir} was written by node ${identity.nodeId}, but this node was started as node ${request.id}`,
    );
  }

  if (request.forceNewCluster) return forceNewCluster(log, request, identity, members, warnings, now);

  const isMember = members.voters.includes(request.id) || members.learners.includes(request.id);
  // A node that joined an existing cluster knows no membership until the leader sends it.
  const joining = members.voters.length === 0 && members.learners.length === 0;
  if (!joining && !isMember) {
    throw mismatch(
      `node ${request.id} is not a member of cluster "${identity.clusterId}": its log says ${describe(members)} (was it removed?)`,
    );
  }
  const all = [...members.voters, ...members.learners].sort((a, b) => a - b);
  if (!joining) {
    // --cluster gives addresses only: it may leave out members whose addresses are replicated
    // (added online) or were learned at join, but it must not name a node the log does not
    // hold, and every member must be reachable at some address.
    const strangers = named.filter((id) => !all.includes(id));
    if (strangers.length > 0) {
      throw mismatch(
        `the log in ${request.dataDir} says the members are ${describe(members)}, but --cluster also names ${list(strangers)}: ` +
          "drop them from --cluster (add a member with `metaraft member add`), or start with --force-new-cluster to rebuild a one-node cluster from this data",
      );
    }
    const known = new Set([
      ...named,
      ...(request.recorded ?? []),
      ...(identity.joinedWith ?? []).map((m) => m.id),
    ]);
    const unaddressed = all.filter((id) => !known.has(id));
    if (unaddressed.length > 0) {
      throw mismatch(
        `the log in ${request.dataDir} says the members are ${describe(members)}, but --cluster names ${list(named)} and no address of ${list(unaddressed)} is known: ` +
          "give --cluster every member's address, or start with --force-new-cluster to rebuild a one-node cluster from this data",
      );
    }
  }
  return { identity, members, warnings, bootstrapped: false };
}

/**
 * etcd's --force-new-cluster: the other members are removed by membership changes appended to
 * this node's log, and the whole log is marked committed, so the node can elect itself alone.
 * Entries that the old cluster had not committed become committed here: that is the price of
 * rebuilding from one copy, and why the warning says so.
 */
async function forceNewCluster(
  log: LmdbRaftLog,
  request: IdentityRequest,
  identity: ClusterIdentity,
  members: ConfState,
  warnings: string[],
  now: () => Date,
): Promise<IdentityOutcome> {
  if (!members.voters.includes(request.id)) {
    throw mismatch(
      `--force-new-cluster: node ${request.id} is not a voter (${describe(members)}); only a voter's data can be rebuilt`,
    );
  }
  const { hardState } = log.initialState();
  const last = log.lastIndex();
  const term = Math.max(hardState.term, log.term(last));
  const others = [...members.voters, ...members.learners].filter((id) => id !== request.id);
  const entries: Entry[] = [];
  // Changes still uncommitted in the log commit with everything else; the removals come after them.
  let projected = members;
  for (const { change } of confChangesIn(log, hardState.commit, last))
    projected = applyChange(projected, change);
  const toRemove = [...projected.voters, ...projected.learners].filter((id) => id !== request.id);
  for (const node of toRemove) {
    entries.push({
      term,
      index: last + entries.length + 1,
      type: "confChange",
      data: encodeConfChange({ kind: "removeNode", node }),
    });
  }
  if (!projected.voters.includes(request.id)) {
    entries.push({
      term,
      index: last + entries.length + 1,
      type: "confChange",
      data: encodeConfChange({ kind: "addVoter", node: request.id }),
    });
  }
  const commit = last + entries.length;
  await log.save({ hardState: { term, vote: hardState.vote, commit }, entries, snapshot: null });
  const forced: ClusterIdentity = {
    ...identity,
    forcedNewCluster: { at: now().toISOString(), index: commit },
  };
  await log.recordIdentity(forced);
  warnings.push(
    `--force-new-cluster: cluster "${identity.clusterId}" is rebuilt from node ${request.id}'s data as a one-node cluster ` +
      `(it had ${describe(members)}; removed ${list(others)} at index ${commit}; entries up to ${last} are now committed, ` +
      `including any the old cluster never committed). Start the other nodes with empty data and add them back as members.`,
  );
  return { identity: forced, members: { voters: [request.id], learners: [] }, warnings, bootstrapped: false };
}
