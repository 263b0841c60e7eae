import assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  DEV_SECRET,
  flagValues,
  parseConfigText,
  resolveSettings,
  SETTING_LIST,
  settingsToYaml,
  toNodeConfig,
} from "../../src/cli/config.js";
import { MetaraftError } from "../../src/errors.js";

/** Asserts an MR_ERR_INVALID_ARGUMENT whose one-line message contains every fragment. */
function rejects(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof MetaraftError, String(error));
    assert.equal(error.code, "MR_ERR_INVALID_ARGUMENT");
    assert.ok(!error.message.includes("\n"), `one line: ${error.message}`);
    for (const f of fragments) assert.ok(error.message.includes(f), `"${f}" in: ${error.message}`);
    return true;
  });
}

describe("node config: defaults", () => {
  it("runs node 1 of a one-node cluster on loopback, data in ./data/node-1", () => {
    const s = resolveSettings();
    assert.equal(s.id, 1);
    assert.deepEqual(s.cluster, [{ id: 1, host: "127.0.0.1", raftPort: 7001, clientPort: 8001 }]);
    assert.equal(s.data, "./data/node-1");
    assert.equal(s.clusterId, "metaraft-dev");
    assert.equal(s.secret, DEV_SECRET);
    assert.deepEqual(s.raft, {
      tickMs: 50,
      electionTicks: 10,
      snapshotEntries: 10_000,
      snapshotTrailingEntries: 1_000,
    });
    assert.deepEqual(s.execution, { mode: "leader-execution", batchers: 6, batchBytesMax: 4 * 1024 * 1024 });
    assert.deepEqual(s.core, { mode: "auto" });
    assert.equal(s.requestBytesMax, 4 * 1024 * 1024);
    assert.equal(s.noSync, false);
    assert.equal(s.log.level, "info");
  });

  it("derives the data directory and the one-node cluster from the id", () => {
    const s = resolveSettings({ flags: { id: "3" } });
    assert.equal(s.data, "./data/node-3");
    assert.deepEqual(s.cluster, [{ id: 3, host: "127.0.0.1", raftPort: 7001, clientPort: 8001 }]);
  });

  it("makes a NodeConfig with an absolute data directory", () => {
    const config = toNodeConfig(resolveSettings(), {}, "/srv/metaraft");
    assert.equal(config.dataDir, "/srv/metaraft/data/node-1");
    assert.equal(config.tickMs, 50);
    assert.equal(config.electionTicks, 10);
    assert.equal(config.snapshotEntries, 10_000);
    assert.deepEqual(config.execution, { mode: "leader-execution", batchers: 6, batchBytesMax: 4194304 });
    assert.deepEqual(config.core, { mode: "auto" });
    assert.equal(config.noSync, undefined);
    assert.equal(
      toNodeConfig(resolveSettings({ flags: { data: "/abs/x", noSync: true } })).dataDir,
      "/abs/x",
    );
    assert.equal(toNodeConfig(resolveSettings({ flags: { noSync: true } })).noSync, true);
  });
});

describe("node config: the YAML file", () => {
  const full = `
id: 2
cluster: "1@10.0.0.1:7001:8001, 2@10.0.0.2:7001:8001,3@10.0.0.3:7001:8001"
data: /var/lib/metaraft
clusterId: prod-1
secret: "0123456789abcdef0123"
raft:
  tickMs: 20
  electionTicks: 15
  snapshotEntries: 500
  snapshotTrailingEntries: 20
execution: {mode: replicated-request, batchers: 32, batchBytesMax: 65536}
core: {mode: ts}
requestBytesMax: 1048576
noSync: true
log: {level: warn}
`;

  it("reads every setting", () => {
    const s = resolveSettings({ file: parseConfigText(full, "node.yaml") });
    assert.equal(s.id, 2);
    assert.deepEqual(
      s.cluster.map((m) => [m.id, m.host, m.raftPort, m.clientPort]),
      [
        [1, "10.0.0.1", 7001, 8001],
        [2, "10.0.0.2", 7001, 8001],
        [3, "10.0.0.3", 7001, 8001],
      ],
    );
    assert.equal(s.data, "/var/lib/metaraft");
    assert.equal(s.clusterId, "prod-1");
    assert.equal(s.secret, "0123456789abcdef0123");
    assert.deepEqual(s.raft, {
      tickMs: 20,
      electionTicks: 15,
      snapshotEntries: 500,
      snapshotTrailingEntries: 20,
    });
    assert.deepEqual(s.execution, { mode: "replicated-request", batchers: 32, batchBytesMax: 65536 });
    assert.deepEqual(s.core, { mode: "ts" });
    assert.equal(s.requestBytesMax, 1048576);
    assert.equal(s.noSync, true);
    assert.equal(s.log.level, "warn");
  });

  it("takes the cluster as a list of strings or of maps", () => {
    const strings = parseConfigText('cluster: ["1@127.0.0.1:7001:8001", "2@127.0.0.1:7002:8002"]', "a.yaml");
    assert.deepEqual(
      resolveSettings({ file: strings }).cluster.map((m) => m.id),
      [1, 2],
    );
    const maps = parseConfigText(
      "cluster:\n  - {id: 1, host: 127.0.0.2, raftPort: 7001, clientPort: 8001}\n  - {id: 2, raftPort: 7002, clientPort: 8002}\n",
      "b.yaml",
    );
    assert.deepEqual(resolveSettings({ file: maps }).cluster, [
      { id: 1, host: "127.0.0.2", raftPort: 7001, clientPort: 8001 },
      { id: 2, host: "127.0.0.1", raftPort: 7002, clientPort: 8002 },
    ]);
  });

  it("accepts an empty file and empty sections", () => {
    assert.equal(resolveSettings({ file: parseConfigText("", "empty.yaml") }).id, 1);
    assert.equal(resolveSettings({ file: parseConfigText("raft:\n", "r.yaml") }).raft.tickMs, 50);
  });

  it("reads back what --print-config writes", () => {
    const s = resolveSettings({ file: parseConfigText(full, "node.yaml") });
    assert.deepEqual(resolveSettings({ file: parseConfigText(settingsToYaml(s), "printed.yaml") }), s);
  });

  it("rejects YAML that does not parse, with where", () => {
    rejects(() => parseConfigText("raft: {tickMs: 5\n", "bad.yaml"), "bad.yaml is not valid YAML", "line");
    rejects(() => parseConfigText("id: 1\nid: 2\n", "dup.yaml"), "dup.yaml is not valid YAML");
  });

  it("rejects an unknown setting, suggesting the right one", () => {
    rejects(
      () => parseConfigText("raft:\n  tickMS: 5\n", "t.yaml"),
      'unknown setting "raft.tickMS"',
      "raft.tickMs",
    );
    rejects(() => parseConfigText("tickMs: 5\n", "t.yaml"), 'unknown setting "tickMs"', "raft.tickMs");
    rejects(() => parseConfigText("bogus: 1\n", "t.yaml"), 'unknown setting "bogus"');
  });

  it("rejects a file that is not a map, and a section that is not a map", () => {
    rejects(() => parseConfigText("- 1\n- 2\n", "list.yaml"), "list.yaml must hold a map");
    rejects(() => parseConfigText("raft: 5\n", "r.yaml"), "raft in r.yaml must be a map");
  });
});

describe("node config: flags", () => {
  it("override the file", () => {
    const file = parseConfigText(
      "raft: {tickMs: 100, electionTicks: 20}\nexecution: {batchers: 2}\n",
      "f.yaml",
    );
    const s = resolveSettings({ file, flags: { "raft.tickMs": "25", "execution.batchers": "8" } });
    assert.equal(s.raft.tickMs, 25);
    assert.equal(s.raft.electionTicks, 20);
    assert.equal(s.execution.batchers, 8);
  });

  it("come from commander's options by camel-cased flag, only when given", () => {
    const values = flagValues({
      id: "2",
      tickMs: "30",
      batchBytesMax: "2048",
      executionMode: "replicated-request",
      coreMode: "wasm",
      logLevel: "debug",
      sync: false,
      config: "x.yaml",
    });
    assert.deepEqual(values, {
      id: "2",
      "raft.tickMs": "30",
      "execution.mode": "replicated-request",
      "execution.batchBytesMax": "2048",
      "core.mode": "wasm",
      noSync: true,
      "log.level": "debug",
    });
    assert.deepEqual(flagValues({ sync: true }), {});
  });

  it("has one flag per setting, all different", () => {
    const flags = SETTING_LIST.map((s) => s.flag);
    assert.equal(new Set(flags).size, flags.length);
    const paths = SETTING_LIST.map((s) => s.path);
    assert.equal(new Set(paths).size, paths.length);
  });
});

describe("node config: validation names the bad setting", () => {
  it("numbers out of range or not numbers", () => {
    rejects(() => resolveSettings({ flags: { "raft.tickMs": "abc" } }), "--tick-ms", '"abc"');
    rejects(() => resolveSettings({ flags: { "raft.tickMs": "0" } }), "--tick-ms", "from 1");
    rejects(() => resolveSettings({ flags: { "execution.batchers": "33" } }), "--batchers", "1 to 32");
    rejects(
      () => resolveSettings({ file: parseConfigText("execution: {batchers: 0}", "n.yaml") }),
      "execution.batchers in n.yaml",
      "1 to 32",
    );
    rejects(
      () => resolveSettings({ file: parseConfigText('raft: {tickMs: "50"}', "n.yaml") }),
      "raft.tickMs in n.yaml",
    );
    rejects(() => resolveSettings({ flags: { "raft.electionTicks": "1" } }), "--election-ticks");
    rejects(() => resolveSettings({ flags: { requestBytesMax: "10" } }), "--request-bytes-max");
    rejects(() => resolveSettings({ flags: { id: "1.5" } }), "--id");
  });

  it("accepts digit separators in numeric flags", () => {
    assert.equal(
      resolveSettings({ flags: { "raft.snapshotEntries": "100_000" } }).raft.snapshotEntries,
      100_000,
    );
  });

  it("modes outside their choices", () => {
    rejects(
      () => resolveSettings({ flags: { "execution.mode": "fast" } }),
      "--execution-mode",
      "leader-execution",
    );
    rejects(
      () => resolveSettings({ file: parseConfigText("core: {mode: gpu}", "c.yaml") }),
      "core.mode in c.yaml",
    );
    rejects(() => resolveSettings({ flags: { "log.level": "loud" } }), "--log-level");
  });

  it("strings: secret too short, empty cluster id, data not a string", () => {
    rejects(() => resolveSettings({ flags: { secret: "short" } }), "--secret", "16 bytes");
    rejects(() => resolveSettings({ flags: { clusterId: "" } }), "--cluster-id", "empty");
    rejects(
      () => resolveSettings({ file: parseConfigText("data: 5", "d.yaml") }),
      "data in d.yaml",
      "string",
    );
    rejects(
      () => resolveSettings({ file: parseConfigText("noSync: yes please", "d.yaml") }),
      "noSync in d.yaml",
    );
  });

  it("clusters that are malformed, repeat a member, or leave this node out", () => {
    rejects(
      () => resolveSettings({ flags: { cluster: "1@h:1" } }),
      "--cluster",
      "id@host:raftPort:clientPort",
    );
    rejects(() => resolveSettings({ flags: { cluster: "1@h:1:2,1@h:3:4" } }), "--cluster", "member 1 twice");
    rejects(() => resolveSettings({ flags: { cluster: "1@h:1:2,2@h:2:3" } }), "--cluster", "h:2 twice");
    rejects(() => resolveSettings({ flags: { cluster: "1@h:1:70000" } }), "--cluster", "port 70000");
    rejects(
      () => resolveSettings({ flags: { id: "4", cluster: "1@h:1:2,2@h:3:4" } }),
      "--id is 4",
      "not a member of --cluster",
      "members 1, 2",
    );
    rejects(
      () => resolveSettings({ file: parseConfigText("cluster: [{id: 1, port: 5}]", "m.yaml") }),
      "cluster in m.yaml",
    );
    rejects(() => resolveSettings({ file: parseConfigText("cluster: 7", "m.yaml") }), "cluster in m.yaml");
    rejects(() => resolveSettings({ file: parseConfigText("cluster: []", "m.yaml") }), "at least one member");
  });
});
