// Index generation: txid = baseTxid + i, objectId = txid * 256 + k (k < counts[i] <= 256).
import { fail, INDEX_EXHAUSTED, INDEX_OBJECTS_MAX } from "./util";

const MAX_TXID: f64 = 35184372088831; // 2^45 - 1, keeps every object id below 2^53

export function indexAllocate(baseTxid: f64, countsPtr: usize, n: u32, outPtr: usize): i32 {
  // !(x >= 1) also rejects NaN; the Infinity test matches Number.isInteger(Infinity) === false.
  if (!(baseTxid >= 1) || baseTxid != Math.floor(baseTxid) || baseTxid == Infinity) {
    return fail(INDEX_EXHAUSTED, 0);
  }
  if (n > 0 && baseTxid + <f64>n - 1 > MAX_TXID) return fail(INDEX_EXHAUSTED, 0);
  // Validate every count before writing anything.
  let total: usize = 0;
  for (let i: usize = 0; i < <usize>n; i++) {
    let c = load<u32>(countsPtr + (i << 2));
    if (c > 256) return fail(INDEX_OBJECTS_MAX, i);
    total += c;
  }
  let base = <i64>baseTxid;
  let obj = outPtr + (<usize>n << 3);
  for (let i: usize = 0; i < <usize>n; i++) {
    let txid = base + <i64>i;
    store<f64>(outPtr + (i << 3), <f64>txid);
    let c = <i64>load<u32>(countsPtr + (i << 2));
    let id = txid << 8;
    for (let k: i64 = 0; k < c; k++) {
      store<f64>(obj, <f64>(id + k));
      obj += 8;
    }
  }
  return <i32>total;
}
