// Shared error state and varint readers. No allocation: results go through globals.

export const FRAME_TRUNCATED: i32 = -1;
export const FRAME_TOO_LARGE: i32 = -2;
export const FRAME_VERSION: i32 = -3;
export const FRAME_CORRUPT: i32 = -4;
export const DELTA_MALFORMED: i32 = -5;
export const DELTA_RANGE: i32 = -6;
export const KEYS_MALFORMED: i32 = -7;
export const DECODED_TOO_LARGE: i32 = -8;
export const WRITESET_MALFORMED: i32 = -9;
export const INDEX_OBJECTS_MAX: i32 = -10;
export const INDEX_EXHAUSTED: i32 = -11;

let errOff: u32 = 0;

export function errorOffset(): u32 {
  return errOff;
}

// @inline so the status constant folds into each call site's return.
// @ts-ignore: decorator
@inline export function fail(status: i32, offset: usize): i32 {
  errOff = <u32>offset;
  return status;
}

// Outputs of the readers below (a multi-value return would need allocation or tuples).
export let varVal: u64 = 0;
export let varPos: usize = 0;

// uvarint32 at base+pos, never reading at or past base+len.
// Rejects: truncation, > 5 bytes, value >= 2^32, non-minimal (last byte 0 in a multi-byte varint).
export function readU32(base: usize, pos: usize, len: usize): bool {
  let v: u64 = 0;
  for (let i: u32 = 0; i < 5; i++) {
    if (pos >= len) return false;
    let b = <u32>load<u8>(base + pos);
    pos++;
    v |= <u64>(b & 0x7f) << (7 * i);
    if (b < 0x80) {
      if (i > 0 && b == 0) return false;
      if (i == 4 && b > 0x0f) return false;
      varVal = v;
      varPos = pos;
      return true;
    }
  }
  return false;
}

// Writes v as LEB128 at out; returns the number of bytes written.
// @ts-ignore: decorator
@inline export function writeVar(out: usize, v: u64): usize {
  let n: usize = 0;
  while (v >= 0x80) {
    store<u8>(out + n, <u8>(v | 0x80));
    v >>= 7;
    n++;
  }
  store<u8>(out + n, <u8>v);
  return n + 1;
}
