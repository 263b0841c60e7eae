import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  alive,
  cleanEnv,
  cli,
  type DevCluster,
  eventually,
  type Run,
  readyPids,
  run,
  startDev,
  Watched,
} from "../helpers/dev.js";

/**
 * `metaraft dev` when a node dies: with --restart it restarts the node itself; without, the
 * command it prints restarts the node by hand. Its banner names each node's log file, and its
 * hint runs as printed. Real processes on loopback; every wait is on a line or a condition.
 */

const NODES = 3;

function ok(result: Run, what: string): string {
  assert.equal(result.code, 0, `${what}: exit ${result.code}, stderr: ${result.stderr}`);
  return result.stdout;
}

/** Node `endpoint`'s own applied state (a stale read is answered there, not by the leader) lists `volume`. */
function holdsVolume(endpoint: string, volume: string): Promise<true> {
  return eventually(`${endpoint} holds volume ${volume}`, async () => {
    const listed = await cli(["volume", "ls", "--stale", "--endpoints", endpoint, "-w", "json"]);
    if (listed.code !== 0) return undefined;
    const items = (JSON.parse(listed.stdout) as { items: { name: string }[] }).items;
    return items.some((v) => v.name === volume) ? true : undefined;
  });
}

/** Every node process `dev` ever ran, gone (dev killed outright stops them: their stdin closes). */
async function cleanUp(cluster: DevCluster | undefined, dir: string): Promise<void> {
  if (cluster) {
    await cluster.dev.kill();
    const pids = Array.from({ length: NODES }, (_, i) => readyPids(cluster.dev, i + 1)).flat();
    await eventually(
      "every node process gone",
      async () => (pids.some(alive) ? undefined : true),
      10_000,
    ).catch(() => {
      for (const pid of pids.filter(alive)) process.kill(pid, "SIGKILL");
    });
  }
  rmSync(dir, { recursive: true, force: true });
}

describe("metaraft dev --restart", { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "metaraft-dev-restart-"));
  let cluster: DevCluster | undefined;
  let dev: Watched;
  let endpoints: readonly string[] = [];

  before(async () => {
    cluster = await startDev(join(dir, "data"), NODES, ["--restart", "--no-sync"]);
    ({ dev, endpoints } = cluster);
  });
  after(() => cleanUp(cluster, dir));

  it("names in its banner each node's pid, addresses, data directory and log file, which gets the node's lines", async () => {
    const banner = [
      ...dev.output.stdout.matchAll(
        /^ {2}node (\d+): pid (\d+), peer (\S+), client (\S+), data (\S+), log (\S+)$/gm,
      ),
    ];
    assert.equal(banner.length, NODES, dev.text);
    for (const [, idText, pid, , client, data, log] of banner) {
      const id = Number(idText);
      assert.equal(client, endpoints[id - 1]);
      assert.equal(data, join(dir, "data", `node-${id}`));
      assert.equal(log, join(data!, "node.log"));
      assert.deepEqual(readyPids(dev, id), [Number(pid)]);
      // The node's own lines at info, which the terminal does not show.
      const text = await eventually(`node ${id}'s log file names a peer connection`, async () => {
        const t = readFileSync(log!, "utf8");
        return /Z INFO peer connected/.test(t) ? t : undefined;
      });
      assert.match(text, new RegExp(`^\\S+Z metaraft dev: started node ${id}, pid ${pid}$`, "m"));
      assert.match(text, new RegExp(`^\\S+Z node ${id} ready: client ${client}, `, "m"));
    }
    assert.doesNotMatch(dev.output.stderr, /INFO peer connected/);
  });

  it("prints a hint that runs as printed, without npm link", async () => {
    const [hint] = await dev.waitFor("stdout", /^try: (.+)$/gm);
    const command = hint![1]!;
    assert.ok(command.includes(" dist/src/cli/metaraft.js status --endpoints "), command);
    const status = await run("/bin/sh", ["-c", command]);
    assert.equal(status.code, 0, `${command}\n${status.stdout}\n${status.stderr}`);
    assert.match(status.stdout, /3 of 3 endpoints answered/);
  });

  it("restarts a node killed with SIGKILL over its data, and writes and reads go through it", async () => {
    const [pid] = readyPids(dev, 2);
    process.kill(pid!, "SIGKILL");
    await dev.waitFor(
      "stderr",
      /^node 2 died \(signal SIGKILL\); 2 of 3 nodes still running\nrestarting node 2 in 250 ms \(restart 1 of at most 5 in 60 s\)$/gm,
    );
    await dev.waitFor("stdout", /^node 2 ready: /gm, 2);
    const again = readyPids(dev, 2)[1]!;
    assert.notEqual(again, pid);
    assert.ok(alive(again));
    const node2 = endpoints[1]!;
    ok(await cli(["volume", "create", "after-restart", "--endpoints", node2]), "volume create via node 2");
    await holdsVolume(node2, "after-restart");
    assert.match(
      ok(await cli(["volume", "ls", "--endpoints", node2]), "volume ls via node 2"),
      /\nafter-restart /,
    );
    const log = readFileSync(join(dir, "data", "node-2", "node.log"), "utf8");
    assert.match(
      log,
      new RegExp(
        `metaraft dev: node 2 \\(pid ${pid}\\) exited with signal SIGKILL\\n\\S+ metaraft dev: restarted node 2, pid ${again}\\n`,
      ),
    );
  });

  it("stops every node cleanly on SIGTERM, and exits 1 for the node that died", async () => {
    dev.child.kill("SIGTERM");
    const exit = await dev.exit;
    assert.deepEqual(exit, { code: 1, signal: null }, dev.text);
    for (let id = 1; id <= NODES; id++)
      assert.match(dev.output.stdout, new RegExp(`^node ${id} stopped$`, "m"));
    assert.match(dev.output.stdout, /stopped, with errors\n$/);
    for (let id = 1; id <= NODES; id++) for (const p of readyPids(dev, id)) assert.equal(alive(p), false);
  });
});

describe("metaraft dev without --restart", { timeout: 60_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "metaraft-dev-hand-"));
  let cluster: DevCluster | undefined;
  let dev: Watched;
  let endpoints: readonly string[] = [];

  before(async () => {
    cluster = await startDev(join(dir, "data"), NODES, ["--no-sync"]);
    ({ dev, endpoints } = cluster);
  });
  after(() => cleanUp(cluster, dir));

  it("prints the command that restarts a dead node, which brings it back into the cluster", async () => {
    const [pid] = readyPids(dev, 3);
    process.kill(pid!, "SIGKILL");
    const [died] = await dev.waitFor(
      "stderr",
      /^node 3 died \(signal SIGKILL\); 2 of 3 nodes still running\nrestart it by hand.*:\n {2}(.+)$/gm,
    );
    const command = died![1]!;
    assert.ok(command.includes(` start --id 3 `), command);
    assert.ok(command.includes(` --data ${join(dir, "data", "node-3")} `), command);
    assert.doesNotMatch(command, /--stop-with-parent/);
    // Written while node 3 is down: it must catch up once back.
    ok(
      await cli(["volume", "create", "while-down", "--endpoints", endpoints.slice(0, 2).join(",")]),
      "create",
    );
    // From another directory: the command holds absolute paths.
    const hand = new Watched(
      spawn("/bin/sh", ["-c", command], {
        cwd: tmpdir(),
        env: cleanEnv(),
        detached: true,
        stdio: ["ignore", "pipe", "pipe"],
      }),
    );
    try {
      await hand.waitFor("stdout", /^node 3 ready: /gm);
      await holdsVolume(endpoints[2]!, "while-down");
      const status = ok(await cli(["status", "--endpoints", endpoints.join(",")]), "status");
      assert.match(status, /3 of 3 endpoints answered/);
      assert.equal(readyPids(dev, 3).length, 1, "dev did not restart node 3 itself");
    } finally {
      await hand.kill("SIGTERM", true);
    }
    assert.match(hand.output.stdout, /^node 3 stopped$/m, hand.text);
  });

  it("stops the nodes it runs on Ctrl-C", async () => {
    dev.child.kill("SIGINT");
    const exit = await dev.exit;
    assert.deepEqual(exit, { code: 1, signal: null }, dev.text);
    assert.match(dev.output.stdout, /^SIGINT: stopping 2 nodes…$/m);
    for (const id of [1, 2]) assert.match(dev.output.stdout, new RegExp(`^node ${id} stopped$`, "m"));
  });
});
