import assert from "node:assert/strict";
import { describe, it, test } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { MetaraftError } from "../../src/errors.js";
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

describe("a peer port given as a client endpoint", () => {
  it("fails at once with MR_ERR_WRONG_PORT, naming the node and its client port", async () => {
    const cluster = await InProcessCluster.start({ nodes: 1 });
    try {
      const config = cluster.nodes[0]!.config;
      const peerPort = config.cluster[0]!.raftPort;
      const client = new MetaraftClient({
        endpoints: [{ host: "127.0.0.1", port: peerPort }],
        clusterId: cluster.clusterId,
        timeoutMs: 20_000,
      });
      try {
        await assert.rejects(client.listVolumes(), (error: unknown) => {
          assert.ok(error instanceof MetaraftError, String(error));
          assert.equal(error.code, "MR_ERR_WRONG_PORT");
          assert.match(
            error.message,
            new RegExp(
              `127\\.0\\.0\\.1:${peerPort} is node 1's peer port; its client port is 127\\.0\\.0\\.1:${config.cluster[0]!.clientPort}`,
            ),
          );
          return true;
        });
      } finally {
        client.close();
      }
    } finally {
      await cluster.stop();
    }
  });
});
