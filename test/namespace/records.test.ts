import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../../src/errors.js";
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
  type VolumeInfo,
  volumeTableKey,
} from "../../src/namespace/index.js";

const volume: VolumeInfo = {
  name: "vol",
  objectId: 256,
  updateId: 1,
  createdAt: 1_700_000_000_000,
  modifiedAt: 1_700_000_000_000,
  owner: "alice",
  quotaBytes: -1,
};
const bucket: BucketInfo = {
  volume: "vol",
  name: "bkt",
  objectId: 512,
  updateId: 2,
  createdAt: 5,
  modifiedAt: 6,
  versioning: true,
};
const key: KeyInfo = {
  volume: "vol",
  bucket: "bkt",
  key: "dir/file",
  objectId: 2 ** 52 + 256,
  updateId: 2 ** 44,
  size: 2 ** 40,
  etag: "d41d8cd98f00b204e9800998ecf8427e",
  metadata: { "content-type": "text/plain", a: "1" },
  createdAt: 7,
  modifiedAt: 8,
};
const openKey: OpenKeyInfo = {
  volume: "vol",
  bucket: "bkt",
  key: "dir/file",
  openKeyId: 768,
  size: 0,
  createdAt: 9,
  expiresAt: 10,
};

function internal(check: () => unknown, words: RegExp): void {
  assert.throws(check, (error: unknown) => {
    assert.ok(error instanceof MetaraftError);
    assert.equal(error.code, "MR_ERR_INTERNAL");
    assert.match(error.message, words);
    return true;
  });
}

describe("table keys", () => {
  it("place volumes, buckets, keys and open keys", () => {
    assert.equal(volumeTableKey("vol"), "vol");
    assert.equal(bucketTableKey("vol", "bkt"), "vol/bkt");
    assert.equal(bucketsPrefixOf("vol"), "vol/");
    assert.equal(keysPrefixOf("vol", "bkt"), "vol/bkt/");
    assert.equal(keyTableKey("vol", "bkt", "a/b"), "vol/bkt/a/b");
    assert.equal(openKeyTableKey("vol", "bkt", "a/b", 0x1234), "vol/bkt/a/b\u00000000000000001234");
    assert.equal(openKeyTableKey("v", "b", "k", 2 ** 53 - 1), "v/b/k\u0000001fffffffffffff");
  });

  it("refuse an open key id that is not a safe non-negative integer", () => {
    for (const id of [-1, 1.5, 2 ** 53, Number.NaN]) {
      internal(() => openKeyTableKey("v", "b", "k", id), /open key id/);
    }
  });

  it("keep a bucket's keys and open keys under its prefix and no other bucket's", () => {
    assert.ok(keyTableKey("vol", "bkt", "x").startsWith(keysPrefixOf("vol", "bkt")));
    assert.ok(openKeyTableKey("vol", "bkt", "x", 1).startsWith(keysPrefixOf("vol", "bkt")));
    assert.ok(!keyTableKey("vol", "bkt2", "x").startsWith(keysPrefixOf("vol", "bkt")));
    assert.ok(!bucketTableKey("vol2", "bkt").startsWith(bucketsPrefixOf("vol")));
  });
});

describe("records", () => {
  it("round-trip through MessagePack", () => {
    assert.deepEqual(decodeVolumeInfo(encodeVolumeInfo(volume)), volume);
    assert.deepEqual(decodeBucketInfo(encodeBucketInfo(bucket)), bucket);
    const { versioning: _, ...plain } = bucket;
    assert.deepEqual(decodeBucketInfo(encodeBucketInfo(plain)), plain);
    assert.ok(!("versioning" in decodeBucketInfo(encodeBucketInfo(plain))));
    assert.deepEqual(decodeKeyInfo(encodeKeyInfo(key)), key);
    assert.deepEqual(decodeOpenKeyInfo(encodeOpenKeyInfo(openKey)), openKey);
  });

  it("are plain MessagePack maps with their fields in one order, whatever the input's order", () => {
    const shuffled = Object.fromEntries(Object.entries(key).reverse()) as unknown as KeyInfo;
    const reordered = { ...shuffled, metadata: { a: "1", "content-type": "text/plain" } };
    assert.deepEqual(encodeKeyInfo(reordered), encodeKeyInfo(key));
    const fields = unpack(encodeKeyInfo(key)) as Record<string, unknown>;
    assert.deepEqual(Object.keys(fields), [
      "volume",
      "bucket",
      "key",
      "objectId",
      "updateId",
      "size",
      "etag",
      "metadata",
      "createdAt",
      "modifiedAt",
    ]);
    assert.deepEqual(Object.keys(fields.metadata as object), ["a", "content-type"]);
    assert.deepEqual(Object.keys(unpack(encodeVolumeInfo(volume))), [
      "name",
      "objectId",
      "updateId",
      "createdAt",
      "modifiedAt",
      "owner",
      "quotaBytes",
    ]);
  });

  it("are exact byte arrays, not views into a shared buffer", () => {
    const bytes = encodeVolumeInfo(volume);
    assert.equal(bytes.constructor, Uint8Array);
    assert.equal(bytes.byteOffset, 0);
    assert.equal(bytes.buffer.byteLength, bytes.length);
  });

  it("refuse to encode a record with a field of the wrong type", () => {
    internal(() => encodeVolumeInfo({ ...volume, objectId: 1.5 }), /volume record: objectId/);
    internal(() => encodeVolumeInfo({ ...volume, quotaBytes: -2 }), /quotaBytes is below -1/);
    internal(() => encodeKeyInfo({ ...key, size: -1 }), /key record: size/);
    internal(() => encodeKeyInfo({ ...key, metadata: { a: 1 as unknown as string } }), /metadata\.a/);
    internal(
      () => encodeKeyInfo({ ...key, metadata: Object.fromEntries([["__proto__", "x"]]) }),
      /__proto__/,
    );
    internal(() => encodeBucketInfo({ ...bucket, versioning: "yes" as unknown as boolean }), /versioning/);
    internal(() => encodeOpenKeyInfo({ ...openKey, expiresAt: 2 ** 53 }), /expiresAt/);
  });

  it("refuse to decode damaged or foreign bytes with MR_ERR_INTERNAL", () => {
    internal(() => decodeVolumeInfo(new Uint8Array([0xc1])), /volume record/);
    internal(() => decodeVolumeInfo(new Uint8Array(0)), /volume record/);
    internal(() => decodeKeyInfo(pack([1, 2, 3])), /key record: not a map/);
    internal(() => decodeKeyInfo(pack({ ...key, etag: 5 })), /etag is not a string/);
    internal(() => decodeOpenKeyInfo(pack({ ...openKey, openKeyId: undefined })), /openKeyId/);
    internal(() => decodeBucketInfo(pack("bucket")), /not a map/);
  });

  it("decoding random bytes never throws anything but MetaraftError", () => {
    const decoders = [decodeVolumeInfo, decodeBucketInfo, decodeKeyInfo, decodeOpenKeyInfo];
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.constantFrom(...decoders), (bytes, decode) => {
        try {
          decode(bytes);
        } catch (error) {
          assert.ok(error instanceof MetaraftError, String(error));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
