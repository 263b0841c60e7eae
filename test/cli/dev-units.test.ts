import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import {
  RESTART_BACKOFF_MAX_MS,
  RESTART_BACKOFF_MIN_MS,
  RESTART_WINDOW_MS,
  RESTARTS_MAX,
  RestartBudget,
  restartDelayMs,
  shellQuote,
} from "../../src/cli/dev.js";
import { LEVEL_VALUES, LogFile, parseLogLine, showsOnTerminal } from "../../src/cli/dev-log.js";

/** The parts of `metaraft dev` that need no process: log files, the terminal filter, backoff, quoting. */

describe("metaraft dev, without processes", () => {
  const dir = mkdtempSync(join(tmpdir(), "metaraft-dev-log-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("appends timestamped lines to a node's log file, across reopening", () => {
    const path = join(dir, "append.log");
    const first = new LogFile(path, assert.fail);
    first.write("one", Date.UTC(2026, 0, 2, 3, 4, 5, 6));
    first.close();
    const second = new LogFile(path, assert.fail);
    second.write("two");
    second.close();
    second.write("after close: dropped");
    const lines = readFileSync(path, "utf8").split("\n");
    assert.equal(lines[0], "2026-01-02T03:04:05.006Z one");
    assert.match(lines[1]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z two$/);
    assert.equal(lines.length, 3);
  });

  it("moves a full log file to <file>.1 and starts afresh, so that at most twice the bound stays", () => {
    const path = join(dir, "rotate.log");
    const lineBytes = "2026-01-02T03:04:05.006Z 0123456789\n".length;
    const log = new LogFile(path, assert.fail, lineBytes * 2);
    for (let i = 0; i < 5; i++) log.write("0123456789", Date.UTC(2026, 0, 2, 3, 4, 5, 6));
    log.close();
    assert.equal(readFileSync(path, "utf8").length, lineBytes);
    assert.equal(readFileSync(`${path}.1`, "utf8").length, lineBytes * 2);
    assert.equal(existsSync(`${path}.2`), false);
  });

  it("reports a write error once and goes on without the file", { skip: !existsSync("/dev/full") }, () => {
    const errors: string[] = [];
    const log = new LogFile("/dev/full", (e) => errors.push(e.code ?? e.message));
    log.write("lost");
    log.write("lost too");
    assert.deepEqual(errors, ["ENOSPC"]);
  });

  it("shows on the terminal pino lines from the threshold up, and every line that is not pino's", () => {
    const warn = parseLogLine(JSON.stringify({ level: 40, time: 5, node: 1, msg: "peer lost", peer: 2 }));
    assert.deepEqual(warn, { level: 40, time: 5, text: "WARN peer lost peer=2" });
    assert.equal(showsOnTerminal(warn, LEVEL_VALUES.error!), false);
    assert.equal(showsOnTerminal(warn, LEVEL_VALUES.warn!), true);
    assert.equal(showsOnTerminal(parseLogLine("error: MR_ERR_X: boom"), LEVEL_VALUES.fatal!), true);
    assert.equal(showsOnTerminal(warn, LEVEL_VALUES.silent!), false);
  });

  it("waits longer before each restart in the window, up to the bound", () => {
    const delays = Array.from({ length: RESTARTS_MAX }, (_, i) => restartDelayMs(i));
    assert.equal(delays[0], RESTART_BACKOFF_MIN_MS);
    for (let i = 1; i < delays.length; i++) assert.ok(delays[i]! >= delays[i - 1]!, String(delays));
    assert.ok(delays.every((d) => d <= RESTART_BACKOFF_MAX_MS));
    assert.equal(restartDelayMs(1000), RESTART_BACKOFF_MAX_MS);
  });

  it("grants RESTARTS_MAX restarts in a window, then none until the first leaves the window", () => {
    let now = 1_000_000;
    const budget = new RestartBudget(() => now);
    const granted: (number | undefined)[] = [];
    for (let i = 0; i < RESTARTS_MAX; i++) {
      granted.push(budget.grant());
      now += 1000;
    }
    assert.deepEqual(
      granted,
      Array.from({ length: RESTARTS_MAX }, (_, i) => restartDelayMs(i)),
    );
    assert.equal(budget.used, RESTARTS_MAX);
    assert.equal(budget.grant(), undefined, "a crash loop is left down");
    // The first restart leaves the window: one more, after the longest wait of the four left.
    now = 1_000_000 + RESTART_WINDOW_MS;
    assert.equal(budget.grant(), restartDelayMs(RESTARTS_MAX - 1));
    assert.equal(budget.grant(), undefined);
    // A node quiet for a whole window starts again from the shortest wait.
    now += RESTART_WINDOW_MS;
    assert.equal(budget.grant(), RESTART_BACKOFF_MIN_MS);
    assert.equal(budget.used, 1);
  });

  it("quotes arguments so that the shell reads them back unchanged", () => {
    const args = ["plain", "1@127.0.0.1:7001:8001,2@h:1:2", "with space", "it's", "$HOME", 'a"b', "*"];
    const out = execFileSync("/bin/sh", ["-c", `printf '%s\\n' ${args.map(shellQuote).join(" ")}`], {
      encoding: "utf8",
    });
    assert.deepEqual(out.split("\n").slice(0, -1), args);
    assert.equal(shellQuote("/abs/dist/src/cli/metaraft.js"), "/abs/dist/src/cli/metaraft.js");
  });
});
