import { KV_LIMITS_DEFAULT, kvSpecs, SESSION_LIMITS_DEFAULT, sessionSpecs } from "../coordination/index.js";
import type { CoreSync } from "../core/index.js";
import { ledgerSpecs } from "../execution/ledger-requests.js";
import { WritePipeline } from "../execution/pipeline.js";
import { type ApplyResult, NamespaceStateMachine } from "../execution/state-machine.js";
import type { StateStore } from "../execution/state-store.js";
import type { RequestSpec } from "../execution/types.js";
import { type HostTransport, RaftHost } from "../host/index.js";
import { namespaceSpecsByOp } from "../namespace/index.js";
import { queueSpecs } from "../queues/index.js";
import type { ConfChange, ConfState, NodeId, RaftLogStore } from "../raft/index.js";
import type { Runtime } from "../runtime.js";
import { LIFECYCLE_SERVICE, serviceSpecs, validateLifecycleConfig } from "../services/index.js";
import type { Settings } from "../settings.js";

/** The services this cluster knows, by name: their configurations are checked as they are set. */
const SERVICE_VALIDATORS = new Map([[LIFECYCLE_SERVICE, validateLifecycleConfig]]);

/** What a replica is built from: its storage, its transport and its clock are the caller's. */
export interface ReplicaParts {
  readonly id: NodeId;
  readonly storage: RaftLogStore;
  readonly store: StateStore;
  readonly transport: HostTransport;
  readonly runtime: Runtime;
  readonly core: CoreSync;
  readonly raft: Settings["raft"];
  readonly execution: Settings["execution"];
  /** The coordination keyspace's limits; the defaults unless given. */
  readonly kv?: Partial<Settings["kv"]>;
  /** Session limits; the defaults unless given. */
  readonly session?: Partial<Settings["session"]>;
  /** The ledger's settings; the defaults unless given. */
  readonly events?: Partial<Settings["events"]>;
  /** Voters of a new cluster whose storage holds no membership yet (the simulator's MemoryStorage). */
  readonly peers?: readonly NodeId[];
  readonly onConfChange?: (change: ConfChange, members: ConfState) => void;
  readonly onFatal?: (error: Error) => void;
  /** The gatekeeper's clock, if not the runtime's (tests of expiry). */
  readonly clock?: () => number;
}

export interface Replica {
  readonly host: RaftHost<ApplyResult>;
  readonly pipeline: WritePipeline;
  readonly stateMachine: NamespaceStateMachine;
}

/**
 * The namespace replica: the state machine over the store, the Raft host that drives it and the
 * write path on top. The node wires it to LMDB and TCP; the simulator wires the very same parts
 * to memory and a virtual network, so what the simulator checks is what the node runs.
 */
export function assembleReplica(parts: ReplicaParts): Replica {
  const sessionLimits = { ...SESSION_LIMITS_DEFAULT, ...parts.session };
  const specs: ReadonlyMap<string, RequestSpec> = new Map([
    ...namespaceSpecsByOp,
    ...ledgerSpecs(parts.core).map((spec) => [spec.op, spec] as const),
    ...serviceSpecs(SERVICE_VALIDATORS).map((spec) => [spec.op, spec] as const),
    ...queueSpecs(parts.core).map((spec) => [spec.op, spec] as const),
    ...kvSpecs({ ...KV_LIMITS_DEFAULT, ...parts.kv }, sessionLimits.ephemeralKeysMax).map(
      (spec) => [spec.op, spec] as const,
    ),
    ...sessionSpecs(sessionLimits).map((spec) => [spec.op, spec] as const),
  ]);
  const stateMachine = new NamespaceStateMachine(parts.store, specs, parts.core);
  const host = new RaftHost<ApplyResult>({
    runtime: parts.runtime,
    id: parts.id,
    storage: parts.storage,
    transport: parts.transport,
    stateMachine,
    tickMs: parts.raft.tickMs,
    raft: { electionTicks: parts.raft.electionTicks },
    snapshotEntries: parts.raft.snapshotEntries,
    snapshotTrailingEntries: parts.raft.snapshotTrailingEntries,
    ...(parts.peers ? { peers: parts.peers } : {}),
    ...(parts.onConfChange ? { onConfChange: parts.onConfChange } : {}),
    ...(parts.onFatal ? { onFatal: parts.onFatal } : {}),
  });
  const pipeline = new WritePipeline(host, parts.store, specs, parts.core, {
    runtime: parts.runtime,
    ...parts.execution,
    ...(parts.events ? { events: parts.events } : {}),
    ...(parts.clock ? { clock: parts.clock } : {}),
  });
  stateMachine.onBatchApplied = (lastTxid) => pipeline.onBatchApplied(lastTxid);
  return { host, pipeline, stateMachine };
}
