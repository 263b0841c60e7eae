import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/core/index.js";
import { FrameDecoder } from "../../src/transport/framing.js";
import {
  decodeHandshake,
  encodeHandshake,
  HANDSHAKE_FRAME_BYTES_MAX,
  handshakeProof,
  newNonce,
} from "../../src/transport/handshake.js";
import { encodeFrame, transportCode } from "../../src/transport/index.js";
import {
  CLUSTER,
  type LogEntry,
  message,
  rawConnect,
  readMessage,
  startNode,
  waitFor,
  wireAll,
} from "./helpers.js";

const fast = { reconnect: { initialMs: 10, maxMs: 50 }, handshakeTimeoutMs: 500 };

const reason = (r: string) => (e: LogEntry) => e.obj.reason === r;
const errCode = (e: LogEntry) => (e.obj.err instanceof MetaraftError ? e.obj.err.code : undefined);

/** Node 1 and node 2 in a healthy pair, node 2 counting what it receives from node 1. */
async function healthyPair(handshakeTimeoutMs = fast.handshakeTimeoutMs) {
  const options = { ...fast, handshakeTimeoutMs };
  const [a, b] = await Promise.all([startNode(1, options), startNode(2, options)]);
  const fromA: number[] = [];
  b.transport.onMessage((from, p) => {
    if (from === 1) fromA.push(readMessage(p).seq);
  });
  wireAll([a, b]);
  return { a, b, fromA, close: () => Promise.all([a.transport.close(), b.transport.close()]) };
}

/** Proves that node 1 still serves node 2 after whatever the test did to it. */
async function stillServes(pair: Awaited<ReturnType<typeof healthyPair>>): Promise<void> {
  const before = pair.fromA.length;
  assert.ok(pair.a.transport.send(2, message(1, 1000 + before)));
  await waitFor(() => pair.fromA.length === before + 1, "node 1 to keep serving node 2");
  const back: number[] = [];
  pair.a.transport.onMessage((from) => back.push(from));
  assert.ok(pair.b.transport.send(1, message(2, 0)));
  await waitFor(() => back.length === 1, "node 2 to reach node 1");
}

describe("peer authentication", () => {
  it("refuses a peer with the wrong secret, both ways, delivering nothing and logging it", async () => {
    const pair = await healthyPair();
    // Node 3 is a member as far as node 1 knows, but holds another secret.
    const x = await startNode(3, { ...fast, secret: "another-secret-0123456789" });
    try {
      const delivered: number[] = [];
      pair.a.transport.onMessage((from) => from === 3 && delivered.push(from));
      x.transport.onMessage((from) => delivered.push(from));
      pair.a.transport.addPeer(3, x.address);
      x.transport.addPeer(1, pair.a.address);
      x.transport.send(1, message(3, 0));
      pair.a.transport.send(3, message(1, 0));
      await waitFor(
        () =>
          pair.a.logger.warnings(reason("bad-proof")).length >= 2 &&
          x.logger.warnings(reason("bad-proof")).length >= 2,
        "both sides to log the failed proofs",
      );
      // Node 1 (dialer) finds node 3's proof wrong, and node 3 (dialer) finds node 1's wrong;
      // each listener learns why from the refusal.
      assert.ok(
        pair.a.logger.warnings((e) => e.msg === "peer handshake refused" && e.obj.role === "dialer").length,
      );
      assert.ok(
        pair.a.logger.warnings((e) => e.msg === "peer refused the handshake" && e.obj.role === "listener")
          .length,
      );
      const refusal = pair.a.logger.warnings(reason("bad-proof"))[0]!;
      assert.equal(errCode(refusal), transportCode("MR_ERR_HANDSHAKE_REJECTED"));
      assert.deepEqual(delivered, []);
      assert.equal(pair.a.transport.stats().peers.find((p) => p.nodeId === 3)!.connected, false);
      assert.equal(x.transport.stats().peers[0]!.connected, false);
      assert.ok(pair.a.transport.stats().handshakesRefused > 0);
      await stillServes(pair);
    } finally {
      await Promise.all([pair.close(), x.transport.close()]);
    }
  });

  it("refuses a peer from another cluster", async () => {
    const pair = await healthyPair();
    const x = await startNode(3, { ...fast, clusterId: "other-cluster" });
    try {
      const delivered: number[] = [];
      pair.a.transport.onMessage((from) => from === 3 && delivered.push(from));
      x.transport.onMessage((from) => delivered.push(from));
      pair.a.transport.addPeer(3, x.address);
      x.transport.addPeer(1, pair.a.address);
      x.transport.send(1, message(3, 0));
      pair.a.transport.send(3, message(1, 0));
      await waitFor(
        () =>
          pair.a.logger.warnings((e) => e.msg === "peer handshake refused" && reason("cluster-mismatch")(e))
            .length > 0 &&
          pair.a.logger.warnings((e) => e.msg === "peer refused the handshake").length > 0 &&
          // Node 3 learns of node 1's refusal a little later, on its own socket: wait for that too.
          x.logger.warnings((e) => e.msg === "peer refused the handshake").length > 0,
        "node 1 to refuse node 3's hello and be refused by node 3, and node 3 to log node 1's refusal",
      );
      // Both ends say which cluster the listener expected, so the operator sees both ids.
      const dialerSaw = x.logger
        .warnings((e) => e.msg === "peer refused the handshake")
        .map((e) => JSON.stringify(e));
      assert.ok(
        dialerSaw.some((line) => line.includes("other-cluster") && line.includes("this is cluster")),
        dialerSaw.join("\n"),
      );
      const listenerSaw = pair.a.logger
        .warnings((e) => e.msg === "peer handshake refused")
        .map((e) => JSON.stringify(e));
      assert.ok(
        listenerSaw.some((line) => line.includes("other-cluster") && line.includes("this is cluster")),
      );
      assert.deepEqual(delivered, []);
      await stillServes(pair);
    } finally {
      await Promise.all([pair.close(), x.transport.close()]);
    }
  });

  it("refuses a node id that is not a peer", async () => {
    const pair = await healthyPair();
    const x = await startNode(9, fast);
    try {
      const delivered: number[] = [];
      pair.a.transport.onMessage((from) => from === 9 && delivered.push(from));
      x.transport.addPeer(1, pair.a.address);
      x.transport.send(1, message(9, 0));
      await waitFor(
        () => pair.a.logger.warnings(reason("unknown-node")).length > 0,
        "node 1 to refuse node 9",
      );
      const entry = pair.a.logger.warnings(reason("unknown-node"))[0]!;
      assert.equal(entry.obj.peer, 9);
      assert.equal(errCode(entry), transportCode("MR_ERR_PEER_UNKNOWN"));
      await waitFor(() => x.logger.warnings(reason("unknown-node")).length > 0, "node 9 to log the refusal");
      assert.deepEqual(delivered, []);
      assert.equal(x.transport.stats().peers[0]!.queuedMessages, 1, "the message waits, undelivered");
      await stillServes(pair);
    } finally {
      await Promise.all([pair.close(), x.transport.close()]);
    }
  });

  it("refuses to talk to a node other than the one it meant to dial", async () => {
    const pair = await healthyPair();
    const x = await startNode(3, fast);
    try {
      x.transport.addPeer(1, pair.a.address);
      // Node 1 believes node 4 lives where node 3 listens.
      pair.a.transport.addPeer(4, x.address);
      pair.a.transport.send(4, message(1, 0));
      await waitFor(() => pair.a.logger.warnings(reason("wrong-node")).length > 0, "node 1 to notice");
      assert.equal(pair.a.transport.stats().peers.find((p) => p.nodeId === 4)!.connected, false);
    } finally {
      await Promise.all([pair.close(), x.transport.close()]);
    }
  });

  it("checks the dialer's proof itself, and delivers nothing sent before authentication", async () => {
    const pair = await healthyPair();
    try {
      const delivered: number[] = [];
      pair.a.transport.onMessage((from) => delivered.push(from));
      const client = await rawConnect(pair.a.address.port);
      const frames: Uint8Array[] = [];
      const decoder = new FrameDecoder({
        frameBytesMax: HANDSHAKE_FRAME_BYTES_MAX,
        onFrame: (p) => frames.push(p),
      });
      client.socket.on("data", (chunk: Buffer) => decoder.push(chunk));
      const nonce = newNonce();
      // Claims to be node 2 and skips checking node 1's proof, as an impostor would.
      client.socket.write(
        encodeFrame(encodeHandshake({ kind: "hello", protocol: 1, clusterId: CLUSTER, nodeId: 2, nonce })),
      );
      await waitFor(() => frames.length === 1, "the challenge");
      const challenge = decodeHandshake(frames[0]!);
      assert.ok(challenge.ok && challenge.message.kind === "challenge");
      const forged = handshakeProof(new Uint8Array(Buffer.from("not-the-secret-at-all")), "dialer", {
        clusterId: CLUSTER,
        dialerId: 2,
        listenerId: 1,
        dialerNonce: nonce,
        listenerNonce: challenge.message.nonce,
      });
      // The proof and, right behind it, a message that must never be delivered.
      client.socket.write(
        Buffer.concat([
          encodeFrame(encodeHandshake({ kind: "proof", proof: forged })),
          encodeFrame(message(2, 0)),
        ]),
      );
      await client.closed;
      assert.equal(frames.length, 2);
      const refused = decodeHandshake(frames[1]!);
      assert.deepEqual(refused.ok && refused.message, {
        kind: "refused",
        reason: "bad-proof",
        detail: "the dialer's proof does not match the cluster secret",
      });
      assert.ok(
        pair.a.logger.warnings((e) => reason("bad-proof")(e) && e.obj.role === "listener").length > 0,
      );
      assert.deepEqual(delivered, []);
      await stillServes(pair);
    } finally {
      await pair.close();
    }
  });

  it("refuses another protocol version", async () => {
    const pair = await healthyPair();
    try {
      const client = await rawConnect(pair.a.address.port);
      const hello = { kind: "hello", protocol: 2, clusterId: CLUSTER, nodeId: 2, nonce: newNonce() };
      client.socket.write(encodeFrame(encodeHandshake(hello as never)));
      await client.closed;
      assert.ok(pair.a.logger.warnings(reason("protocol-version")).length > 0);
      await stillServes(pair);
    } finally {
      await pair.close();
    }
  });
});

describe("hostile connections", () => {
  it("closes on garbage, on a huge length prefix and on a corrupt frame, and keeps serving", async () => {
    // A long handshake timeout, so that a close that comes from it cannot pass for a refusal.
    const pair = await healthyPair(5000);
    try {
      const cases: [string, Uint8Array, string][] = [
        ["http", new Uint8Array(Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n")), "MR_ERR_FRAME_TOO_LARGE"],
        ["huge length", new Uint8Array([0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 0]), "MR_ERR_FRAME_TOO_LARGE"],
        ["bad version", new Uint8Array([4, 0, 0, 0, 7, 0, 0, 0, 0, 1, 2, 3, 4]), "MR_ERR_FRAME_VERSION"],
        [
          "bad checksum",
          (() => {
            const f = encodeFrame(new Uint8Array([1, 2, 3]));
            f[9]! ^= 1;
            return f;
          })(),
          "MR_ERR_FRAME_CORRUPT",
        ],
        [
          "not msgpack",
          encodeFrame(new Uint8Array([0xc1, 0xc1])),
          transportCode("MR_ERR_HANDSHAKE_REJECTED"),
        ],
      ];
      for (const [name, bytes, code] of cases) {
        const before = pair.a.logger.entries.length;
        const client = await rawConnect(pair.a.address.port);
        client.socket.write(bytes);
        const ms = await client.closed;
        assert.ok(ms < 4000, `${name}: closed after ${ms} ms, before the handshake timeout`);
        const logged = pair.a.logger.entries.slice(before).filter((e) => e.level === "warn");
        assert.ok(
          logged.some((e) => errCode(e) === code),
          `${name}: logged ${JSON.stringify(logged.map((e) => [e.msg, errCode(e)]))}`,
        );
      }
      await waitFor(
        () => pair.a.transport.stats().inboundPending === 0,
        "the refused connections to be gone",
      );
      await stillServes(pair);
    } finally {
      await pair.close();
    }
  });

  it("drops a connection that never finishes its handshake", async () => {
    const pair = await healthyPair();
    try {
      const client = await rawConnect(pair.a.address.port);
      client.socket.write(new Uint8Array([5, 0, 0])); // a partial header, then silence
      const ms = await client.closed;
      assert.ok(ms >= 400 && ms < 4000, `closed after ${ms} ms`);
      const timedOut = pair.a.logger.warnings(
        (e) => errCode(e) === transportCode("MR_ERR_HANDSHAKE_TIMEOUT"),
      );
      assert.equal(timedOut.length, 1);
      await stillServes(pair);
    } finally {
      await pair.close();
    }
  });

  it("bounds unauthenticated connections", async () => {
    const a = await startNode(1, { handshakeTimeoutMs: 5000, inboundPendingMax: 2 });
    try {
      const first = await Promise.all([rawConnect(a.address.port), rawConnect(a.address.port)]);
      await waitFor(() => a.transport.stats().inboundPending === 2, "two pending connections");
      const third = await rawConnect(a.address.port);
      const ms = await third.closed;
      assert.ok(ms < 4000, `the third was closed at once, not by the timeout (${ms} ms)`);
      assert.ok(a.logger.warnings((e) => /too many unauthenticated/.test(e.msg)).length === 1);
      for (const c of first) c.socket.destroy();
    } finally {
      await a.transport.close();
    }
  });
});
