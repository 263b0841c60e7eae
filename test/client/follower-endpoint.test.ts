import assert from "node:assert/strict";
import { test } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { InProcessCluster } from "../helpers/nodes.js";

test("a client given only a follower's endpoint reaches the leader it was not given", async () => {
  const cluster = await InProcessCluster.start();
  try {
    const leader = await cluster.leader();
    const follower = cluster.nodes.find((n) => n !== null && n !== leader)!;
    const self = follower.config.cluster.find((n) => n.id === follower.config.id)!;
    const client = new MetaraftClient({
      endpoints: [{ host: self.host, port: self.clientPort }],
      clusterId: cluster.clusterId,
      timeoutMs: 5_000,
    });
    try {
      await client.createVolume("only-one-endpoint");
      const page = await client.listVolumes();
      assert.deepEqual(
        page.items.map((v) => v.volume ?? v.name),
        ["only-one-endpoint"],
      );
    } finally {
      client.close();
    }
  } finally {
    await cluster.stop();
  }
});
