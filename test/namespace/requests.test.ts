import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { objectIdOf, type Request } from "../../src/execution/types.js";
import {
  type BucketInfo,
  decodeKeyInfo,
  decodeOpenKeyInfo,
  decodeVolumeInfo,
  ETAG_LENGTH_MAX,
  type KeyInfo,
  keyTableKey,
  METADATA_BYTES_MAX,
  namespaceSpecs,
  namespaceSpecsByOp,
  OPEN_KEY_EXPIRY_MS,
  openKeyTableKey,
  QUOTA_BYTES_UNLIMITED,
  VOLUME_OWNER_NONE,
  type VolumeInfo,
} from "../../src/namespace/index.js";
import { Namespace } from "./memory-state.js";

const V = "vol";
const B = "bkt";

/** A namespace with volume `vol` and bucket `vol/bkt`. */
function withBucket(): Namespace {
  const ns = new Namespace();
  ns.run({ op: "createVolume", volume: V });
  ns.run({ op: "createBucket", volume: V, bucket: B });
  return ns;
}

/** Opens and commits a key; returns the commit reply. */
function putKey(
  ns: Namespace,
  key: string,
  size = 10,
  etag = "etag",
): { objectId: number; updateId: number } {
  const { openKeyId } = ns.reply({ op: "openKey", volume: V, bucket: B, key }) as { openKeyId: number };
  return ns.reply({ op: "commitKey", volume: V, bucket: B, key, openKeyId, size, etag }) as {
    objectId: number;
    updateId: number;
  };
}

function lookup(ns: Namespace, key: string): KeyInfo {
  return ns.reply({ op: "lookupKey", volume: V, bucket: B, key }).key as KeyInfo;
}

describe("the spec list", () => {
  it("has one spec per op, the reads marked as reads", () => {
    assert.equal(namespaceSpecsByOp.size, namespaceSpecs.length);
    const reads = namespaceSpecs.filter((s) => s.kind === "read").map((s) => s.op);
    assert.deepEqual(reads.sort(), [
      "infoBucket",
      "infoVolume",
      "listBuckets",
      "listKeys",
      "listVolumes",
      "lookupKey",
    ]);
    const writes = namespaceSpecs.filter((s) => s.kind === "write").map((s) => s.op);
    assert.deepEqual(writes.sort(), [
      "commitKey",
      "createBucket",
      "createVolume",
      "deleteBucket",
      "deleteKey",
      "deleteVolume",
      "expireKey",
      "openKey",
      "renameKey",
    ]);
  });
});

describe("createVolume", () => {
  it("stores the volume with an objectId from its txid, and answers it", () => {
    const ns = new Namespace();
    ns.time = 1234;
    const reply = ns.reply({ op: "createVolume", volume: V, owner: "alice", quotaBytes: 1 << 30 });
    assert.deepEqual(reply, { objectId: objectIdOf(1, 0), updateId: 1 });
    const info = ns.reply({ op: "infoVolume", volume: V }).volume as VolumeInfo;
    assert.deepEqual(info, {
      name: V,
      objectId: objectIdOf(1, 0),
      updateId: 1,
      createdAt: 1234,
      modifiedAt: 1234,
      owner: "alice",
      quotaBytes: 1 << 30,
    });
  });

  it("fills in the owner and quota when left out (null counts as left out)", () => {
    const ns = new Namespace();
    ns.run({ op: "createVolume", volume: V, owner: null, quotaBytes: null });
    const info = decodeVolumeInfo(ns.state.get("volumes", V)!);
    assert.equal(info.owner, VOLUME_OWNER_NONE);
    assert.equal(info.quotaBytes, QUOTA_BYTES_UNLIMITED);
  });

  it("refuses an existing volume with VOLUME_EXISTS", () => {
    const ns = new Namespace();
    ns.run({ op: "createVolume", volume: V });
    ns.fails({ op: "createVolume", volume: V, owner: "bob" }, "MR_ERR_VOLUME_EXISTS");
  });

  it("refuses a bad name, a bad owner and a bad quota", () => {
    const ns = new Namespace();
    ns.fails({ op: "createVolume", volume: "Vol" }, "MR_ERR_INVALID_NAME");
    ns.fails({ op: "createVolume" }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: 7 }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: V, owner: 7 }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: V, owner: "" }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: V, owner: "x".repeat(257) }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: V, quotaBytes: -1 }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: V, quotaBytes: 1.5 }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: V, quotaBytes: "10" }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createVolume", volume: V, quotaBytes: 2 ** 53 }, "MR_ERR_INVALID_ARGUMENT");
  });

  it("ignores unknown fields and drops them from the typed request", () => {
    const spec = namespaceSpecsByOp.get("createVolume")!;
    const typed = spec.validate({ op: "createVolume", volume: V, color: "blue" });
    assert.deepEqual(typed, { op: "createVolume", volume: V, owner: VOLUME_OWNER_NONE, quotaBytes: -1 });
  });
});

describe("deleteVolume", () => {
  it("deletes an empty volume", () => {
    const ns = new Namespace();
    ns.run({ op: "createVolume", volume: V });
    assert.deepEqual(ns.reply({ op: "deleteVolume", volume: V }), {});
    assert.equal(ns.state.get("volumes", V), undefined);
    ns.fails({ op: "infoVolume", volume: V }, "MR_ERR_VOLUME_NOT_FOUND");
  });

  it("refuses a missing volume with VOLUME_NOT_FOUND", () => {
    new Namespace().fails({ op: "deleteVolume", volume: V }, "MR_ERR_VOLUME_NOT_FOUND");
  });

  it("refuses a volume with a bucket with VOLUME_NOT_EMPTY, and not a volume whose name extends it", () => {
    const ns = withBucket();
    ns.fails({ op: "deleteVolume", volume: V }, "MR_ERR_VOLUME_NOT_EMPTY");
    ns.run({ op: "createVolume", volume: `${V}x` });
    ns.run({ op: "deleteVolume", volume: `${V}x` });
    ns.run({ op: "deleteBucket", volume: V, bucket: B });
    ns.run({ op: "deleteVolume", volume: V });
  });
});

describe("createBucket", () => {
  it("stores the bucket in its volume, with versioning only when given", () => {
    const ns = new Namespace();
    ns.run({ op: "createVolume", volume: V });
    ns.time = 99;
    assert.deepEqual(ns.reply({ op: "createBucket", volume: V, bucket: B, versioning: true }), {
      objectId: objectIdOf(2, 0),
      updateId: 2,
    });
    ns.run({ op: "createBucket", volume: V, bucket: "plain" });
    const info = ns.reply({ op: "infoBucket", volume: V, bucket: B }).bucket as BucketInfo;
    assert.deepEqual(info, {
      volume: V,
      name: B,
      objectId: objectIdOf(2, 0),
      updateId: 2,
      createdAt: 99,
      modifiedAt: 99,
      versioning: true,
    });
    const plain = ns.reply({ op: "infoBucket", volume: V, bucket: "plain" }).bucket as BucketInfo;
    assert.ok(!("versioning" in plain));
  });

  it("refuses a missing volume, an existing bucket, bad names and bad versioning", () => {
    const ns = new Namespace();
    ns.fails({ op: "createBucket", volume: V, bucket: B }, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.run({ op: "createBucket", volume: V, bucket: B });
    ns.fails({ op: "createBucket", volume: V, bucket: B }, "MR_ERR_BUCKET_EXISTS");
    ns.fails({ op: "createBucket", volume: V, bucket: "b" }, "MR_ERR_INVALID_NAME");
    ns.fails({ op: "createBucket", volume: V, bucket: "xn--abc" }, "MR_ERR_INVALID_NAME");
    ns.fails({ op: "createBucket", volume: V }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "createBucket", volume: V, bucket: "b2b", versioning: "on" }, "MR_ERR_INVALID_ARGUMENT");
  });

  it("allows the same bucket name in two volumes", () => {
    const ns = withBucket();
    ns.run({ op: "createVolume", volume: "other" });
    ns.run({ op: "createBucket", volume: "other", bucket: B });
  });
});

describe("deleteBucket", () => {
  it("deletes an empty bucket", () => {
    const ns = withBucket();
    assert.deepEqual(ns.reply({ op: "deleteBucket", volume: V, bucket: B }), {});
    ns.fails({ op: "infoBucket", volume: V, bucket: B }, "MR_ERR_BUCKET_NOT_FOUND");
  });

  it("refuses a missing volume or bucket", () => {
    const ns = new Namespace();
    ns.fails({ op: "deleteBucket", volume: V, bucket: B }, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.fails({ op: "deleteBucket", volume: V, bucket: B }, "MR_ERR_BUCKET_NOT_FOUND");
  });

  it("refuses a bucket that holds a key with BUCKET_NOT_EMPTY", () => {
    const ns = withBucket();
    putKey(ns, "k");
    const error = ns.fails({ op: "deleteBucket", volume: V, bucket: B }, "MR_ERR_BUCKET_NOT_EMPTY");
    assert.match(error.message, /holds keys/);
    ns.run({ op: "deleteKey", volume: V, bucket: B, key: "k" });
    ns.run({ op: "deleteBucket", volume: V, bucket: B });
  });

  it("refuses a bucket with a live open key, and takes expired open keys away with the bucket", () => {
    const ns = withBucket();
    ns.run({ op: "openKey", volume: V, bucket: B, key: "k" });
    const error = ns.fails({ op: "deleteBucket", volume: V, bucket: B }, "MR_ERR_BUCKET_NOT_EMPTY");
    assert.match(error.message, /open keys/);
    ns.time += OPEN_KEY_EXPIRY_MS * 2;
    const deleted = ns.run({ op: "deleteBucket", volume: V, bucket: B });
    assert.equal(deleted.writes.filter((w) => w.table === "openKeys" && w.value === null).length, 1);
    assert.equal(
      ns.state.scan("openKeys", "", undefined, 10).length,
      0,
      "the expired open key went with the bucket",
    );
  });

  it("is not held back by the keys of a bucket whose name extends it", () => {
    const ns = withBucket();
    ns.run({ op: "createBucket", volume: V, bucket: `${B}2` });
    ns.run({ op: "openKey", volume: V, bucket: `${B}2`, key: "k" });
    ns.run({ op: "deleteBucket", volume: V, bucket: B });
  });
});

describe("infoVolume and infoBucket", () => {
  it("answer NOT_FOUND for what is missing, the volume first", () => {
    const ns = new Namespace();
    ns.fails({ op: "infoVolume", volume: V }, "MR_ERR_VOLUME_NOT_FOUND");
    ns.fails({ op: "infoBucket", volume: V, bucket: B }, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.fails({ op: "infoBucket", volume: V, bucket: B }, "MR_ERR_BUCKET_NOT_FOUND");
    ns.fails({ op: "infoBucket", volume: V, bucket: "B" }, "MR_ERR_INVALID_NAME");
  });
});

describe("openKey", () => {
  it("writes an open key named by objectIdOf(txid, 0) that expires after OPEN_KEY_EXPIRY_MS", () => {
    const ns = withBucket();
    assert.equal(OPEN_KEY_EXPIRY_MS, 24 * 60 * 60 * 1000);
    ns.time = 5_000;
    const reply = ns.reply({ op: "openKey", volume: V, bucket: B, key: "a/b", size: 42 });
    assert.deepEqual(reply, { openKeyId: objectIdOf(3, 0), expiresAt: 5_000 + OPEN_KEY_EXPIRY_MS });
    const stored = ns.state.get("openKeys", openKeyTableKey(V, B, "a/b", objectIdOf(3, 0)));
    assert.deepEqual(decodeOpenKeyInfo(stored!), {
      volume: V,
      bucket: B,
      key: "a/b",
      openKeyId: objectIdOf(3, 0),
      size: 42,
      createdAt: 5_000,
      expiresAt: 5_000 + OPEN_KEY_EXPIRY_MS,
    });
    assert.equal(ns.state.get("keys", keyTableKey(V, B, "a/b")), undefined, "not visible before commit");
    ns.fails({ op: "lookupKey", volume: V, bucket: B, key: "a/b" }, "MR_ERR_KEY_NOT_FOUND");
  });

  it("lets one key be open several times at once, with size 0 when not given", () => {
    const ns = withBucket();
    const a = ns.reply({ op: "openKey", volume: V, bucket: B, key: "k" }).openKeyId as number;
    const b = ns.reply({ op: "openKey", volume: V, bucket: B, key: "k" }).openKeyId as number;
    assert.notEqual(a, b);
    assert.equal(decodeOpenKeyInfo(ns.state.get("openKeys", openKeyTableKey(V, B, "k", a))!).size, 0);
    assert.equal(ns.state.entries("openKeys").length, 2);
  });

  it("refuses a missing volume or bucket, a bad key and a bad size", () => {
    const ns = new Namespace();
    ns.fails({ op: "openKey", volume: V, bucket: B, key: "k" }, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.fails({ op: "openKey", volume: V, bucket: B, key: "k" }, "MR_ERR_BUCKET_NOT_FOUND");
    ns.run({ op: "createBucket", volume: V, bucket: B });
    ns.fails({ op: "openKey", volume: V, bucket: B, key: "" }, "MR_ERR_INVALID_NAME");
    ns.fails({ op: "openKey", volume: V, bucket: B, key: "a\u0000" }, "MR_ERR_INVALID_NAME");
    ns.fails({ op: "openKey", volume: V, bucket: B }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "openKey", volume: V, bucket: B, key: "k", size: -1 }, "MR_ERR_INVALID_ARGUMENT");
    ns.fails({ op: "openKey", volume: V, bucket: B, key: "k", size: 10n }, "MR_ERR_INVALID_ARGUMENT");
  });
});

describe("commitKey", () => {
  it("turns the open key into a key whose objectId is the openKeyId", () => {
    const ns = withBucket();
    ns.time = 1_000;
    const { openKeyId } = ns.reply({ op: "openKey", volume: V, bucket: B, key: "k" }) as {
      openKeyId: number;
    };
    ns.time = 2_000;
    const reply = ns.reply({
      op: "commitKey",
      volume: V,
      bucket: B,
      key: "k",
      openKeyId,
      size: 100,
      etag: "e1",
      metadata: { z: "last", a: "first" },
    });
    assert.deepEqual(reply, { objectId: openKeyId, updateId: 4 });
    const info = lookup(ns, "k");
    assert.deepEqual(info, {
      volume: V,
      bucket: B,
      key: "k",
      objectId: openKeyId,
      updateId: 4,
      size: 100,
      etag: "e1",
      metadata: { a: "first", z: "last" },
      createdAt: 1_000,
      modifiedAt: 2_000,
    });
    assert.deepEqual(Object.keys(info.metadata), ["a", "z"]);
    assert.equal(ns.state.entries("openKeys").length, 0, "the open key is gone");
  });

  it("replaces an existing key whole, in the same write-set that removes the open key", () => {
    const ns = withBucket();
    const first = putKey(ns, "k", 100, "old-etag");
    const { openKeyId } = ns.reply({ op: "openKey", volume: V, bucket: B, key: "k" }) as {
      openKeyId: number;
    };
    const execution = ns.run({
      op: "commitKey",
      volume: V,
      bucket: B,
      key: "k",
      openKeyId,
      size: 7,
      etag: "new-etag",
    });
    assert.deepEqual(
      execution.writes.map((w) => [w.table, w.key, w.value === null]),
      [
        ["openKeys", openKeyTableKey(V, B, "k", openKeyId), true],
        ["keys", keyTableKey(V, B, "k"), false],
      ],
    );
    const info = lookup(ns, "k");
    assert.notEqual(info.objectId, first.objectId);
    assert.equal(info.objectId, openKeyId);
    assert.equal(info.size, 7);
    assert.equal(info.etag, "new-etag");
    assert.deepEqual(info.metadata, {});
    const listed = ns.reply({ op: "listKeys", volume: V, bucket: B }).items as KeyInfo[];
    assert.deepEqual(listed, [info], "one key, the new one");
  });

  it("finds no open key once it has expired (expiresAt <= time)", () => {
    const ns = withBucket();
    ns.time = 10_000;
    const { openKeyId, expiresAt } = ns.reply({ op: "openKey", volume: V, bucket: B, key: "k" }) as {
      openKeyId: number;
      expiresAt: number;
    };
    const commit = { op: "commitKey", volume: V, bucket: B, key: "k", openKeyId, size: 1, etag: "e" };
    ns.time = expiresAt;
    const error = ns.fails(commit, "MR_ERR_OPEN_KEY_NOT_FOUND");
    assert.match(error.message, /expired/);
    ns.time = expiresAt + 1;
    ns.fails(commit, "MR_ERR_OPEN_KEY_NOT_FOUND");
    ns.time = expiresAt - 1;
    ns.run(commit);
  });

  it("finds no open key that was never opened, already committed, or opened for another key", () => {
    const ns = withBucket();
    const { openKeyId } = ns.reply({ op: "openKey", volume: V, bucket: B, key: "k" }) as {
      openKeyId: number;
    };
    const commit = { op: "commitKey", volume: V, bucket: B, key: "k", openKeyId, size: 1, etag: "e" };
    ns.fails({ ...commit, openKeyId: openKeyId + 256 }, "MR_ERR_OPEN_KEY_NOT_FOUND");
    ns.fails({ ...commit, key: "other" }, "MR_ERR_OPEN_KEY_NOT_FOUND");
    ns.run(commit);
    ns.fails(commit, "MR_ERR_OPEN_KEY_NOT_FOUND");
  });

  it("refuses a missing volume or bucket", () => {
    const ns = new Namespace();
    const commit = { op: "commitKey", volume: V, bucket: B, key: "k", openKeyId: 256, size: 1, etag: "e" };
    ns.fails(commit, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.fails(commit, "MR_ERR_BUCKET_NOT_FOUND");
  });

  it("checks each field, naming it", () => {
    const ns = withBucket();
    const good = { op: "commitKey", volume: V, bucket: B, key: "k", openKeyId: 256, size: 1, etag: "e" };
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ openKeyId: undefined }, /openKeyId is required/],
      [{ openKeyId: -1 }, /openKeyId must be a non-negative integer/],
      [{ openKeyId: "256" }, /openKeyId must be a number/],
      [{ size: undefined }, /size is required/],
      [{ size: 0.5 }, /size must be a non-negative integer/],
      [{ size: Number.POSITIVE_INFINITY }, /size must be/],
      [{ etag: undefined }, /etag is required/],
      [{ etag: 5 }, /etag must be a string/],
      [{ etag: "x".repeat(ETAG_LENGTH_MAX + 1) }, /etag must be at most 256 characters/],
      [{ etag: "\ud800" }, /etag must be valid UTF-8/],
      [{ metadata: "a=b" }, /metadata must be a map/],
      [{ metadata: ["a"] }, /metadata must be a map/],
      [{ metadata: new Map([["a", "b"]]) }, /metadata must be a plain map/],
      [{ metadata: { a: 1 } }, /metadata\.a must be a string/],
      [{ metadata: { "": "x" } }, /metadata names must not be empty/],
      [{ metadata: Object.fromEntries([["__proto__", "x"]]) }, /__proto__/],
      [{ metadata: { a: "\udc00" } }, /metadata\.a must be valid UTF-8/],
      [{ metadata: { a: "x".repeat(METADATA_BYTES_MAX) } }, /metadata must be at most 2048 bytes/],
    ];
    for (const [change, message] of bad) {
      const error = ns.fails({ ...good, ...change }, "MR_ERR_INVALID_ARGUMENT");
      assert.match(error.message, message);
    }
    ns.fails({ ...good, key: "\ud800" }, "MR_ERR_INVALID_NAME");
    ns.fails({ ...good, bucket: "-b-" }, "MR_ERR_INVALID_NAME");
  });

  it("accepts metadata of exactly METADATA_BYTES_MAX bytes and an etag of ETAG_LENGTH_MAX", () => {
    const ns = withBucket();
    const { openKeyId } = ns.reply({ op: "openKey", volume: V, bucket: B, key: "k" }) as {
      openKeyId: number;
    };
    const metadata = { ab: "é".repeat((METADATA_BYTES_MAX - 2) / 2) };
    const etag = "e".repeat(ETAG_LENGTH_MAX);
    ns.run({ op: "commitKey", volume: V, bucket: B, key: "k", openKeyId, size: 0, etag, metadata });
    assert.deepEqual(lookup(ns, "k").metadata, metadata);
    const over = { ab: `${metadata.ab}a` };
    ns.fails(
      { op: "commitKey", volume: V, bucket: B, key: "k", openKeyId, size: 0, etag, metadata: over },
      "MR_ERR_INVALID_ARGUMENT",
    );
  });
});

describe("deleteKey", () => {
  it("deletes a key", () => {
    const ns = withBucket();
    putKey(ns, "k");
    assert.deepEqual(ns.reply({ op: "deleteKey", volume: V, bucket: B, key: "k" }), {});
    ns.fails({ op: "lookupKey", volume: V, bucket: B, key: "k" }, "MR_ERR_KEY_NOT_FOUND");
  });

  it("refuses a missing key, bucket or volume", () => {
    const ns = new Namespace();
    const del = { op: "deleteKey", volume: V, bucket: B, key: "k" };
    ns.fails(del, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.fails(del, "MR_ERR_BUCKET_NOT_FOUND");
    ns.run({ op: "createBucket", volume: V, bucket: B });
    ns.fails(del, "MR_ERR_KEY_NOT_FOUND");
    ns.run({ op: "openKey", volume: V, bucket: B, key: "k" });
    ns.fails(del, "MR_ERR_KEY_NOT_FOUND");
  });
});

describe("renameKey", () => {
  it("moves the key, keeping its objectId, with updateId = txid", () => {
    const ns = withBucket();
    const { objectId } = putKey(ns, "from");
    const before = lookup(ns, "from");
    ns.time += 50;
    const reply = ns.reply({ op: "renameKey", volume: V, bucket: B, key: "from", toKey: "to/there" });
    assert.deepEqual(reply, { objectId, updateId: ns.txid });
    ns.fails({ op: "lookupKey", volume: V, bucket: B, key: "from" }, "MR_ERR_KEY_NOT_FOUND");
    assert.deepEqual(lookup(ns, "to/there"), {
      ...before,
      key: "to/there",
      updateId: reply.updateId,
      modifiedAt: ns.time,
    });
  });

  it("refuses a missing source, an existing target, and a rename onto itself", () => {
    const ns = withBucket();
    const rename = { op: "renameKey", volume: V, bucket: B, key: "a", toKey: "b" };
    ns.fails(rename, "MR_ERR_KEY_NOT_FOUND");
    putKey(ns, "a");
    putKey(ns, "b");
    ns.fails(rename, "MR_ERR_KEY_EXISTS");
    ns.fails({ ...rename, toKey: "a" }, "MR_ERR_KEY_EXISTS");
    ns.fails({ ...rename, toKey: "" }, "MR_ERR_INVALID_NAME");
    ns.fails({ ...rename, toKey: undefined }, "MR_ERR_INVALID_ARGUMENT");
  });

  it("refuses a missing volume or bucket", () => {
    const ns = new Namespace();
    const rename = { op: "renameKey", volume: V, bucket: B, key: "a", toKey: "b" };
    ns.fails(rename, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.fails(rename, "MR_ERR_BUCKET_NOT_FOUND");
  });
});

describe("lookupKey", () => {
  it("answers the key, and NOT_FOUND for a missing volume, bucket or key", () => {
    const ns = new Namespace();
    const look = { op: "lookupKey", volume: V, bucket: B, key: "k" };
    ns.fails(look, "MR_ERR_VOLUME_NOT_FOUND");
    ns.run({ op: "createVolume", volume: V });
    ns.fails(look, "MR_ERR_BUCKET_NOT_FOUND");
    ns.run({ op: "createBucket", volume: V, bucket: B });
    ns.fails(look, "MR_ERR_KEY_NOT_FOUND");
    const { objectId } = putKey(ns, "k");
    assert.equal(lookup(ns, "k").objectId, objectId);
    assert.deepEqual(lookup(ns, "k"), decodeKeyInfo(ns.state.get("keys", keyTableKey(V, B, "k"))!));
  });
});

describe("every request", () => {
  it("refuses a missing or mistyped name with the field in the message", () => {
    const ns = withBucket();
    for (const spec of namespaceSpecs) {
      if (spec.op === "listVolumes") continue;
      const error = ns.fails(
        { op: spec.op, volume: 12, bucket: B, key: "k" } as Request,
        "MR_ERR_INVALID_ARGUMENT",
      );
      assert.match(error.message, /volume must be a string/);
    }
  });

  it("reports a stored record that does not match its table key as MR_ERR_INTERNAL", () => {
    const ns = withBucket();
    const other = ns.state.get("volumes", V)!;
    ns.state.write({ table: "volumes", key: "vol2", value: other });
    assert.throws(
      () => ns.run({ op: "infoVolume", volume: "vol2" }),
      (error: unknown) => error instanceof MetaraftError && error.code === "MR_ERR_INTERNAL",
    );
  });
});
