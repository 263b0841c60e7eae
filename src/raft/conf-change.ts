import { MetaraftError } from "../errors.js";
import type { ConfChange, ConfChangeKind } from "./types.js";

const kinds: readonly ConfChangeKind[] = ["addVoter", "addLearner", "removeNode"];

/** `u8 kind | u32 node` (little-endian): the data of a `confChange` entry. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  if (!(Number.isInteger(change.node) && change.node > 0 && change.node <= 0xffffffff)) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `node id ${change.node}`);
  }
  const out = new Uint8Array(5);
  out[0] = kinds.indexOf(change.kind);
  new DataView(out.buffer).setUint32(1, change.node, true);
  return out;
}

export function decodeConfChange(data: Uint8Array): ConfChange {
  const kind = kinds[data[0] ?? 255];
  if (data.length !== 5 || kind === undefined) {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", "malformed conf change entry");
  }
  return { kind, node: new DataView(data.buffer, data.byteOffset, 5).getUint32(1, true) };
}
