import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { parseTxn } from "../../src/cli/kv-verbs.js";
import { readKv } from "../../src/coordination/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { InProcessCluster } from "../helpers/nodes.js";

const cliPath = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

describe("the kv txn syntax (etcdctl's)", () => {
  it("reads compares, a blank line, success ops, a blank line, failure ops", () => {
    const txn = parseTxn(
      [
        'value("k") = "v"',
        'version("k") > 0',
        'create("new key") = 0',
        'mod("k") < 100',
        'exists("gone") != true',
        "",
        "put k v2",
        'put "a key" "a \\"quoted\\" value"',
        "del k",
        "",
        "get k",
        "",
      ].join("\n"),
    );
    assert.deepEqual(txn, {
      compare: [
        { target: "value", key: "k", op: "=", value: "v" },
        { target: "version", key: "k", op: ">", value: 0 },
        { target: "create", key: "new key", op: "=", value: 0 },
        { target: "mod", key: "k", op: "<", value: 100 },
        { target: "exists", key: "gone", op: "!=", value: true },
      ],
      success: [
        { op: "put", key: "k", value: "v2" },
        { op: "put", key: "a key", value: 'a "quoted" value' },
        { op: "delete", key: "k" },
      ],
      failure: [{ op: "get", key: "k" }],
    });
    // No compares: the input starts with the blank line.
    assert.deepEqual(parseTxn("\nput a 1\n"), {
      compare: [],
      success: [{ op: "put", key: "a", value: "1" }],
      failure: [],
    });
  });

  it("refuses what it cannot read, naming the line", () => {
    for (const [input, line] of [
      ["value(k) = v\n", 1],
      ['version("k") > -1\n', 1],
      ['value("k") = v\n', 1],
      ['exists("k") = 1\n', 1],
      ["\nput k\n", 2],
      ["\nrename a b\n", 2],
      ["\n\nget a b\n", 3],
      ["\n\nget a\n\nget b\n", 5],
    ] as const) {
      assert.throws(() => parseTxn(input), new RegExp(`line ${line}`), input);
    }
  });
});

/** `metaraft kv ...` as separate processes against real nodes. */
describe("metaraft kv", { timeout: 60_000 }, () => {
  let cluster: InProcessCluster;
  let node: MetaraftNode;
  let endpoints = "";

  const verb = (args: readonly string[], input?: string): Promise<Run> => {
    const env = { ...process.env };
    delete env.METARAFT_ENDPOINTS;
    delete env.METARAFT_CLUSTER_ID;
    return new Promise((resolve) => {
      const child = execFile(
        process.execPath,
        [cliPath, ...args, "--endpoints", endpoints, "--cluster-id", cluster.clusterId],
        { env, timeout: 20_000 },
        (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr }),
      );
      child.stdin!.end(input ?? "");
    });
  };
  const ok = (run: Run, what: string): string => {
    assert.equal(run.code, 0, `${what}: exit ${run.code}, stderr: ${run.stderr}`);
    return run.stdout;
  };

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 1 });
    node = cluster.nodes[0]!;
    const self = node.config.cluster[0]!;
    endpoints = `${self.host}:${self.clientPort}`;
  });
  after(async () => {
    await cluster?.stop();
  });

  it("puts, gets, lists, runs txns from stdin and deletes", async () => {
    assert.match(ok(await verb(["kv", "put", "cfg/a", "hello world"]), "put"), /^OK \(txid \d+\)\n$/);
    ok(await verb(["kv", "put", "cfg/b", "2"]), "put b");
    assert.equal(ok(await verb(["kv", "get", "cfg/a"]), "get"), "cfg/a\nhello world\n");
    assert.equal(ok(await verb(["kv", "get", "cfg/none"]), "get none"), "");
    const got = JSON.parse(ok(await verb(["kv", "get", "cfg/a", "--json"]), "get json")) as {
      kv: { value: string; version: number };
    };
    assert.deepEqual([got.kv.value, got.kv.version], ["hello world", 1]);

    const ls = ok(await verb(["kv", "ls", "cfg/"]), "ls").split("\n");
    assert.match(ls[0]!, /^KEY\s+VERSION\s+CREATE TXID\s+MOD TXID\s+VALUE$/);
    assert.match(ls[1]!, /^cfg\/a\s+1\s+\d+\s+\d+\s+"hello world"$/);
    assert.match(ls[2]!, /^cfg\/b\s+1\s/);
    const page = await verb(["kv", "ls", "cfg/", "--limit", "1"]);
    assert.equal(ok(page, "ls page").split("\n").length, 3);
    assert.match(page.stderr, /more keys follow: --start-after "cfg\/a"/);

    // The compare fails: the failure branch's get answers.
    const failed = ok(
      await verb(["kv", "txn"], 'value("cfg/a") = "nope"\n\nput cfg/a changed\n\nget cfg/a\n'),
      "txn failing",
    );
    assert.equal(failed, "FAILURE\n\ncfg/a\nhello world\n");
    const won = ok(
      await verb(
        ["kv", "txn"],
        'version("cfg/a") = 1\ncreate("cfg/lock") = 0\n\nput cfg/lock me\ndel cfg/b\n\n',
      ),
      "txn succeeding",
    );
    assert.equal(won, "SUCCESS\n\nOK\n\n1\n");
    assert.equal(readKv(node.store, "cfg/lock")?.value, "me");
    assert.equal(readKv(node.store, "cfg/b"), undefined);

    assert.equal(ok(await verb(["kv", "del", "cfg/", "--prefix"]), "del prefix"), "2\n");
    assert.equal(ok(await verb(["kv", "ls", "cfg/"]), "ls empty"), "");
  });

  it("fails in one line with a code: a usage error for a bad txn, the server's for a bad key", async () => {
    const bad = await verb(["kv", "txn"], "value(k) = v\n");
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /line 1/);
    const long = await verb(["kv", "put", "k".repeat(4097), "v"]);
    assert.equal(long.code, 1);
    assert.match(long.stderr, /MR_ERR_KV_KEY_TOO_LARGE/);
    assert.equal(long.stderr.trim().split("\n").length, 1);
  });
});
