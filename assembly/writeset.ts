// Write-sets: u8 kind (1 put, 2 delete) | u8 table | u16 keyLength | u32 valueLength | key | value.
// Merge = stable sort of record addresses by (table, key), then keep the last of each run.
import { fail, WRITESET_MALFORMED } from "./util";

const HEADER: usize = 8;
const RUN: usize = 16;

// Unsigned lexicographic (table, key); a prefix sorts first. Returns <0, 0, >0.
function cmp(a: usize, b: usize): i32 {
  let ta = <i32>load<u8>(a, 1);
  let tb = <i32>load<u8>(b, 1);
  if (ta != tb) return ta - tb;
  let la = <usize>load<u16>(a, 2);
  let lb = <usize>load<u16>(b, 2);
  let m = la < lb ? la : lb;
  let ka = a + HEADER;
  let kb = b + HEADER;
  let i: usize = 0;
  while (i + 8 <= m) {
    let x = load<u64>(ka + i);
    let y = load<u64>(kb + i);
    if (x != y) {
      // Byte-swap so the first key byte is most significant.
      return bswap<u64>(x) < bswap<u64>(y) ? -1 : 1;
    }
    i += 8;
  }
  while (i < m) {
    let x = <i32>load<u8>(ka + i);
    let y = <i32>load<u8>(kb + i);
    if (x != y) return x - y;
    i++;
  }
  return <i32>la - <i32>lb;
}

// @ts-ignore: decorator
@inline function at(base: usize, i: usize): usize {
  return <usize>load<u32>(base + (i << 2));
}

// Merges sorted runs [lo, mid) and [mid, hi) of src into dst; ties take the left run (stable).
function mergeRuns(src: usize, dst: usize, lo: usize, mid: usize, hi: usize): void {
  if (mid >= hi || cmp(at(src, mid - 1), at(src, mid)) <= 0) {
    // Already in order (common for mostly sorted input).
    memory.copy(dst + (lo << 2), src + (lo << 2), (hi - lo) << 2);
    return;
  }
  let i = lo;
  let j = mid;
  let k = lo;
  while (i < mid && j < hi) {
    let a = at(src, i);
    let b = at(src, j);
    if (cmp(a, b) <= 0) {
      store<u32>(dst + (k << 2), <u32>a);
      i++;
    } else {
      store<u32>(dst + (k << 2), <u32>b);
      j++;
    }
    k++;
  }
  if (i < mid) memory.copy(dst + (k << 2), src + (i << 2), (mid - i) << 2);
  else if (j < hi) memory.copy(dst + (k << 2), src + (j << 2), (hi - j) << 2);
}

export function writeSetsMerge(ptr: usize, len: usize, outPtr: usize, scratchPtr: usize): i32 {
  // Records are >= 8 bytes, so n <= len / 8; each half of scratch holds that many u32s twice over.
  let idx = scratchPtr;
  let tmp = scratchPtr + ((len / 8 + 1) << 3);
  let n: usize = 0;
  let p: usize = 0;
  while (p < len) {
    if (len - p < HEADER) return fail(WRITESET_MALFORMED, p);
    let kind = load<u8>(ptr + p);
    let keyLen = <u64>load<u16>(ptr + p, 2);
    let valueLen = <u64>load<u32>(ptr + p, 4);
    if (kind != 1 && kind != 2) return fail(WRITESET_MALFORMED, p);
    if (kind == 2 && valueLen != 0) return fail(WRITESET_MALFORMED, p);
    if (keyLen + valueLen > <u64>(len - p - HEADER)) return fail(WRITESET_MALFORMED, p);
    store<u32>(idx + (n << 2), <u32>(ptr + p));
    n++;
    p += HEADER + <usize>(keyLen + valueLen);
  }

  // Insertion-sort fixed runs in place (stable: shift only strictly greater).
  for (let lo: usize = 0; lo < n; lo += RUN) {
    let hi = lo + RUN < n ? lo + RUN : n;
    for (let i = lo + 1; i < hi; i++) {
      let x = at(idx, i);
      let j = i;
      while (j > lo && cmp(at(idx, j - 1), x) > 0) {
        store<u32>(idx + (j << 2), load<u32>(idx + ((j - 1) << 2)));
        j--;
      }
      store<u32>(idx + (j << 2), <u32>x);
    }
  }
  // Bottom-up merge, ping-ponging between the two halves of scratch.
  let src = idx;
  let dst = tmp;
  for (let width = RUN; width < n; width <<= 1) {
    for (let lo: usize = 0; lo < n; lo += width << 1) {
      let mid = lo + width < n ? lo + width : n;
      let hi = mid + width < n ? mid + width : n;
      mergeRuns(src, dst, lo, mid, hi);
    }
    let s = src;
    src = dst;
    dst = s;
  }

  let w: usize = 0;
  for (let i: usize = 0; i < n; i++) {
    let a = at(src, i);
    if (i + 1 < n && cmp(a, at(src, i + 1)) == 0) continue; // a later record wins
    let size = HEADER + <usize>load<u16>(a, 2) + <usize>load<u32>(a, 4);
    memory.copy(outPtr + w, a, size);
    w += size;
  }
  return <i32>w;
}
