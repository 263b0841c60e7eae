import { MetaraftError } from "../errors.js";
import {
  type Execution,
  objectIdOf,
  type Request,
  type RequestSpec,
  type ScanEntry,
  type StateReader,
  type Write,
} from "../execution/types.js";
import { checkBucketName, checkKeyName, checkVolumeName, KEY_NAME_BYTES_MAX, utf8Length } from "./names.js";
import {
  type BucketInfo,
  bucketsPrefixOf,
  bucketTableKey,
  decodeBucketInfo,
  decodeKeyInfo,
  decodeOpenKeyInfo,
  decodeVolumeInfo,
  encodeBucketInfo,
  encodeKeyInfo,
  encodeOpenKeyInfo,
  encodeVolumeInfo,
  type KeyInfo,
  keysPrefixOf,
  keyTableKey,
  type OpenKeyInfo,
  openKeyTableKey,
  QUOTA_BYTES_UNLIMITED,
  sortedStringMap,
  type VolumeInfo,
  volumeTableKey,
} from "./records.js";

/**
 * The namespace requests: one `RequestSpec` per operation. `validate` turns a raw request into
 * a typed one (defaults filled in, unknown fields dropped); `execute` reads state and returns
 * absolute writes and a reply. Handlers are deterministic: they read only the state,
 * `context.txid` and `context.time`, never the clock or a random source, so that every node
 * that runs one computes the same bytes.
 */

/** How long an open key may wait for its commit. */
export const OPEN_KEY_EXPIRY_MS = 24 * 60 * 60 * 1000;
/** Items in one list reply, when the request does not say, and at most. */
export const LIST_LIMIT_DEFAULT = 1000;
export const LIST_LIMIT_MAX = 1000;
/** UTF-8 bytes of a list's `prefix` or `startAfter` (no name is longer). */
export const LIST_ARGUMENT_BYTES_MAX = KEY_NAME_BYTES_MAX;
/** UTF-8 bytes of all of a key's metadata, names and values together (S3's user metadata limit). */
export const METADATA_BYTES_MAX = 2 * 1024;
export const ETAG_LENGTH_MAX = 256;
export const OWNER_BYTES_MAX = 256;
/** Owner of a volume created without one: the requests carry no caller identity yet. */
export const VOLUME_OWNER_NONE = "";

// ---- the typed requests ----

export interface CreateVolumeRequest extends Request {
  readonly op: "createVolume";
  readonly volume: string;
  readonly owner: string;
  readonly quotaBytes: number;
}
export interface DeleteVolumeRequest extends Request {
  readonly op: "deleteVolume";
  readonly volume: string;
}
export interface InfoVolumeRequest extends Request {
  readonly op: "infoVolume";
  readonly volume: string;
}
export interface CreateBucketRequest extends Request {
  readonly op: "createBucket";
  readonly volume: string;
  readonly bucket: string;
  readonly versioning: boolean | undefined;
}
export interface DeleteBucketRequest extends Request {
  readonly op: "deleteBucket";
  readonly volume: string;
  readonly bucket: string;
}
export interface InfoBucketRequest extends Request {
  readonly op: "infoBucket";
  readonly volume: string;
  readonly bucket: string;
}
export interface OpenKeyRequest extends Request {
  readonly op: "openKey";
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
  readonly size: number;
}
export interface CommitKeyRequest extends Request {
  readonly op: "commitKey";
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
  readonly openKeyId: number;
  readonly size: number;
  readonly etag: string;
  readonly metadata: Readonly<Record<string, string>>;
}
export interface DeleteKeyRequest extends Request {
  readonly op: "deleteKey";
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
}
export interface RenameKeyRequest extends Request {
  readonly op: "renameKey";
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
  readonly toKey: string;
}
export interface LookupKeyRequest extends Request {
  readonly op: "lookupKey";
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
}
interface ListPage {
  readonly prefix: string;
  readonly startAfter: string | undefined;
  readonly limit: number;
}
export interface ListVolumesRequest extends Request, ListPage {
  readonly op: "listVolumes";
}
export interface ListBucketsRequest extends Request, ListPage {
  readonly op: "listBuckets";
  readonly volume: string;
}
export interface ListKeysRequest extends Request, ListPage {
  readonly op: "listKeys";
  readonly volume: string;
  readonly bucket: string;
}

export type NamespaceRequest =
  | CreateVolumeRequest
  | DeleteVolumeRequest
  | InfoVolumeRequest
  | ListVolumesRequest
  | CreateBucketRequest
  | DeleteBucketRequest
  | InfoBucketRequest
  | ListBucketsRequest
  | OpenKeyRequest
  | CommitKeyRequest
  | DeleteKeyRequest
  | RenameKeyRequest
  | LookupKeyRequest
  | ListKeysRequest;

export type NamespaceOp = NamespaceRequest["op"];

/** The reply of the three list operations. */
export interface ListReply<T> {
  readonly items: readonly T[];
  /** More items follow: ask again with `startAfter: nextStartAfter`. */
  readonly truncated: boolean;
  /** The name of the last item, when truncated. */
  readonly nextStartAfter?: string;
}

// ---- field checks (validate) ----

function badArgument(field: string, rule: string): MetaraftError {
  return new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${field} ${rule}`);
}

/** Own fields only; null counts as absent, since MessagePack clients send nil for "not given". */
function fieldOf(raw: Request, field: string): unknown {
  const value = Object.hasOwn(raw, field) ? raw[field] : undefined;
  return value === null ? undefined : value;
}

function requiredString(raw: Request, field: string): string {
  const value = fieldOf(raw, field);
  if (value === undefined) throw badArgument(field, "is required");
  if (typeof value !== "string") throw badArgument(field, `must be a string, not ${typeof value}`);
  return value;
}

function optionalString(raw: Request, field: string): string | undefined {
  const value = fieldOf(raw, field);
  if (value !== undefined && typeof value !== "string") {
    throw badArgument(field, `must be a string, not ${typeof value}`);
  }
  return value;
}

function volumeField(raw: Request): string {
  const volume = requiredString(raw, "volume");
  checkVolumeName(volume, "volume");
  return volume;
}

function bucketField(raw: Request): string {
  const bucket = requiredString(raw, "bucket");
  checkBucketName(bucket, "bucket");
  return bucket;
}

function keyField(raw: Request, field: "key" | "toKey"): string {
  const key = requiredString(raw, field);
  checkKeyName(key, field);
  return key;
}

/** The bucket a request is about, checked. */
function bucketAddress(raw: Request): { volume: string; bucket: string } {
  return { volume: volumeField(raw), bucket: bucketField(raw) };
}

/** The key a request is about, checked. */
function keyAddress(raw: Request): { volume: string; bucket: string; key: string } {
  return { ...bucketAddress(raw), key: keyField(raw, "key") };
}

function checkCount(value: unknown, field: string): number {
  if (typeof value !== "number") throw badArgument(field, `must be a number, not ${typeof value}`);
  if (!(Number.isSafeInteger(value) && value >= 0)) {
    throw badArgument(field, `must be a non-negative integer below 2^53: ${value}`);
  }
  return value;
}

function requiredCount(raw: Request, field: string): number {
  const value = fieldOf(raw, field);
  if (value === undefined) throw badArgument(field, "is required");
  return checkCount(value, field);
}

function optionalCount(raw: Request, field: string): number | undefined {
  const value = fieldOf(raw, field);
  return value === undefined ? undefined : checkCount(value, field);
}

function optionalBoolean(raw: Request, field: string): boolean | undefined {
  const value = fieldOf(raw, field);
  if (value !== undefined && typeof value !== "boolean") {
    throw badArgument(field, `must be a boolean, not ${typeof value}`);
  }
  return value;
}

/** A free-form string: well-formed UTF-8 of bounded size. */
function checkText(value: string, field: string, bytesMax: number): string {
  const bytes = utf8Length(value);
  if (bytes < 0) throw badArgument(field, "must be valid UTF-8 (it holds a lone surrogate)");
  if (bytes > bytesMax) throw badArgument(field, `must be at most ${bytesMax} bytes of UTF-8, not ${bytes}`);
  return value;
}

function ownerField(raw: Request): string {
  const owner = optionalString(raw, "owner");
  if (owner === undefined) return VOLUME_OWNER_NONE;
  if (owner.length === 0) throw badArgument("owner", "must not be empty (leave it out instead)");
  return checkText(owner, "owner", OWNER_BYTES_MAX);
}

function etagField(raw: Request): string {
  const etag = requiredString(raw, "etag");
  if (etag.length > ETAG_LENGTH_MAX) {
    throw badArgument("etag", `must be at most ${ETAG_LENGTH_MAX} characters, not ${etag.length}`);
  }
  // A UTF-16 unit is at most 3 bytes of UTF-8: only the surrogate check can fail here.
  return checkText(etag, "etag", 3 * ETAG_LENGTH_MAX);
}

function metadataField(raw: Request): Record<string, string> {
  const value = fieldOf(raw, "metadata");
  if (value === undefined) return {};
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw badArgument("metadata", "must be a map of strings to strings");
  }
  const prototype = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) {
    throw badArgument("metadata", "must be a plain map of strings to strings");
  }
  const entries: [string, string][] = [];
  let bytes = 0;
  for (const [name, entry] of Object.entries(value)) {
    const shown = name.length > 64 ? `${name.slice(0, 64)}…` : name;
    if (name.length === 0) throw badArgument("metadata", "names must not be empty");
    if (name === "__proto__") throw badArgument("metadata", "must not use the name __proto__");
    if (typeof entry !== "string") throw badArgument(`metadata.${shown}`, "must be a string");
    const nameBytes = utf8Length(name);
    const entryBytes = utf8Length(entry);
    if (nameBytes < 0 || entryBytes < 0) {
      throw badArgument(`metadata.${shown}`, "must be valid UTF-8 (it holds a lone surrogate)");
    }
    bytes += nameBytes + entryBytes;
    if (bytes > METADATA_BYTES_MAX) {
      throw badArgument("metadata", `must be at most ${METADATA_BYTES_MAX} bytes of UTF-8, names and values`);
    }
    entries.push([name, entry]);
  }
  return sortedStringMap(entries);
}

function listPage(raw: Request): ListPage {
  const prefix = optionalString(raw, "prefix") ?? "";
  const startAfter = optionalString(raw, "startAfter");
  const limit = optionalCount(raw, "limit") ?? LIST_LIMIT_DEFAULT;
  if (limit < 1 || limit > LIST_LIMIT_MAX) {
    throw badArgument("limit", `must be from 1 to ${LIST_LIMIT_MAX}: ${limit}`);
  }
  checkText(prefix, "prefix", LIST_ARGUMENT_BYTES_MAX);
  if (startAfter !== undefined) checkText(startAfter, "startAfter", LIST_ARGUMENT_BYTES_MAX);
  return { prefix, startAfter, limit };
}

// ---- state access (execute) ----

/** A stored record that does not match the key it is stored under: a bug or a damaged store. */
function checkStored(
  table: string,
  tableKey: string,
  record: object,
  want: Readonly<Record<string, unknown>>,
) {
  const fields = record as Readonly<Record<string, unknown>>;
  for (const [name, value] of Object.entries(want)) {
    if (fields[name] !== value) {
      throw new MetaraftError(
        "MR_ERR_INTERNAL",
        `${table} record at ${JSON.stringify(tableKey)} has ${name} ${JSON.stringify(fields[name])}`,
      );
    }
  }
}

function readVolume(reader: StateReader, volume: string): VolumeInfo | undefined {
  const tableKey = volumeTableKey(volume);
  const bytes = reader.get("volumes", tableKey);
  if (bytes === undefined) return undefined;
  const info = decodeVolumeInfo(bytes);
  checkStored("volumes", tableKey, info, { name: volume });
  return info;
}

function readBucket(reader: StateReader, volume: string, bucket: string): BucketInfo | undefined {
  const tableKey = bucketTableKey(volume, bucket);
  const bytes = reader.get("buckets", tableKey);
  if (bytes === undefined) return undefined;
  const info = decodeBucketInfo(bytes);
  checkStored("buckets", tableKey, info, { volume, name: bucket });
  return info;
}

function readKey(reader: StateReader, volume: string, bucket: string, key: string): KeyInfo | undefined {
  const tableKey = keyTableKey(volume, bucket, key);
  const bytes = reader.get("keys", tableKey);
  if (bytes === undefined) return undefined;
  const info = decodeKeyInfo(bytes);
  checkStored("keys", tableKey, info, { volume, bucket, key });
  return info;
}

function requireVolume(reader: StateReader, volume: string): VolumeInfo {
  const info = readVolume(reader, volume);
  if (info === undefined) throw new MetaraftError("MR_ERR_VOLUME_NOT_FOUND", `volume ${volume}`);
  return info;
}

/** The volume first: a missing volume is the more useful answer than a missing bucket. */
function requireBucket(reader: StateReader, volume: string, bucket: string): BucketInfo {
  requireVolume(reader, volume);
  const info = readBucket(reader, volume, bucket);
  if (info === undefined) throw new MetaraftError("MR_ERR_BUCKET_NOT_FOUND", `bucket ${volume}/${bucket}`);
  return info;
}

function requireKey(reader: StateReader, volume: string, bucket: string, key: string): KeyInfo {
  const info = readKey(reader, volume, bucket, key);
  if (info === undefined) {
    throw new MetaraftError("MR_ERR_KEY_NOT_FOUND", `key ${JSON.stringify(key)} in ${volume}/${bucket}`);
  }
  return info;
}

function hasAny(reader: StateReader, table: "buckets" | "keys" | "openKeys", prefix: string): boolean {
  return reader.scan(table, prefix, undefined, 1).length > 0;
}

/**
 * One page of a listing. Reads one entry more than it returns, to know whether more follow.
 * `base` is the table-key prefix of the parent; names are compared as table keys with that
 * prefix, which orders them by their UTF-8 bytes as the table does.
 */
function listPageOf<T>(
  reader: StateReader,
  table: "volumes" | "buckets" | "keys",
  base: string,
  page: ListPage,
  decode: (entry: ScanEntry) => T,
  nameOf: (item: T) => string,
): ListReply<T> {
  const startAfter = page.startAfter === undefined ? undefined : base + page.startAfter;
  const entries = reader.scan(table, base + page.prefix, startAfter, page.limit + 1);
  const truncated = entries.length > page.limit;
  const items = entries.slice(0, page.limit).map(decode);
  const last = items[items.length - 1];
  if (!truncated || last === undefined) return { items, truncated };
  return { items, truncated, nextStartAfter: nameOf(last) };
}

/** Decodes a listed record and checks that it names the table key it was found under. */
function decodeListed<T>(
  table: string,
  entry: ScanEntry,
  decode: (bytes: Uint8Array) => T,
  tableKeyOf: (info: T) => string,
): T {
  const info = decode(entry.value);
  const tableKey = tableKeyOf(info);
  if (tableKey !== entry.key) {
    throw new MetaraftError(
      "MR_ERR_INTERNAL",
      `${table} record at ${JSON.stringify(entry.key)} names ${JSON.stringify(tableKey)}`,
    );
  }
  return info;
}

function put(table: Write["table"], key: string, value: Uint8Array): Write {
  return { table, key, value };
}

function remove(table: Write["table"], key: string): Write {
  return { table, key, value: null };
}

// ---- the specs ----

function spec<R extends Request>(definition: RequestSpec<R>): RequestSpec<R> {
  return Object.freeze(definition);
}

export const createVolumeSpec = spec<CreateVolumeRequest>({
  op: "createVolume",
  kind: "write",
  validate: (raw) => ({
    op: "createVolume",
    volume: volumeField(raw),
    owner: ownerField(raw),
    quotaBytes: optionalCount(raw, "quotaBytes") ?? QUOTA_BYTES_UNLIMITED,
  }),
  execute(request, { txid, time, reader }): Execution {
    if (readVolume(reader, request.volume) !== undefined) {
      throw new MetaraftError("MR_ERR_VOLUME_EXISTS", `volume ${request.volume}`);
    }
    const info: VolumeInfo = {
      name: request.volume,
      objectId: objectIdOf(txid, 0),
      updateId: txid,
      createdAt: time,
      modifiedAt: time,
      owner: request.owner,
      quotaBytes: request.quotaBytes,
    };
    return {
      writes: [put("volumes", volumeTableKey(request.volume), encodeVolumeInfo(info))],
      events: [{ type: "VolumeCreated:Create", volume: request.volume, objectId: info.objectId }],
      reply: { objectId: info.objectId, updateId: info.updateId },
    };
  },
});

export const deleteVolumeSpec = spec<DeleteVolumeRequest>({
  op: "deleteVolume",
  kind: "write",
  validate: (raw) => ({ op: "deleteVolume", volume: volumeField(raw) }),
  execute(request, { reader }): Execution {
    const { objectId } = requireVolume(reader, request.volume);
    if (hasAny(reader, "buckets", bucketsPrefixOf(request.volume))) {
      throw new MetaraftError("MR_ERR_VOLUME_NOT_EMPTY", `volume ${request.volume}`);
    }
    return {
      writes: [remove("volumes", volumeTableKey(request.volume))],
      events: [{ type: "VolumeRemoved:Delete", volume: request.volume, objectId }],
      reply: {},
    };
  },
});

export const infoVolumeSpec = spec<InfoVolumeRequest>({
  op: "infoVolume",
  kind: "read",
  validate: (raw) => ({ op: "infoVolume", volume: volumeField(raw) }),
  execute(request, { reader }): Execution {
    return { writes: [], reply: { volume: requireVolume(reader, request.volume) } };
  },
});

export const listVolumesSpec = spec<ListVolumesRequest>({
  op: "listVolumes",
  kind: "read",
  validate: (raw) => ({ op: "listVolumes", ...listPage(raw) }),
  execute(request, { reader }): Execution {
    const reply = listPageOf(
      reader,
      "volumes",
      "",
      request,
      (entry) => decodeListed("volumes", entry, decodeVolumeInfo, (info) => volumeTableKey(info.name)),
      (info) => info.name,
    );
    return { writes: [], reply: { ...reply } };
  },
});

export const createBucketSpec = spec<CreateBucketRequest>({
  op: "createBucket",
  kind: "write",
  validate: (raw) => ({
    op: "createBucket",
    ...bucketAddress(raw),
    versioning: optionalBoolean(raw, "versioning"),
  }),
  execute(request, { txid, time, reader }): Execution {
    const { volume, bucket, versioning } = request;
    requireVolume(reader, volume);
    if (readBucket(reader, volume, bucket) !== undefined) {
      throw new MetaraftError("MR_ERR_BUCKET_EXISTS", `bucket ${volume}/${bucket}`);
    }
    const info: BucketInfo = {
      volume,
      name: bucket,
      objectId: objectIdOf(txid, 0),
      updateId: txid,
      createdAt: time,
      modifiedAt: time,
      ...(versioning === undefined ? {} : { versioning }),
    };
    return {
      writes: [put("buckets", bucketTableKey(volume, bucket), encodeBucketInfo(info))],
      events: [{ type: "BucketCreated:Create", volume, bucket, objectId: info.objectId }],
      reply: { objectId: info.objectId, updateId: info.updateId },
    };
  },
});

/** Expired open keys a bucket delete removes along with the bucket; more, and it is refused. */
export const EXPIRED_OPEN_KEYS_PER_DELETE_MAX = 1000;

export const deleteBucketSpec = spec<DeleteBucketRequest>({
  op: "deleteBucket",
  kind: "write",
  validate: (raw) => ({ op: "deleteBucket", ...bucketAddress(raw) }),
  execute(request, { reader, time }): Execution {
    const { volume, bucket } = request;
    const info = requireBucket(reader, volume, bucket);
    const prefix = keysPrefixOf(volume, bucket);
    if (hasAny(reader, "keys", prefix)) {
      throw new MetaraftError("MR_ERR_BUCKET_NOT_EMPTY", `bucket ${volume}/${bucket} holds keys`);
    }
    // A live open key keeps the bucket (its commit must find it); expired ones can never be
    // committed, so they go with the bucket, up to a bound per request.
    const open = reader.scan("openKeys", prefix, undefined, EXPIRED_OPEN_KEYS_PER_DELETE_MAX + 1);
    if (
      open.length > EXPIRED_OPEN_KEYS_PER_DELETE_MAX ||
      open.some((o) => decodeOpenKeyInfo(o.value).expiresAt > time)
    ) {
      throw new MetaraftError("MR_ERR_BUCKET_NOT_EMPTY", `bucket ${volume}/${bucket} holds open keys`);
    }
    return {
      writes: [
        ...open.map((o) => remove("openKeys", o.key)),
        remove("buckets", bucketTableKey(volume, bucket)),
      ],
      events: [{ type: "BucketRemoved:Delete", volume, bucket, objectId: info.objectId }],
      reply: {},
    };
  },
});

export const infoBucketSpec = spec<InfoBucketRequest>({
  op: "infoBucket",
  kind: "read",
  validate: (raw) => ({ op: "infoBucket", ...bucketAddress(raw) }),
  execute(request, { reader }): Execution {
    return { writes: [], reply: { bucket: requireBucket(reader, request.volume, request.bucket) } };
  },
});

export const listBucketsSpec = spec<ListBucketsRequest>({
  op: "listBuckets",
  kind: "read",
  validate: (raw) => ({ op: "listBuckets", volume: volumeField(raw), ...listPage(raw) }),
  execute(request, { reader }): Execution {
    requireVolume(reader, request.volume);
    const reply = listPageOf(
      reader,
      "buckets",
      bucketsPrefixOf(request.volume),
      request,
      (entry) =>
        decodeListed("buckets", entry, decodeBucketInfo, (info) => bucketTableKey(info.volume, info.name)),
      (info) => info.name,
    );
    return { writes: [], reply: { ...reply } };
  },
});

export const openKeySpec = spec<OpenKeyRequest>({
  op: "openKey",
  kind: "write",
  validate: (raw) => ({
    op: "openKey",
    ...keyAddress(raw),
    size: optionalCount(raw, "size") ?? 0,
  }),
  execute(request, { txid, time, reader }): Execution {
    const { volume, bucket, key } = request;
    requireBucket(reader, volume, bucket);
    const openKeyId = objectIdOf(txid, 0);
    const tableKey = openKeyTableKey(volume, bucket, key, openKeyId);
    if (reader.get("openKeys", tableKey) !== undefined) {
      throw new MetaraftError("MR_ERR_INTERNAL", `open key id ${openKeyId} given twice (txid ${txid})`);
    }
    const info: OpenKeyInfo = {
      volume,
      bucket,
      key,
      openKeyId,
      size: request.size,
      createdAt: time,
      expiresAt: time + OPEN_KEY_EXPIRY_MS,
    };
    return {
      writes: [put("openKeys", tableKey, encodeOpenKeyInfo(info))],
      reply: { openKeyId, expiresAt: info.expiresAt },
    };
  },
});

export const commitKeySpec = spec<CommitKeyRequest>({
  op: "commitKey",
  kind: "write",
  validate: (raw) => ({
    op: "commitKey",
    ...keyAddress(raw),
    openKeyId: requiredCount(raw, "openKeyId"),
    size: requiredCount(raw, "size"),
    etag: etagField(raw),
    metadata: metadataField(raw),
  }),
  execute(request, { txid, time, reader }): Execution {
    const { volume, bucket, key, openKeyId } = request;
    requireBucket(reader, volume, bucket);
    const openTableKey = openKeyTableKey(volume, bucket, key, openKeyId);
    const bytes = reader.get("openKeys", openTableKey);
    const where = `open key ${openKeyId} of ${JSON.stringify(key)} in ${volume}/${bucket}`;
    if (bytes === undefined) throw new MetaraftError("MR_ERR_OPEN_KEY_NOT_FOUND", where);
    const open = decodeOpenKeyInfo(bytes);
    checkStored("openKeys", openTableKey, open, { volume, bucket, key, openKeyId });
    if (open.expiresAt <= time) {
      throw new MetaraftError("MR_ERR_OPEN_KEY_NOT_FOUND", `${where} expired at ${open.expiresAt}`);
    }
    // Put, not update: a key committed over an existing one replaces it whole, in one write-set.
    const info: KeyInfo = {
      volume,
      bucket,
      key,
      objectId: openKeyId,
      updateId: txid,
      size: request.size,
      etag: request.etag,
      metadata: request.metadata,
      createdAt: open.createdAt,
      modifiedAt: time,
    };
    return {
      writes: [
        remove("openKeys", openTableKey),
        put("keys", keyTableKey(volume, bucket, key), encodeKeyInfo(info)),
      ],
      events: [
        {
          type: "ObjectCreated:Put",
          volume,
          bucket,
          key,
          objectId: info.objectId,
          size: info.size,
          etag: info.etag,
        },
      ],
      reply: { objectId: info.objectId, updateId: info.updateId },
    };
  },
});

export const deleteKeySpec = spec<DeleteKeyRequest>({
  op: "deleteKey",
  kind: "write",
  validate: (raw) => ({
    op: "deleteKey",
    ...keyAddress(raw),
  }),
  execute(request, { reader }): Execution {
    const { volume, bucket, key } = request;
    requireBucket(reader, volume, bucket);
    const gone = requireKey(reader, volume, bucket, key);
    return {
      writes: [remove("keys", keyTableKey(volume, bucket, key))],
      events: [
        {
          type: "ObjectRemoved:Delete",
          volume,
          bucket,
          key,
          objectId: gone.objectId,
          size: gone.size,
          etag: gone.etag,
        },
      ],
      reply: {},
    };
  },
});

interface ExpireKeyRequest extends Request {
  readonly op: "expireKey";
  readonly volume: string;
  readonly bucket: string;
  readonly key: string;
  readonly objectId: number;
}

/**
 * The lifecycle service's delete: removes the key only if it still holds the object it was
 * found expired with. A key overwritten (or renamed over) after it was enqueued has another
 * object id and is spared; so is one already gone. Either way the call succeeds, saying which.
 */
export const expireKeySpec = spec<ExpireKeyRequest>({
  op: "expireKey",
  kind: "write",
  validate: (raw) => ({
    op: "expireKey",
    ...keyAddress(raw),
    objectId: checkCount(raw.objectId, "objectId"),
  }),
  execute(request, { reader }): Execution {
    const { volume, bucket, key, objectId } = request;
    const current = readKey(reader, volume, bucket, key);
    if (current === undefined || current.objectId !== objectId) {
      return { writes: [], reply: { expired: false, ...(current ? { objectId: current.objectId } : {}) } };
    }
    return {
      writes: [remove("keys", keyTableKey(volume, bucket, key))],
      events: [
        {
          type: "LifecycleExpiration:Delete",
          volume,
          bucket,
          key,
          objectId,
          size: current.size,
          etag: current.etag,
        },
      ],
      reply: { expired: true },
    };
  },
});

export const renameKeySpec = spec<RenameKeyRequest>({
  op: "renameKey",
  kind: "write",
  validate: (raw) => ({
    op: "renameKey",
    ...keyAddress(raw),
    toKey: keyField(raw, "toKey"),
  }),
  execute(request, { txid, time, reader }): Execution {
    const { volume, bucket, key, toKey } = request;
    requireBucket(reader, volume, bucket);
    const source = requireKey(reader, volume, bucket, key);
    // Renaming a key onto itself finds the target taken too: refused, never a silent no-op.
    if (readKey(reader, volume, bucket, toKey) !== undefined) {
      throw new MetaraftError("MR_ERR_KEY_EXISTS", `key ${JSON.stringify(toKey)} in ${volume}/${bucket}`);
    }
    const info: KeyInfo = { ...source, key: toKey, updateId: txid, modifiedAt: time };
    return {
      writes: [
        remove("keys", keyTableKey(volume, bucket, key)),
        put("keys", keyTableKey(volume, bucket, toKey), encodeKeyInfo(info)),
      ],
      events: [
        {
          type: "ObjectRenamed:Rename",
          volume,
          bucket,
          key,
          toKey,
          objectId: info.objectId,
          size: info.size,
          etag: info.etag,
        },
      ],
      reply: { objectId: info.objectId, updateId: info.updateId },
    };
  },
});

export const lookupKeySpec = spec<LookupKeyRequest>({
  op: "lookupKey",
  kind: "read",
  validate: (raw) => ({
    op: "lookupKey",
    ...keyAddress(raw),
  }),
  execute(request, { reader }): Execution {
    const { volume, bucket, key } = request;
    requireBucket(reader, volume, bucket);
    return { writes: [], reply: { key: requireKey(reader, volume, bucket, key) } };
  },
});

export const listKeysSpec = spec<ListKeysRequest>({
  op: "listKeys",
  kind: "read",
  validate: (raw) => ({
    op: "listKeys",
    ...bucketAddress(raw),
    ...listPage(raw),
  }),
  execute(request, { reader }): Execution {
    const { volume, bucket } = request;
    requireBucket(reader, volume, bucket);
    const reply = listPageOf(
      reader,
      "keys",
      keysPrefixOf(volume, bucket),
      request,
      (entry) =>
        decodeListed("keys", entry, decodeKeyInfo, (info) => keyTableKey(info.volume, info.bucket, info.key)),
      (info) => info.key,
    );
    return { writes: [], reply: { ...reply } };
  },
});

/** Every namespace request, writes first. */
export const namespaceSpecs: readonly RequestSpec[] = Object.freeze([
  createVolumeSpec,
  deleteVolumeSpec,
  createBucketSpec,
  deleteBucketSpec,
  openKeySpec,
  commitKeySpec,
  deleteKeySpec,
  expireKeySpec,
  renameKeySpec,
  infoVolumeSpec,
  listVolumesSpec,
  infoBucketSpec,
  listBucketsSpec,
  lookupKeySpec,
  listKeysSpec,
]);

export const namespaceSpecsByOp: ReadonlyMap<string, RequestSpec> = new Map(
  namespaceSpecs.map((s) => [s.op, s]),
);
