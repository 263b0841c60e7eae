import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { describe, it } from "node:test";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { pack, unpack } from "msgpackr";
import type { MetaraftClient } from "../../src/client/client.js";
import type { LedgerEvent } from "../../src/events/index.js";
import { readLedger } from "../../src/events/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { encodeFrame, FrameDecoder } from "../../src/transport/index.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

// A heap figure means something only right after a full collection.
setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

function heapUsed(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

/** A client that opens a watch and then reads nothing (its socket paused) until told to. */
class StalledWatcher {
  readonly frames: Record<string, unknown>[] = [];
  readonly #socket: Socket;

  constructor(port: number, clusterId: string, watch: Record<string, unknown>) {
    this.#socket = connect(port, "127.0.0.1");
    const decoder = new FrameDecoder({
      frameBytesMax: 64 * 1024 * 1024,
      onFrame: (payload) => this.frames.push(unpack(payload) as Record<string, unknown>),
    });
    this.#socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    this.#socket.on("error", () => {});
    this.#socket.write(encodeFrame(pack({ protocol: 1, clusterId })));
    this.#socket.write(encodeFrame(pack({ id: 1, op: "watch", ...watch })));
    // Nothing is read from here on: the kernel's buffers fill, then the node's.
    this.#socket.pause();
  }

  read(): void {
    this.#socket.resume();
  }

  close(): void {
    this.#socket.destroy();
  }
}

/**
 * A write load whose events are large: `writers` keys of 1,000 bytes, each renamed back and forth,
 * so that every write is one event carrying two long names.
 */
async function renameLoad(client: MetaraftClient, volume: string, writers: number) {
  const long = (side: "a" | "b", i: number) => `${side}-${i}-${"x".repeat(990)}`;
  await client.createVolume(volume);
  await client.createBucket(volume, "bkt");
  for (let i = 0; i < writers; i++) await client.putKey(volume, "bkt", long("a", i), { size: 1, etag: "e" });
  let flipped = false;
  return async (rounds: number) => {
    await Promise.all(
      Array.from({ length: writers }, async (_, i) => {
        for (let r = 0; r < rounds; r++) {
          const there = (r % 2 === 1) !== flipped;
          await client.renameKey(volume, "bkt", long(there ? "b" : "a", i), long(there ? "a" : "b", i));
        }
      }),
    );
    if (rounds % 2 === 1) flipped = !flipped;
  };
}

/** The events a raw watcher received, in order. */
const delivered = (watcher: StalledWatcher) =>
  watcher.frames
    .filter((f) => f.push === "watch" && f.kind === "events")
    .flatMap((f) => f.events as LedgerEvent[]);

const clientPort = (node: MetaraftNode) =>
  node.config.cluster.find((m) => m.id === node.config.id)!.clientPort;

describe("a watcher that never reads", () => {
  it("costs the node its bounded buffer, not the events written meanwhile, and gets them all once it reads", async () => {
    const bufferBytesMax = 64 * 1024;
    const cluster = await InProcessCluster.start({ nodes: 1, watch: { bufferBytesMax }, noSync: true });
    const stalled: StalledWatcher[] = [];
    try {
      const node = await cluster.leader();
      const client = cluster.client();
      const writers = 64;
      const load = await renameLoad(client, "mem", writers);
      // Warm up (code, caches, the pipeline's structures), then the baseline.
      await load(20);
      const before = heapUsed();
      const startTxid = node.store.lastTxid;

      const watcher = new StalledWatcher(clientPort(node), cluster.clusterId, {
        watchId: 7,
        prefix: "mem/bkt/",
      });
      stalled.push(watcher);
      await waitFor("the watch is open", () => node.watches.size === 1);
      const rounds = 150;
      await load(rounds);
      const written = writers * rounds;
      const after = heapUsed();
      const stats = node.watches.stats();
      const [row] = node.watches.watchers();
      // The writes went on, and the watch fell back to reading the ledger.
      assert.equal(node.store.lastTxid - startTxid, written);
      assert.ok(stats.catchUps >= 1, `catch-ups ${stats.catchUps}`);
      assert.equal(row?.mode, "catch-up");
      // Its buffer never passed the bound (one rename's event is far below it)...
      assert.ok(stats.bufferedBytesPeak <= bufferBytesMax, `buffered peak ${stats.bufferedBytesPeak}`);
      assert.ok(row!.bufferedBytesPeak <= bufferBytesMax);
      // ...nor its connection's unsent bytes the socket share plus one frame.
      const socketBound = stats.limits.socketBytesMax + stats.limits.frameBytesMax + 64 * 1024;
      assert.ok(stats.socketBytesPeak <= socketBound, `socket peak ${stats.socketBytesPeak}`);
      // The heap grew by far less than the events the node held back from it (the kernel's
      // socket buffers took the rest): kept as objects, they would cost more than their bytes.
      const growth = after - before;
      const heldBack = (written - stats.eventsSent) * 2 * 1000;
      const growthMax = 5 * 1024 * 1024;
      assert.ok(heldBack > 2 * growthMax, `only ${heldBack} bytes of events held back`);
      assert.ok(
        growth < growthMax,
        `heap grew ${growth} bytes while ${heldBack} bytes of events were held back`,
      );

      // Once it reads, it gets every event since it opened, in order, each once.
      watcher.read();
      const expected: LedgerEvent[] = [];
      for (let after = startTxid; after < node.store.lastTxid; ) {
        const read = readLedger(node.store, node.core.sync, after, 10_000, { prefix: "mem/bkt/" });
        expected.push(...read.events);
        after = read.scannedThrough;
      }
      assert.equal(expected.length, written);
      await waitFor("every event reached the watcher", () => delivered(watcher).length >= written, 60_000);
      assert.deepEqual(
        delivered(watcher).map((e) => [e.txid, e.key, e.toKey]),
        expected.map((e) => [e.txid, e.key, e.toKey]),
      );
      assert.ok(watcher.frames.every((f) => f.kind !== "cancelled"));
    } finally {
      for (const w of stalled) w.close();
      await cluster.stop();
    }
  });

  it("is ended with MR_ERR_COMPACTED once the ledger prunes what it has not read", async () => {
    const cluster = await InProcessCluster.start({
      nodes: 1,
      watch: { bufferBytesMax: 64 * 1024, progressMs: 100 },
      events: { max: 200, hardMax: 400 },
      noSync: true,
    });
    const stalled: StalledWatcher[] = [];
    try {
      const node = await cluster.leader();
      const client = cluster.client();
      const load = await renameLoad(client, "gone", 64);
      const startTxid = node.store.lastTxid;
      const watcher = new StalledWatcher(clientPort(node), cluster.clusterId, {
        watchId: 3,
        fromTxid: startTxid + 1,
      });
      stalled.push(watcher);
      await waitFor("the watch is open", () => node.watches.size === 1);
      // Far more than the kernel's buffers and the watch's take, and the ledger keeps 200.
      await load(80);
      await waitFor("the watch was ended", () => node.watches.size === 0);
      assert.equal(node.watches.stats().compacted, 1);
      watcher.read();
      await waitFor("the cancel reached the watcher", () =>
        watcher.frames.some((f) => f.kind === "cancelled"),
      );
      const cancelled = watcher.frames.find((f) => f.kind === "cancelled")!;
      const error = cancelled.error as { code: string; details: { firstTxid: number } };
      assert.equal(error.code, "MR_ERR_COMPACTED");
      // What it got before the end is the ledger from its start, with no gap; the gap is after.
      const got = delivered(watcher);
      assert.ok(got.length > 0);
      assert.deepEqual(
        got.map((e) => e.txid),
        Array.from({ length: got.length }, (_, i) => startTxid + 1 + i),
      );
      assert.ok(error.details.firstTxid > got.at(-1)!.txid + 1, `firstTxid ${error.details.firstTxid}`);
      const ledger = (await client.status()).ledger as { firstTxid: number };
      assert.ok(error.details.firstTxid <= ledger.firstTxid);
      assert.equal(watcher.frames.at(-1)!.kind, "cancelled");
    } finally {
      for (const w of stalled) w.close();
      await cluster.stop();
    }
  });

  it("on the client side either: a watch not iterated holds its queue bound, and later delivers everything", async () => {
    const cluster = await InProcessCluster.start({
      nodes: 1,
      watch: { bufferBytesMax: 64 * 1024 },
      noSync: true,
    });
    try {
      const node = await cluster.leader();
      const client = cluster.client();
      const load = await renameLoad(client, "lazy", 64);
      const startTxid = node.store.lastTxid;
      const queueEventsMax = 50;
      const watch = client.watch({ fromTxid: startTxid + 1, queueEventsMax });
      await watch.opened();
      await load(60);
      const written = 64 * 60;
      // Frames already read when the queue filled still land: at most one socket read's worth.
      const slack = Math.ceil((64 * 1024) / 2000) + node.watches.stats().limits.frameEventsMax;
      assert.ok(watch.buffered >= queueEventsMax, `${watch.buffered} queued`);
      assert.ok(watch.buffered <= queueEventsMax + slack, `${watch.buffered} queued`);
      // The node held back the rest: its watch reads the ledger rather than growing.
      assert.ok(node.watches.stats().catchUps >= 1);
      const txids: number[] = [];
      for await (const event of watch) {
        txids.push(event.txid);
        assert.ok(watch.buffered <= queueEventsMax + slack);
        if (txids.length === written) break;
      }
      assert.deepEqual(
        txids,
        Array.from({ length: written }, (_, i) => startTxid + 1 + i),
      );
    } finally {
      await cluster.stop();
    }
  });
});
