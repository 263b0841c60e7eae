import assert from "node:assert/strict";
import { test } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { MetaraftError } from "../../src/errors.js";
import { InProcessCluster } from "../helpers/nodes.js";

test("with 2 of 3 members down a call fails fast with UNAVAILABLE and the count, not at its deadline", async () => {
  const cluster = await InProcessCluster.start({ nodes: 3 });
  try {
    const endpoints = cluster.nodes.map((n) => {
      const self = n!.config.cluster.find((m) => m.id === n!.config.id)!;
      return { host: self.host, port: self.clientPort };
    });
    // A 60 s deadline: a call that retried until then would fail with MR_ERR_TIMEOUT instead.
    const client = new MetaraftClient({ endpoints, clusterId: cluster.clusterId, timeoutMs: 60_000 });
    try {
      await client.createVolume("while-healthy");
      await cluster.stopNode(2);
      await cluster.stopNode(3);
      await assert.rejects(client.createVolume("without-quorum"), (error: unknown) => {
        assert.ok(error instanceof MetaraftError, String(error));
        assert.equal(error.code, "MR_ERR_UNAVAILABLE");
        assert.match(error.message, /no quorum: 1 of 3 members reachable/);
        return true;
      });
      await assert.rejects(client.listVolumes(), /no quorum: 1 of 3 members reachable/);
    } finally {
      client.close();
    }
  } finally {
    await cluster.stop();
  }
});
