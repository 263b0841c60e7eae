import { pack, unpack } from "msgpackr";
import type { CoreSync } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type { Request } from "./types.js";

/**
 * The data of a Raft entry on the write path, as frames (docs/core-formats.md):
 *   batch:   [header, delta-encoded txids of its requests, merged write-set]
 *   request: [header with the request]          (the replicated-request mode)
 * An empty entry is a leader's no-op.
 */
export type EntryPayload =
  | {
      readonly kind: "batch";
      readonly time: number;
      readonly txids: Float64Array;
      readonly writeSet: Uint8Array;
    }
  | {
      readonly kind: "request";
      readonly time: number;
      readonly clientId: string;
      readonly callId: number;
      readonly request: Request;
    };

export function encodeEntry(payload: EntryPayload, core: CoreSync): Uint8Array {
  if (payload.kind === "batch") {
    return core.encodeFrames([
      pack({ v: 1, kind: "batch", time: payload.time }),
      core.encodeDeltas(payload.txids),
      payload.writeSet,
    ]);
  }
  const { kind, time, clientId, callId, request } = payload;
  return core.encodeFrames([pack({ v: 1, kind, time, clientId, callId, request })]);
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
    return { kind: "batch", time: header.time, txids: core.decodeDeltas(part(1)), writeSet: part(2) };
  }
  if (header.kind === "request") {
    return {
      kind: "request",
      time: header.time,
      clientId: header.clientId as string,
      callId: header.callId as number,
      request: header.request as Request,
    };
  }
  throw new MetaraftError("MR_ERR_LOG_CORRUPT", `entry ${index}: kind ${String(header.kind)}`);
}
