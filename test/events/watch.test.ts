import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { describe, it } from "node:test";
import { pack, unpack } from "msgpackr";
import { MetaraftClient } from "../../src/client/client.js";
import type { Watch } from "../../src/client/watch.js";
import { MetaraftError } from "../../src/errors.js";
import type { LedgerEvent } from "../../src/events/index.js";
import { readLedger } from "../../src/events/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { encodeFrame, FrameDecoder } from "../../src/transport/index.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const clientPort = (node: MetaraftNode) =>
  node.config.cluster.find((m) => m.id === node.config.id)!.clientPort;

/** Every event of `node`'s ledger after `afterTxid` under `prefix`, page by page. */
function ledgerOf(node: MetaraftNode, afterTxid: number, prefix: string): LedgerEvent[] {
  const out: LedgerEvent[] = [];
  for (let after = afterTxid; after < node.store.lastTxid; ) {
    const read = readLedger(node.store, node.core.sync, after, 10_000, { prefix });
    out.push(...read.events);
    after = read.scannedThrough;
  }
  return out;
}

/** Iterates `watch` in the background until it has `count` events (or ends). */
function collect(watch: Watch, count: number): { events: LedgerEvent[]; done: Promise<unknown> } {
  const events: LedgerEvent[] = [];
  const done = (async () => {
    if (count === 0) return;
    for await (const event of watch) {
      events.push(event);
      if (events.length >= count) break;
    }
  })();
  return { events, done };
}

const key = (e: LedgerEvent) => [e.txid, e.type, e.volume, e.bucket, e.key, e.toKey];

/** A client connection that speaks the protocol by hand and keeps every frame it gets. */
class RawClient {
  readonly frames: Record<string, unknown>[] = [];
  readonly #socket: Socket;
  #id = 0;

  constructor(port: number, clusterId: string) {
    this.#socket = connect(port, "127.0.0.1");
    const decoder = new FrameDecoder({
      frameBytesMax: 64 * 1024 * 1024,
      onFrame: (payload) => this.frames.push(unpack(payload) as Record<string, unknown>),
    });
    this.#socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    this.#socket.on("error", () => {});
    this.#socket.write(encodeFrame(pack({ protocol: 1, clusterId })));
  }

  async call(op: string, fields: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = ++this.#id;
    this.#socket.write(encodeFrame(pack({ id, op, ...fields })));
    let reply: Record<string, unknown> | undefined;
    await waitFor(`the reply to ${op}`, () => {
      reply = this.frames.find((f) => f.id === id);
      return reply !== undefined;
    });
    return reply!;
  }

  close(): void {
    this.#socket.destroy();
  }
}

describe("watches", () => {
  for (const mode of ["leader-execution", "replicated-request"] as const) {
    it(`${mode}: stream the ledger under a prefix from fromTxid, then live, each event once and in order`, async () => {
      const cluster = await InProcessCluster.start({ nodes: 3, mode });
      try {
        const client = cluster.client();
        await client.createVolume("wvol");
        await client.createBucket("wvol", "bk1");
        await client.createBucket("wvol", "bk2");
        for (let i = 0; i < 10; i++)
          await client.putKey("wvol", i % 2 ? "bk1" : "bk2", `old-${i}`, { size: i, etag: "e" });
        const from = client.watch({ prefix: "wvol/bk1", fromTxid: 1 });
        const now = client.watch({ prefix: "wvol/bk1/" });
        const { txid: nowStart } = await now.opened();
        // Live writes, concurrent, to both buckets; then a rename and deletes under the prefix.
        await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            client.putKey("wvol", i % 2 ? "bk1" : "bk2", `new-${i}`, { size: i, etag: "e" }),
          ),
        );
        await client.renameKey("wvol", "bk1", "new-1", "moved-1");
        await client.deleteKey("wvol", "bk1", "old-1");
        const leader = await cluster.leader();
        const all = ledgerOf(leader, 0, "wvol/bk1");
        const live = ledgerOf(leader, nowStart, "wvol/bk1/");
        // The bucket's own event matches "wvol/bk1" but not "wvol/bk1/".
        assert.equal(all.length, 1 + 5 + 20 + 2);
        assert.equal(live.length, 20 + 2);
        const a = collect(from, all.length);
        const b = collect(now, live.length);
        await Promise.all([a.done, b.done]);
        assert.deepEqual(a.events.map(key), all.map(key));
        assert.deepEqual(b.events.map(key), live.map(key));
        assert.equal(from.txid, all.at(-1)!.txid);
        // Each ended on its server (break calls return(), which cancels it).
        await waitFor("the watches ended on the node", () =>
          cluster.nodes.every((n) => n!.watches.size === 0),
        );
      } finally {
        await cluster.stop();
      }
    });
  }

  it("are served by a follower, from what it has applied", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      await client.createVolume("fwvol");
      const leader = await cluster.leader();
      const follower = cluster.nodes.find((n) => n !== leader)!;
      const direct = new MetaraftClient({
        endpoints: [{ host: "127.0.0.1", port: clientPort(follower) }],
        clusterId: cluster.clusterId,
      });
      try {
        const watch = direct.watch({ fromTxid: 1 });
        assert.equal((await watch.opened()).node, follower.config.id);
        await client.createBucket("fwvol", "fbk");
        const got = collect(watch, 2);
        await got.done;
        assert.deepEqual(
          got.events.map((e) => e.type),
          ["VolumeCreated:Create", "BucketCreated:Create"],
        );
        assert.equal(follower.watches.stats().opened, 1);
        assert.equal(leader.watches.stats().opened, 0);
      } finally {
        direct.close();
      }
    } finally {
      await cluster.stop();
    }
  });

  it("resume on another member when the serving one stops, with no gap and no duplicate", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const client = cluster.client();
      await client.createVolume("rwvol");
      await client.createBucket("rwvol", "bkt");
      const leader = await cluster.leader();
      const follower = cluster.nodes.find((n) => n !== leader)!;
      const others = cluster.nodes
        .filter((n) => n !== follower)
        .map((n) => ({ host: "127.0.0.1", port: clientPort(n!) }));
      // The follower first, so that it serves the watch; the others to resume on.
      const watching = new MetaraftClient({
        endpoints: [{ host: "127.0.0.1", port: clientPort(follower!) }, ...others],
        clusterId: cluster.clusterId,
      });
      try {
        const watch = watching.watch({ prefix: "rwvol/bkt/", fromTxid: 1 });
        assert.equal((await watch.opened()).node, follower!.config.id);
        const total = 120;
        const got = collect(watch, total);
        let written = 0;
        const writes = (async () => {
          for (let i = 0; i < total; i++) {
            await client.putKey("rwvol", "bkt", `k${i}`, { size: i, etag: "e" });
            written++;
          }
        })();
        await waitFor("some events were delivered", () => got.events.length >= 30);
        await cluster.stopNode(follower!.config.id);
        await writes;
        await got.done;
        assert.ok(watch.reopens >= 1, "it reopened");
        const expected = ledgerOf(leader, 0, "rwvol/bkt/");
        assert.equal(expected.length, written);
        assert.deepEqual(got.events.map(key), expected.map(key));
      } finally {
        watching.close();
      }
    } finally {
      await cluster.stop();
    }
  });

  it("that start before the ledger's first txid fail with MR_ERR_COMPACTED, which carries that txid", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, events: { max: 20, hardMax: 100 } });
    try {
      const client = cluster.client();
      await client.createVolume("cwvol");
      await client.createBucket("cwvol", "bkt");
      for (let i = 0; i < 60; i++) await client.putKey("cwvol", "bkt", `k${i}`, { size: i, etag: "e" });
      const ledger = (await client.status()).ledger as { firstTxid: number; prunedThrough: number };
      assert.ok(ledger.prunedThrough > 0);
      const watch = client.watch({ fromTxid: 1 });
      await assert.rejects(watch.opened(), (error: unknown) => {
        assert.ok(error instanceof MetaraftError);
        assert.equal(error.code, "MR_ERR_COMPACTED");
        assert.equal(error.details?.firstTxid, ledger.firstTxid);
        return true;
      });
      await assert.rejects(
        watch.next(),
        (e: unknown) => e instanceof MetaraftError && e.code === "MR_ERR_COMPACTED",
      );
      assert.deepEqual(await watch.next(), { done: true, value: undefined });
      // From the first txid held, it streams.
      const ok = client.watch({ fromTxid: ledger.firstTxid });
      const first = await ok.next();
      assert.equal(first.value?.txid, ledger.firstTxid);
      await ok.return();
    } finally {
      await cluster.stop();
    }
  });

  it("tell an idle watcher the current txid", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, watch: { progressMs: 50 } });
    try {
      const client = cluster.client();
      const progress: number[] = [];
      const watch = client.watch({ prefix: "nothing-here/", onProgress: (txid) => progress.push(txid) });
      await watch.opened();
      const pending = watch.next();
      await client.createVolume("elsewhere");
      const created = await client.createBucket("elsewhere", "bkt");
      await waitFor(
        "a progress notification past the writes",
        () => (progress.at(-1) ?? 0) >= (created.updateId as number),
      );
      assert.ok(watch.txid >= (created.updateId as number));
      for (let i = 1; i < progress.length; i++) assert.ok(progress[i]! >= progress[i - 1]!);
      await watch.return();
      assert.deepEqual(await pending, { done: true, value: undefined });
    } finally {
      await cluster.stop();
    }
  });

  it("answer bad input with a code, and bound the watches per connection and per node", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, watch: { watchersMax: 70 } });
    const raws: RawClient[] = [];
    try {
      const node = cluster.nodes[0]!;
      const raw = new RawClient(clientPort(node), cluster.clusterId);
      raws.push(raw);
      const code = (reply: Record<string, unknown>) => (reply.error as { code?: string } | undefined)?.code;
      assert.equal(code(await raw.call("watch", {})), "MR_ERR_INVALID_ARGUMENT");
      assert.equal(code(await raw.call("watch", { watchId: 0 })), "MR_ERR_INVALID_ARGUMENT");
      assert.equal(code(await raw.call("watch", { watchId: 1, prefix: 7 })), "MR_ERR_INVALID_ARGUMENT");
      assert.equal(
        code(await raw.call("watch", { watchId: 1, prefix: "x".repeat(5000) })),
        "MR_ERR_INVALID_ARGUMENT",
      );
      assert.equal(code(await raw.call("watch", { watchId: 1, fromTxid: -1 })), "MR_ERR_INVALID_ARGUMENT");
      assert.equal(code(await raw.call("watch", { watchId: 1, fromTxid: 1.5 })), "MR_ERR_INVALID_ARGUMENT");
      assert.equal(code(await raw.call("cancelWatch", { watchId: "a" })), "MR_ERR_INVALID_ARGUMENT");
      const opened = await raw.call("watch", { watchId: 1 });
      assert.equal(opened.ok, true);
      assert.equal(opened.node, node.config.id);
      assert.equal(code(await raw.call("watch", { watchId: 1 })), "MR_ERR_INVALID_ARGUMENT");
      // Cancelled, then gone; the connection serves on, and the id is free again.
      assert.deepEqual(await raw.call("cancelWatch", { watchId: 1 }).then((r) => r.cancelled), true);
      assert.deepEqual(await raw.call("cancelWatch", { watchId: 1 }).then((r) => r.cancelled), false);
      assert.equal(node.watches.size, 0);
      for (let id = 1; id <= 64; id++) assert.equal((await raw.call("watch", { watchId: id })).ok, true);
      assert.equal(code(await raw.call("watch", { watchId: 65 })), "MR_ERR_WATCH_LIMIT");
      const other = new RawClient(clientPort(node), cluster.clusterId);
      raws.push(other);
      for (let id = 1; id <= 6; id++) assert.equal((await other.call("watch", { watchId: id })).ok, true);
      assert.equal(code(await other.call("watch", { watchId: 7 })), "MR_ERR_WATCH_LIMIT");
      assert.equal(node.watches.size, 70);
      // A closed connection's watches end with it.
      raw.close();
      await waitFor("the closed connection's watches ended", () => node.watches.size === 6);
      assert.equal((await other.call("watch", { watchId: 7 })).ok, true);
      // Frames name their watch; no stray frame for a cancelled or unknown id.
      assert.ok(other.frames.filter((f) => f.push === "watch").every((f) => (f.watchId as number) <= 7));
    } finally {
      for (const r of raws) r.close();
      await cluster.stop();
    }
  });
});
