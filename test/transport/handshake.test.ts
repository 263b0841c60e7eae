import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { pack } from "msgpackr";
import {
  decodeHandshake,
  encodeHandshake,
  handshakeProof,
  newNonce,
  proofMatches,
  type Transcript,
} from "../../src/transport/handshake.js";
import { SendQueue } from "../../src/transport/index.js";
import { reconnectDelayMs } from "../../src/transport/peer-transport.js";

const secret = new Uint8Array(Buffer.from("0123456789abcdef0123456789abcdef"));
const transcript: Transcript = {
  clusterId: "c1",
  dialerId: 1,
  listenerId: 2,
  dialerNonce: newNonce(),
  listenerNonce: newNonce(),
};

describe("handshake messages", () => {
  it("round-trip through MessagePack", () => {
    const hello = { kind: "hello", protocol: 1, clusterId: "c1", nodeId: 3, nonce: newNonce() } as const;
    const decoded = decodeHandshake(encodeHandshake(hello));
    assert.ok(decoded.ok && decoded.message.kind === "hello");
    const { nonce, ...rest } = decoded.message;
    assert.deepEqual(rest, { kind: "hello", protocol: 1, clusterId: "c1", nodeId: 3 });
    assert.deepEqual(new Uint8Array(nonce), hello.nonce);
  });

  it("tell another protocol version from garbage", () => {
    const v2 = decodeHandshake(pack({ kind: "hello", protocol: 2, whatever: true }));
    assert.deepEqual(v2.ok ? "ok" : v2.reason, "protocol-version");
    for (const bad of [
      new Uint8Array([0xc1]),
      pack([1, 2, 3]),
      pack({ kind: "hello", protocol: 1, clusterId: "c", nodeId: -1, nonce: newNonce() }),
      pack({ kind: "hello", protocol: 1, clusterId: "c", nodeId: 1, nonce: new Uint8Array(5) }),
      pack({ kind: "hello", protocol: 1, clusterId: "x".repeat(300), nodeId: 1, nonce: newNonce() }),
      pack({ kind: "proof", proof: "not bytes" }),
      pack({ kind: "nope" }),
    ]) {
      const decoded = decodeHandshake(bad);
      assert.equal(decoded.ok ? "ok" : decoded.reason, "malformed");
    }
  });
});

describe("handshake proofs", () => {
  it("are deterministic for one transcript and differ by role, secret and every field", () => {
    const d = handshakeProof(secret, "dialer", transcript);
    assert.ok(proofMatches(d, handshakeProof(secret, "dialer", transcript)));
    assert.ok(!proofMatches(d, handshakeProof(secret, "listener", transcript)), "role");
    const other = new Uint8Array(Buffer.from("0123456789abcdef0123456789abcdeX"));
    assert.ok(!proofMatches(d, handshakeProof(other, "dialer", transcript)), "secret");
    const variants: Transcript[] = [
      { ...transcript, clusterId: "c2" },
      { ...transcript, dialerId: 9 },
      { ...transcript, listenerId: 9 },
      { ...transcript, dialerNonce: newNonce() },
      { ...transcript, listenerNonce: newNonce() },
      // swapping the two ids must not give the same proof
      { ...transcript, dialerId: 2, listenerId: 1 },
    ];
    for (const v of variants)
      assert.ok(!proofMatches(d, handshakeProof(secret, "dialer", v)), JSON.stringify(v));
  });

  it("never contain the secret", () => {
    const p = Buffer.from(handshakeProof(secret, "dialer", transcript));
    assert.equal(p.length, 32);
    assert.equal(p.indexOf(Buffer.from(secret).subarray(0, 8)), -1);
  });

  it("compare false on a length mismatch instead of throwing", () => {
    assert.equal(proofMatches(new Uint8Array(32), new Uint8Array(31)), false);
  });
});

describe("reconnect backoff", () => {
  it("doubles from initialMs up to maxMs, jittered between half and all of it", () => {
    assert.equal(reconnectDelayMs(0, 50, 2000, 0), 25);
    assert.equal(reconnectDelayMs(0, 50, 2000, 1), 50);
    assert.equal(reconnectDelayMs(3, 50, 2000, 1), 400);
    assert.equal(reconnectDelayMs(10, 50, 2000, 1), 2000);
    assert.equal(reconnectDelayMs(1000, 50, 2000, 0.5), 1500);
    assert.equal(reconnectDelayMs(2, 50, 2000, 7), 200, "a bad random source is clamped");
    assert.equal(reconnectDelayMs(2, 50, 2000, Number.NaN), 150);
  });
});

describe("SendQueue", () => {
  it("is FIFO, bounded by messages and by frame bytes, and batches within limits", () => {
    const q = new SendQueue(100, 3);
    assert.ok(q.push(new Uint8Array(10)));
    assert.ok(q.push(new Uint8Array(20)));
    assert.ok(q.push(new Uint8Array(30)));
    assert.equal(q.push(new Uint8Array(0)), false, "message bound");
    assert.equal(q.bytes, 60 + 27);
    assert.deepEqual(
      q.take(50, 10).map((p) => p.length),
      [10, 20],
    );
    assert.equal(q.push(new Uint8Array(70)), false, "byte bound: 39 + 79 > 100");
    assert.ok(q.push(new Uint8Array(50)));
    assert.deepEqual(
      q.take(1, 10).map((p) => p.length),
      [30],
      "at least one message even above the batch limit",
    );
    assert.deepEqual(
      q.take(1000, 10).map((p) => p.length),
      [50],
    );
    assert.equal(q.messages, 0);
    assert.equal(q.bytes, 0);
  });

  it("keeps order across many pushes and takes (compaction)", () => {
    const q = new SendQueue(1e9, 100_000);
    let next = 0;
    let expected = 0;
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 997; i++) assert.ok(q.push(new Uint8Array([next++ & 0xff])));
      for (const p of q.take(1e9, 613)) assert.equal(p[0], expected++ & 0xff);
    }
    while (q.messages > 0) for (const p of q.take(1e9, 1000)) assert.equal(p[0], expected++ & 0xff);
    assert.equal(expected, next);
  });
});
