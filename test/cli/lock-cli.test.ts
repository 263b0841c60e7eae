import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { MetaraftClient } from "../../src/client/client.js";
import { cleanEnv, cliPath } from "../helpers/dev.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

/** A `metaraft` process, its output collected line by line. */
class CliProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = "";
  readonly exited: Promise<number | null>;

  constructor(args: readonly string[]) {
    this.child = spawn(process.execPath, [cliPath, ...args], { env: cleanEnv() });
    let partial = "";
    this.child.stdout!.on("data", (chunk: Buffer) => {
      partial += chunk.toString();
      const parts = partial.split("\n");
      partial = parts.pop()!;
      this.lines.push(...parts);
    });
    this.child.stderr!.on("data", (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    this.exited = new Promise((resolve) => this.child.once("exit", (code) => resolve(code)));
  }

  kill(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }
}

describe("metaraft lock and elect", { timeout: 90_000 }, () => {
  let cluster: InProcessCluster;
  let client: MetaraftClient;
  let flags: string[];
  const dir = mkdtempSync(join(tmpdir(), "metaraft-lock-cli-"));
  const started: CliProcess[] = [];
  const start = (args: readonly string[]) => {
    // The flags before the arguments: after a "--" they would be the command's.
    const p = new CliProcess([args[0]!, ...flags, ...args.slice(1)]);
    started.push(p);
    return p;
  };

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 1, session: { expiryCheckMs: 100 } });
    const self = cluster.nodes[0]!.config.cluster[0]!;
    flags = ["--endpoints", `${self.host}:${self.clientPort}`, "--cluster-id", cluster.clusterId];
    client = cluster.client();
  });
  after(async () => {
    for (const p of started) if (p.child.exitCode === null) p.kill("SIGKILL");
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the commands of two lock processes one at a time, each with its token", async () => {
    const log = join(dir, "runs.log");
    // The command notes its start and end; it holds the lock long enough for the other to wait.
    const script = `const fs = require("node:fs");
      fs.appendFileSync(${JSON.stringify(log)}, "enter " + process.env.METARAFT_LOCK_TOKEN + "\\n");
      setTimeout(() => fs.appendFileSync(${JSON.stringify(log)}, "exit " + process.env.METARAFT_LOCK_TOKEN + "\\n"), 400);`;
    const runs = [0, 1].map(() => start(["lock", "jobs/nightly", "--", process.execPath, "-e", script]));
    const codes = await Promise.all(runs.map((r) => r.exited));
    assert.deepEqual(codes, [0, 0], runs.map((r) => r.stderr).join("\n"));
    const lines = readFileSync(log, "utf8").trim().split("\n");
    assert.equal(lines.length, 4);
    const [first, second] = [lines[0]!.split(" ")[1]!, lines[2]!.split(" ")[1]!];
    assert.deepEqual(lines, [`enter ${first}`, `exit ${first}`, `enter ${second}`, `exit ${second}`]);
    assert.ok(Number(second) > Number(first));
    // Each printed its key and token; the lock is free again, its sessions closed.
    for (const r of runs) assert.match(r.lines[0]!, /^jobs\/nightly\/[0-9a-f]{16} token \d+$/);
    assert.deepEqual((await client.kvRange("jobs/nightly/")).items, []);
    // The command's exit status is lock's.
    const failing = start(["lock", "jobs/nightly", "--", process.execPath, "-e", "process.exit(3)"]);
    assert.equal(await failing.exited, 3);
  });

  it("a holder killed with kill -9 loses the lock to the waiter within its TTL", async () => {
    const holder = start(["lock", "jobs/solo", "--ttl-ms", "2000"]);
    await waitFor("the holder to hold the lock", () => holder.lines.length === 1, 20_000);
    const waiter = start([
      "lock",
      "jobs/solo",
      "--",
      process.execPath,
      "-e",
      "console.log('got it ' + process.env.METARAFT_LOCK_TOKEN)",
    ]);
    await waitFor(
      "the waiter in line",
      async () => ((await client.kvRange("jobs/solo/")).items as unknown[]).length === 2,
      20_000,
    );
    // In line, it waits: the holder's session lives.
    await client.kvGet("x");
    assert.equal(
      waiter.lines.some((l) => l.startsWith("got it")),
      false,
    );
    const killedAt = Date.now();
    holder.kill("SIGKILL");
    assert.equal(await waiter.exited, 0, waiter.stderr);
    const waited = Date.now() - killedAt;
    assert.ok(waited <= 2_000 + 2_000, `the waiter took the lock ${waited} ms after the kill`);
    const token = Number(holder.lines[0]!.split(" token ")[1]);
    const got = waiter.lines.find((l) => l.startsWith("got it"))!;
    assert.ok(Number(got.split(" ")[2]) > token, got);
  });

  it("elect leads until interrupted, and elect --listen follows the leaders", async () => {
    const listener = start(["elect", "db-primary", "--listen"]);
    await waitFor("the listener's first line", () => listener.lines.length === 1, 20_000);
    assert.equal(listener.lines[0], "(no leader)");
    const alpha = start(["elect", "db-primary", "alpha:5432"]);
    await waitFor("alpha to lead", () => alpha.lines.length === 1, 20_000);
    assert.match(alpha.lines[0]!, /^db-primary\/[0-9a-f]{16} token \d+: leading with alpha:5432$/);
    const beta = start(["elect", "db-primary", "beta:5432"]);
    await waitFor(
      "the listener to see alpha",
      () => listener.lines.at(-1)?.endsWith(": alpha:5432") === true,
    );
    await waitFor(
      "beta in line",
      async () => ((await client.kvRange("db-primary/")).items as unknown[]).length === 2,
    );
    alpha.kill("SIGTERM");
    assert.equal(await alpha.exited, 0, alpha.stderr);
    await waitFor("beta to lead", () => beta.lines.length === 1, 20_000);
    await waitFor("the listener to see beta", () => listener.lines.at(-1)?.endsWith(": beta:5432") === true);
    beta.kill("SIGINT");
    assert.equal(await beta.exited, 0, beta.stderr);
    await waitFor("the listener to see nobody", () => listener.lines.at(-1) === "(no leader)");
    listener.kill("SIGINT");
    assert.equal(await listener.exited, 0, listener.stderr);

    // Usage errors: a campaign needs a proposal, a listener takes none.
    const bare = start(["elect", "db-primary"]);
    assert.equal(await bare.exited, 2);
    assert.match(bare.stderr, /proposal/);
    const both = start(["elect", "db-primary", "x", "--listen"]);
    assert.equal(await both.exited, 2);
  });
});
