import { pack, unpack } from "msgpackr";
import type { CoreSync } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type { Request } from "./types.js";

/**
 * The data of a Raft entry on the write path, as frames (docs/core-formats.md):
 *   batch:   [header, delta-encoded txids of its requests, merged write-set, ledger record]
 *   request: [header with the request]          (the replicated-request mode)
 * The ledger record (src/events/record.ts) is empty when the batch produced no events; the
 * header's `prune` is the leader's pruning decision (src/events/ledger.ts), 0 for none.
 * An empty entry is a leader's no-op.
 */
export type EntryPayload =
  | {
      readonly kind: "batch";
      readonly time: number;
      readonly txids: Float64Array;
      readonly writeSet: Uint8Array;
      /** The events of the batch's requests as one ledger record; absent when there are none. */
      readonly events?: Uint8Array;
      /** Ledger records with a last txid at most this go (0: none). */
      readonly pruneThrough?: number;
    }
  | {
      readonly kind: "request";
      readonly time: number;
      readonly clientId: string;
      readonly callId: number;
      readonly request: Request;
      readonly pruneThrough?: number;
      /** The leader records no events (`events.disabled`): every node executes alike. */
      readonly noEvents?: boolean;
    };

const NO_EVENTS = new Uint8Array(0);

const pruneOf = (header: Record<string, unknown>, index: number): number => {
  const prune = header.prune ?? 0;
  if (!(typeof prune === "number" && Number.isSafeInteger(prune) && prune >= 0))
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `entry ${index}: prune ${String(prune)}`);
  return prune;
};

export function encodeEntry(payload: EntryPayload, core: CoreSync): Uint8Array {
  if (payload.kind === "batch") {
    const header: Record<string, unknown> = { v: 1, kind: "batch", time: payload.time };
    if (payload.pruneThrough) header.prune = payload.pruneThrough;
    return core.encodeFrames([
      pack(header),
      core.encodeDeltas(payload.txids),
      payload.writeSet,
      payload.events ?? NO_EVENTS,
    ]);
  }
  const { kind, time, clientId, callId, request } = payload;
  const header: Record<string, unknown> = { v: 1, kind, time, clientId, callId, request };
  if (payload.pruneThrough) header.prune = payload.pruneThrough;
  if (payload.noEvents) header.noEvents = true;
  return core.encodeFrames([pack(header)]);
}

export function decodeEntry(data: Uint8Array, core: CoreSync, index: number): EntryPayload | null {
  if (data.length === 0) return null;
  const split = core.splitFrames(data);
  const part = (i: number): Uint8Array => {
    const start = split.starts[i];
    if (start === undefined)
      throw new MetaraftError("MR_ERR_LOG_CORRUPT", `entry ${index}: missing frame ${i}`);
    return data.subarray(start, start + split.lengths[i]!);
  };
  const header = unpack(part(0)) as { v: number; kind: string; time: number } & Record<string, unknown>;
  if (header.v !== 1) throw new MetaraftError("MR_ERR_LOG_CORRUPT", `entry ${index}: version ${header.v}`);
  if (header.kind === "batch") {
    // Entries written before the ledger have three frames.
    const events = split.starts.length > 3 ? part(3) : NO_EVENTS;
    return {
      kind: "batch",
      time: header.time,
      txids: core.decodeDeltas(part(1)),
      writeSet: part(2),
      ...(events.length > 0 ? { events } : {}),
      pruneThrough: pruneOf(header, index),
    };
  }
  if (header.kind === "request") {
    return {
      kind: "request",
      time: header.time,
      clientId: header.clientId as string,
      callId: header.callId as number,
      request: header.request as Request,
      pruneThrough: pruneOf(header, index),
      ...(header.noEvents === true ? { noEvents: true } : {}),
    };
  }
  throw new MetaraftError("MR_ERR_LOG_CORRUPT", `entry ${index}: kind ${String(header.kind)}`);
}
