// Front-coded keys: uvarint32 count | count x (uvarint32 shared | uvarint32 suffixLength | suffix).
//
// Validation runs in two passes, and the TypeScript twin mirrors this precedence exactly:
//   pass 1 (keysDecodedSize) - structure and size over the WHOLE input: count header (bad varint
//     or count > (bytes left after the header) / 2 -> KEYS_MALFORMED @0), then per record in
//     order: bad/truncated shared, bad/truncated suffixLength, shared > previous length,
//     truncated suffix -> KEYS_MALFORMED @record; running total + shared + suffixLength >
//     decodedBytesMax -> DECODED_TOO_LARGE @record; finally trailing bytes -> KEYS_MALFORMED
//     @first trailing byte.
//   pass 2 (keysDecode) - only on pass-1-clean input: the first record whose shared is not
//     maximal (shared < prevLen && suffixLength > 0 && suffix[0] == prev[shared])
//     -> KEYS_MALFORMED @record.
// So a structural error anywhere beats a canonical error in an earlier record. Pass 2 needs the
// previous key materialized, which only the decode output provides (no allocation here).
import { DECODED_TOO_LARGE, fail, KEYS_MALFORMED, readU32, varPos, varVal, writeVar } from "./util";

export function keysEncode(bytesPtr: usize, lengthsPtr: usize, count: u32, outPtr: usize): i32 {
  let w = writeVar(outPtr, count);
  let prev = bytesPtr;
  let prevLen: usize = 0;
  let cur = bytesPtr;
  for (let i: usize = 0; i < <usize>count; i++) {
    let n = <usize>load<u32>(lengthsPtr + (i << 2));
    let m = prevLen < n ? prevLen : n;
    let s: usize = 0;
    while (s + 8 <= m) {
      let x = load<u64>(prev + s) ^ load<u64>(cur + s);
      if (x) {
        s += <usize>ctz(x) >> 3;
        break;
      }
      s += 8;
    }
    if (s + 8 > m) {
      // Tail (or the x != 0 break, where s already points at the differing byte < m).
      while (s < m && load<u8>(prev + s) == load<u8>(cur + s)) s++;
    }
    w += writeVar(outPtr + w, s);
    w += writeVar(outPtr + w, n - s);
    memory.copy(outPtr + w, cur + s, n - s);
    w += n - s;
    prev = cur;
    prevLen = n;
    cur += n;
  }
  return <i32>w;
}

export function keysDecodedSize(ptr: usize, len: usize, decodedBytesMax: u32): i32 {
  if (!readU32(ptr, 0, len)) return fail(KEYS_MALFORMED, 0);
  let count = varVal;
  let p = varPos;
  // Every record takes at least 2 bytes.
  if (count > <u64>((len - p) >> 1)) return fail(KEYS_MALFORMED, 0);
  // The result is an i32, so a larger limit could not be reported anyway.
  let max = <u64>(decodedBytesMax > 0x7fffffff ? 0x7fffffff : decodedBytesMax);
  let total: u64 = 0;
  let prevLen: u64 = 0;
  for (let i: u64 = 0; i < count; i++) {
    let r = p;
    if (!readU32(ptr, p, len)) return fail(KEYS_MALFORMED, r);
    let shared = varVal;
    if (!readU32(ptr, varPos, len)) return fail(KEYS_MALFORMED, r);
    let suffixLen = varVal;
    p = varPos;
    if (shared > prevLen) return fail(KEYS_MALFORMED, r);
    if (suffixLen > <u64>(len - p)) return fail(KEYS_MALFORMED, r);
    if (total + shared + suffixLen > max) return fail(DECODED_TOO_LARGE, r);
    total += shared + suffixLen;
    prevLen = shared + suffixLen;
    p += <usize>suffixLen;
  }
  if (p < len) return fail(KEYS_MALFORMED, p);
  return <i32>total;
}

// Read a varint known to be valid (pass 1 checked it); updates varVal/varPos.
// @ts-ignore: decorator
@inline function readValid(base: usize, pos: usize): void {
  let b = <u32>load<u8>(base + pos);
  if (b < 0x80) {
    varVal = b;
    varPos = pos + 1;
  } else {
    readU32(base, pos, <usize>-1);
  }
}

export function keysDecode(ptr: usize, len: usize, bytesOutPtr: usize, lengthsOutPtr: usize): i32 {
  readValid(ptr, 0);
  let count = <usize>varVal;
  let p = varPos;
  let prev = bytesOutPtr;
  let prevLen: usize = 0;
  let out = bytesOutPtr;
  for (let i: usize = 0; i < count; i++) {
    let r = p;
    readValid(ptr, p);
    let shared = <usize>varVal;
    readValid(ptr, varPos);
    let suffixLen = <usize>varVal;
    p = varPos;
    if (shared < prevLen && suffixLen > 0 && load<u8>(ptr + p) == load<u8>(prev + shared)) {
      return fail(KEYS_MALFORMED, r);
    }
    // Source [prev, prev+shared) ends at or before out: no overlap.
    memory.copy(out, prev, shared);
    memory.copy(out + shared, ptr + p, suffixLen);
    p += suffixLen;
    let n = shared + suffixLen;
    store<u32>(lengthsOutPtr + (i << 2), <u32>n);
    prev = out;
    prevLen = n;
    out += n;
  }
  return <i32>count;
}
