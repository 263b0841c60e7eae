import { MetaraftError } from "../../errors.js";
import {
  WRITE_DELETE,
  WRITE_KEY_BYTES_MAX,
  WRITE_PUT,
  WRITE_RECORD_HEADER_BYTES,
  type WriteOp,
} from "../types.js";

export function encodeWriteSet(ops: readonly WriteOp[]): Uint8Array {
  let size = 0;
  for (const op of ops) {
    if (!(Number.isInteger(op.table) && op.table >= 0 && op.table <= 0xff)) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `table ${op.table} is not a u8`);
    }
    if (op.key.length > WRITE_KEY_BYTES_MAX) {
      throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `key of ${op.key.length} bytes`);
    }
    size += WRITE_RECORD_HEADER_BYTES + op.key.length + (op.value?.length ?? 0);
  }
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  let p = 0;
  for (const op of ops) {
    out[p] = op.value === null ? WRITE_DELETE : WRITE_PUT;
    out[p + 1] = op.table;
    view.setUint16(p + 2, op.key.length, true);
    view.setUint32(p + 4, op.value?.length ?? 0, true);
    out.set(op.key, p + WRITE_RECORD_HEADER_BYTES);
    p += WRITE_RECORD_HEADER_BYTES + op.key.length;
    if (op.value !== null) {
      out.set(op.value, p);
      p += op.value.length;
    }
  }
  return out;
}

/** Returns the end of the record at `p`, or throws WRITESET_MALFORMED naming its start. */
function recordEnd(buf: Uint8Array, view: DataView, p: number): number {
  const end = buf.length;
  if (end - p < WRITE_RECORD_HEADER_BYTES) {
    throw new MetaraftError("MR_ERR_WRITESET_MALFORMED", "header truncated", { offset: p });
  }
  const kind = buf[p]!;
  const valueLength = view.getUint32(p + 4, true);
  if (kind !== WRITE_PUT && kind !== WRITE_DELETE) {
    throw new MetaraftError("MR_ERR_WRITESET_MALFORMED", `kind ${kind}`, { offset: p });
  }
  if (kind === WRITE_DELETE && valueLength !== 0) {
    throw new MetaraftError("MR_ERR_WRITESET_MALFORMED", "delete with a value", { offset: p });
  }
  const bodyLength = view.getUint16(p + 2, true) + valueLength;
  if (end - p - WRITE_RECORD_HEADER_BYTES < bodyLength) {
    throw new MetaraftError("MR_ERR_WRITESET_MALFORMED", "body truncated", { offset: p });
  }
  return p + WRITE_RECORD_HEADER_BYTES + bodyLength;
}

/** Values are views into `buf`. */
export function decodeWriteSet(buf: Uint8Array): WriteOp[] {
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const ops: WriteOp[] = [];
  for (let p = 0; p < buf.length; ) {
    const next = recordEnd(buf, view, p);
    const keyEnd = p + WRITE_RECORD_HEADER_BYTES + view.getUint16(p + 2, true);
    ops.push({
      table: buf[p + 1]!,
      key: buf.subarray(p + WRITE_RECORD_HEADER_BYTES, keyEnd),
      value: buf[p] === WRITE_DELETE ? null : buf.subarray(keyEnd, next),
    });
    p = next;
  }
  return ops;
}

export function concat(parts: readonly Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  let size = 0;
  for (const part of parts) size += part.length;
  const out = new Uint8Array(size);
  let p = 0;
  for (const part of parts) {
    out.set(part, p);
    p += part.length;
  }
  return out;
}

export function mergeWriteSets(writeSets: readonly Uint8Array[]): Uint8Array {
  const buf = concat(writeSets);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const starts: number[] = [];
  for (let p = 0; p < buf.length; p = recordEnd(buf, view, p)) starts.push(p);

  const compare = (a: number, b: number): number => {
    const tableOrder = buf[a + 1]! - buf[b + 1]!;
    if (tableOrder !== 0) return tableOrder;
    const keyOrder = compareKeys(buf, view, a, b);
    // Starts grow in execution order, so ties keep it: the sort is stable by construction.
    return keyOrder !== 0 ? keyOrder : a - b;
  };
  starts.sort(compare);

  const out = new Uint8Array(buf.length);
  let q = 0;
  for (let i = 0; i < starts.length; i++) {
    const start = starts[i]!;
    const next = starts[i + 1];
    if (next !== undefined && buf[next + 1] === buf[start + 1] && compareKeys(buf, view, start, next) === 0) {
      continue;
    }
    const end =
      start + WRITE_RECORD_HEADER_BYTES + view.getUint16(start + 2, true) + view.getUint32(start + 4, true);
    out.set(buf.subarray(start, end), q);
    q += end - start;
  }
  return out.slice(0, q);
}

function compareKeys(buf: Uint8Array, view: DataView, a: number, b: number): number {
  const lengthA = view.getUint16(a + 2, true);
  const lengthB = view.getUint16(b + 2, true);
  const limit = Math.min(lengthA, lengthB);
  const keyA = a + WRITE_RECORD_HEADER_BYTES;
  const keyB = b + WRITE_RECORD_HEADER_BYTES;
  for (let i = 0; i < limit; i++) {
    const order = buf[keyA + i]! - buf[keyB + i]!;
    if (order !== 0) return order;
  }
  return lengthA - lengthB;
}
