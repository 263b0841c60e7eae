import { createHash } from "node:crypto";
import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { StateReader } from "../execution/types.js";

/**
 * Where a kv key's row lives in the `kv` table. LMDB takes keys of at most 1,978 bytes and the
 * keyspace takes keys of up to 4 KiB, so:
 *
 * - a key of at most `KV_SHORT_KEY_BYTES` UTF-8 bytes is its own row key, as before;
 * - a longer key is a member of the group of long keys that share its first
 *   `KV_SHORT_KEY_BYTES` bytes (cut at the end of the character holding the last of them:
 *   the group's `stem`). Its row key is `stem + "\0" + sha256(key)`, and the group's
 *   directory row, `stem + "\0"`, lists the members' full keys in UTF-8 byte order.
 *
 * Every row key of a group starts with those same bytes, so the group sits where its keys
 * belong among the short ones, contiguously; only its members' order among themselves is not
 * the row keys' order (that is the hash's), which is what the directory gives. A range reads
 * the directory and fetches only the members it returns. The cost is on create and delete of
 * a long key, which rewrite the directory; `kv.longKeyGroupMax` bounds it.
 */

/** Keys of at most this many UTF-8 bytes are their own row key. */
export const KV_SHORT_KEY_BYTES = 1900;

const SEPARATOR = "\u0000";
/** Sorts after every member row of a group (hex digits), before anything past the group. */
const PAST_MEMBERS = "~";
const HASH_CHARS = 64;

/** The UTF-8 bytes of `key`. */
export const utf8 = (key: string): Buffer => Buffer.from(key, "utf8");

export function isLongKey(key: string): boolean {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most keys need no counting.
  return key.length * 3 > KV_SHORT_KEY_BYTES && Buffer.byteLength(key, "utf8") > KV_SHORT_KEY_BYTES;
}

/** The directory row key of the group of a long key (or of a prefix longer than `KV_SHORT_KEY_BYTES`). */
export function groupOf(key: string): string {
  const bytes = utf8(key);
  let end = KV_SHORT_KEY_BYTES;
  // Extend to the end of the character: UTF-8 continuation bytes are 0b10xxxxxx.
  while (end < bytes.length && (bytes[end]! & 0xc0) === 0x80) end++;
  return bytes.subarray(0, end).toString("utf8") + SEPARATOR;
}

/** The row key of `key`'s record. */
export function rowKeyOf(key: string): string {
  if (!isLongKey(key)) return key;
  return groupOf(key) + createHash("sha256").update(key, "utf8").digest("hex");
}

/** The group (directory row key) a long row key belongs to, from a directory or a member row key. */
function groupOfRow(rowKey: string): string {
  return rowKey.endsWith(SEPARATOR) ? rowKey : rowKey.slice(0, rowKey.length - HASH_CHARS);
}

/** The members' full keys, in UTF-8 byte order. */
export function decodeDirectory(bytes: Uint8Array): string[] {
  const keys = unpack(bytes) as unknown;
  if (!Array.isArray(keys)) throw new MetaraftError("MR_ERR_INTERNAL", "a kv group directory is not a list");
  return keys as string[];
}

export function encodeDirectory(keys: readonly string[]): Uint8Array {
  return pack(keys);
}

export function readDirectory(reader: StateReader, group: string): string[] {
  const bytes = reader.get("kv", group);
  return bytes === undefined ? [] : decodeDirectory(bytes);
}

const compareUtf8 = (a: string, b: string): number => Buffer.compare(utf8(a), utf8(b));

/** Where `key` is, or would go, in the sorted `keys`: the first index whose key is not below it. */
export function directoryIndex(keys: readonly string[], key: string): number {
  const target = utf8(key);
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (Buffer.compare(utf8(keys[mid]!), target) < 0) lo = mid + 1;
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
  const keys = readDirectory(reader, group);
  // A prefix longer than the stem: its keys are contiguous in the sorted directory.
  let i = prefix.length > 0 ? directoryIndex(keys, prefix) : 0;
  if (startAfter !== undefined) {
    let after = directoryIndex(keys, startAfter);
    if (after < keys.length && keys[after] === startAfter) after++;
    i = Math.max(i, after);
  }
  for (; i < keys.length && out.length < limit; i++) {
    const key = keys[i]!;
    if (!key.startsWith(prefix)) return;
    const value = reader.get("kv", rowKeyOf(key));
    if (value === undefined) {
      throw new MetaraftError("MR_ERR_INTERNAL", "a kv group directory lists a key that has no row");
    }
    out.push({ key, value });
  }
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
    groupRows(reader, groupOf(prefix), prefix, startAfter, limit, out);
    return out;
  }
  let cursor = startAfter;
  if (startAfter !== undefined && isLongKey(startAfter)) {
    const group = groupOf(startAfter);
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
      // from it in their order, and pass over their rows.
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
