import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { loadConfigFile, parseConfigText } from "../../src/cli/config.js";
import { MetaraftError } from "../../src/errors.js";
import { loadQueueHandler, parseConsumerOptions, QUEUE_SETTINGS_DEFAULT } from "../../src/queues/index.js";
import { systemRuntime } from "../../src/runtime.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const fixture = fileURLToPath(new URL("../fixtures/queue-consumer.js", import.meta.url));
const silent = { info: () => {}, warn: () => {}, error: () => {} };

function rejects(fn: () => unknown, code: string, ...fragments: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof MetaraftError, String(error));
    assert.equal(error.code, code, error.message);
    for (const f of fragments) assert.ok(error.message.includes(f), `"${f}" in: ${error.message}`);
    return true;
  });
}

describe("queue consumers in a config file", () => {
  const dir = mkdtempSync(join(tmpdir(), "metaraft-queue-config-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("reads queues: with each entry's module, options and consumer options", () => {
    const file = parseConfigText(
      [
        "queue: {segmentBytes: 65536}",
        "queues:",
        "  - name: expiry",
        "    module: ./expiry.js",
        "    options: {bucket: b1}",
        "    maxItemsAtOnce: 50",
        "    maxAttempts: 5",
      ].join("\n"),
      "node.yaml",
    );
    assert.deepEqual(file.values, { "queue.segmentBytes": 65536 });
    assert.deepEqual(file.queues, [
      {
        name: "expiry",
        module: "./expiry.js",
        options: { bucket: "b1" },
        consumer: { maxItemsAtOnce: 50, maxAttempts: 5 },
      },
    ]);
  });

  it("refuses a bad entry, naming it and what is wrong", () => {
    const parse = (yaml: string) => () => parseConfigText(yaml, "node.yaml");
    rejects(parse("queues: {name: x}"), "MR_ERR_INVALID_ARGUMENT", "node.yaml: queues must be a list");
    rejects(parse("queues:\n  - {name: 'a/b', module: m.js}"), "MR_ERR_INVALID_ARGUMENT", "queues [0].name");
    rejects(
      parse("queues:\n  - {name: a, module: m.js, speed: 3}"),
      "MR_ERR_INVALID_ARGUMENT",
      'unknown key "speed"',
    );
    rejects(
      parse("queues:\n  - {name: a, module: m.js}\n  - {name: a, module: n.js}"),
      "MR_ERR_INVALID_ARGUMENT",
      "declared twice",
    );
    rejects(
      parse("queues:\n  - {name: a, module: m.js, maxItemsAtOnce: 0}"),
      "MR_ERR_INVALID_ARGUMENT",
      "node.yaml: queues [0] (a): maxItemsAtOnce must be an integer from 1 to 10000, not 0",
    );
    rejects(parse("queues:\n  - {name: a}"), "MR_ERR_INVALID_ARGUMENT", "(a).module");
  });

  it("takes a relative module path from the file's directory", () => {
    const config = join(dir, "node.yaml");
    writeFileSync(
      config,
      "queues:\n  - {name: q1, module: ./consumer.js}\n  - {name: q2, module: some-package}\n",
    );
    const file = loadConfigFile(config);
    assert.equal(file.queues![0]!.module, join(dir, "consumer.js"));
    assert.equal(file.queues![1]!.module, "some-package");
  });

  it("checks a consumer's options by name, the node's settings giving the byte limits' defaults", () => {
    const options = parseConsumerOptions("q", {}, QUEUE_SETTINGS_DEFAULT);
    assert.equal(options.maxOutstandingBytes, QUEUE_SETTINGS_DEFAULT.outstandingBytesMax);
    assert.equal(options.truncationBytes, QUEUE_SETTINGS_DEFAULT.truncationBytes);
    assert.equal(options.maxAttempts, 0, "unlimited by default");
    rejects(
      () => parseConsumerOptions("q", { retries: 1 }, QUEUE_SETTINGS_DEFAULT),
      "MR_ERR_INVALID_ARGUMENT",
      "retries",
    );
    rejects(
      () => parseConsumerOptions("q", { retryInitialMs: 500, retryMaxMs: 100 }, QUEUE_SETTINGS_DEFAULT),
      "MR_ERR_INVALID_ARGUMENT",
      "retryInitialMs (500) is above retryMaxMs (100)",
    );
  });

  it("loads a handler factory, and names the queue and the module when it cannot", async () => {
    const context = { queue: "q", baseDir: dir, runtime: systemRuntime, log: silent };
    const handler = await loadQueueHandler(
      { name: "q", module: fixture, options: { file: join(dir, "out.log") }, consumer: {} },
      context,
    );
    assert.equal(typeof handler, "function");
    const load = (module: string, options = {}) =>
      loadQueueHandler({ name: "q", module, options, consumer: {} }, context);
    writeFileSync(join(dir, "object.mjs"), "export default { notAFactory: true };\n");
    writeFileSync(join(dir, "returns.mjs"), "export default () => 42;\n");
    await assert.rejects(load("./missing.js"), (e) => {
      assert.equal((e as MetaraftError).code, "MR_ERR_QUEUE_CONSUMER_LOAD_FAILED");
      assert.match((e as Error).message, /queue q: module \.\/missing\.js could not be imported/);
      return true;
    });
    await assert.rejects(
      load("./object.mjs"),
      (e) => (e as MetaraftError).code === "MR_ERR_QUEUE_CONSUMER_INVALID",
    );
    await assert.rejects(load("./returns.mjs"), (e) => {
      assert.equal((e as MetaraftError).code, "MR_ERR_QUEUE_CONSUMER_INVALID");
      assert.match((e as Error).message, /must return a handler function, not number/);
      return true;
    });
    // The fixture's factory refuses options without a file.
    await assert.rejects(
      load(fixture),
      (e) => (e as MetaraftError).code === "MR_ERR_QUEUE_CONSUMER_LOAD_FAILED",
    );
  });

  it("a node whose declared consumer cannot load starts, and shows the queue as failed with why", async () => {
    const cluster = await InProcessCluster.start({
      nodes: 1,
      queues: [{ name: "broken", module: join(dir, "missing.js"), options: {}, consumer: {} }],
    });
    try {
      const client = cluster.client();
      await waitFor("a leader", async () => (await cluster.leader()).host.leadership.ready);
      const rows = (await client.queueStatus()).queues as Record<string, unknown>[];
      const broken = rows.find((q) => q.name === "broken")!;
      assert.equal(broken.state, "failed");
      assert.match(String(broken.lastError), /MR_ERR_QUEUE_CONSUMER_LOAD_FAILED/);
    } finally {
      await cluster.stop();
    }
  });
});
