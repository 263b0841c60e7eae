import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { InProcessCluster } from "../helpers/nodes.js";

/**
 * A node that accepts connections and then never answers: a frozen process (SIGSTOP) keeps its
 * sockets open in the kernel, and so does this.
 */
describe("a node that keeps its connection open but never answers", () => {
  let cluster: InProcessCluster;
  const sockets = new Set<Socket>();
  const silent = createServer((socket) => {
    sockets.add(socket);
    socket.on("data", () => undefined);
  });
  let silentPort = 0;

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 3 });
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    silentPort = (silent.address() as { port: number }).port;
  });
  after(async () => {
    for (const socket of sockets) socket.destroy();
    silent.close();
    await cluster.stop();
  });

  it("holds a call for one attempt deadline, then the call moves on with the same call id", async () => {
    const real = cluster.nodes.map((n) => n!.config.cluster.find((m) => m.id === n!.config.id)!);
    const client = new MetaraftClient({
      endpoints: [
        { host: "127.0.0.1", port: silentPort },
        ...real.map((m) => ({ host: m.host, port: m.clientPort })),
      ],
      clusterId: cluster.clusterId,
      timeoutMs: 20_000,
      attemptTimeoutMs: 300,
    });
    try {
      // The first endpoint is the silent one: without an attempt deadline this waits 20 s and fails.
      const reply = await client.createVolume("through-the-silence");
      assert.equal(typeof reply.objectId, "number", JSON.stringify(reply));
      assert.ok(sockets.size >= 1, "the client did try the silent node first");
      const listed = await client.listVolumes();
      assert.deepEqual(
        listed.items.map((v) => v.name),
        ["through-the-silence"],
      );
    } finally {
      client.close();
    }
  });
});
