import assert from "node:assert/strict";
import { before, describe, it } from "node:test";
import type { Request } from "../../src/execution/types.js";
import {
  type BucketInfo,
  type KeyInfo,
  LIST_LIMIT_DEFAULT,
  LIST_LIMIT_MAX,
  type ListReply,
  type VolumeInfo,
} from "../../src/namespace/index.js";
import { Namespace } from "./memory-state.js";

const V = "vol";
const B = "bkt";

function list<T>(ns: Namespace, request: Request): ListReply<T> {
  return ns.reply(request) as unknown as ListReply<T>;
}

/** Walks a listing page by page; returns the names in the order served, and the page sizes. */
function walk(ns: Namespace, request: Request, nameOf: (item: never) => string) {
  const names: string[] = [];
  const pages: number[] = [];
  let startAfter: string | undefined;
  for (let page = 0; page < 10_000; page++) {
    const reply = list<never>(ns, { ...request, startAfter });
    names.push(...reply.items.map(nameOf));
    pages.push(reply.items.length);
    if (!reply.truncated) {
      assert.equal(reply.nextStartAfter, undefined);
      return { names, pages };
    }
    assert.equal(reply.nextStartAfter, names[names.length - 1]);
    startAfter = reply.nextStartAfter;
  }
  assert.fail("the listing never ended");
}

const byUtf8 = (a: string, b: string) => Buffer.compare(Buffer.from(a), Buffer.from(b));

describe("listKeys over 2,500 keys", () => {
  const ns = new Namespace();
  const keys: string[] = [];

  before(() => {
    ns.run({ op: "createVolume", volume: V });
    ns.run({ op: "createBucket", volume: V, bucket: B });
    // A neighbouring bucket whose name extends this one's must never leak into its listing.
    ns.run({ op: "createBucket", volume: V, bucket: `${B}2` });
    for (let i = 0; i < 2_500; i++) {
      // Astral and high-BMP characters sort differently in UTF-16 and UTF-8; the table's order wins.
      const tail = i % 3 === 0 ? "\u{1f600}" : i % 3 === 1 ? "\ue000" : "z";
      keys.push(`${i % 2 === 0 ? "even" : "odd"}/${String(i).padStart(5, "0")}${tail}`);
    }
    for (const key of keys) {
      const { openKeyId } = ns.reply({ op: "openKey", volume: V, bucket: B, key }) as { openKeyId: number };
      ns.run({ op: "commitKey", volume: V, bucket: B, key, openKeyId, size: 1, etag: "e" });
    }
    for (const key of ["a", "even/x"]) {
      const { openKeyId } = ns.reply({ op: "openKey", volume: V, bucket: `${B}2`, key }) as {
        openKeyId: number;
      };
      ns.run({ op: "commitKey", volume: V, bucket: `${B}2`, key, openKeyId, size: 1, etag: "e" });
    }
    ns.run({ op: "openKey", volume: V, bucket: B, key: "only-open" });
    keys.sort(byUtf8);
  });

  it("serves pages of 1,000 by default, each key exactly once, in UTF-8 order", () => {
    assert.equal(LIST_LIMIT_DEFAULT, 1000);
    const { names, pages } = walk(ns, { op: "listKeys", volume: V, bucket: B }, (k: KeyInfo) => k.key);
    assert.deepEqual(pages, [1000, 1000, 500]);
    assert.equal(new Set(names).size, 2_500);
    assert.deepEqual(names, keys);
  });

  it("walks with a small limit and a prefix", () => {
    const request = { op: "listKeys", volume: V, bucket: B, prefix: "odd/", limit: 7 };
    const { names, pages } = walk(ns, request, (k: KeyInfo) => k.key);
    assert.deepEqual(
      names,
      keys.filter((k) => k.startsWith("odd/")),
    );
    assert.equal(pages.length, Math.ceil(1_250 / 7));
    assert.ok(pages.every((n) => n <= 7));
  });

  it("starts after any name, present or not", () => {
    const reply = list<KeyInfo>(ns, {
      op: "listKeys",
      volume: V,
      bucket: B,
      startAfter: "even/00010",
      limit: 3,
    });
    assert.deepEqual(
      reply.items.map((k) => k.key),
      keys.filter((k) => byUtf8(k, "even/00010") > 0).slice(0, 3),
    );
    assert.equal(reply.truncated, true);
    const last = list<KeyInfo>(ns, { op: "listKeys", volume: V, bucket: B, startAfter: keys[2_499] });
    assert.deepEqual(last, { items: [], truncated: false });
    const before = list<KeyInfo>(ns, {
      op: "listKeys",
      volume: V,
      bucket: B,
      prefix: "odd/",
      startAfter: "a",
    });
    assert.equal(before.items.length, 1000);
    assert.ok(before.items.every((k) => k.key.startsWith("odd/")));
  });

  it("is not truncated when the page holds exactly the rest", () => {
    const reply = list<KeyInfo>(ns, {
      op: "listKeys",
      volume: V,
      bucket: B,
      startAfter: keys[2_489],
      limit: 10,
    });
    assert.equal(reply.items.length, 10);
    assert.equal(reply.truncated, false);
    assert.ok(!("nextStartAfter" in reply));
  });

  it("lists neither open keys nor another bucket's keys", () => {
    const all = walk(ns, { op: "listKeys", volume: V, bucket: B }, (k: KeyInfo) => k.key).names;
    assert.ok(!all.includes("only-open"));
    assert.ok(!all.includes("a"));
    const other = list<KeyInfo>(ns, { op: "listKeys", volume: V, bucket: `${B}2` });
    assert.deepEqual(
      other.items.map((k) => [k.bucket, k.key]),
      [
        [`${B}2`, "a"],
        [`${B}2`, "even/x"],
      ],
    );
  });
});

describe("listVolumes and listBuckets", () => {
  const ns = new Namespace();
  const volumes = ["alpha", "beta", "beta-2", "gamma", "vol", "vol2"];

  before(() => {
    for (const volume of volumes) ns.run({ op: "createVolume", volume });
    for (const bucket of ["b-one", "b-two", "c-three"]) ns.run({ op: "createBucket", volume: V, bucket });
    ns.run({ op: "createBucket", volume: "vol2", bucket: "b-zero" });
  });

  it("list volumes with prefix, startAfter and limit", () => {
    const all = list<VolumeInfo>(ns, { op: "listVolumes" });
    assert.deepEqual(
      all.items.map((v) => v.name),
      volumes,
    );
    assert.equal(all.truncated, false);
    assert.deepEqual(
      list<VolumeInfo>(ns, { op: "listVolumes", prefix: "beta" }).items.map((v) => v.name),
      ["beta", "beta-2"],
    );
    const page = list<VolumeInfo>(ns, { op: "listVolumes", startAfter: "alpha", limit: 2 });
    assert.deepEqual(
      page.items.map((v) => v.name),
      ["beta", "beta-2"],
    );
    assert.equal(page.truncated, true);
    assert.equal(page.nextStartAfter, "beta-2");
    assert.deepEqual(
      walk(ns, { op: "listVolumes", limit: 4 }, (v: VolumeInfo) => v.name),
      { names: volumes, pages: [4, 2] },
    );
  });

  it("list the buckets of one volume only", () => {
    const reply = list<BucketInfo>(ns, { op: "listBuckets", volume: V });
    assert.deepEqual(
      reply.items.map((b) => [b.volume, b.name]),
      [
        [V, "b-one"],
        [V, "b-two"],
        [V, "c-three"],
      ],
    );
    assert.deepEqual(
      list<BucketInfo>(ns, { op: "listBuckets", volume: V, prefix: "b-", startAfter: "b-one" }).items.map(
        (b) => b.name,
      ),
      ["b-two"],
    );
    assert.deepEqual(
      walk(ns, { op: "listBuckets", volume: V, limit: 1 }, (b: BucketInfo) => b.name),
      { names: ["b-one", "b-two", "c-three"], pages: [1, 1, 1] },
    );
    assert.deepEqual(list<BucketInfo>(ns, { op: "listBuckets", volume: "alpha" }), {
      items: [],
      truncated: false,
    });
  });

  it("answer NOT_FOUND for a missing volume or bucket", () => {
    ns.fails({ op: "listBuckets", volume: "nope" }, "MR_ERR_VOLUME_NOT_FOUND");
    ns.fails({ op: "listKeys", volume: "nope", bucket: "b-one" }, "MR_ERR_VOLUME_NOT_FOUND");
    ns.fails({ op: "listKeys", volume: V, bucket: "nope" }, "MR_ERR_BUCKET_NOT_FOUND");
    ns.fails({ op: "listKeys", volume: "alpha", bucket: "b-one" }, "MR_ERR_BUCKET_NOT_FOUND");
  });

  it("check limit, prefix and startAfter", () => {
    assert.equal(LIST_LIMIT_MAX, 1000);
    list(ns, { op: "listVolumes", limit: LIST_LIMIT_MAX });
    list(ns, { op: "listVolumes", limit: 1 });
    for (const op of ["listVolumes", "listBuckets", "listKeys"]) {
      const base = { op, volume: V, bucket: "b-one" };
      for (const [change, message] of [
        [{ limit: LIST_LIMIT_MAX + 1 }, /limit must be from 1 to 1000/],
        [{ limit: 0 }, /limit must be from 1 to 1000/],
        [{ limit: 2.5 }, /limit must be a non-negative integer/],
        [{ limit: "10" }, /limit must be a number/],
        [{ prefix: 1 }, /prefix must be a string/],
        [{ prefix: "\ud800" }, /prefix must be valid UTF-8/],
        [{ prefix: "p".repeat(1025) }, /prefix must be at most 1024 bytes/],
        [{ startAfter: false }, /startAfter must be a string/],
        [{ startAfter: "\udfff" }, /startAfter must be valid UTF-8/],
      ] as const) {
        const error = ns.fails({ ...base, ...change }, "MR_ERR_INVALID_ARGUMENT");
        assert.match(error.message, message);
      }
    }
  });
});
