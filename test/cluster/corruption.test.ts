import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";
import { open } from "lmdb";
import { ProcessCluster } from "../helpers/cluster.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("a corrupted log record", () => {
  it("stops the node with an error naming the record, instead of serving", async () => {
    const cluster = await ProcessCluster.start({ nodes: 1 });
    try {
      const client = cluster.client();
      for (let i = 0; i < 20; i++) await client.call("put", { key: `k${i}`, value: `v${i}` });
      client.close();
      await cluster.kill(1, "SIGTERM");

      // Flip a byte inside entry 5's stored frame, behind the storage layer's back.
      const env = open({ path: join(cluster.dir, "node-1"), maxDbs: 32 });
      const log = env.openDB({ name: "raftLog", keyEncoding: "binary", encoding: "binary" });
      const key = Buffer.alloc(8);
      key.writeBigUInt64BE(5n);
      const record = Buffer.from(log.getBinary(key)!);
      record[record.length - 1]! ^= 0xff;
      await log.put(key, record);
      await env.close();

      await cluster.startNode(1).catch(() => undefined);
      const member = cluster.members[0]!;
      const deadline = Date.now() + 10_000;
      while (member.exitCode === null && Date.now() < deadline) await sleep(50);
      assert.notEqual(member.exitCode, null, "the node kept running on a corrupt log");
      assert.notEqual(member.exitCode, 0);
      assert.match(member.stderr, /raftLog record 5/);
      assert.match(member.stderr, /MR_ERR_LOG_CORRUPT/);
    } finally {
      await cluster.stop();
    }
  });
});
