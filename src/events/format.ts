import { type LedgerEvent, txidHex } from "./types.js";

/**
 * How the shipped sinks write events: `native`, the ledger's own events (`LedgerEvent`, with
 * txid and time), or `s3`, the JSON of S3 event notifications, so that tools built for S3
 * (a Lambda-style consumer, an indexer) read metaraft's events unchanged.
 *
 * The S3 mapping, where metaraft's model is wider than S3's:
 * - `eventName` is the ledger's event type; the object ones are S3's own (`ObjectCreated:Put`,
 *   `ObjectRemoved:Delete`), `ObjectRenamed:Rename` and the volume and bucket ones
 *   (`BucketCreated:Create`...) are metaraft's, in the same form.
 * - `s3.bucket.name` is `volume/bucket` (a bucket's name is unique only in its volume); for a
 *   volume's own events it is the volume's name.
 * - `s3.object` is on every record, because `sequencer` (the txid as 16 hex digits, which sort
 *   as the txids do) is how S3 consumers order and deduplicate; `key`, `size` and `eTag` are
 *   there when the event has them. The key is URL-encoded as S3 encodes it (spaces as `+`,
 *   `/` kept), so the decoding those consumers already do gives the key back.
 * - `metaraft` carries what S3 has no field for, unencoded: `txid`, `volume`, `bucket`, `key`,
 *   a rename's new key `toKey`, and `objectId`.
 */

export const RECORD_FORMATS = ["native", "s3"] as const;
export type RecordFormat = (typeof RECORD_FORMATS)[number];

export interface S3EventRecord {
  readonly eventVersion: "2.1";
  readonly eventSource: "metaraft:s3";
  /** ISO 8601, from the event's time (the request's, fixed by the leader). */
  readonly eventTime: string;
  readonly eventName: LedgerEvent["type"];
  readonly s3: {
    readonly s3SchemaVersion: "1.0";
    readonly bucket: { readonly name: string };
    readonly object: {
      readonly key?: string;
      readonly size?: number;
      readonly eTag?: string;
      readonly sequencer: string;
    };
  };
  readonly metaraft: {
    readonly txid: number;
    readonly volume?: string;
    readonly bucket?: string;
    readonly key?: string;
    readonly toKey?: string;
    readonly objectId?: number;
  };
}

export interface S3Notification {
  readonly Records: readonly S3EventRecord[];
}

/** `native`: the events themselves; `s3`: one S3 event notification holding a record per event. */
export function formatRecords(events: readonly LedgerEvent[], format: "native"): readonly LedgerEvent[];
export function formatRecords(events: readonly LedgerEvent[], format: "s3"): S3Notification;
export function formatRecords(
  events: readonly LedgerEvent[],
  format: RecordFormat,
): readonly LedgerEvent[] | S3Notification;
export function formatRecords(
  events: readonly LedgerEvent[],
  format: RecordFormat,
): readonly LedgerEvent[] | S3Notification {
  return format === "native" ? events : { Records: events.map(s3Record) };
}

/** One event as an S3 event notification record. */
export function s3Record(event: LedgerEvent): S3EventRecord {
  const bucketName = [event.volume, event.bucket].filter((part) => part !== undefined).join("/");
  return {
    eventVersion: "2.1",
    eventSource: "metaraft:s3",
    eventTime: new Date(event.time).toISOString(),
    eventName: event.type,
    s3: {
      s3SchemaVersion: "1.0",
      bucket: { name: bucketName },
      object: {
        ...(event.key === undefined ? {} : { key: s3EncodeKey(event.key) }),
        ...(event.size === undefined ? {} : { size: event.size }),
        ...(event.etag === undefined ? {} : { eTag: event.etag }),
        sequencer: txidHex(event.txid),
      },
    },
    metaraft: {
      txid: event.txid,
      ...(event.volume === undefined ? {} : { volume: event.volume }),
      ...(event.bucket === undefined ? {} : { bucket: event.bucket }),
      ...(event.key === undefined ? {} : { key: event.key }),
      ...(event.toKey === undefined ? {} : { toKey: event.toKey }),
      ...(event.objectId === undefined ? {} : { objectId: event.objectId }),
    },
  };
}

/** A key as S3 notifications carry it: form-URL-encoded (space as `+`), with `/` left as is. */
export function s3EncodeKey(key: string): string {
  return encodeURIComponent(key).replace(/%20/g, "+").replace(/%2F/gi, "/");
}
