import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { Registry } from "prom-client";
import {
  type LedgerEvent,
  type ListenerContext,
  type ListenerRecord,
  loadPlugin,
  readLedger,
} from "../../src/events/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

/**
 * A shipped sink over a real cluster, its context built by hand from the leader node (the
 * plugin hosts do this for real): the ledger read from the leader's LMDB state, leadership from
 * its Raft host, and the checkpoint through the replicated listener registry.
 */
describe("a sink on a cluster's leader", () => {
  it("writes every event of the ledger to its file, in order, and replicates its checkpoint", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    const dir = mkdtempSync(join(tmpdir(), "metaraft-sink-cluster-"));
    try {
      const client = cluster.client();
      const leader: MetaraftNode = await cluster.leader();
      await client.listenerAdd({
        name: "files",
        module: "ndjson",
        options: { path: "events.ndjson" },
        from: "start",
      });
      const context: ListenerContext = {
        name: "files",
        ledger: {
          read: async (afterTxid, limit) => readLedger(leader.store, leader.core.sync, afterTxid, limit),
          // No append notification here: the sink finds new events by polling (poll_ms).
          onAppended: () => () => {},
        },
        leadership: leader.host.leadership,
        readCheckpoint: async () => {
          const reply = await client.listeners();
          return (reply.listeners as ListenerRecord[]).find((l) => l.name === "files")!.checkpoint;
        },
        checkpoint: async (txid) => {
          await client.listenerCheckpoint("files", txid);
        },
        runtime: leader.runtime,
        metrics: new Registry(),
        log: { info: () => {}, warn: () => {}, error: () => {} },
      };
      const sink = await loadPlugin({ name: "files", module: "ndjson" }, { baseDir: dir });
      await sink.init(context, { path: "events.ndjson", poll_ms: 20, checkpoint_ms: 50 });
      await sink.start();

      await client.createVolume("sinkvol");
      await client.createBucket("sinkvol", "bkt");
      for (const key of ["a", "b", "c"]) {
        const opened = await client.openKey("sinkvol", "bkt", key, 1);
        await client.commitKey("sinkvol", "bkt", key, opened.openKeyId, { size: 1, etag: `e-${key}` });
      }
      await client.renameKey("sinkvol", "bkt", "a", "z");
      await client.deleteKey("sinkvol", "bkt", "b");
      const expected = (await client.readEvents({ afterTxid: 0, limit: 1000 })).events as LedgerEvent[];
      assert.equal(expected.length, 7);
      const last = expected[expected.length - 1]!.txid;

      await waitFor("the sink delivered the last event", () => sink.status?.().delivered === last);
      const written = readFileSync(join(dir, "events.ndjson"), "utf8")
        .trim()
        .split("\n")
        .map((line) => JSON.parse(line) as LedgerEvent);
      assert.deepEqual(written, expected);
      await waitFor("the checkpoint replicated", async () => {
        const reply = await client.listeners();
        return (reply.listeners as ListenerRecord[]).find((l) => l.name === "files")?.checkpoint === last;
      });
      await sink.stop();
      assert.equal(sink.status?.().state, "stopped");
    } finally {
      await cluster.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
