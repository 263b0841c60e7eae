import { MetaraftError } from "../../errors.js";
import { type Cursor, readUvarint32, writeUvarint32 } from "./varint.js";

export function encodeKeys(keys: readonly Uint8Array[]): Uint8Array {
  let bound = 5;
  for (const key of keys) bound += 10 + key.length;
  const out = new Uint8Array(bound);
  let p = writeUvarint32(out, 0, keys.length);
  let previous: Uint8Array = new Uint8Array(0);
  for (const key of keys) {
    const limit = Math.min(previous.length, key.length);
    let shared = 0;
    while (shared < limit && previous[shared] === key[shared]) shared++;
    p = writeUvarint32(out, p, shared);
    p = writeUvarint32(out, p, key.length - shared);
    out.set(key.subarray(shared), p);
    p += key.length - shared;
    previous = key;
  }
  return out.slice(0, p);
}

const cursor: Cursor = { pos: 0 };

function malformed(offset: number, detail: string): MetaraftError {
  return new MetaraftError("MR_ERR_KEYS_MALFORMED", detail, { offset });
}

/**
 * Pass 1: structure and size over the whole input, so that a decompression bomb is refused
 * before any output is allocated. Returns the decoded byte total; the count is left in `cursor`.
 */
export function keysDecodedSize(buf: Uint8Array, decodedBytesMax: number): { count: number; total: number } {
  const end = buf.length;
  cursor.pos = 0;
  const count = readUvarint32(buf, end, cursor);
  if (count < 0 || count > (end - cursor.pos) / 2) throw malformed(0, "bad count");
  let previousLength = 0;
  let total = 0;
  for (let i = 0; i < count; i++) {
    const at = cursor.pos;
    const shared = readUvarint32(buf, end, cursor);
    if (shared < 0) throw malformed(at, "bad shared length");
    const suffixLength = readUvarint32(buf, end, cursor);
    if (suffixLength < 0) throw malformed(at, "bad suffix length");
    if (shared > previousLength) throw malformed(at, "shared prefix longer than the previous key");
    if (suffixLength > end - cursor.pos) throw malformed(at, "suffix truncated");
    if (total + shared + suffixLength > decodedBytesMax) {
      throw new MetaraftError("MR_ERR_DECODED_TOO_LARGE", `limit ${decodedBytesMax}`, { offset: at });
    }
    cursor.pos += suffixLength;
    previousLength = shared + suffixLength;
    total += previousLength;
  }
  if (cursor.pos !== end) throw malformed(cursor.pos, "trailing bytes");
  return { count, total };
}

/** Pass 2: rebuilds the keys into one buffer and insists on the canonical (maximal) prefix. */
export function decodeKeys(buf: Uint8Array, decodedBytesMax: number): Uint8Array[] {
  const { count, total } = keysDecodedSize(buf, decodedBytesMax);
  const out = new Uint8Array(total);
  const keys = new Array<Uint8Array>(count);
  const end = buf.length;
  cursor.pos = 0;
  readUvarint32(buf, end, cursor);
  let previousStart = 0;
  let previousLength = 0;
  let q = 0;
  for (let i = 0; i < count; i++) {
    const at = cursor.pos;
    const shared = readUvarint32(buf, end, cursor);
    const suffixLength = readUvarint32(buf, end, cursor);
    const p = cursor.pos;
    if (shared < previousLength && suffixLength > 0 && buf[p] === out[previousStart + shared]) {
      throw malformed(at, "shared prefix not maximal");
    }
    out.copyWithin(q, previousStart, previousStart + shared);
    out.set(buf.subarray(p, p + suffixLength), q + shared);
    cursor.pos = p + suffixLength;
    previousStart = q;
    previousLength = shared + suffixLength;
    keys[i] = out.subarray(q, q + previousLength);
    q += previousLength;
  }
  return keys;
}
