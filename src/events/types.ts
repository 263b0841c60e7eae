/**
 * The events of the ledger (DESIGN.md, "The event ledger and plugins"). A request's handler
 * returns drafts beside its writes; the executor stamps each with the request's txid and time.
 * Followers cannot derive events from merged write-sets, so the events travel in the batch's
 * Raft entry and every node stores exactly the leader's.
 */

/**
 * Every event type, by its stable code on disk (u8). Append only: a code is never reused or
 * renumbered, because ledgers on disk and in snapshots carry it. Names follow S3 event
 * notifications (`ObjectCreated:Put`) where S3 has one.
 */
export const EVENT_TYPE_CODES = {
  "VolumeCreated:Create": 1,
  "VolumeRemoved:Delete": 2,
  "BucketCreated:Create": 3,
  "BucketRemoved:Delete": 4,
  "ObjectCreated:Put": 5,
  "ObjectRemoved:Delete": 6,
  "ObjectRenamed:Rename": 7,
  /** A service's configuration or `shouldRun` was set (`key` is `_service/NAME`). */
  "ServiceConfig:Set": 8,
  /** A service's configuration was deleted (`key` is `_service/NAME`). */
  "ServiceConfig:Delete": 9,
  /** The lifecycle service expired a key (S3's lifecycle expiration delete). */
  "LifecycleExpiration:Delete": 10,
  /** A coordination key was put (`key` is the kv key, no volume; its watch path is `_kv/<key>`). */
  "KvPut:Put": 11,
  /** A coordination key was deleted (`key` is the kv key, no volume; watch path `_kv/<key>`). */
  "KvDelete:Delete": 12,
} as const;

export type EventType = keyof typeof EVENT_TYPE_CODES;

export const EVENT_TYPE_OF_CODE: ReadonlyMap<number, EventType> = new Map(
  Object.entries(EVENT_TYPE_CODES).map(([name, code]) => [code, name as EventType]),
);

/** What a handler says happened; the names involved, and object id, size and etag where they apply. */
export interface EventDraft {
  readonly type: EventType;
  readonly volume?: string;
  readonly bucket?: string;
  readonly key?: string;
  /** A rename's new key (`key` is the old one). */
  readonly toKey?: string;
  readonly objectId?: number;
  readonly size?: number;
  readonly etag?: string;
}

/** An event as the ledger keeps it: a draft stamped with its request's txid and time. */
export interface LedgerEvent extends EventDraft {
  /** The request's transaction id: events are in txid order, a txid may have several. */
  readonly txid: number;
  /** Milliseconds since the epoch: the request's time, fixed by the leader's gatekeeper. */
  readonly time: number;
}

/**
 * The path prefix of the coordination keyspace's events: a kv key `app/lock` has the path
 * `_kv/app/lock`, so a watch of `_kv/app/` sees it and one of a volume never does (no volume
 * name starts with `_`).
 */
export const KV_EVENT_PATH_PREFIX = "_kv/";

/** Whether the event is one of the coordination keyspace's (its `key` is a kv key). */
export function isKvEvent(event: EventDraft): boolean {
  return event.type === "KvPut:Put" || event.type === "KvDelete:Delete";
}

/**
 * The path a watch prefix is matched against: `volume`, `volume/bucket` or `volume/bucket/key`;
 * `_kv/<key>` for a coordination key's event. A rename matches by its old and by its new path.
 */
export function eventPaths(event: EventDraft): string[] {
  if (isKvEvent(event)) return [KV_EVENT_PATH_PREFIX + (event.key ?? "")];
  const base = [event.volume, event.bucket].filter((part) => part !== undefined).join("/");
  if (event.key === undefined) return [base];
  // An event of no volume (a service's) is matched by its key alone: `_service/lifecycle`.
  const paths = [base === "" ? event.key : `${base}/${event.key}`];
  if (event.toKey !== undefined) paths.push(`${base}/${event.toKey}`);
  return paths;
}

/** Whether `event` is under `prefix` ("" matches every event). */
export function matchesPrefix(event: EventDraft, prefix: string): boolean {
  if (prefix === "") return true;
  return eventPaths(event).some((path) => path.startsWith(prefix));
}

/** A txid as 16 hex digits: S3's `sequencer`, and the ledger's record keys (which sort as numbers). */
export function txidHex(txid: number): string {
  return txid.toString(16).padStart(16, "0");
}
