import { type IndexAllocation, OBJECTS_PER_TXID_MAX } from "../types.js";
import { checkIndexArgs } from "../validate.js";

export function allocateIndexes(baseTxid: number, objectCounts: ArrayLike<number>): IndexAllocation {
  const objects = checkIndexArgs(baseTxid, objectCounts);
  const n = objectCounts.length;
  const txids = new Float64Array(n);
  const objectIds = new Float64Array(objects);
  let q = 0;
  for (let i = 0; i < n; i++) {
    const txid = baseTxid + i;
    txids[i] = txid;
    const first = txid * OBJECTS_PER_TXID_MAX;
    for (let k = 0, count = objectCounts[i]!; k < count; k++) objectIds[q++] = first + k;
  }
  return { txids, objectIds };
}
