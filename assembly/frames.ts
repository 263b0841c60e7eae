// Frames: u32 length | u8 version | u32 crc32c(payload) | payload. Offsets are relative to ptr.
import { crcUpdate, ensureTables } from "./crc";
import { FRAME_CORRUPT, FRAME_TOO_LARGE, FRAME_TRUNCATED, FRAME_VERSION, fail } from "./util";

const HEADER: usize = 9;

export function framesSeal(ptr: usize, len: usize): i32 {
  ensureTables();
  let p: usize = 0;
  let count: i32 = 0;
  while (p < len) {
    if (len - p < HEADER) return fail(FRAME_TRUNCATED, p);
    let length = <usize>load<u32>(ptr + p);
    // Compare against the remainder so p + 9 + length cannot wrap.
    if (length > len - p - HEADER) return fail(FRAME_TRUNCATED, p);
    store<u8>(ptr + p, 1, 4);
    store<u32>(ptr + p, ~crcUpdate(~0, ptr + p + HEADER, length), 5);
    p += HEADER + length;
    count++;
  }
  return count;
}

export function framesSplit(ptr: usize, len: usize, maxFrameBytes: u32, outPtr: usize): i32 {
  ensureTables();
  let p: usize = 0;
  let count: i32 = 0;
  while (p < len) {
    if (len - p < HEADER) return fail(FRAME_TRUNCATED, p);
    let length = load<u32>(ptr + p);
    if (length > maxFrameBytes) return fail(FRAME_TOO_LARGE, p);
    if (<usize>length > len - p - HEADER) return fail(FRAME_TRUNCATED, p);
    if (load<u8>(ptr + p, 4) != 1) return fail(FRAME_VERSION, p);
    if (load<u32>(ptr + p, 5) != ~crcUpdate(~0, ptr + p + HEADER, length)) return fail(FRAME_CORRUPT, p);
    let o = outPtr + (<usize>count << 3);
    store<u32>(o, <u32>(p + HEADER));
    store<u32>(o, length, 4);
    p += HEADER + <usize>length;
    count++;
  }
  return count;
}
