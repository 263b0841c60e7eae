import assert from "node:assert/strict";
import { describe, it, mock } from "node:test";
import fc from "fast-check";
import { MetaraftError } from "../../src/errors.js";
import type { Request } from "../../src/execution/types.js";
import {
  bucketTableKey,
  decodeBucketInfo,
  decodeKeyInfo,
  decodeOpenKeyInfo,
  decodeVolumeInfo,
  keyTableKey,
  namespaceSpecs,
  OPEN_KEY_EXPIRY_MS,
  openKeyTableKey,
  volumeTableKey,
} from "../../src/namespace/index.js";
import { Namespace } from "./memory-state.js";

const runs = { numRuns: Number(process.env.PROPERTY_RUNS ?? 200) };

const volumes = ["vol-a", "vol-b"];
const buckets = ["bkt-a", "bkt-b"];
const keys = ["k1", "k2", "dir/k3", "\u{1f600}"];

/** One step of a random history. `openKeyId` picks among the ids opened so far (or a stale one). */
type Step =
  | { readonly op: "createVolume" | "deleteVolume"; readonly v: number }
  | { readonly op: "createBucket" | "deleteBucket"; readonly v: number; readonly b: number }
  | { readonly op: "openKey" | "deleteKey"; readonly v: number; readonly b: number; readonly k: number }
  | {
      readonly op: "commitKey";
      readonly v: number;
      readonly b: number;
      readonly k: number;
      readonly pick: number;
      readonly size: number;
    }
  | {
      readonly op: "expireKey";
      readonly v: number;
      readonly b: number;
      readonly k: number;
      readonly pick: number;
    }
  | {
      readonly op: "renameKey";
      readonly v: number;
      readonly b: number;
      readonly k: number;
      readonly to: number;
    }
  | { readonly op: "advance"; readonly ms: number };

const v = fc.nat({ max: volumes.length - 1 });
const b = fc.nat({ max: buckets.length - 1 });
const k = fc.nat({ max: keys.length - 1 });
/** Creates outweigh deletes so that histories reach keys; deletes still empty the namespace often. */
const step: fc.Arbitrary<Step> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant("createVolume" as const), v }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("deleteVolume" as const), v }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("createBucket" as const), v, b }), weight: 3 },
  { arbitrary: fc.record({ op: fc.constant("deleteBucket" as const), v, b }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant("openKey" as const), v, b, k }), weight: 5 },
  {
    arbitrary: fc.record({ op: fc.constant("commitKey" as const), v, b, k, pick: fc.nat(), size: fc.nat() }),
    weight: 5,
  },
  { arbitrary: fc.record({ op: fc.constant("deleteKey" as const), v, b, k }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("renameKey" as const), v, b, k, to: k }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant("expireKey" as const), v, b, k, pick: fc.nat() }), weight: 1 },
  {
    arbitrary: fc.record({
      op: fc.constant("advance" as const),
      ms: fc.oneof(fc.nat({ max: 1000 }), fc.constant(OPEN_KEY_EXPIRY_MS)),
    }),
    weight: 1,
  },
);

interface Opened {
  readonly v: number;
  readonly b: number;
  readonly k: number;
  readonly openKeyId: number;
}

function requestOf(s: Exclude<Step, { op: "advance" }>, opened: readonly Opened[]): Request {
  switch (s.op) {
    case "createVolume":
    case "deleteVolume":
      return { op: s.op, volume: volumes[s.v]! };
    case "createBucket":
    case "deleteBucket":
      return { op: s.op, volume: volumes[s.v]!, bucket: buckets[s.b]! };
    case "openKey":
    case "deleteKey":
      return { op: s.op, volume: volumes[s.v]!, bucket: buckets[s.b]!, key: keys[s.k]! };
    case "renameKey":
      return { op: s.op, volume: volumes[s.v]!, bucket: buckets[s.b]!, key: keys[s.k]!, toKey: keys[s.to]! };
    case "expireKey": {
      // A key's object id is the open key id it was committed from: mostly one opened (which may
      // or may not be what the key holds now), sometimes an id never opened.
      const chosen = opened.length === 0 ? undefined : opened[s.pick % opened.length];
      const target =
        chosen !== undefined && s.pick % 4 !== 0 ? chosen : { v: s.v, b: s.b, k: s.k, openKeyId: s.pick };
      return {
        op: "expireKey",
        volume: volumes[target.v]!,
        bucket: buckets[target.b]!,
        key: keys[target.k]!,
        objectId: target.openKeyId,
      };
    }
    case "commitKey": {
      // Mostly commit what was opened (right key, right bucket); sometimes an id never opened.
      const chosen = opened.length === 0 ? undefined : opened[s.pick % opened.length];
      const target =
        chosen !== undefined && s.pick % 4 !== 0 ? chosen : { v: s.v, b: s.b, k: s.k, openKeyId: s.pick };
      return {
        op: "commitKey",
        volume: volumes[target.v]!,
        bucket: buckets[target.b]!,
        key: keys[target.k]!,
        openKeyId: target.openKeyId,
        size: s.size,
        etag: `etag-${s.size}`,
        metadata: { step: String(s.pick) },
      };
    }
  }
}

/** Successes per op over all histories played, to show the property is not vacuous. */
const succeeded = new Map<string, number>();

/** Runs a history, asserting after each step that only MetaraftErrors escape and the invariants hold. */
function play(steps: readonly Step[], ns = new Namespace()): Namespace {
  const opened: Opened[] = [];
  for (const s of steps) {
    if (s.op === "advance") {
      ns.time += s.ms;
      continue;
    }
    try {
      const reply = ns.reply(requestOf(s, opened));
      if (s.op === "openKey") opened.push({ v: s.v, b: s.b, k: s.k, openKeyId: reply.openKeyId as number });
      succeeded.set(s.op, (succeeded.get(s.op) ?? 0) + 1);
    } catch (error) {
      if (!(error instanceof MetaraftError)) throw error;
      assert.notEqual(error.code, "MR_ERR_INTERNAL", error.message);
    }
    checkInvariants(ns);
  }
  return ns;
}

function checkInvariants(ns: Namespace): void {
  const { state } = ns;
  for (const { key, value } of state.entries("volumes")) {
    assert.equal(volumeTableKey(decodeVolumeInfo(value).name), key);
  }
  for (const { key, value } of state.entries("buckets")) {
    const info = decodeBucketInfo(value);
    assert.equal(bucketTableKey(info.volume, info.name), key);
    assert.ok(state.get("volumes", info.volume), `bucket ${key} without its volume`);
  }
  const objectIds = new Set<number>();
  for (const { key, value } of state.entries("keys")) {
    const info = decodeKeyInfo(value);
    assert.equal(keyTableKey(info.volume, info.bucket, info.key), key);
    assert.ok(
      state.get("buckets", bucketTableKey(info.volume, info.bucket)),
      `key ${key} without its bucket`,
    );
    assert.ok(!objectIds.has(info.objectId), `objectId ${info.objectId} held by two keys`);
    objectIds.add(info.objectId);
    assert.ok(info.updateId * 256 >= info.objectId, "updated before it was created");
  }
  for (const { key, value } of state.entries("openKeys")) {
    const info = decodeOpenKeyInfo(value);
    assert.equal(openKeyTableKey(info.volume, info.bucket, info.key, info.openKeyId), key);
    assert.ok(
      state.get("buckets", bucketTableKey(info.volume, info.bucket)),
      `open key ${key} without bucket`,
    );
    assert.ok(!objectIds.has(info.openKeyId), "an open key id is also a committed key's objectId");
  }
}

/** A history that touches every write and read, for the determinism checks. */
const scripted: Request[] = [
  { op: "createVolume", volume: "vol", owner: "alice", quotaBytes: 1024 },
  { op: "createBucket", volume: "vol", bucket: "bkt", versioning: false },
  { op: "openKey", volume: "vol", bucket: "bkt", key: "a", size: 5 },
  {
    op: "commitKey",
    volume: "vol",
    bucket: "bkt",
    key: "a",
    openKeyId: 3 * 256,
    size: 5,
    etag: "x",
    metadata: { b: "2", a: "1" },
  },
  { op: "openKey", volume: "vol", bucket: "bkt", key: "a" },
  { op: "commitKey", volume: "vol", bucket: "bkt", key: "a", openKeyId: 5 * 256, size: 6, etag: "y" },
  { op: "renameKey", volume: "vol", bucket: "bkt", key: "a", toKey: "b/c" },
  { op: "lookupKey", volume: "vol", bucket: "bkt", key: "b/c" },
  { op: "listKeys", volume: "vol", bucket: "bkt" },
  { op: "listBuckets", volume: "vol" },
  { op: "listVolumes" },
  { op: "infoVolume", volume: "vol" },
  { op: "infoBucket", volume: "vol", bucket: "bkt" },
  { op: "deleteKey", volume: "vol", bucket: "bkt", key: "b/c" },
  { op: "deleteBucket", volume: "vol", bucket: "bkt" },
  { op: "deleteVolume", volume: "vol" },
];

function runScripted(): Namespace {
  const ns = new Namespace();
  for (const request of scripted) {
    ns.time += 17;
    ns.run(request);
  }
  return ns;
}

describe("namespace properties", () => {
  it("random histories raise only MetaraftErrors and keep every key's bucket and every bucket's volume", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 80, size: "max" }), (steps) => {
        play(steps);
      }),
      runs,
    );
    // With few runs (PROPERTY_RUNS) a rare op may never get its preconditions; the default is plenty.
    if (runs.numRuns >= 100) {
      const writes = namespaceSpecs.filter((spec) => spec.kind === "write").map((spec) => spec.op);
      for (const op of writes) assert.ok((succeeded.get(op) ?? 0) > 0, `no ${op} ever succeeded`);
    }
  });

  it("random raw requests raise only MetaraftErrors", () => {
    const ns = play([
      { op: "createVolume", v: 0 },
      { op: "createBucket", v: 0, b: 0 },
    ]);
    const value = fc.oneof(
      fc.anything(),
      fc.constantFrom(...volumes, ...buckets, ...keys, 256, 0, -1, 1.5, "", null),
    );
    const raw = fc.record(
      {
        op: fc.constantFrom(...namespaceSpecs.map((s) => s.op)),
        volume: value,
        bucket: value,
        key: value,
        toKey: value,
        openKeyId: value,
        size: value,
        etag: value,
        metadata: value,
        owner: value,
        quotaBytes: value,
        versioning: value,
        prefix: value,
        startAfter: value,
        limit: value,
      },
      { requiredKeys: ["op"] },
    );
    fc.assert(
      fc.property(raw, (request) => {
        try {
          ns.run(request as Request);
        } catch (error) {
          assert.ok(error instanceof MetaraftError, String(error));
          assert.notEqual(error.code, "MR_ERR_INTERNAL", error.message);
        }
        checkInvariants(ns);
      }),
      { numRuns: 2000 },
    );
  });

  it("the same requests with the same txids and times write the same bytes and reply alike", () => {
    const first = runScripted();
    const second = runScripted();
    assert.equal(first.log.length, scripted.length);
    assert.deepEqual(second.log, first.log);
    assert.deepEqual(second.state.snapshot(), first.state.snapshot());
  });

  it("handlers never read the clock or a random source", () => {
    const reference = runScripted();
    const now = mock.method(Date, "now", () => {
      throw new Error("a handler read Date.now");
    });
    const random = mock.method(Math, "random", () => {
      throw new Error("a handler read Math.random");
    });
    try {
      assert.deepEqual(runScripted().log, reference.log);
    } finally {
      now.mock.restore();
      random.mock.restore();
    }
  });

  it("random histories replay to byte-identical writes", () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
        assert.deepEqual(play(steps).log, play(steps).log);
      }),
      { numRuns: 50 },
    );
  });
});
