import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { pack, unpack } from "msgpackr";
import type { MetaraftNode } from "../../src/server/node.js";
import { encodeFrame, FrameDecoder } from "../../src/transport/index.js";
import { InProcessCluster } from "../helpers/nodes.js";

interface Reply {
  readonly id?: number;
  readonly ok?: boolean;
  readonly error?: { code: string; message: string };
  readonly [field: string]: unknown;
}

/** A raw client connection: writes whatever bytes it is given, collects the replies. */
class RawConnection {
  readonly replies: Reply[] = [];
  readonly closed: Promise<void>;
  readonly #socket: Socket;
  #waiters: (() => void)[] = [];

  constructor(port: number) {
    this.#socket = connect(port, "127.0.0.1");
    const decoder = new FrameDecoder({
      frameBytesMax: 64 * 1024 * 1024,
      onFrame: (payload) => {
        this.replies.push(unpack(payload) as Reply);
        for (const wake of this.#waiters.splice(0)) wake();
      },
    });
    this.#socket.on("data", (chunk: Buffer) => decoder.push(chunk));
    this.#socket.on("error", () => {});
    this.closed = new Promise((resolve) => this.#socket.once("close", () => resolve()));
  }

  write(bytes: Uint8Array): void {
    this.#socket.write(bytes);
  }

  send(body: unknown): void {
    this.write(encodeFrame(pack(body)));
  }

  /** The next reply after the `count` already seen. */
  async reply(count = this.replies.length): Promise<Reply> {
    const deadline = Date.now() + 10_000;
    while (this.replies.length <= count) {
      if (Date.now() > deadline) throw new Error("no reply");
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    return this.replies[count]!;
  }

  /** Sends `body` and waits for its reply. */
  async call(body: unknown): Promise<Reply> {
    const seen = this.replies.length;
    this.send(body);
    return this.reply(seen);
  }

  close(): void {
    this.#socket.destroy();
  }
}

const clientPort = (node: MetaraftNode) =>
  node.config.cluster.find((m) => m.id === node.config.id)!.clientPort;

describe("the client port under bad input", () => {
  let cluster: InProcessCluster;
  let port: number;
  const clusterId = "test-cluster";

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 3 });
    const leader = await cluster.leader();
    port = clientPort(leader);
    await cluster.client().createVolume("before-the-storm");
  });

  after(async () => {
    await cluster.stop();
  });

  const greeted = async (): Promise<RawConnection> => {
    const connection = new RawConnection(port);
    const hello = await connection.call({ protocol: 1, clusterId });
    assert.equal(hello.ok, true);
    return connection;
  };

  it("refuses a hello for another cluster or protocol, and hangs up", async () => {
    for (const hello of [{ protocol: 1, clusterId: "other" }, { protocol: 2, clusterId }, "hello"]) {
      const connection = new RawConnection(port);
      const reply = await connection.call(hello);
      assert.equal(reply.ok, false);
      assert.equal(reply.error?.code, "MR_ERR_HANDSHAKE_REJECTED");
      await connection.closed;
    }
  });

  it("answers each malformed request with a coded error and keeps the connection", async () => {
    const connection = await greeted();
    try {
      const cases: [unknown, string, RegExp?][] = [
        [{ op: "createVolume" }, "MR_ERR_INVALID_ARGUMENT", /id and op/],
        [{ id: 1, op: 7 }, "MR_ERR_INVALID_ARGUMENT", /id and op/],
        [[1, 2, 3], "MR_ERR_INVALID_ARGUMENT", /id and op/],
        [{ id: 2, op: "dropEverything", clientId: "raw", callId: 1 }, "MR_ERR_UNKNOWN_OP"],
        [{ id: 3, op: "createVolume", volume: "no-client-id" }, "MR_ERR_INVALID_ARGUMENT", /clientId/],
        [
          { id: 4, op: "createVolume", volume: "x", clientId: "raw", callId: -1 },
          "MR_ERR_INVALID_ARGUMENT",
          /callId/,
        ],
        [{ id: 5, op: "createVolume", volume: 42, clientId: "raw", callId: 2 }, "MR_ERR_INVALID_ARGUMENT"],
        [{ id: 6, op: "createVolume", volume: "UPPER", clientId: "raw", callId: 3 }, "MR_ERR_INVALID_NAME"],
        [{ id: 7, op: "lookupKey", volume: "vvv", bucket: "bbb", key: 5 }, "MR_ERR_INVALID_ARGUMENT"],
      ];
      for (const [body, code, message] of cases) {
        const reply = await connection.call(body);
        assert.equal(reply.ok, false, JSON.stringify(body));
        assert.equal(reply.error?.code, code, `${JSON.stringify(body)}: ${reply.error?.message}`);
        if (message) assert.match(reply.error!.message, message);
      }
      // A body that is not MessagePack at all (0xc1 is never used by the format).
      const seen = connection.replies.length;
      connection.write(encodeFrame(Uint8Array.of(0xc1)));
      assert.equal((await connection.reply(seen)).error?.code, "MR_ERR_INVALID_ARGUMENT");
      // Still the same, working connection.
      const ok = await connection.call({
        id: 8,
        op: "createVolume",
        volume: "raw-volume",
        clientId: "raw",
        callId: 4,
      });
      assert.equal(ok.ok, true, JSON.stringify(ok));
    } finally {
      connection.close();
    }
  });

  it("hangs up, with a coded error, on a frame that cannot be trusted", async () => {
    // A header announcing more than requestBytesMax (4 MiB): refused before any of it is read.
    const oversized = await greeted();
    const header = Buffer.alloc(9);
    header.writeUInt32LE(5 * 1024 * 1024, 0); // u32 little-endian length, then the version
    header.writeUInt8(1, 4);
    const seen = oversized.replies.length;
    oversized.write(header);
    assert.equal((await oversized.reply(seen)).error?.code, "MR_ERR_FRAME_TOO_LARGE");
    await oversized.closed;

    // A frame whose checksum does not match its payload.
    const corrupt = await greeted();
    const frame = Buffer.from(encodeFrame(pack({ id: 1, op: "listVolumes" })));
    frame[frame.length - 1]! ^= 0xff;
    const seenCorrupt = corrupt.replies.length;
    corrupt.write(frame);
    assert.equal((await corrupt.reply(seenCorrupt)).error?.code, "MR_ERR_FRAME_CORRUPT");
    await corrupt.closed;

    // An unknown frame version.
    const versioned = await greeted();
    const other = Buffer.from(encodeFrame(pack({ id: 1, op: "listVolumes" })));
    other.writeUInt8(9, 4);
    const seenVersion = versioned.replies.length;
    versioned.write(other);
    assert.equal((await versioned.reply(seenVersion)).error?.code, "MR_ERR_FRAME_VERSION");
    await versioned.closed;
  });

  it("keeps serving, and has lost nothing", async () => {
    const client = cluster.client();
    await client.createVolume("after-the-storm");
    const volumes = await client.listVolumes({ limit: 100 });
    const names = volumes.items.map((v) => (v as { name: string }).name);
    for (const name of ["before-the-storm", "raw-volume", "after-the-storm"])
      assert.ok(names.includes(name), name);
  });
});
