import { MetaraftError } from "../errors.js";
import type { ConfChange, ConfChangeKind } from "./types.js";

const kinds: readonly ConfChangeKind[] = ["addVoter", "addLearner", "removeNode"];

/** A change's context (the host's member record) is small: addresses, not data. */
export const CONF_CHANGE_CONTEXT_BYTES_MAX = 4096;

/** `u8 kind | u32 node | context` (little-endian): the data of a `confChange` entry. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  if (!(Number.isInteger(change.node) && change.node > 0 && change.node <= 0xffffffff)) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `node id ${change.node}`);
  }
  const context = change.context ?? new Uint8Array(0);
  if (context.length > CONF_CHANGE_CONTEXT_BYTES_MAX) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `conf change context of ${context.length} bytes`);
  }
  const out = new Uint8Array(5 + context.length);
  out[0] = kinds.indexOf(change.kind);
  new DataView(out.buffer).setUint32(1, change.node, true);
  out.set(context, 5);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const kind = kinds[data[0] ?? 255];
  if (data.length < 5 || data.length > 5 + CONF_CHANGE_CONTEXT_BYTES_MAX || kind === undefined) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", "malformed conf change entry");
  }
  const node = new DataView(data.buffer, data.byteOffset, 5).getUint32(1, true);
  return data.length === 5 ? { kind, node } : { kind, node, context: data.slice(5) };
}
