import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { type LedgerEvent, NdjsonSink, s3Record } from "../../src/events/index.js";
import { systemRuntime } from "../../src/runtime.js";
import { events, testContext } from "../helpers/listener.js";
import { waitFor } from "../helpers/wait.js";

const root = mkdtempSync(join(tmpdir(), "metaraft-ndjson-"));
after(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = () => mkdtempSync(join(root, `d${dirs++}-`));

const lines = (path: string): unknown[] =>
  readFileSync(path, "utf8")
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line));

/** A sink in `baseDir`, leading, over an in-memory ledger holding `initial`. */
async function running(
  baseDir: string,
  options: Record<string, unknown>,
  initial: LedgerEvent[] = [],
  checkpoint = 0,
) {
  const ctx = testContext(systemRuntime, "files");
  ctx.stored = checkpoint;
  const sink = new NdjsonSink({ baseDir });
  await sink.init(ctx, options);
  ctx.ledgerMemory.append(...initial);
  sink.start();
  ctx.leadershipControl.lead(1);
  return { ctx, sink };
}

describe("the NDJSON sink", () => {
  it("appends one line per event (native), a relative path taken from the base directory", async () => {
    const dir = freshDir();
    const { ctx, sink } = await running(
      dir,
      { path: "out/events.ndjson", batch_events_max: 3 },
      events(1, 5),
    );
    await waitFor("5 delivered", () => sink.status().delivered === 5);
    ctx.ledgerMemory.append(...events(6, 7));
    await waitFor("7 delivered", () => sink.status().delivered === 7);
    await sink.stop();
    assert.equal(sink.path, join(dir, "out/events.ndjson"));
    assert.deepEqual(lines(sink.path), events(1, 7));
    assert.equal(ctx.stored, 7, "stop checkpoints what was written");
  });

  it("s3: one S3 event notification line per event", async () => {
    const dir = freshDir();
    const input = events(1, 3);
    const { sink } = await running(dir, { path: "s3.ndjson", format: "s3" }, input);
    await waitFor("3 delivered", () => sink.status().delivered === 3);
    await sink.stop();
    assert.deepEqual(
      lines(join(dir, "s3.ndjson")),
      input.map((event) => ({ Records: [s3Record(event)] })),
    );
  });

  it("appends to a file that exists, and takes absolute paths as they are", async () => {
    const dir = freshDir();
    const path = join(dir, "abs.ndjson");
    const first = await running(freshDir(), { path }, events(1, 2));
    await waitFor("2 delivered", () => first.sink.status().delivered === 2);
    await first.sink.stop();
    const second = await running(dir, { path }, events(1, 4));
    await waitFor("4 delivered", () => second.sink.status().delivered === 4);
    await second.sink.stop();
    // At-least-once: the second sink started from checkpoint 0 and wrote 1 and 2 again.
    assert.deepEqual(
      lines(path).map((e) => (e as LedgerEvent).txid),
      [1, 2, 1, 2, 3, 4],
    );
  });

  it("rotates before rotate_bytes, renaming with a sequence suffix, keeping rotate_files_max", async () => {
    const dir = freshDir();
    const input = events(1, 40);
    const lineBytes = input.map((event) => Buffer.byteLength(`${JSON.stringify(event)}\n`));
    // Three lines to a file: three of the longest fit, four of the shortest do not.
    const rotate = Math.max(...lineBytes) * 3;
    assert.ok(Math.min(...lineBytes) * 4 > rotate);
    const { sink } = await running(
      dir,
      { path: "log/ev.ndjson", rotate_bytes: rotate, rotate_files_max: 4, batch_events_max: 7 },
      input,
    );
    await waitFor("40 delivered", () => sink.status().delivered === 40);
    await sink.stop();
    const names = readdirSync(join(dir, "log")).sort();
    // 40 events at 3 a file: 13 full files rotated (000001..000013) and one line in the current;
    // the newest four rotated are kept.
    assert.deepEqual(names, [
      "ev.ndjson",
      "ev.ndjson.000010",
      "ev.ndjson.000011",
      "ev.ndjson.000012",
      "ev.ndjson.000013",
    ]);
    for (const name of names)
      assert.ok(statSync(join(dir, "log", name)).size <= rotate, `${name} within rotate_bytes`);
    const kept = names
      .slice(1)
      .concat(names[0]!)
      .flatMap((name) => lines(join(dir, "log", name)).map((e) => (e as LedgerEvent).txid));
    assert.deepEqual(
      kept,
      Array.from({ length: 13 }, (_, i) => 28 + i),
      "the kept files hold the newest events in order, with no gap",
    );

    // A new sink on the same path goes on numbering after the rotated files it finds.
    const again = await running(
      dir,
      { path: "log/ev.ndjson", rotate_bytes: rotate, rotate_files_max: 4 },
      events(41, 44),
      40,
    );
    await waitFor("44 delivered", () => again.sink.status().delivered === 44);
    await again.sink.stop();
    assert.deepEqual(readdirSync(join(dir, "log")).sort(), [
      "ev.ndjson",
      "ev.ndjson.000011",
      "ev.ndjson.000012",
      "ev.ndjson.000013",
      "ev.ndjson.000014",
    ]);
  });

  it("a line longer than rotate_bytes gets a file of its own", async () => {
    const dir = freshDir();
    const { sink } = await running(dir, { path: "big.ndjson", rotate_bytes: 10 }, events(1, 3));
    await waitFor("3 delivered", () => sink.status().delivered === 3);
    await sink.stop();
    assert.deepEqual(readdirSync(dir).sort(), ["big.ndjson", "big.ndjson.000001", "big.ndjson.000002"]);
    assert.deepEqual(
      lines(join(dir, "big.ndjson")).map((e) => (e as LedgerEvent).txid),
      [3],
    );
  });

  for (const fsync of ["always", "batch", "never"] as const) {
    it(`fsync ${fsync} writes every event`, async () => {
      const dir = freshDir();
      const { sink } = await running(
        dir,
        { path: "f.ndjson", fsync, batch_events_max: 4, rotate_bytes: 600 },
        events(1, 9),
      );
      await waitFor("9 delivered", () => sink.status().delivered === 9);
      await sink.stop();
      const all = readdirSync(dir)
        .sort((a, b) => (a === "f.ndjson" ? 1 : b === "f.ndjson" ? -1 : a.localeCompare(b)))
        .flatMap((name) => lines(join(dir, name)).map((e) => (e as LedgerEvent).txid));
      assert.deepEqual(all, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    });
  }

  it("refuses bad options, naming the listener and the option", async () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{}, /option path is required/],
      [{ path: "" }, /option path must be a non-empty string/],
      [{ path: "x", fsync: "sometimes" }, /option fsync must be one of always, batch, never/],
      [{ path: "x", format: "csv" }, /option format must be one of native, s3/],
      [{ path: "x", rotate_bytes: 0 }, /option rotate_bytes must be 1 to/],
      [{ path: "x", rotate_files_max: -1 }, /option rotate_files_max must be 1 to/],
      [{ path: "x", rotate: 5 }, /option rotate is not an option of this listener \(it takes path, format/],
    ];
    for (const [options, message] of bad) {
      await assert.rejects(
        new NdjsonSink({ baseDir: root }).init(testContext(systemRuntime, "files"), options),
        (error: unknown) =>
          error instanceof MetaraftError &&
          error.code === "MR_ERR_INVALID_ARGUMENT" &&
          error.message.includes("listener files: ") &&
          message.test(error.message),
        JSON.stringify(options),
      );
    }
  });

  it("a write that fails is retried, and delivery goes on once the path is writable", async () => {
    const dir = freshDir();
    // The path's parent is a file: mkdir fails until it is removed.
    const blocker = join(dir, "blocked");
    const { writeFileSync } = await import("node:fs");
    writeFileSync(blocker, "not a directory");
    const { sink } = await running(
      dir,
      { path: "blocked/ev.ndjson", retry_initial_ms: 5, retry_max_ms: 20 },
      events(1, 2),
    );
    await waitFor("an error", () => sink.status().errors >= 2);
    assert.equal(sink.status().state, "retrying");
    assert.match(sink.status().lastError ?? "", /^onEvents: .*(EEXIST|ENOTDIR)/);
    rmSync(blocker);
    await waitFor("2 delivered", () => sink.status().delivered === 2);
    await sink.stop();
    assert.deepEqual(
      lines(join(dir, "blocked/ev.ndjson")).map((e) => (e as LedgerEvent).txid),
      [1, 2],
    );
  });
});
