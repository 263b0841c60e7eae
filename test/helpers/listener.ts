import { Registry } from "prom-client";
import type {
  EventType,
  LedgerEvent,
  LedgerRead,
  LedgerView,
  ListenerContext,
  ListenerLog,
} from "../../src/events/index.js";
import type { LeadershipListener } from "../../src/host/index.js";
import type { Runtime } from "../../src/runtime.js";

/**
 * A listener's surroundings in memory, for unit tests of the listener base and the sinks: the
 * ledger, leadership and the replicated checkpoint are pure bookkeeping here (the real ones
 * are tested with the node), so every test can drive them exactly.
 */

/** An in-memory ledger with the reads' contract: txid order, a txid's events together, `missed` after pruning. */
export class MemoryLedger implements LedgerView {
  readonly events: LedgerEvent[] = [];
  readonly #listeners = new Set<(lastTxid: number) => void>();
  prunedThrough = 0;
  reads = 0;
  /** The next `failReads` reads reject. */
  failReads = 0;
  /** Runs once a read has taken its events, before it returns them (an append racing the read). */
  duringRead: (() => void) | undefined;

  get lastTxid(): number {
    return this.events[this.events.length - 1]?.txid ?? 0;
  }

  append(...events: LedgerEvent[]): void {
    this.events.push(...events);
    for (const fn of [...this.#listeners]) fn(this.lastTxid);
  }

  /** Drops every event up to `txid`, as retention does. */
  prune(txid: number): void {
    this.prunedThrough = Math.max(this.prunedThrough, txid);
    while (this.events[0] && this.events[0].txid <= txid) this.events.shift();
  }

  get subscribers(): number {
    return this.#listeners.size;
  }

  async read(afterTxid: number, limit: number): Promise<LedgerRead> {
    this.reads++;
    if (this.failReads > 0) {
      this.failReads--;
      throw new Error("injected read failure");
    }
    const from = Math.max(afterTxid, this.prunedThrough);
    const out: LedgerEvent[] = [];
    for (const event of this.events) {
      if (event.txid <= from) continue;
      const last = out[out.length - 1];
      if (out.length >= limit && last && last.txid !== event.txid) break;
      out.push(event);
    }
    const during = this.duringRead;
    this.duringRead = undefined;
    during?.();
    return {
      events: out,
      firstTxid: this.events[0]?.txid ?? 0,
      lastTxid: this.lastTxid,
      ...(this.prunedThrough > afterTxid
        ? { missed: { fromTxid: afterTxid + 1, toTxid: this.prunedThrough } }
        : {}),
    };
  }

  onAppended(fn: (lastTxid: number) => void): () => void {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }
}

/** Leadership as the host reports it, driven by the test. */
export class TestLeadership {
  readonly #listeners = new Set<LeadershipListener>();
  term = 0;
  ready = false;

  subscribe(listener: LeadershipListener): () => void {
    this.#listeners.add(listener);
    if (this.ready) listener.leaderReady?.(this.term);
    return () => this.#listeners.delete(listener);
  }

  lead(term: number): void {
    this.term = term;
    this.ready = true;
    for (const l of [...this.#listeners]) l.leaderReady?.(term);
  }

  lose(): void {
    this.ready = false;
    for (const l of [...this.#listeners]) l.notLeader?.(this.term);
  }

  get subscribers(): number {
    return this.#listeners.size;
  }
}

export interface LogEntry {
  readonly level: "info" | "warn" | "error";
  readonly message: string;
  readonly fields: Record<string, unknown> | undefined;
}

export interface TestContext extends ListenerContext {
  readonly ledgerMemory: MemoryLedger;
  readonly leadershipControl: TestLeadership;
  readonly logs: LogEntry[];
  /** The checkpoint as replicated (what `readCheckpoint` answers). */
  stored: number;
  /** Every checkpoint asked for, with the runtime's elapsed time then. */
  readonly checkpoints: { readonly txid: number; readonly at: number }[];
  /** The next `failCheckpoints` checkpoints reject. */
  failCheckpoints: number;
}

export function testContext(runtime: Runtime, name = "test-listener"): TestContext {
  const ledger = new MemoryLedger();
  const leadership = new TestLeadership();
  const logs: LogEntry[] = [];
  const log = (level: LogEntry["level"]) => (message: string, fields?: Record<string, unknown>) =>
    logs.push({ level, message, fields });
  const listenerLog: ListenerLog = { info: log("info"), warn: log("warn"), error: log("error") };
  const context: TestContext = {
    name,
    ledger,
    leadership,
    ledgerMemory: ledger,
    leadershipControl: leadership,
    logs,
    stored: 0,
    checkpoints: [],
    failCheckpoints: 0,
    runtime,
    metrics: new Registry(),
    log: listenerLog,
    readCheckpoint: async () => context.stored,
    checkpoint: async (txid: number) => {
      context.checkpoints.push({ txid, at: runtime.elapsed() });
      if (context.failCheckpoints > 0) {
        context.failCheckpoints--;
        throw new Error("injected checkpoint failure");
      }
      context.stored = Math.max(context.stored, txid);
    },
  };
  return context;
}

/** Events for txids `from`..`to`, one each, puts into `vol/bkt` unless told otherwise. */
export function events(
  from: number,
  to: number,
  make: (txid: number) => Partial<LedgerEvent> = () => ({}),
): LedgerEvent[] {
  const out: LedgerEvent[] = [];
  for (let txid = from; txid <= to; txid++) {
    out.push({
      txid,
      time: 1_800_000_000_000 + txid,
      type: "ObjectCreated:Put" as EventType,
      volume: "vol",
      bucket: "bkt",
      key: `k${txid}`,
      size: txid,
      etag: `e${txid}`,
      objectId: txid * 256,
      ...make(txid),
    });
  }
  return out;
}
