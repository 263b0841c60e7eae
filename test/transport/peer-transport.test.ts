import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/core/index.js";
import { PeerTransport, transportCode } from "../../src/transport/index.js";
import { CLUSTER, freePort, message, readMessage, SECRET, startNode, waitFor, wireAll } from "./helpers.js";

const fast = { reconnect: { initialMs: 10, maxMs: 50 } };

describe("PeerTransport", () => {
  it("three nodes exchange 10,000 messages per ordered pair, each pair in FIFO order", async () => {
    const nodes = await Promise.all(
      [1, 2, 3].map((id) => startNode(id, { ...fast, sendQueueMessagesMax: 10_000 })),
    );
    try {
      const perPair = 10_000;
      /** next[receiver][sender]: the sequence number expected next. */
      const next = new Map<number, Map<number, number>>();
      const disorder: string[] = [];
      for (const { transport } of nodes) {
        const expected = new Map<number, number>();
        next.set(transport.nodeId, expected);
        transport.onMessage((from, payload) => {
          const { from: claimed, seq } = readMessage(payload);
          const want = expected.get(from) ?? 0;
          if (claimed !== from || seq !== want)
            disorder.push(`${from}→${transport.nodeId}: got ${seq}, want ${want}`);
          expected.set(from, seq + 1);
        });
      }
      wireAll(nodes);
      // Sent in one burst, before any connection is up: the queues carry them over.
      for (const { transport: a } of nodes) {
        for (const { transport: b } of nodes) {
          if (a === b) continue;
          for (let seq = 0; seq < perPair; seq++) assert.ok(a.send(b.nodeId, message(a.nodeId, seq, 16)));
        }
      }
      const done = () =>
        [...next.values()].every((m) => m.size === 2 && [...m.values()].every((n) => n === perPair));
      await waitFor(done, "60,000 messages", 8000);
      assert.deepEqual(disorder.slice(0, 5), []);
      for (const { transport } of nodes) {
        const stats = transport.stats();
        for (const peer of stats.peers) {
          assert.equal(peer.sent, perPair, `${transport.nodeId}→${peer.nodeId} sent`);
          assert.equal(peer.received, perPair, `${peer.nodeId}→${transport.nodeId} received`);
          assert.equal(peer.dropped, 0);
          assert.equal(peer.queuedMessages, 0);
          assert.equal(peer.connected, true);
          assert.equal(peer.inboundConnected, true);
        }
      }
    } finally {
      await Promise.all(nodes.map((n) => n.transport.close()));
    }
  });

  it("carries large messages intact among small ones", async () => {
    const [a, b] = await Promise.all([startNode(1, fast), startNode(2, fast)]);
    try {
      const got: Uint8Array[] = [];
      b.transport.onMessage((_from, payload) => got.push(payload));
      wireAll([a, b]);
      const sent = [
        message(1, 0, 10),
        message(1, 1, 3 * 1024 * 1024),
        message(1, 2, 0),
        message(1, 3, 70_000),
      ];
      for (const m of sent) assert.ok(a.transport.send(2, m));
      await waitFor(() => got.length === sent.length, "4 messages");
      assert.deepEqual(got, sent);
    } finally {
      await Promise.all([a.transport.close(), b.transport.close()]);
    }
  });

  it("a killed peer: messages queue up to the bound, then send refuses; after restart on the same port delivery resumes", async () => {
    const queueMax = 100;
    const a = await startNode(1, { ...fast, sendQueueMessagesMax: queueMax });
    let b = await startNode(2, fast);
    const port = b.address.port;
    try {
      const got: number[] = [];
      b.transport.onMessage((_from, payload) => got.push(readMessage(payload).seq));
      wireAll([a, b]);
      assert.ok(a.transport.send(2, message(1, 0)));
      await waitFor(() => got.length === 1, "the first message");

      await b.transport.close();
      const peerOf = () => a.transport.stats().peers[0]!;
      await waitFor(() => !peerOf().connected, "node 1 to notice node 2 is gone");
      for (let seq = 1; seq <= queueMax; seq++) assert.ok(a.transport.send(2, message(1, seq)), `seq ${seq}`);
      assert.equal(a.transport.send(2, message(1, 999)), false, "the queue is full");
      assert.equal(peerOf().dropped, 1);
      assert.equal(peerOf().queuedMessages, queueMax);
      await waitFor(() => peerOf().reconnects >= 2, "a few redials while node 2 is down");

      b = await startNode(2, { ...fast, listen: { host: "127.0.0.1", port } });
      const resumed: number[] = [];
      b.transport.onMessage((_from, payload) => resumed.push(readMessage(payload).seq));
      b.transport.addPeer(1, a.address);
      await waitFor(() => resumed.length === queueMax, "the queued messages after the restart");
      assert.deepEqual(
        resumed,
        Array.from({ length: queueMax }, (_, i) => i + 1),
      );
      assert.ok(a.transport.send(2, message(1, 1000)));
      await waitFor(() => resumed.length === queueMax + 1, "a new message");
      assert.equal(peerOf().connected, true);
      assert.equal(peerOf().queuedMessages, 0);
      assert.ok(a.logger.warnings((e) => e.msg === "peer connection lost").length >= 1);
    } finally {
      await Promise.all([a.transport.close(), b.transport.close()]);
    }
  });

  it("bounds the queue for an unreachable peer: send returns false and stats count the drops", async () => {
    const port = await freePort();
    const a = await startNode(1, {
      reconnect: { initialMs: 5, maxMs: 10 },
      sendQueueMessagesMax: 50,
      sendQueueBytesMax: 1 << 20,
      peers: new Map([[2, { host: "127.0.0.1", port }]]),
    });
    try {
      for (let i = 0; i < 50; i++) assert.ok(a.transport.send(2, message(1, i)));
      for (let i = 0; i < 10; i++) assert.equal(a.transport.send(2, message(1, 50 + i)), false);
      assert.equal(a.transport.send(7, message(1, 0)), false, "7 is no peer");
      await waitFor(() => a.transport.stats().peers[0]!.reconnects >= 5, "several redials");
      const stats = a.transport.stats();
      const peer = stats.peers[0]!;
      assert.equal(peer.connected, false);
      assert.equal(peer.queuedMessages, 50);
      assert.equal(peer.queuedBytes, 50 * (8 + 9));
      assert.equal(peer.dropped, 10);
      assert.equal(peer.sent, 0);
      assert.equal(stats.droppedNoPeer, 1);
      const unreachable = a.logger.warnings((e) => e.msg === "peer unreachable");
      assert.equal(unreachable.length, 1, "a peer that stays down is logged once, not per redial");
    } finally {
      await a.transport.close();
    }
    assert.equal(a.transport.send(2, message(1, 0)), false, "nothing is queued after close");
  });

  it("bounds the queue by bytes as well", async () => {
    const a = await startNode(1, {
      sendQueueBytesMax: 1000,
      peers: new Map([[2, { host: "127.0.0.1", port: await freePort() }]]),
    });
    try {
      let accepted = 0;
      while (a.transport.send(2, new Uint8Array(100))) accepted++;
      assert.equal(accepted, 9, "9 × 109 frame bytes fit in 1000");
      assert.ok(a.transport.stats().peers[0]!.queuedBytes <= 1000);
      assert.throws(
        () => a.transport.send(2, new Uint8Array(16 * 1024 * 1024 + 1)),
        (e: unknown) => e instanceof MetaraftError && e.code === "MR_ERR_FRAME_TOO_LARGE",
      );
    } finally {
      await a.transport.close();
    }
  });

  it("follows membership: a removed peer is refused, an added one is dialed", async () => {
    const [a, b] = await Promise.all([startNode(1, fast), startNode(2, fast)]);
    try {
      const got: number[] = [];
      b.transport.onMessage((from) => got.push(from));
      wireAll([a, b]);
      a.transport.send(2, message(1, 0));
      await waitFor(() => got.length === 1, "a message");

      assert.equal(b.transport.removePeer(1), true);
      assert.equal(b.transport.removePeer(1), false);
      await waitFor(
        () => b.logger.warnings((e) => e.obj.reason === "unknown-node").length > 0,
        "node 2 to refuse node 1 once it is no member",
      );
      a.transport.send(2, message(1, 1));
      assert.equal(got.length, 1);

      b.transport.addPeer(1, a.address);
      await waitFor(() => got.length === 2, "delivery after node 1 is added back");
      assert.equal(b.transport.stats().peers[0]!.connected, true);
    } finally {
      await Promise.all([a.transport.close(), b.transport.close()]);
    }
  });

  it("moves a peer to a new address", async () => {
    const a = await startNode(1, fast);
    const b = await startNode(2, fast);
    try {
      const got: number[] = [];
      b.transport.onMessage((_from, p) => got.push(readMessage(p).seq));
      a.transport.addPeer(2, { host: "127.0.0.1", port: await freePort() });
      b.transport.addPeer(1, a.address);
      a.transport.send(2, message(1, 0));
      await new Promise((r) => setTimeout(r, 30));
      a.transport.addPeer(2, b.address);
      await waitFor(() => got.length === 1, "delivery at the new address");
    } finally {
      await Promise.all([a.transport.close(), b.transport.close()]);
    }
  });

  it("survives a throwing message handler", async () => {
    const [a, b] = await Promise.all([startNode(1, fast), startNode(2, fast)]);
    try {
      const got: number[] = [];
      b.transport.onMessage((_from, p) => {
        const { seq } = readMessage(p);
        got.push(seq);
        if (seq === 0) throw new Error("handler bug");
      });
      wireAll([a, b]);
      a.transport.send(2, message(1, 0));
      a.transport.send(2, message(1, 1));
      await waitFor(() => got.length === 2, "both messages");
      assert.equal(b.logger.entries.filter((e) => e.level === "error").length, 1);
    } finally {
      await Promise.all([a.transport.close(), b.transport.close()]);
    }
  });

  it("validates its options", () => {
    const base = { nodeId: 1, clusterId: CLUSTER, secret: SECRET, listen: { port: 0 } };
    const bad: unknown[] = [
      { ...base, nodeId: -1 },
      { ...base, clusterId: "" },
      { ...base, secret: "short" },
      { ...base, listen: { port: 70000 } },
      { ...base, sendQueueMessagesMax: 0 },
      { ...base, reconnect: { initialMs: 100, maxMs: 10 } },
      { ...base, peers: new Map([[1, { host: "127.0.0.1", port: 1 }]]) },
      { ...base, peers: new Map([[2, { host: "127.0.0.1", port: 0 }]]) },
    ];
    for (const options of bad) {
      assert.throws(
        () => new PeerTransport(options as never),
        (e: unknown) => e instanceof MetaraftError && e.code === "MR_ERR_INVALID_ARGUMENT",
        JSON.stringify(options, (_k, v) => (v instanceof Map ? [...v] : v)),
      );
    }
  });

  it("fails start() with a coded error when the port is taken, and close() is idempotent", async () => {
    const a = await startNode(1);
    const b = new PeerTransport({ nodeId: 2, clusterId: CLUSTER, secret: SECRET, listen: a.address });
    try {
      await assert.rejects(
        b.start(),
        (e: unknown) =>
          e instanceof MetaraftError &&
          e.code === transportCode("MR_ERR_LISTEN_FAILED") &&
          /LISTEN_FAILED/.test(e.message),
      );
    } finally {
      await b.close();
      await a.transport.close();
      await a.transport.close();
    }
  });
});
