import { type CoreSync, decodeWriteSet } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import { encodeRecord, ledgerWrites, recordHeader } from "../events/index.js";
import type { StateMachine } from "../host/index.js";
import type { Entry } from "../raft/index.js";
import { decodeEntry } from "./entry-codec.js";
import { confChangeOf, memberWrites } from "./members.js";
import { lookupReply, REPLY_TTL_MS, replyWrite } from "./replies.js";
import type { StateStore } from "./state-store.js";
import { type RequestSpec, stamp, toWriteOp } from "./types.js";

/** What applying an entry tells its proposer: nothing for a batch, the reply for a request. */
export type ApplyResult =
  | { readonly kind: "batch" }
  | { readonly kind: "reply"; readonly reply: Record<string, unknown> }
  | { readonly kind: "error"; readonly error: MetaraftError };

/**
 * Applies committed entries on every node, each in one LMDB transaction with the applied index
 * and the last txid. A batch carries absolute writes: followers never execute requests. In the
 * `replicated-request` mode an entry carries the request itself and every node executes it
 * here, as Ozone did before leader execution.
 */
export class NamespaceStateMachine implements StateMachine<ApplyResult> {
  /** Called after a batch is applied, with its last txid (the leader prunes its overlay). */
  onBatchApplied: (lastTxid: number) => void = () => {};
  /**
   * Called after an entry's ledger record is applied, with the record (its events) and its
   * last txid: watches and listeners wake on it. The record is stored already (pending commit).
   */
  onEventsApplied: (record: Uint8Array, lastTxid: number) => void = () => {};

  constructor(
    readonly store: StateStore,
    readonly specs: ReadonlyMap<string, RequestSpec>,
    readonly core: CoreSync,
  ) {}

  get appliedIndex(): number {
    return this.store.appliedIndex;
  }

  /** The state is in LMDB: Raft snapshots carry no data, and copy it only to send it. */
  get durableIndex(): number {
    return this.store.durableIndex;
  }

  apply(entry: Entry): ApplyResult {
    const store = this.store;
    // Already in the state (a snapshot copied after its own index): executing it again in the
    // replicated-request mode would not be harmless.
    if (entry.index <= store.appliedIndex) return { kind: "batch" };
    const change = confChangeOf(entry);
    if (change) {
      // The member's addresses become replicated state in the same transaction as the index.
      store.apply(memberWrites(change), { index: entry.index, lastTxid: store.lastTxid });
      return { kind: "batch" };
    }
    const payload = entry.type === "normal" ? decodeEntry(entry.data, this.core, entry.index) : null;
    if (!payload) {
      store.apply([], { index: entry.index, lastTxid: store.lastTxid });
      return { kind: "batch" };
    }
    if (payload.kind === "batch") {
      const { txids } = payload;
      const last = txids[txids.length - 1] ?? store.lastTxid;
      for (let i = 1; i < txids.length; i++) {
        if (!(txids[i]! > txids[i - 1]!))
          throw new MetaraftError("MR_ERR_LOG_CORRUPT", `entry ${entry.index}: txids not increasing`);
      }
      if (txids.length > 0 && txids[0]! <= store.lastTxid && entry.index > store.appliedIndex) {
        throw new MetaraftError(
          "MR_ERR_INTERNAL",
          `entry ${entry.index}: txid ${txids[0]} after ${store.lastTxid} repeats`,
        );
      }
      const record = payload.events;
      if (record) {
        const head = recordHeader(record, this.core, `entry ${entry.index}'s events`);
        if (!(txids.length > 0 && head.firstTxid >= txids[0]! && head.lastTxid <= last)) {
          throw new MetaraftError(
            "MR_ERR_LOG_CORRUPT",
            `entry ${entry.index}: events of txids ${head.firstTxid}-${head.lastTxid} outside its own`,
          );
        }
      }
      const ledger = ledgerWrites(store, this.core, record, payload.pruneThrough ?? 0);
      const writes = decodeWriteSet(payload.writeSet);
      for (const write of ledger) writes.push(toWriteOp(write));
      store.apply(writes, { index: entry.index, lastTxid: last });
      this.onBatchApplied(last);
      if (record) this.onEventsApplied(record, recordHeader(record, this.core).lastTxid);
      return { kind: "batch" };
    }
    // replicated-request: execute here, on every node, against committed state.
    const cached = lookupReply(store, payload.clientId, payload.callId, payload.time);
    if (cached) {
      const prune = ledgerWrites(store, this.core, undefined, payload.pruneThrough ?? 0);
      store.apply(prune.map(toWriteOp), { index: entry.index, lastTxid: store.lastTxid });
      return { kind: "reply", reply: cached.reply };
    }
    const txid = store.lastTxid + 1;
    try {
      const spec = this.specs.get(payload.request.op);
      if (!spec) throw new MetaraftError("MR_ERR_UNKNOWN_OP", payload.request.op);
      const request = spec.validate(payload.request);
      const execution = spec.execute(request, { txid, time: payload.time, reader: store });
      const events = payload.noEvents ? [] : stamp(execution.events, txid, payload.time);
      const record = events.length > 0 ? encodeRecord(events, this.core) : undefined;
      const writes = [
        ...execution.writes,
        replyWrite(payload.clientId, payload.callId, {
          txid,
          expiresAt: payload.time + REPLY_TTL_MS,
          reply: execution.reply,
        }),
        ...ledgerWrites(store, this.core, record, payload.pruneThrough ?? 0),
      ];
      store.apply(writes.map(toWriteOp), { index: entry.index, lastTxid: txid });
      if (record) this.onEventsApplied(record, txid);
      return { kind: "reply", reply: { ...execution.reply } };
    } catch (error) {
      if (!(error instanceof MetaraftError)) throw error;
      const prune = ledgerWrites(store, this.core, undefined, payload.pruneThrough ?? 0);
      store.apply(prune.map(toWriteOp), { index: entry.index, lastTxid: store.lastTxid });
      return { kind: "error", error };
    }
  }

  snapshot(): Uint8Array {
    return this.store.snapshot();
  }

  snapshotStream(): AsyncIterable<Uint8Array> {
    return this.store.snapshotStream();
  }

  restore(data: Uint8Array, index: number): Promise<void> {
    return this.store.restore(data, index);
  }
}
