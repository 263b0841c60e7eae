/**
 * The varints of docs/core-formats.md, decoded without allocation: a reader returns the value
 * and leaves the position after it in `cursor.pos`, or returns -1 when the bytes are malformed
 * (too long, not minimal, out of range, or truncated).
 */

export interface Cursor {
  pos: number;
}

export function readUvarint32(buf: Uint8Array, end: number, cursor: Cursor): number {
  let p = cursor.pos;
  let value = 0;
  for (let i = 0; i < 5; i++) {
    if (p >= end) return -1;
    const byte = buf[p++]!;
    if (i === 4 && byte > 0x0f) return -1;
    value += (byte & 0x7f) * 2 ** (7 * i);
    if (byte < 0x80) {
      if (byte === 0 && i > 0) return -1;
      cursor.pos = p;
      return value;
    }
  }
  return -1;
}

export function writeUvarint32(out: Uint8Array, p: number, value: number): number {
  while (value >= 0x80) {
    out[p++] = (value & 0x7f) | 0x80;
    value >>>= 7;
  }
  out[p++] = value;
  return p;
}

/** The signed delta of a zvarint53, or NaN when the bytes are malformed. */
export function readZvarint53(buf: Uint8Array, end: number, cursor: Cursor): number {
  let p = cursor.pos;
  if (p >= end) return Number.NaN;
  const first = buf[p++]!;
  const negative = first & 1;
  // zz >> 1 as an exact double: bits 1..6 of the first byte, then 7 bits a byte.
  let magnitude = (first >> 1) & 0x3f;
  if (first >= 0x80) {
    let scale = 64;
    for (let i = 1; ; i++) {
      if (p >= end) return Number.NaN;
      const byte = buf[p++]!;
      magnitude += (byte & 0x7f) * scale;
      scale *= 128;
      if (i === 7) {
        // The 8th byte holds zz bits 49..55; zz < 2^54 leaves it at most 0x1f, and last.
        if (byte > 0x1f || byte === 0) return Number.NaN;
        break;
      }
      if (byte < 0x80) {
        if (byte === 0) return Number.NaN;
        break;
      }
    }
  }
  cursor.pos = p;
  return negative ? -magnitude - 1 : magnitude;
}

/** Writes zigzag(delta) for |delta| <= 2^53 without leaving exact double arithmetic. */
export function writeZvarint53(out: Uint8Array, p: number, delta: number): number {
  const negative = delta < 0 ? 1 : 0;
  // zz = 2m + negative, with m = delta or -delta - 1.
  let m = negative ? -delta - 1 : delta;
  if (m < 0x40) {
    out[p++] = (m << 1) | negative;
    return p;
  }
  out[p++] = ((m & 0x3f) << 1) | negative | 0x80;
  m = Math.floor(m / 64);
  while (m >= 0x80) {
    out[p++] = (m % 128) | 0x80;
    m = Math.floor(m / 128);
  }
  out[p++] = m;
  return p;
}
