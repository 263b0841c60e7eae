import type { Registry } from "prom-client";
import type { LeadershipListener } from "../host/index.js";
import type { Runtime } from "../runtime.js";
import type { LedgerEvent } from "./types.js";

/**
 * The listener plugin API (DESIGN.md, "The event ledger and plugins"). A plugin is a module
 * whose default export is an `EventListener` (or a class or factory making one); most extend
 * `LedgerListener`, which does the leader-only, checkpointed, at-least-once delivery, so that
 * a plugin writes only `onEvents`.
 */

/** What one read of the ledger returns. */
export interface LedgerRead {
  /** Events with txid > `afterTxid`, in txid order; every event of a txid comes in the same read. */
  readonly events: readonly LedgerEvent[];
  /** The first txid the ledger still holds events of (0: empty). */
  readonly firstTxid: number;
  /** The last txid the ledger holds events of (0: empty). */
  readonly lastTxid: number;
  /**
   * Events after `afterTxid` were pruned before this read could see them: txids `fromTxid` to
   * `toTxid` (inclusive) may have had events that are gone. Absent when nothing was lost.
   */
  readonly missed?: { readonly fromTxid: number; readonly toTxid: number };
}

/** The ledger as a listener reads it (in the node, in its worker, or in the separate runner). */
export interface LedgerView {
  /** At most about `limit` events after `afterTxid` (more only to finish the last txid). */
  read(afterTxid: number, limit: number): Promise<LedgerRead>;
  /** Calls `fn` with the ledger's last txid each time it grows; returns the unsubscribe. */
  onAppended(fn: (lastTxid: number) => void): () => void;
}

export interface ListenerLog {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What the host hands a plugin: everything it may touch of the node. */
export interface ListenerContext {
  /** The registered listener's name (one plugin module may be registered twice, under two names). */
  readonly name: string;
  readonly ledger: LedgerView;
  /** The node's leadership: `leaderReady`, `notLeader`, `leaderChanged`, each with the term. */
  readonly leadership: { subscribe(listener: LeadershipListener): () => void };
  /** The last txid this listener checkpointed (replicated state; 0 if none). */
  readCheckpoint(): Promise<number>;
  /** Replicates `txid` as this listener's checkpoint: a new leader resumes after it. */
  checkpoint(txid: number): Promise<void>;
  readonly runtime: Runtime;
  /** Metrics the plugin registers here are reported with the node's own. */
  readonly metrics: Registry;
  readonly log: ListenerLog;
}

/** The contract a plugin module's default export meets; checked when it is loaded. */
export interface EventListener {
  readonly name: string;
  readonly version: string;
  /** Called once before `start`, with the options declared for it; throws on bad options. */
  init(context: ListenerContext, options: Readonly<Record<string, unknown>>): void | Promise<void>;
  start(): void | Promise<void>;
  /** Stops delivery; resolves once no `onEvents` call is running. */
  stop(): void | Promise<void>;
  /** What `metaraft listeners ls` shows; optional. */
  status?(): ListenerStatus;
}

export type ListenerState = "idle" | "running" | "retrying" | "stopped" | "failed";

export interface ListenerStatus {
  /** `idle`: waiting to lead; `running`: delivering; `retrying`: the last delivery failed. */
  readonly state: ListenerState;
  /** The last txid delivered and checkpointed. */
  readonly checkpoint: number;
  /** The last txid delivered (maybe not checkpointed yet). */
  readonly delivered: number;
  /** Txids between the ledger's last and the last delivered. */
  readonly lagTxids: number;
  /** Milliseconds between now and the time of the oldest event not yet delivered (0: none). */
  readonly lagMs: number;
  readonly eventsDelivered: number;
  readonly errors: number;
  readonly lastError?: string;
}
