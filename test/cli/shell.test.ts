import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { HISTORY_LINES_MAX, historyPath, quoteWord, Shell, splitLine } from "../../src/cli/shell.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

/**
 * `metaraft shell` as a user runs it: in a real terminal (a tmux pane of 200 x 50), keys sent
 * one by one, the screen read back after each step, against three nodes in this process.
 */

const cliPath = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));

describe("the shell's words", () => {
  it("splits a line as a POSIX shell does: quotes, backslash escapes, empty words", () => {
    assert.deepEqual(splitLine('  key put vol1 bkt  \'a b\'  "c \\"d\\" \\\\ e" f\\ g "" '), [
      "key",
      "put",
      "vol1",
      "bkt",
      "a b",
      'c "d" \\ e',
      "f g",
      "",
    ]);
    assert.deepEqual(splitLine("kv put k 'it''s'"), ["kv", "put", "k", "its"]);
    assert.deepEqual(splitLine('a"b c"d'), ["ab cd"]);
    assert.deepEqual(splitLine('"\\n"'), ["\\n"]);
    assert.deepEqual(splitLine("   "), []);
    assert.throws(() => splitLine("kv put k 'open"), /inside a ' quote/);
    assert.throws(() => splitLine('kv put k "open'), /inside a " quote/);
    assert.throws(() => splitLine("kv put k \\"), /ends in a backslash/);
  });

  it("quotes a completed name so that it splits back to itself", () => {
    for (const name of ["plain", "my cat.jpg", `it's "x" \\ y`, "tab\there"]) {
      for (const opened of ["", "'", '"']) {
        assert.deepEqual(splitLine(quoteWord(name, opened)), [name], `${name} in ${opened || "no"} quote`);
      }
    }
    assert.equal(quoteWord("my cat.jpg", ""), "my\\ cat.jpg");
    assert.equal(quoteWord("my cat.jpg", '"'), '"my cat.jpg"');
  });

  it("completes verbs, subverbs, options and option values from the command tree, not the refused verbs", async () => {
    const shell = new Shell({
      flags: { endpoints: "127.0.0.1:1" },
      input: new PassThrough(),
      output: new PassThrough() as unknown as NodeJS.WriteStream,
      historyFile: "/nonexistent/history",
    });
    const [verbs] = await shell.complete("");
    assert.ok(
      verbs.includes("volume ") && verbs.includes("watch ") && verbs.includes("exit "),
      String(verbs),
    );
    for (const refused of ["start ", "dev ", "shell "]) assert.ok(!verbs.includes(refused), refused);
    assert.deepEqual(await shell.complete("vol"), [["volume "], "vol"]);
    assert.deepEqual(await shell.complete("metaraft kv "), [["put ", "get ", "del ", "ls "], ""]);
    assert.deepEqual(await shell.complete("volume ls -w j"), [["json "], "j"]);
    const [flags] = await shell.complete("key ls --st");
    assert.deepEqual(flags, ["--stale ", "--start-after "]);
    assert.deepEqual(await shell.complete("help buck"), [["bucket "], "buck"]);
  });

  it("keeps its history in ~/.metaraft_history unless $METARAFT_HISTORY says otherwise", () => {
    assert.match(historyPath({}), /\/\.metaraft_history$/);
    assert.equal(historyPath({ METARAFT_HISTORY: "/tmp/h" }), "/tmp/h");
  });
});

/** Why the terminal tests cannot run here, or undefined when tmux is (or could be made) available. */
function tmuxMissing(): string | undefined {
  if (spawnSync("tmux", ["-V"]).status === 0) return undefined;
  if (process.getuid?.() !== 0)
    return "tmux is missing and installing it needs root (apt-get install -y tmux)";
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "tmux"], { stdio: "ignore", timeout: 300_000 });
  if (install().status !== 0) {
    spawnSync("apt-get", ["update"], { stdio: "ignore", timeout: 300_000 });
    install();
  }
  return spawnSync("tmux", ["-V"]).status === 0
    ? undefined
    : "tmux is missing and apt-get install -y tmux failed";
}

const skip = tmuxMissing();
if (skip) process.stderr.write(`shell.test: skipping the terminal tests: ${skip}\n`);

const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

describe("metaraft shell in a terminal", { timeout: 90_000, ...(skip ? { skip } : {}) }, () => {
  const socket = `metaraft-shell-test-${process.pid}`;
  const session = "shell";
  let cluster: InProcessCluster;
  let dir = "";
  let history = "";
  let exitFile = "";
  let leaderPrompt = "";
  const PROMPT = /^metaraft:127\.0\.0\.1:\d+> ?/;

  const tmux = (...args: string[]) => execFileSync("tmux", ["-L", socket, ...args], { encoding: "utf8" });
  /** Text typed as it is (no key names). */
  const type = (text: string) => tmux("send-keys", "-t", session, "-l", text);
  const press = (...keys: string[]) => tmux("send-keys", "-t", session, ...keys);
  /** Everything the pane has shown, scrollback included, wrapped lines joined. */
  const screen = () => tmux("capture-pane", "-p", "-J", "-S", "-", "-t", session);
  /** The line the cursor is on: the prompt and what is typed after it (trailing blanks trimmed by tmux). */
  const current = () => {
    const lines = screen().trimEnd().split("\n");
    return lines.at(-1) ?? "";
  };
  const count = (text: string) => screen().split(text).length - 1;
  const typed = (after: string) => current() === `${leaderPrompt}${after}`.trimEnd();
  const watching = () => cluster.nodes.reduce((n, node) => n + (node?.watches.size ?? 0), 0);

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 3 });
    dir = mkdtempSync(join(tmpdir(), "metaraft-shell-"));
    history = join(dir, "history");
    exitFile = join(dir, "exit");
    // A full history: the oldest line falls off once the session adds its own.
    const seeded = Array.from({ length: HISTORY_LINES_MAX }, (_, i) => `volume ls --prefix seeded-${i}`);
    writeFileSync(history, `${seeded.join("\n")}\n`);
    const endpoints = cluster.nodes
      .map((n) => `127.0.0.1:${n!.config.cluster.find((m) => m.id === n!.config.id)!.clientPort}`)
      .join(",");
    const leader = await cluster.leader();
    const port = leader.config.cluster.find((m) => m.id === leader.config.id)!.clientPort;
    leaderPrompt = `metaraft:127.0.0.1:${port}> `;
    const command = [
      `env -u METARAFT_ENDPOINTS -u METARAFT_CLUSTER_ID METARAFT_HISTORY=${quote(history)}`,
      quote(process.execPath),
      quote(cliPath),
      `shell --endpoints ${endpoints} --cluster-id ${cluster.clusterId};`,
      `echo $? > ${quote(exitFile)}`,
    ].join(" ");
    tmux("new-session", "-d", "-x", "200", "-y", "50", "-s", session, command);
  });

  after(async () => {
    spawnSync("tmux", ["-L", socket, "kill-server"], { stdio: "ignore" });
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("starts with a prompt that names the leader, its history loaded (up-arrow)", async () => {
    await waitFor("the prompt", () => PROMPT.test(current()));
    assert.equal(current(), leaderPrompt.trimEnd(), "the prompt names the leader's client address");
    press("Up");
    await waitFor("the last line of the history file", () =>
      typed(`volume ls --prefix seeded-${HISTORY_LINES_MAX - 1}`),
    );
    press("C-u");
    await waitFor("the line cleared", () => typed(""));
  });

  it("creates a volume, a bucket and kv key; Tab completes a verb, a volume, a key and a kv key", async () => {
    type("vol");
    press("Tab");
    await waitFor("vol<Tab> to complete to 'volume '", () => typed("volume "));
    type("create shellvol");
    await waitFor("the space after the completed verb", () => typed("volume create shellvol"));
    press("Enter");
    await waitFor("the volume created", () => screen().includes("created volume shellvol"));

    type("bucket create shel");
    press("Tab");
    await waitFor("the volume's name completed", () => typed("bucket create shellvol "));
    type("photos");
    press("Enter");
    await waitFor("the bucket created", () => screen().includes("created bucket shellvol/photos"));
    const client = cluster.client();
    assert.deepEqual(
      (await client.listBuckets("shellvol")).items.map((b) => b.name),
      ["photos"],
    );

    type(`key put shellvol photos "my cat.jpg" --size 3`);
    press("Enter");
    await waitFor("the key put", () => screen().includes("put shellvol/photos/my cat.jpg (3 bytes)"));
    type("key get shellvol photos my");
    press("Tab");
    await waitFor("the key's name completed, escaped", () => typed("key get shellvol photos my\\ cat.jpg "));
    press("Enter");
    await waitFor("the key shown", () => /key\s+my cat\.jpg\n/.test(screen()));

    type(`kv put app/config "a value"`);
    press("Enter");
    await waitFor("the kv key put", () => screen().includes("OK (txid"));
    assert.equal(((await client.kvGet("app/config")).kv as { value?: unknown } | null)?.value, "a value");
    type("kv get app/c");
    press("Tab");
    await waitFor("the kv key completed", () => typed("kv get app/config "));
    press("Enter");
    await waitFor("the value printed", () => screen().includes("app/config\na value\n"));
  });

  it("prints an error in one line and goes on; refuses start; -w json per command", async () => {
    type("volume info nosuchvol");
    press("Enter");
    await waitFor("the error", () => screen().includes("error: MR_ERR_VOLUME_NOT_FOUND"));
    type("volume create");
    press("Enter");
    await waitFor("the usage error", () =>
      screen().includes("error: MR_ERR_USAGE: missing required argument 'volume'"),
    );
    type("start");
    press("Enter");
    await waitFor("start refused", () => screen().includes("'start' does not run in the shell"));
    type("volume ls -w json");
    press("Enter");
    await waitFor("the JSON listing", () => count(`"name": "shellvol"`) === 1);
    await waitFor("the prompt again", () => typed(""));
  });

  it("up-arrow recalls the previous command", async () => {
    press("Up");
    await waitFor("the last command recalled", () => typed("volume ls -w json"));
    press("Enter");
    await waitFor("it ran again", () => count(`"name": "shellvol"`) === 2);
  });

  it("watch prints events of a put from outside as they come, the prompt usable; unwatch stops it", async () => {
    await waitFor("the prompt", () => typed(""));
    const idle = watching();
    type("watch _kv/app/");
    press("Enter");
    await waitFor("the watch started", () => screen().includes(`watch 1 on "_kv/app/"`));
    await waitFor("the watch open on a node", () => watching() > idle);
    await waitFor("the prompt back", () => typed(""));
    type("kv ge");
    await cluster.client().kvPut("app/live", "from outside");
    await waitFor("the event above the prompt", () => /KvPut:Put\s+app\/live/.test(screen()));
    await waitFor("the prompt and what was typed drawn again", () => typed("kv ge"));
    press("C-u");
    type("unwatch");
    press("Enter");
    await waitFor("the watch stopped", () => screen().includes(`stopped watch 1 on "_kv/app/"`));
    await waitFor("the watch gone from the node", () => watching() === idle);
  });

  it("exit ends the process with 0; the history file holds the session's lines, bounded", async () => {
    type("exit");
    press("Enter");
    await waitFor("the process to exit", () => {
      try {
        return readFileSync(exitFile, "utf8").trim() === "0";
      } catch {
        return false;
      }
    });
    const lines = readFileSync(history, "utf8").trimEnd().split("\n");
    assert.equal(lines.length, HISTORY_LINES_MAX);
    assert.equal(lines.at(-1), "exit");
    for (const line of [
      "volume create shellvol",
      `kv put app/config "a value"`,
      "watch _kv/app/",
      "unwatch",
    ]) {
      assert.ok(lines.includes(line), line);
    }
    assert.ok(!lines.includes("volume ls --prefix seeded-0"), "the oldest line fell off");
  });
});
