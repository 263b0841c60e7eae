import { MetaraftError } from "../../errors.js";
import { DELTA_VALUE_MAX } from "../types.js";
import { type Cursor, readUvarint32, readZvarint53, writeUvarint32, writeZvarint53 } from "./varint.js";

export function checkDeltaValue(value: number, index: number): void {
  if (!(Number.isInteger(value) && value >= 0 && value <= DELTA_VALUE_MAX)) {
    throw new MetaraftError("MR_ERR_DELTA_RANGE", `value ${value}`, { offset: index });
  }
}

export function encodeDeltas(values: ArrayLike<number>): Uint8Array {
  const n = values.length;
  const out = new Uint8Array(5 + 8 * n);
  let p = writeUvarint32(out, 0, n);
  let previous = 0;
  for (let i = 0; i < n; i++) {
    const value = values[i]!;
    checkDeltaValue(value, i);
    p = writeZvarint53(out, p, value - previous);
    previous = value;
  }
  return out.slice(0, p);
}

const cursor: Cursor = { pos: 0 };

/** Reads and bounds the count header; shared with the WASM host, which sizes its output by it. */
export function readDeltaCount(buf: Uint8Array): number {
  cursor.pos = 0;
  const count = readUvarint32(buf, buf.length, cursor);
  if (count < 0 || count > buf.length - cursor.pos) {
    throw new MetaraftError("MR_ERR_DELTA_MALFORMED", "bad count", { offset: 0 });
  }
  return count;
}

export function decodeDeltas(buf: Uint8Array): Float64Array {
  const count = readDeltaCount(buf);
  const values = new Float64Array(count);
  const end = buf.length;
  let value = 0;
  for (let i = 0; i < count; i++) {
    const at = cursor.pos;
    const delta = readZvarint53(buf, end, cursor);
    if (Number.isNaN(delta)) throw new MetaraftError("MR_ERR_DELTA_MALFORMED", undefined, { offset: at });
    value += delta;
    if (value < 0 || value > DELTA_VALUE_MAX) {
      throw new MetaraftError("MR_ERR_DELTA_RANGE", `running value ${value}`, { offset: at });
    }
    values[i] = value;
  }
  if (cursor.pos !== end) {
    throw new MetaraftError("MR_ERR_DELTA_MALFORMED", "trailing bytes", { offset: cursor.pos });
  }
  return values;
}
