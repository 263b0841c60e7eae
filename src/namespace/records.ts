import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";

/**
 * The namespace records as stored in the `volumes`, `buckets`, `keys` and `openKeys` tables, and
 * the table keys that place them.
 *
 * Records are MessagePack maps. Every encoder builds a fresh object with its fields in one fixed
 * order (and metadata entries sorted), so that the same record always packs to the same bytes on
 * every node. Every record is checked field by field before it is packed and again after it is
 * unpacked: a record that fails the check is a bug or a damaged store, `MR_ERR_INTERNAL`.
 *
 * Table keys: volume and bucket names cannot hold '/', so the separators below are unambiguous,
 * and the keys of one bucket (and its open keys) share the prefix `volume/bucket/`. Key names
 * cannot hold NUL, which separates a key from its open-key id.
 */

/** Quota of a volume created without one. */
export const QUOTA_BYTES_UNLIMITED = -1;

export interface VolumeInfo {
  readonly name: string;
  /** Fixed at creation: `objectIdOf(txid, 0)` of the creating request. */
  readonly objectId: number;
  /** The txid of the last change. */
  readonly updateId: number;
  readonly createdAt: number;
  readonly modifiedAt: number;
  readonly owner: string;
  /** `QUOTA_BYTES_UNLIMITED` (-1) or a byte count. Stored, not yet enforced. */
  readonly quotaBytes: number;
}

export interface BucketInfo {
  readonly volume: string;
  readonly name: string;
  readonly objectId: number;
  readonly updateId: number;
  readonly createdAt: number;
  readonly modifiedAt: number;
  /** Absent when the request did not say. */
  readonly versioning?: boolean;
}

export interface KeyInfo {
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
  /** The open-key id it was committed from; kept through renames. */
  readonly objectId: number;
  readonly updateId: number;
  readonly size: number;
  readonly etag: string;
  readonly metadata: Readonly<Record<string, string>>;
  /** When the key was opened. */
  readonly createdAt: number;
  /** When it was committed, or last renamed. */
  readonly modifiedAt: number;
}

export interface OpenKeyInfo {
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
  /** `objectIdOf(txid, 0)` of the openKey request; the key's objectId once committed. */
  readonly openKeyId: number;
  /** The size announced at open; the commit states the real one. */
  readonly size: number;
  readonly createdAt: number;
  /** A commit at or after this time finds no open key. */
  readonly expiresAt: number;
}

// ---- table keys ----

const OPEN_KEY_SEPARATOR = "\u0000";
const OPEN_KEY_ID_HEX_DIGITS = 16;

export function volumeTableKey(volume: string): string {
  return volume;
}

/** Prefix of the `buckets` table keys of one volume. */
export function bucketsPrefixOf(volume: string): string {
  return `${volume}/`;
}

export function bucketTableKey(volume: string, bucket: string): string {
  return `${volume}/${bucket}`;
}

/** Prefix of the `keys` and the `openKeys` table keys of one bucket. */
export function keysPrefixOf(volume: string, bucket: string): string {
  return `${volume}/${bucket}/`;
}

export function keyTableKey(volume: string, bucket: string, key: string): string {
  return `${volume}/${bucket}/${key}`;
}

/** The id as 16 lowercase hex digits, so that the open keys of one key sort by id. */
export function openKeyIdHex(openKeyId: number): string {
  if (!(Number.isSafeInteger(openKeyId) && openKeyId >= 0)) {
    throw new MetaraftError(
      "MR_ERR_INTERNAL",
      `open key id must be a safe non-negative integer: ${openKeyId}`,
    );
  }
  return openKeyId.toString(16).padStart(OPEN_KEY_ID_HEX_DIGITS, "0");
}

export function openKeyTableKey(volume: string, bucket: string, key: string, openKeyId: number): string {
  return `${volume}/${bucket}/${key}${OPEN_KEY_SEPARATOR}${openKeyIdHex(openKeyId)}`;
}

// ---- field checks ----

type Fields = Readonly<Record<string, unknown>>;

function broken(record: string, detail: string): MetaraftError {
  return new MetaraftError("MR_ERR_INTERNAL", `${record} record: ${detail}`);
}

function fieldsOf(value: unknown, record: string): Fields {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw broken(record, "not a map");
  }
  return value as Fields;
}

function stringField(fields: Fields, name: string, record: string): string {
  const value = fields[name];
  if (typeof value !== "string") throw broken(record, `${name} is not a string`);
  return value;
}

/** Ids, times and sizes: integers that stay below 2^53, as everything that counts does. */
function integerField(fields: Fields, name: string, record: string, min = 0): number {
  const value = fields[name];
  if (!(typeof value === "number" && Number.isSafeInteger(value))) {
    throw broken(record, `${name} is not a safe integer`);
  }
  if (value < min) throw broken(record, `${name} is below ${min}: ${value}`);
  return value;
}

function stringMapField(fields: Fields, name: string, record: string): Record<string, string> {
  const value = fields[name];
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw broken(record, `${name} is not a map`);
  }
  const entries = Object.entries(value);
  for (const [key, entry] of entries) {
    if (typeof entry !== "string") throw broken(record, `${name}.${key} is not a string`);
    // msgpackr unpacks "__proto__" as "__proto_": such a record would not read back as written.
    if (key === "__proto__") throw broken(record, `${name} holds the key __proto__`);
  }
  return sortedStringMap(entries as [string, string][]);
}

/**
 * A string map with its entries in one canonical order. Object.fromEntries defines own data
 * properties, so a key such as "__proto__" cannot reach the prototype.
 */
export function sortedStringMap(entries: readonly (readonly [string, string])[]): Record<string, string> {
  return Object.fromEntries([...entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

// ---- records: check, encode, decode ----

/** Checks a volume record and copies it with its fields in the stored order. */
export function checkVolumeInfo(value: unknown): VolumeInfo {
  const r = "volume";
  const f = fieldsOf(value, r);
  return {
    name: stringField(f, "name", r),
    objectId: integerField(f, "objectId", r),
    updateId: integerField(f, "updateId", r),
    createdAt: integerField(f, "createdAt", r),
    modifiedAt: integerField(f, "modifiedAt", r),
    owner: stringField(f, "owner", r),
    quotaBytes: integerField(f, "quotaBytes", r, QUOTA_BYTES_UNLIMITED),
  };
}

export function checkBucketInfo(value: unknown): BucketInfo {
  const r = "bucket";
  const f = fieldsOf(value, r);
  const versioning = f.versioning;
  if (versioning !== undefined && typeof versioning !== "boolean") {
    throw broken(r, "versioning is not a boolean");
  }
  return {
    volume: stringField(f, "volume", r),
    name: stringField(f, "name", r),
    objectId: integerField(f, "objectId", r),
    updateId: integerField(f, "updateId", r),
    createdAt: integerField(f, "createdAt", r),
    modifiedAt: integerField(f, "modifiedAt", r),
    // Absent, not undefined: MessagePack would store an undefined field.
    ...(versioning === undefined ? {} : { versioning }),
  };
}

export function checkKeyInfo(value: unknown): KeyInfo {
  const r = "key";
  const f = fieldsOf(value, r);
  return {
    volume: stringField(f, "volume", r),
    bucket: stringField(f, "bucket", r),
    key: stringField(f, "key", r),
    objectId: integerField(f, "objectId", r),
    updateId: integerField(f, "updateId", r),
    size: integerField(f, "size", r),
    etag: stringField(f, "etag", r),
    metadata: stringMapField(f, "metadata", r),
    createdAt: integerField(f, "createdAt", r),
    modifiedAt: integerField(f, "modifiedAt", r),
  };
}

export function checkOpenKeyInfo(value: unknown): OpenKeyInfo {
  const r = "open key";
  const f = fieldsOf(value, r);
  return {
    volume: stringField(f, "volume", r),
    bucket: stringField(f, "bucket", r),
    key: stringField(f, "key", r),
    openKeyId: integerField(f, "openKeyId", r),
    size: integerField(f, "size", r),
    createdAt: integerField(f, "createdAt", r),
    expiresAt: integerField(f, "expiresAt", r),
  };
}

/** An exact copy: msgpackr returns a view into a larger shared buffer. */
function packed(record: object): Uint8Array {
  return Uint8Array.from(pack(record));
}

function unpacked(bytes: Uint8Array, record: string): unknown {
  try {
    return unpack(bytes);
  } catch (error) {
    throw new MetaraftError("MR_ERR_INTERNAL", `${record} record is not MessagePack`, { cause: error });
  }
}

export function encodeVolumeInfo(info: VolumeInfo): Uint8Array {
  return packed(checkVolumeInfo(info));
}

export function decodeVolumeInfo(bytes: Uint8Array): VolumeInfo {
  return checkVolumeInfo(unpacked(bytes, "volume"));
}

export function encodeBucketInfo(info: BucketInfo): Uint8Array {
  return packed(checkBucketInfo(info));
}

export function decodeBucketInfo(bytes: Uint8Array): BucketInfo {
  return checkBucketInfo(unpacked(bytes, "bucket"));
}

export function encodeKeyInfo(info: KeyInfo): Uint8Array {
  return packed(checkKeyInfo(info));
}

export function decodeKeyInfo(bytes: Uint8Array): KeyInfo {
  return checkKeyInfo(unpacked(bytes, "key"));
}

export function encodeOpenKeyInfo(info: OpenKeyInfo): Uint8Array {
  return packed(checkOpenKeyInfo(info));
}

export function decodeOpenKeyInfo(bytes: Uint8Array): OpenKeyInfo {
  return checkOpenKeyInfo(unpacked(bytes, "open key"));
}
