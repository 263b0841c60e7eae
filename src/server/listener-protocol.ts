import type { CoreMode } from "../core/index.js";
import type { ListenerStatus } from "../events/index.js";

/**
 * The messages between a listener host and the worker thread that runs one plugin. A worker is
 * a plugin's sandbox: it reads the ledger itself from the state environment (opened read-only,
 * so the host's thread does no decoding for it), and asks its host only for what is replicated
 * (its checkpoint) or known only there (leadership).
 */

/** What a worker starts with (`workerData`). */
export interface WorkerSpec {
  readonly name: string;
  readonly module: string;
  readonly options: Readonly<Record<string, unknown>>;
  /** The node's `state/` environment, opened read-only by the worker. */
  readonly stateDir: string;
  /** Relative module paths and plugin files resolve against it. */
  readonly baseDir: string;
  readonly coreMode: CoreMode;
}

export type HostToWorker =
  | { readonly kind: "leaderReady"; readonly term: number }
  | { readonly kind: "notLeader"; readonly term: number }
  | { readonly kind: "leaderChanged"; readonly term: number; readonly leader: number }
  | { readonly kind: "appended"; readonly lastTxid: number }
  | { readonly kind: "reply"; readonly id: number; readonly value?: number; readonly error?: WireError }
  | { readonly kind: "status"; readonly id: number }
  | { readonly kind: "metrics"; readonly id: number }
  | { readonly kind: "stop" };

export type WorkerToHost =
  | { readonly kind: "started"; readonly version: string }
  /** `init` or `start` threw: the host restarts the worker with backoff. */
  | { readonly kind: "failed"; readonly error: WireError }
  | { readonly kind: "call"; readonly id: number; readonly method: "readCheckpoint" }
  | { readonly kind: "call"; readonly id: number; readonly method: "checkpoint"; readonly txid: number }
  | {
      readonly kind: "log";
      readonly severity: "info" | "warn" | "error";
      readonly message: string;
      readonly fields?: Record<string, unknown>;
    }
  | { readonly kind: "status"; readonly id: number; readonly status: ListenerStatus | null }
  | { readonly kind: "metrics"; readonly id: number; readonly metrics: unknown[] }
  | { readonly kind: "stopped" };

/** An error as it crosses the thread boundary: matched by code, never by class. */
export interface WireError {
  readonly code: string;
  readonly message: string;
}
