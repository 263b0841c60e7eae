import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, describe, it } from "node:test";
import { pathToFileURL } from "node:url";
import { MetaraftError } from "../../src/errors.js";
import {
  type EventListener,
  LedgerListener,
  loadPlugin,
  NdjsonSink,
  WebhookSink,
} from "../../src/events/index.js";
import { systemRuntime } from "../../src/runtime.js";
import { events, testContext } from "../helpers/listener.js";
import { SRC } from "../helpers/sources.js";
import { waitFor } from "../helpers/wait.js";

const root = mkdtempSync(join(tmpdir(), "metaraft-plugins-"));
after(() => rmSync(root, { recursive: true, force: true }));
const eventsIndex = pathToFileURL(join(SRC, "../dist/src/events/index.js")).href;
let files = 0;

/** Writes a plugin module into `root` and returns its file name (each new: imports are cached). */
function plugin(source: string, ext = "mjs"): string {
  const name = `plugin-${files++}.${ext}`;
  writeFileSync(join(root, name), source);
  return name;
}

const OBJECT_PLUGIN = `export default {
  name: "object-plugin", version: "0.1.0",
  init() {}, start() {}, stop() {},
};`;

function isCode(code: string, ...parts: RegExp[]) {
  return (error: unknown) => {
    assert.ok(error instanceof MetaraftError, String(error));
    assert.equal(error.code, code);
    for (const part of parts) assert.match(error.message, part);
    return true;
  };
}

describe("loadPlugin", () => {
  it("makes the shipped sinks by their bare names, a relative ndjson path taken from baseDir", async () => {
    const ndjson = await loadPlugin({ name: "files", module: "ndjson" }, { baseDir: root });
    assert.ok(ndjson instanceof NdjsonSink);
    await ndjson.init(testContext(systemRuntime, "files"), { path: "out/x.ndjson" });
    assert.equal((ndjson as NdjsonSink).path, join(root, "out/x.ndjson"));
    const webhook = await loadPlugin({ name: "hook", module: "webhook", options: {} }, { baseDir: root });
    assert.ok(webhook instanceof WebhookSink);
    assert.equal(webhook.name, "webhook");
    assert.equal(webhook.version, "1.0.0");
  });

  it("loads a file by a path relative to baseDir, by an absolute path, and by a file: URL", async () => {
    const file = plugin(OBJECT_PLUGIN);
    for (const module of [`./${file}`, file, join(root, file), pathToFileURL(join(root, file)).href]) {
      const listener = await loadPlugin({ name: "obj", module }, { baseDir: root });
      assert.equal(listener.name, "object-plugin", module);
    }
    // Relative paths are the base directory's, not the process's.
    const nested = join(root, "nested");
    mkdirSync(nested, { recursive: true });
    const listener = await loadPlugin({ name: "obj", module: `../${file}` }, { baseDir: nested });
    assert.equal(listener.version, "0.1.0");
  });

  it("constructs a class default export, giving it the name and baseDir", async () => {
    const file = plugin(`import { LedgerListener } from ${JSON.stringify(eventsIndex)};
export default class Counting extends LedgerListener {
  name = "counting"; version = "2.0.0"; seen = [];
  constructor(env) { super(); this.env = env; }
  async onEvents(events) { this.seen.push(...events.map((e) => e.txid)); }
}`);
    const listener = (await loadPlugin(
      { name: "counted", module: `./${file}` },
      { baseDir: root },
    )) as EventListener & {
      env: unknown;
      seen: number[];
    };
    assert.ok(
      listener instanceof LedgerListener,
      "the plugin extends the very LedgerListener of metaraft/events",
    );
    assert.deepEqual(listener.env, { name: "counted", baseDir: root });
    const ctx = testContext(systemRuntime, "counted");
    await listener.init(ctx, {});
    ctx.ledgerMemory.append(...events(1, 3));
    await listener.start();
    ctx.leadershipControl.lead(1);
    await waitFor("3 delivered", () => listener.seen.length === 3);
    await listener.stop();
    assert.deepEqual(listener.seen, [1, 2, 3]);
  });

  it("calls a factory default export (sync or async), and constructs a constructor function", async () => {
    const sync = plugin(
      `export default (env) => ({ name: "f-" + env.name, version: "1", init() {}, start() {}, stop() {} });`,
    );
    const asyncFactory = plugin(`export default async function make(env) {
  await null;
  return { name: "async", version: "1", init() {}, start() {}, stop() {}, status() { return env; } };
}`);
    const ctor = plugin(`function Old() { this.name = "old"; this.version = "1"; }
Old.prototype.init = function () {}; Old.prototype.start = function () {}; Old.prototype.stop = function () {};
export default Old;`);
    assert.equal((await loadPlugin({ name: "one", module: `./${sync}` }, { baseDir: root })).name, "f-one");
    const made = await loadPlugin({ name: "two", module: `./${asyncFactory}` }, { baseDir: root });
    assert.equal(made.name, "async");
    assert.deepEqual(made.status?.(), { name: "two", baseDir: root });
    assert.equal((await loadPlugin({ name: "three", module: `./${ctor}` }, { baseDir: root })).name, "old");
  });

  it("loads a package by name from baseDir's node_modules", async () => {
    const pkg = join(root, "app", "node_modules", "metaraft-plugin-demo");
    mkdirSync(pkg, { recursive: true });
    writeFileSync(
      join(pkg, "package.json"),
      JSON.stringify({ name: "metaraft-plugin-demo", version: "1.0.0", type: "module", main: "index.js" }),
    );
    writeFileSync(join(pkg, "index.js"), OBJECT_PLUGIN.replace("object-plugin", "from-package"));
    const listener = await loadPlugin(
      { name: "pkg", module: "metaraft-plugin-demo" },
      { baseDir: join(root, "app") },
    );
    assert.equal(listener.name, "from-package");
  });

  it("refuses a plugin that does not meet the contract, naming it and each problem", async () => {
    const cases: [string, RegExp[]][] = [
      [
        `export default { name: "p", init() {}, start() {}, stop() {} };`,
        [/version must be a non-empty string/],
      ],
      [
        `export default { name: "p", version: "1", init() {}, start: "soon", stop() {} };`,
        [/start must be a function/],
      ],
      [
        `export default { version: 2, init() {}, start() {} };`,
        [/name must be a non-empty string; version must be a non-empty string; stop must be a function/],
      ],
      [
        `export default { name: "p", version: "1", init() {}, start() {}, stop() {}, status: 1 };`,
        [/status must be a function/],
      ],
      [`export default 42;`, [/the default export must be an EventListener.*\(got number\)/]],
      [`export default () => null;`, [/\(got null\)/]],
      [`export const listener = {};`, [/the module has no default export/]],
    ];
    for (const [source, parts] of cases) {
      const file = plugin(source);
      await assert.rejects(
        loadPlugin({ name: "broken", module: `./${file}` }, { baseDir: root }),
        isCode("MR_ERR_PLUGIN_INVALID", /listener broken: the plugin in \.\/plugin-\d+\.mjs: /, ...parts),
        source,
      );
    }
  });

  it("a module that cannot be imported, or whose class or factory throws, fails to load, naming the module and the cause", async () => {
    await assert.rejects(
      loadPlugin({ name: "gone", module: "./does-not-exist.mjs" }, { baseDir: root }),
      isCode(
        "MR_ERR_PLUGIN_LOAD_FAILED",
        /listener gone: module \.\/does-not-exist\.mjs could not be imported: .*/,
      ),
    );
    await assert.rejects(
      loadPlugin({ name: "gone", module: "no-such-package-for-metaraft" }, { baseDir: root }),
      isCode(
        "MR_ERR_PLUGIN_LOAD_FAILED",
        /module no-such-package-for-metaraft could not be imported: .*no-such-package/,
      ),
    );
    const syntax = plugin("export default {");
    await assert.rejects(
      loadPlugin({ name: "bad", module: `./${syntax}` }, { baseDir: root }),
      isCode("MR_ERR_PLUGIN_LOAD_FAILED", /could not be imported: .*(Unexpected|SyntaxError|end of input)/),
    );
    const throwsOnImport = plugin(`throw new Error("top-level boom"); export default {};`);
    await assert.rejects(
      loadPlugin({ name: "bad", module: `./${throwsOnImport}` }, { baseDir: root }),
      isCode("MR_ERR_PLUGIN_LOAD_FAILED", /top-level boom/),
    );
    const throwingClass = plugin(
      `export default class X { constructor() { throw new Error("ctor boom"); } init() {} }`,
    );
    await assert.rejects(
      loadPlugin({ name: "bad", module: `./${throwingClass}` }, { baseDir: root }),
      isCode("MR_ERR_PLUGIN_LOAD_FAILED", /its constructor threw: ctor boom/),
    );
    const throwingFactory = plugin(`export default async () => { throw new Error("factory boom"); };`);
    await assert.rejects(
      loadPlugin({ name: "bad", module: `./${throwingFactory}` }, { baseDir: root }),
      isCode("MR_ERR_PLUGIN_LOAD_FAILED", /its factory threw: factory boom/),
    );
  });

  it("refuses a malformed declaration", async () => {
    await assert.rejects(
      loadPlugin({ name: "bad name!", module: "ndjson" }, { baseDir: root }),
      isCode("MR_ERR_INVALID_NAME", /listener name "bad name!"/),
    );
    await assert.rejects(
      loadPlugin({ name: "ok", module: "" }, { baseDir: root }),
      isCode("MR_ERR_INVALID_ARGUMENT", /listener ok: module must be a non-empty string/),
    );
    await assert.rejects(
      loadPlugin(
        { name: "ok", module: "ndjson", options: [] as unknown as Record<string, unknown> },
        { baseDir: root },
      ),
      isCode("MR_ERR_INVALID_ARGUMENT", /listener ok: options must be an object/),
    );
  });

  it("loads examples/listener-plugin, which validates its options, counts per bucket, skips redeliveries and registers its metric", async () => {
    const repo = dirname(SRC);
    const listener = (await loadPlugin(
      { name: "per-bucket", module: "./examples/listener-plugin/index.mjs" },
      { baseDir: repo },
    )) as EventListener & { summary(): unknown };
    assert.ok(listener instanceof LedgerListener);
    assert.equal(listener.name, "bucket-counter");
    await assert.rejects(
      (async () => listener.init(testContext(systemRuntime, "per-bucket"), { log_every_events: 0 }))(),
      isCode("MR_ERR_INVALID_ARGUMENT", /listener per-bucket: option log_every_events must be 1 to/),
    );
    const again = (await loadPlugin(
      { name: "per-bucket", module: "./examples/listener-plugin/index.mjs" },
      { baseDir: repo },
    )) as EventListener & { summary(): unknown; onEvents(e: unknown, s: AbortSignal): Promise<void> };
    assert.notEqual(again, listener, "a class export makes a new instance per load");
    const ctx = testContext(systemRuntime, "per-bucket");
    await again.init(ctx, { log_every_events: 3, batch_events_max: 2 });
    ctx.ledgerMemory.append(
      ...events(1, 2),
      ...events(3, 3, () => ({ bucket: "other", type: "ObjectRemoved:Delete" })),
      ...events(4, 4, () => ({ type: "BucketCreated:Create", key: undefined })),
      ...events(5, 5, () => ({ type: "VolumeCreated:Create", bucket: undefined, key: undefined })),
    );
    await again.start();
    ctx.leadershipControl.lead(1);
    await waitFor("5 delivered", () => again.status?.().delivered === 5);
    // A redelivery (a retried batch, a failover) is not counted twice.
    await again.onEvents(events(1, 2), new AbortController().signal);
    await again.stop();
    assert.deepEqual(again.summary(), {
      "vol/bkt": { "ObjectCreated:Put": 2, "BucketCreated:Create": 1 },
      "vol/other": { "ObjectRemoved:Delete": 1 },
      vol: { "VolumeCreated:Create": 1 },
    });
    assert.ok(ctx.logs.some((l) => l.level === "info" && l.message === "events per bucket"));
    const metric = (await ctx.metrics.getMetricsAsJSON()).find(
      (m) => m.name === "metaraft_example_bucket_events_total",
    );
    assert.deepEqual(
      metric?.values.find((v) => v.labels.bucket === "vol/bkt" && v.labels.type === "ObjectCreated:Put"),
      { value: 2, labels: { listener: "per-bucket", bucket: "vol/bkt", type: "ObjectCreated:Put" } },
    );
  });
});
