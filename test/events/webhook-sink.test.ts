import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { type LedgerEvent, type S3Notification, WebhookSink } from "../../src/events/index.js";
import { systemRuntime } from "../../src/runtime.js";
import { events, testContext } from "../helpers/listener.js";
import { waitFor } from "../helpers/wait.js";

interface Received {
  readonly body: unknown;
  readonly headers: IncomingMessage["headers"];
  readonly path: string | undefined;
}

/** A real HTTP server on 127.0.0.1; `handle` decides each answer (and may hold it). */
async function receiver(handle: (received: Received, res: ServerResponse, index: number) => void): Promise<{
  url: string;
  received: Received[];
  inflight: () => number;
  maxInflight: () => number;
  close: () => Promise<void>;
}> {
  const received: Received[] = [];
  let inflight = 0;
  let maxInflight = 0;
  const server: Server = createServer((req, res) => {
    inflight++;
    maxInflight = Math.max(maxInflight, inflight);
    res.on("close", () => inflight--);
    const chunks: Buffer[] = [];
    req.on("data", (chunk: Buffer) => chunks.push(chunk));
    req.on("end", () => {
      const entry = {
        body: JSON.parse(Buffer.concat(chunks).toString("utf8")),
        headers: req.headers,
        path: req.url,
      };
      received.push(entry);
      handle(entry, res, received.length - 1);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    received,
    inflight: () => inflight,
    maxInflight: () => maxInflight,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const ok = (res: ServerResponse) => res.writeHead(200).end("ok");
const txids = (body: unknown) => (body as LedgerEvent[]).map((e) => e.txid);

async function running(options: Record<string, unknown>, initial: LedgerEvent[]) {
  const ctx = testContext(systemRuntime, "hook");
  const sink = new WebhookSink();
  await sink.init(ctx, { retry_initial_ms: 10, retry_max_ms: 40, ...options });
  ctx.ledgerMemory.append(...initial);
  sink.start();
  ctx.leadershipControl.lead(1);
  return { ctx, sink };
}

describe("the webhook sink", () => {
  it("POSTs batches as JSON, in order, with the configured headers", async () => {
    const server = await receiver((_r, res) => ok(res));
    try {
      const { ctx, sink } = await running(
        { url: server.url, batch_events_max: 4, headers: { authorization: "Bearer t0ken", "x-extra": "1" } },
        events(1, 10),
      );
      await waitFor("10 delivered", () => sink.status().delivered === 10);
      ctx.ledgerMemory.append(...events(11, 12));
      await waitFor("12 delivered", () => sink.status().delivered === 12);
      await sink.stop();
      assert.deepEqual(
        server.received.map((r) => txids(r.body)),
        [
          [1, 2, 3, 4],
          [5, 6, 7, 8],
          [9, 10],
          [11, 12],
        ],
      );
      assert.deepEqual(server.received[0]!.body, events(1, 4));
      const { headers, path } = server.received[0]!;
      assert.equal(path, "/hook");
      assert.equal(headers["content-type"], "application/json");
      assert.equal(headers.authorization, "Bearer t0ken");
      assert.equal(headers["x-extra"], "1");
      assert.equal(ctx.stored, 12);
    } finally {
      await server.close();
    }
  });

  it("s3: each request is one S3 event notification", async () => {
    const server = await receiver((_r, res) => ok(res));
    try {
      const { sink } = await running({ url: server.url, format: "s3" }, events(1, 3));
      await waitFor("3 delivered", () => sink.status().delivered === 3);
      await sink.stop();
      assert.equal(server.received.length, 1);
      const body = server.received[0]!.body as S3Notification;
      assert.deepEqual(
        body.Records.map((r) => r.s3.object.sequencer),
        ["0000000000000001", "0000000000000002", "0000000000000003"],
      );
      assert.equal(body.Records[0]!.eventName, "ObjectCreated:Put");
    } finally {
      await server.close();
    }
  });

  it("a 500 fails the batch (MR_ERR_LISTENER_DELIVERY_FAILED, with the status) and it is retried with backoff until it succeeds", async () => {
    const server = await receiver((_r, res, index) => (index < 2 ? res.writeHead(500).end("nope") : ok(res)));
    try {
      const { sink } = await running({ url: server.url }, events(1, 3));
      await waitFor("3 delivered", () => sink.status().delivered === 3);
      await sink.stop();
      assert.deepEqual(
        server.received.map((r) => txids(r.body)),
        [
          [1, 2, 3],
          [1, 2, 3],
          [1, 2, 3],
        ],
      );
      const status = sink.status();
      assert.equal(status.errors, 2);
      assert.match(status.lastError ?? "", /MR_ERR_LISTENER_DELIVERY_FAILED.*answered 500/);
      assert.equal(status.state, "stopped");
    } finally {
      await server.close();
    }
  });

  it("the failure's error carries the status in its details", async () => {
    const server = await receiver((_r, res) => res.writeHead(503).end());
    try {
      const ctx = testContext(systemRuntime, "hook");
      const sink = new WebhookSink();
      await sink.init(ctx, { url: server.url });
      await assert.rejects(sink.onEvents(events(1, 1), new AbortController().signal), (error: unknown) => {
        assert.ok(error instanceof MetaraftError);
        assert.equal(error.code, "MR_ERR_LISTENER_DELIVERY_FAILED");
        assert.deepEqual(error.details, { listener: "hook", url: server.url, status: 503 });
        return true;
      });
    } finally {
      await server.close();
    }
  });

  it("a server that does not answer within timeout_ms is an error, and the batch is retried", async () => {
    const held: ServerResponse[] = [];
    const server = await receiver((_r, res, index) => (index === 0 ? held.push(res) : ok(res)));
    try {
      const { sink } = await running({ url: server.url, timeout_ms: 100 }, events(1, 2));
      await waitFor("2 delivered", () => sink.status().delivered === 2);
      await sink.stop();
      assert.equal(server.received.length, 2);
      assert.equal(sink.status().errors, 1);
      assert.match(sink.status().lastError ?? "", /MR_ERR_LISTENER_DELIVERY_FAILED.*timed out after 100 ms/);
      assert.equal(held.length, 1);
    } finally {
      await server.close();
    }
  });

  it("stop aborts a request in flight: the connection is closed and it is no error", async () => {
    const held: ServerResponse[] = [];
    const server = await receiver((_r, res) => held.push(res));
    try {
      const { ctx, sink } = await running(
        { url: server.url, timeout_ms: 600_000, stop_timeout_ms: 50 },
        events(1, 1),
      );
      await waitFor("the request arrived", () => held.length === 1);
      await sink.stop();
      // Had the sink not passed the signal on, stop would have given up after stop_timeout_ms
      // with the request still open.
      await waitFor("the request's connection closed", () => server.inflight() === 0, 2000);
      assert.equal(sink.status().errors, 0);
      assert.equal(sink.status().delivered, 0);
      assert.ok(
        !ctx.logs.some((l) => /stop_timeout_ms/.test(l.message)),
        "stop did not have to give up waiting",
      );
    } finally {
      await server.close();
    }
  });

  it("an unreachable receiver is a delivery failure, retried", async () => {
    const server = await receiver((_r, res) => ok(res));
    const url = server.url;
    await server.close();
    const { sink } = await running({ url }, events(1, 1));
    await waitFor("2 errors", () => sink.status().errors >= 2);
    assert.match(sink.status().lastError ?? "", /MR_ERR_LISTENER_DELIVERY_FAILED.*failed/);
    assert.equal(sink.status().delivered, 0);
    await sink.stop();
  });

  it("keeps at most inflight_max requests in flight", async () => {
    // Each answer is held a while, so that requests pile up at the receiver as far as the
    // sink lets them: the bound is reached, and a sink that broke it would be seen doing so.
    const timers = new Set<NodeJS.Timeout>();
    const server = await receiver((_r, res) => {
      const timer = setTimeout(() => {
        timers.delete(timer);
        ok(res);
      }, 20);
      timers.add(timer);
    });
    try {
      const { sink } = await running(
        { url: server.url, inflight_max: 2, request_events_max: 1 },
        events(1, 10),
      );
      await waitFor("10 delivered", () => sink.status().delivered === 10);
      await sink.stop();
      assert.equal(server.maxInflight(), 2);
      assert.deepEqual(
        server.received.flatMap((r) => txids(r.body)).sort((a, b) => a - b),
        [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      );
    } finally {
      for (const timer of timers) clearTimeout(timer);
      await server.close();
    }
  });

  it("with requests in flight together, a failure holds the checkpoint back and the retry resends from the first failed request", async () => {
    let failed = false;
    const server = await receiver((r, res) => {
      const ids = txids(r.body);
      if (ids[0] === 3 && !failed) {
        failed = true;
        // Answer after the next request (txid 4) is answered, so a later request succeeds first.
        setTimeout(() => res.writeHead(500).end(), 30);
        return;
      }
      ok(res);
    });
    try {
      const { ctx, sink } = await running(
        {
          url: server.url,
          inflight_max: 2,
          request_events_max: 1,
          batch_events_max: 6,
          checkpoint_events: 1,
        },
        events(1, 6),
      );
      await waitFor("6 delivered", () => sink.status().delivered === 6);
      await sink.stop();
      const sent = server.received.map((r) => txids(r.body)[0]!);
      assert.equal(
        sent.filter((t) => t === 1).length,
        1,
        "acknowledged requests before the failure are not resent",
      );
      assert.equal(sent.filter((t) => t === 2).length, 1);
      assert.equal(sent.filter((t) => t === 3).length, 2);
      assert.deepEqual([...new Set(sent)].sort(), [1, 2, 3, 4, 5, 6]);
      // The only checkpoints are of whole batches: never a txid past an undelivered one.
      assert.deepEqual(
        ctx.checkpoints.map((c) => c.txid),
        [6],
      );
    } finally {
      await server.close();
    }
  });

  it("refuses bad options, naming the listener and the option", async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{}, /option url is required/],
      [{ url: "not a url" }, /option url is not a URL/],
      [{ url: "ftp://example.com/x" }, /option url must be http or https/],
      [{ url: "http://x", timeout_ms: 0 }, /option timeout_ms must be 1 to 600000/],
      [{ url: "http://x", inflight_max: 65 }, /option inflight_max must be 1 to 64/],
      [{ url: "http://x", headers: "a: b" }, /option headers must be an object of strings/],
      [{ url: "http://x", headers: { a: 1 } }, /option headers\.a must be a string/],
      [{ url: "http://x", headers: { "bad header": "v" } }, /option headers holds a header fetch refuses/],
      [{ url: "http://x", format: "xml" }, /option format must be one of native, s3/],
    ];
    for (const [options, message] of bad) {
      await assert.rejects(
        new WebhookSink().init(testContext(systemRuntime, "hook"), options),
        (error: unknown) =>
          error instanceof MetaraftError &&
          error.code === "MR_ERR_INVALID_ARGUMENT" &&
          error.message.includes("listener hook: ") &&
          message.test(error.message),
        JSON.stringify(options),
      );
    }
  });
});
