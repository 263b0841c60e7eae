import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatRecords, type LedgerEvent, s3EncodeKey, s3Record } from "../../src/events/index.js";

const time = Date.UTC(2026, 0, 2, 3, 4, 5, 678);

describe("record formats", () => {
  it("native is the ledger's events themselves", () => {
    const events: LedgerEvent[] = [
      { txid: 1, time, type: "VolumeCreated:Create", volume: "vol", objectId: 256 },
    ];
    assert.equal(formatRecords(events, "native"), events);
  });

  it("s3: a put is an S3 event notification record, field for field", () => {
    const put: LedgerEvent = {
      txid: 0x1234,
      time,
      type: "ObjectCreated:Put",
      volume: "vol",
      bucket: "bkt",
      key: "dir/a b+c:d.txt",
      size: 42,
      etag: "abc123",
      objectId: 99,
    };
    assert.deepEqual(formatRecords([put], "s3"), {
      Records: [
        {
          eventVersion: "2.1",
          eventSource: "metaraft:s3",
          eventTime: "2026-01-02T03:04:05.678Z",
          eventName: "ObjectCreated:Put",
          s3: {
            s3SchemaVersion: "1.0",
            bucket: { name: "vol/bkt" },
            object: {
              key: "dir/a+b%2Bc%3Ad.txt",
              size: 42,
              eTag: "abc123",
              sequencer: "0000000000001234",
            },
          },
          metaraft: { txid: 0x1234, volume: "vol", bucket: "bkt", key: "dir/a b+c:d.txt", objectId: 99 },
        },
      ],
    });
  });

  it("s3: a delete, a rename (with its new key), and the bucket and volume events", () => {
    const base = { time, volume: "vol", bucket: "bkt" };
    const records = formatRecords(
      [
        { ...base, txid: 7, type: "ObjectRemoved:Delete", key: "a", size: 1, etag: "e", objectId: 5 },
        { ...base, txid: 8, type: "ObjectRenamed:Rename", key: "old", toKey: "new/name", objectId: 6 },
        { ...base, txid: 9, type: "BucketCreated:Create", objectId: 7 },
        { ...base, txid: 10, type: "BucketRemoved:Delete", objectId: 7 },
        { time, txid: 11, type: "VolumeCreated:Create", volume: "vol", objectId: 8 },
        { time, txid: 2 ** 45, type: "VolumeRemoved:Delete", volume: "vol", objectId: 8 },
      ],
      "s3",
    ).Records;
    assert.deepEqual(
      records.map((r) => r.eventName),
      [
        "ObjectRemoved:Delete",
        "ObjectRenamed:Rename",
        "BucketCreated:Create",
        "BucketRemoved:Delete",
        "VolumeCreated:Create",
        "VolumeRemoved:Delete",
      ],
    );
    assert.deepEqual(records[0]!.s3.object, { key: "a", size: 1, eTag: "e", sequencer: "0000000000000007" });
    assert.deepEqual(records[1]!.s3.object, { key: "old", sequencer: "0000000000000008" });
    assert.deepEqual(records[1]!.metaraft, {
      txid: 8,
      volume: "vol",
      bucket: "bkt",
      key: "old",
      toKey: "new/name",
      objectId: 6,
    });
    assert.deepEqual(records[2]!.s3, {
      s3SchemaVersion: "1.0",
      bucket: { name: "vol/bkt" },
      object: { sequencer: "0000000000000009" },
    });
    assert.deepEqual(records[4]!.s3.bucket, { name: "vol" });
    assert.deepEqual(records[4]!.metaraft, { txid: 11, volume: "vol", objectId: 8 });
    for (const record of records) {
      assert.match(record.s3.object.sequencer, /^[0-9a-f]{16}$/);
      assert.equal(record.eventVersion, "2.1");
      assert.equal(record.eventSource, "metaraft:s3");
    }
    assert.equal(records[5]!.s3.object.sequencer, "0000200000000000");
    // Sequencers sort as their txids do.
    const sequencers = records.map((r) => r.s3.object.sequencer);
    assert.deepEqual([...sequencers].sort(), sequencers);
  });

  it("s3 keys decode back the way S3 consumers decode them", () => {
    for (const key of ["plain", "a b", "x+y", "dir/sub/file", "ünï cødé/%41", "q?a=1&b=2#f"]) {
      const encoded = s3EncodeKey(key);
      assert.equal(decodeURIComponent(encoded.replace(/\+/g, " ")), key);
      assert.equal(s3Record({ txid: 1, time, type: "ObjectCreated:Put", key }).s3.object.key, encoded);
    }
  });
});
