import type { LeadershipState } from "../host/index.js";

/**
 * A service that only the leader runs (DESIGN.md, "Services"; Ozone's OM service framework,
 * HDDS-14356, after SCM's). The `ServiceManager` tells it of every leadership change and starts
 * it only on a leader whose term's no-op is applied, and stops it at once on `notLeader`.
 */
export interface Service {
  /** Unique in a node; also its key in the `serviceConfig` table if it is stateful. */
  readonly name: string;
  /** Every leadership change, before the manager starts or stops it. */
  notifyStatusChanged(status: LeadershipState): void;
  /** Whether it wants to run now (a stateful service: its replicated `shouldRun`). */
  shouldRun(): boolean;
  /** Starts its work; returns once started (work goes on in timers of the runtime). */
  start(): void | Promise<void>;
  /** Stops its work; resolves once nothing of it runs. */
  stop(): void | Promise<void>;
  /** What `metaraft service ls` shows of it beyond its state; optional. */
  report?(): ServiceReport;
}

export interface ServiceReport {
  /** Where it stands (a stateful service: its saved progress). */
  readonly progress?: unknown;
  readonly lastError?: string;
  /** When it last did a unit of work (ms since the epoch): how runs on two nodes are told apart. */
  readonly lastActiveAt?: number;
}

export type ServiceState = "running" | "stopped" | "failed";

/** One run of a service on this node: from its start to its stop (absent while it runs). */
export interface ServiceRun {
  readonly term: number;
  readonly startedAt: number;
  readonly stoppedAt?: number;
  readonly lastActiveAt?: number;
}

/** A service as its node's manager sees it. */
export interface ServiceStatus {
  readonly name: string;
  readonly state: ServiceState;
  readonly shouldRun: boolean;
  /** This node's id while it runs the service here. */
  readonly node?: number;
  readonly since?: number;
  readonly lastError?: string;
  readonly progress?: unknown;
  /** The last runs here, newest last (at most `SERVICE_RUNS_KEPT`). */
  readonly runs: readonly ServiceRun[];
}
