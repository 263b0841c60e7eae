import { hash } from "node:crypto";
import { MetaraftError } from "../errors.js";
import type { StateReader, Write } from "../execution/types.js";

/**
 * Where a kv key's row lives in the `kv` table. LMDB takes keys of at most 1,978 bytes and the
 * keyspace takes keys of up to 4 KiB, so:
 *
 * - a key of at most `KV_SHORT_KEY_BYTES` UTF-8 bytes is its own row key, and its row holds
 *   its record;
 * - a longer key is a member of the group of long keys that share its *stem*: its first
 *   `KV_SHORT_KEY_BYTES` bytes, carried on to the end of the character the last of them is in.
 *   Its *tail* is the rest. Its row key is `stem + "\0" + hex(sha256(tail))`, and its row holds
 *   the tail and then the record. The group's directory row, `stem + "\0"`, holds the members'
 *   32-byte digests in the UTF-8 order of their keys.
 *
 * Every row key of a group starts with the stem, so the group sits where its keys belong among
 * the short ones, contiguously; only its members' order among themselves is not the row keys'
 * (that is the hashes'), which is what the directory gives. A get goes straight to the row.
 *
 * The directory lists digests, not keys: every create and delete of a member rewrites it, in
 * the Raft entry too, and a directory of 256 whole 4 KiB keys was 1 MiB that cost 3-5 ms a
 * create (`npm run bench:kv`). Digests make it 8 KiB; the order then comes from the members'
 * tails, which a create's binary search reads (log2 of the group's size rows).
 * `kv.longKeyGroupMax` bounds a group.
 */

/** Keys of at most this many UTF-8 bytes are their own row key. */
export const KV_SHORT_KEY_BYTES = 1900;

const SEPARATOR = "\u0000";
/** Sorts after every member row of a group (hex digits), before anything past the group. */
const PAST_MEMBERS = "~";
const DIGEST_BYTES = 32;
const HASH_CHARS = DIGEST_BYTES * 2;
/** A member row's value starts with its tail's length in bytes (a tail is at most 4 KiB). */
const TAIL_LENGTH_BYTES = 2;

/** The UTF-8 bytes of `key`. */
export const utf8 = (key: string): Buffer => Buffer.from(key, "utf8");

/**
 * Keys are encoded into one reused buffer: `Buffer.from` of a 4 KiB key allocates outside the
 * pool and cost 1.9 µs against 0.3 here. The result is valid until the next call.
 */
const SCRATCH = Buffer.allocUnsafe(16 * 1024);
function encodeScratch(key: string): Buffer {
  if (key.length * 3 > SCRATCH.length) return utf8(key);
  return SCRATCH.subarray(0, SCRATCH.write(key, 0, "utf8"));
}

export function isLongKey(key: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most keys need no counting.
  return key.length * 3 > KV_SHORT_KEY_BYTES && Buffer.byteLength(key, "utf8") > KV_SHORT_KEY_BYTES;
}

/** A long key (or a prefix longer than `KV_SHORT_KEY_BYTES`) cut into its group and tail. */
export interface LongKey {
  /** The directory row key: the stem and the separator. */
  readonly group: string;
  readonly tail: string;
  readonly digest: Buffer;
  readonly rowKey: string;
}

/** The last key cut: a put of a long key reads, enlists and writes it, one cut for all three. */
let lastLongKey: LongKey | undefined;
let lastKey: string | undefined;

export function longKey(key: string): LongKey {
  if (key === lastKey) return lastLongKey!;
  const bytes = encodeScratch(key);
  let end = KV_SHORT_KEY_BYTES;
  // UTF-8 continuation bytes are 0b10xxxxxx.
  while (end < bytes.length && (bytes[end]! & 0xc0) === 0x80) end++;
  const group = bytes.toString("utf8", 0, end) + SEPARATOR;
  const digest = hash("sha256", bytes.subarray(end), "buffer");
  lastLongKey = { group, tail: bytes.toString("utf8", end), digest, rowKey: group + digest.toString("hex") };
  lastKey = key;
  return lastLongKey;
}

/** The row key of `key`'s record. */
export function rowKeyOf(key: string): string {
  return isLongKey(key) ? longKey(key).rowKey : key;
}

/** The write that stores `record` (an encoded record; null: deletes it) as `key`'s row. */
export function kvRowWrite(key: string, record: Uint8Array | null): Write {
  if (!isLongKey(key)) return { table: "kv", key, value: record };
  const member = longKey(key);
  return { table: "kv", key: member.rowKey, value: record && encodeMember(member.tail, record) };
}

/** The record bytes of `key`, or undefined when it has none. */
export function readKvRow(reader: StateReader, key: string): Uint8Array | undefined {
  if (!isLongKey(key)) return reader.get("kv", key);
  const bytes = reader.get("kv", longKey(key).rowKey);
  return bytes?.subarray(memberTailEnd(bytes));
}

/** Where a member row's tail ends and its record begins. */
function memberTailEnd(bytes: Uint8Array): number {
  const end =
    bytes.length < TAIL_LENGTH_BYTES
      ? Number.POSITIVE_INFINITY
      : TAIL_LENGTH_BYTES + ((bytes[0]! << 8) | bytes[1]!);
  if (end > bytes.length)
    throw new MetaraftError("MR_ERR_INTERNAL", "a kv member row is shorter than its tail");
  return end;
}

function encodeMember(tail: string, record: Uint8Array): Uint8Array {
  const tailBytes = utf8(tail);
  const out = Buffer.allocUnsafe(TAIL_LENGTH_BYTES + tailBytes.length + record.length);
  out.writeUInt16BE(tailBytes.length, 0);
  tailBytes.copy(out, TAIL_LENGTH_BYTES);
  out.set(record, TAIL_LENGTH_BYTES + tailBytes.length);
  return out;
}

function decodeMember(bytes: Uint8Array): { tail: string; record: Uint8Array } {
  const end = memberTailEnd(bytes);
  return {
    tail: Buffer.from(bytes.buffer, bytes.byteOffset, end).toString("utf8", TAIL_LENGTH_BYTES),
    record: bytes.subarray(end),
  };
}

/** The tail and record of the group's member with this digest. */
export function readMember(
  reader: StateReader,
  group: string,
  digest: Buffer,
): { tail: string; record: Uint8Array } {
  const bytes = reader.get("kv", group + digest.toString("hex"));
  if (bytes === undefined) {
    throw new MetaraftError("MR_ERR_INTERNAL", "a kv group directory lists a member that has no row");
  }
  return decodeMember(bytes);
}

/** A group's members' digests, in their keys' order. */
export function readDirectory(reader: StateReader, group: string): Buffer[] {
  const bytes = reader.get("kv", group);
  if (bytes === undefined) return [];
  if (bytes.length % DIGEST_BYTES !== 0) {
    throw new MetaraftError("MR_ERR_INTERNAL", `a kv group directory of ${bytes.length} bytes`);
  }
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / DIGEST_BYTES }, (_, i) =>
    view.subarray(i * DIGEST_BYTES, (i + 1) * DIGEST_BYTES),
  );
}

/** The directory row's write: the digests in order, or a delete once the group is empty. */
export function directoryWrite(group: string, digests: readonly Buffer[]): Write {
  return { table: "kv", key: group, value: digests.length === 0 ? null : Buffer.concat(digests) };
}

/**
 * Where a member with `tail` is, or would go, among `count` members whose tails `tailAt`
 * gives in order: the first index whose tail is not below it. Members share the stem, so
 * their tails' UTF-8 order is their keys'.
 */
export function memberIndex(count: number, tailAt: (i: number) => string, tail: string): number {
  const target = utf8(tail);
  let lo = 0;
  let hi = count;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(encodeScratch(tailAt(mid)), target) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A row as a range returns it: its full key and its record's bytes. */
export interface KvRow {
  readonly key: string;
  readonly value: Uint8Array;
}

/** Up to `limit` of the group's members that start with `prefix` and sort after `startAfter`. */
function groupRows(
  reader: StateReader,
  group: string,
  prefix: string,
  startAfter: string | undefined,
  limit: number,
  out: KvRow[],
): void {
  const digests = readDirectory(reader, group);
  const stem = group.slice(0, -SEPARATOR.length);
  // Each member's row is read once, whether by a search or by the walk.
  const rows = new Map<number, { tail: string; record: Uint8Array }>();
  const rowAt = (i: number) => {
    let row = rows.get(i);
    if (!row) {
      row = readMember(reader, group, digests[i]!);
      rows.set(i, row);
    }
    return row;
  };
  const tailAt = (i: number) => rowAt(i).tail;
  // A prefix longer than the stem: its keys are contiguous among the sorted members.
  let i = isLongKey(prefix) ? memberIndex(digests.length, tailAt, longKey(prefix).tail) : 0;
  if (startAfter !== undefined) {
    const after = isLongKey(startAfter) ? longKey(startAfter) : undefined;
    if (after?.group === group) {
      let at = memberIndex(digests.length, tailAt, after.tail);
      if (at < digests.length && digests[at]!.equals(after.digest)) at++;
      i = Math.max(i, at);
    } else if (Buffer.compare(utf8(startAfter), utf8(stem)) > 0) {
      // Not of the group and past its stem: it differs from the stem within it, so it sorts
      // after every member (a key below the stem sorts before them all).
      return;
    }
  }
  for (; i < digests.length && out.length < limit; i++) {
    const row = rowAt(i);
    const key = stem + row.tail;
    if (!key.startsWith(prefix)) return;
    out.push({ key, value: row.record });
  }
}

/** The group (directory row key) of a long row key: a directory's own, or a member's. */
function groupOfRow(rowKey: string): string {
  return rowKey.endsWith(SEPARATOR) ? rowKey : rowKey.slice(0, rowKey.length - HASH_CHARS);
}

/**
 * The entries whose keys start with `prefix` and sort after `startAfter`, in UTF-8 byte order of
 * the full keys, at most `limit`: what `reader.scan` is for short keys, across groups too.
 */
export function scanKvRows(
  reader: StateReader,
  prefix: string,
  startAfter: string | undefined,
  limit: number,
): KvRow[] {
  const out: KvRow[] = [];
  // Only long keys start with a long prefix, and they are all in one group.
  if (isLongKey(prefix)) {
    groupRows(reader, longKey(prefix).group, prefix, startAfter, limit, out);
    return out;
  }
  let cursor = startAfter;
  if (startAfter !== undefined && isLongKey(startAfter)) {
    const { group } = longKey(startAfter);
    if (startAfter.startsWith(prefix)) groupRows(reader, group, prefix, startAfter, limit, out);
    cursor = group + PAST_MEMBERS;
  }
  while (out.length < limit) {
    const want = limit - out.length;
    const rows = reader.scan("kv", prefix, cursor, want);
    let done: string | undefined;
    for (const row of rows) {
      if (out.length >= limit) return out;
      if (!isLongKey(row.key)) {
        out.push(row);
        cursor = row.key;
        continue;
      }
      // The first row of a group is its directory (a prefix of the rest): take the members
      // in its order, and pass over their rows.
      const group = groupOfRow(row.key);
      if (group === done) continue;
      groupRows(reader, group, prefix, undefined, limit, out);
      done = group;
      cursor = group + PAST_MEMBERS;
    }
    if (rows.length < want) break;
  }
  return out;
}
