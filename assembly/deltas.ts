// Integer sequences: uvarint32 count | count x zvarint53(values[i] - values[i-1]).
// Values cross the ABI as f64 (exact integers in [0, 2^53 - 1]); arithmetic is i64.
import { DELTA_MALFORMED, DELTA_RANGE, fail, readU32, varPos, varVal, writeVar } from "./util";

const MAX_SAFE: i64 = 9007199254740991;

export function deltasEncode(valuesPtr: usize, count: u32, outPtr: usize): i32 {
  let w = writeVar(outPtr, count);
  let prev: i64 = 0;
  for (let i: usize = 0; i < <usize>count; i++) {
    let f = load<f64>(valuesPtr + (i << 3));
    // Written as !(f >= 0) so NaN fails too.
    if (!(f >= 0) || f > 9007199254740991.0 || f != Math.floor(f)) return fail(DELTA_RANGE, i);
    let v = <i64>f;
    let d = v - prev;
    prev = v;
    w += writeVar(outPtr + w, <u64>((d << 1) ^ (d >> 63)));
  }
  return <i32>w;
}

// Shared by deltasCount / deltasDecode: leaves the count in varVal and the header end in varPos.
function readCount(ptr: usize, len: usize): bool {
  if (!readU32(ptr, 0, len)) return false;
  // Each zvarint takes at least one byte.
  return varVal <= <u64>(len - varPos);
}

export function deltasCount(ptr: usize, len: usize): i32 {
  if (!readCount(ptr, len)) return fail(DELTA_MALFORMED, 0);
  return <i32>varVal;
}

export function deltasDecode(ptr: usize, len: usize, outPtr: usize): i32 {
  if (!readCount(ptr, len)) return fail(DELTA_MALFORMED, 0);
  let count = <usize>varVal;
  let p = varPos;
  let v: i64 = 0;
  for (let i: usize = 0; i < count; i++) {
    let r = p;
    // zvarint53: at most 8 bytes, minimal, zz < 2^54 (8th byte <= 0x1f).
    let zz: u64 = 0;
    let shift: u64 = 0;
    while (true) {
      if (p >= len) return fail(DELTA_MALFORMED, r);
      let b = <u64>load<u8>(ptr + p);
      p++;
      zz |= (b & 0x7f) << shift;
      if (b < 0x80) {
        if (shift > 0 && b == 0) return fail(DELTA_MALFORMED, r);
        if (shift == 49 && b > 0x1f) return fail(DELTA_MALFORMED, r);
        break;
      }
      shift += 7;
      if (shift > 49) return fail(DELTA_MALFORMED, r);
    }
    v += <i64>(zz >> 1) ^ -<i64>(zz & 1);
    if (v < 0 || v > MAX_SAFE) return fail(DELTA_RANGE, r);
    store<f64>(outPtr + (i << 3), <f64>v);
  }
  if (p < len) return fail(DELTA_MALFORMED, p);
  return <i32>count;
}
