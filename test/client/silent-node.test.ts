import assert from "node:assert/strict";
import { createServer, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { pack, unpack } from "msgpackr";
import { MetaraftClient } from "../../src/client/client.js";
import { RpcClient } from "../../src/client/rpc-client.js";
import { encodeFrame, FrameDecoder } from "../../src/transport/index.js";
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

/**
 * A node that greets, answers pings and takes `delayMs` to answer anything else: alive and
 * busy, unlike a frozen one. Speaks the client protocol with real frames on a real socket.
 */
function slowNode(delayMs: number, clusterId: string) {
  const pings: number[] = [];
  const server = createServer((socket) => {
    let greeted = false;
    const decoder = new FrameDecoder({
      frameBytesMax: 1 << 20,
      onFrame: (payload) => {
        const body = unpack(payload) as { id?: number; op?: string };
        if (!greeted) {
          greeted = true;
          socket.write(encodeFrame(pack({ ok: true, nodeId: 9 })));
          return;
        }
        if (body.op === "ping") {
          pings.push(Date.now());
          socket.write(encodeFrame(pack({ id: body.id, ok: true, pong: true })));
          return;
        }
        setTimeout(() => {
          if (!socket.destroyed) socket.write(encodeFrame(pack({ id: body.id, ok: true, slow: true })));
        }, delayMs);
      },
    });
    socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    socket.on("error", () => undefined);
  });
  return { server, pings, clusterId };
}

describe("pings tell a frozen node from a busy one", () => {
  it("a call with a long attempt deadline leaves a silent node after one missed pong, not after its deadline", async () => {
    const sockets: Socket[] = [];
    const silent = createServer((socket) => {
      sockets.push(socket);
      socket.on("data", () => undefined);
    });
    const slow = slowNode(0, "c");
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => slow.server.listen(0, "127.0.0.1", resolve));
    const client = new RpcClient({
      endpoints: [
        { host: "127.0.0.1", port: (silent.address() as { port: number }).port },
        { host: "127.0.0.1", port: (slow.server.address() as { port: number }).port },
      ],
      clusterId: "c",
      timeoutMs: 30_000,
      pingIdleMs: 100,
      pongTimeoutMs: 300,
    });
    try {
      const started = Date.now();
      // An admin-length attempt: without pings the silent node would hold it for 20 s.
      const reply = await client.call("memberList", {}, 30_000, 20_000);
      const took = Date.now() - started;
      assert.equal(reply.slow, true);
      assert.ok(sockets.length >= 1, "the silent node was tried first");
      assert.ok(took < 10_000, `left the silent node after ${took} ms, not the 20 s attempt deadline`);
    } finally {
      client.close();
      for (const socket of sockets) socket.destroy();
      silent.close();
      slow.server.close();
    }
  });

  it("a node that answers pings keeps a call it takes longer than the pong timeout to answer", async () => {
    const slow = slowNode(1_500, "c");
    await new Promise<void>((resolve) => slow.server.listen(0, "127.0.0.1", resolve));
    const client = new RpcClient({
      endpoints: [{ host: "127.0.0.1", port: (slow.server.address() as { port: number }).port }],
      clusterId: "c",
      timeoutMs: 10_000,
      pingIdleMs: 100,
      pongTimeoutMs: 300,
    });
    try {
      const reply = await client.call("memberList", {}, 10_000, 5_000);
      assert.equal(reply.slow, true);
      // The client did ping while it waited, and the pongs kept the connection.
      assert.ok(slow.pings.length >= 3, `${slow.pings.length} pings`);
    } finally {
      client.close();
      slow.server.close();
    }
  });
});
