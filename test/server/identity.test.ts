import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { MetaraftError } from "../../src/errors.js";
import { MetaraftNode, type NodeConfig } from "../../src/server/node.js";
import { LmdbRaftLog } from "../../src/storage/index.js";
import { freePort } from "../helpers/cluster.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

/** The bytes of every LMDB data file under `dir` (lock files record readers, not data). */
function dataBytes(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  const walk = (at: string) => {
    for (const name of readdirSync(at)) {
      const path = join(at, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (!name.endsWith("-lock") && name !== "lock.mdb") out.set(path, readFileSync(path));
    }
  };
  walk(dir);
  return out;
}

function assertUnchanged(before: Map<string, Buffer>, dir: string): void {
  const now = dataBytes(dir);
  assert.deepEqual([...now.keys()].sort(), [...before.keys()].sort());
  for (const [path, bytes] of before) assert.ok(now.get(path)!.equals(bytes), `${path} changed`);
}

async function refused(config: NodeConfig, pattern: RegExp): Promise<void> {
  await assert.rejects(MetaraftNode.start(config), (error: unknown) => {
    assert.ok(error instanceof MetaraftError, String(error));
    assert.equal(error.code, "MR_ERR_CLUSTER_MISMATCH");
    assert.match(error.message, pattern);
    return true;
  });
}

describe("cluster identity", () => {
  let cluster: InProcessCluster;
  let configOf: (id: number) => NodeConfig;

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 3 });
    const configs = cluster.nodes.map((n) => ({ ...n!.config }));
    configOf = (id) => configs[id - 1]!;
    const client = cluster.client();
    await client.createVolume("before-everything");
  });
  after(() => cluster.stop());

  it("is bootstrapped exactly once: the identity and the voters recorded at the first start stay", async () => {
    const first = cluster.nodes[0]!.identity;
    assert.equal(first.clusterId, cluster.clusterId);
    assert.equal(first.nodeId, 1);
    assert.deepEqual(first.bootstrapVoters, [1, 2, 3]);
    await cluster.stopNode(1);
    await cluster.startNode(1);
    assert.deepEqual(cluster.nodes[0]!.identity, first, "a restart must not bootstrap again");
    assert.deepEqual(cluster.nodes[0]!.host.raft.confState(), { voters: [1, 2, 3], learners: [] });
  });

  it("refuses another cluster's data, another node's data and contradicting flags, changing nothing on disk", async () => {
    const config = configOf(1);
    await cluster.stopNode(1);
    const before = dataBytes(config.dataDir);
    await refused(
      { ...config, clusterId: "another-cluster" },
      /belongs to cluster "test-cluster", but this node was started with --cluster-id "another-cluster"/,
    );
    assertUnchanged(before, config.dataDir);
    await refused({ ...config, id: 2 }, /written by node 1, but this node was started as node 2/);
    assertUnchanged(before, config.dataDir);
    // The reported failure: a restart without --cluster over a three-node cluster's data.
    const self = config.cluster.find((m) => m.id === 1)!;
    await refused(
      { ...config, cluster: [self] },
      /says the members are voters 1,2,3, but --cluster names 1 and no address of 2,3 is known: .*--force-new-cluster/,
    );
    assertUnchanged(before, config.dataDir);
    // A node the log does not hold, named by --cluster, is refused too.
    await refused(
      { ...config, cluster: [...config.cluster, { id: 9, host: "127.0.0.1", raftPort: 1, clientPort: 2 }] },
      /says the members are voters 1,2,3, but --cluster also names 9: drop them/,
    );
    assertUnchanged(before, config.dataDir);
    await cluster.startNode(1);
  });

  it("refuses to start a node whose log says it was removed", async () => {
    const leader = await cluster.leader();
    const victim = [1, 2, 3].find((id) => id !== leader.config.id)!;
    await waitFor("a committed entry of the leader's term", async () => {
      try {
        await leader.host.proposeConfChange({ kind: "removeNode", node: victim });
        return true;
      } catch (error) {
        if (error instanceof MetaraftError && error.code === "MR_ERR_CONF_CHANGE_REJECTED") return false;
        throw error;
      }
    });
    await waitFor("the victim to apply its removal", () => cluster.nodes[victim - 1]!.host.removed);
    assert.equal(cluster.nodes[victim - 1]!.host.status().removed, true);
    const config = configOf(victim);
    await cluster.stopNode(victim);
    const before = dataBytes(config.dataDir);
    await refused(config, new RegExp(`node ${victim} is not a member of cluster "test-cluster"`));
    assertUnchanged(before, config.dataDir);
    // The two that remain still serve writes, and agree on the membership.
    const remaining = [1, 2, 3].filter((id) => id !== victim);
    for (const id of remaining) {
      assert.deepEqual(cluster.nodes[id - 1]!.host.confState.voters, remaining);
    }
    await cluster.client().createVolume("after-removal");
  });

  it("--force-new-cluster rebuilds a one-node cluster from one node's data, with a warning", async () => {
    const survivor = [1, 2, 3].find(
      (id) => cluster.nodes[id - 1] !== null && cluster.nodes[id - 1] !== undefined,
    )!;
    const config = configOf(survivor);
    for (let id = 1; id <= 3; id++) if (cluster.nodes[id - 1]) await cluster.stopNode(id);
    const self = config.cluster.find((m) => m.id === survivor)!;
    const forced = await MetaraftNode.start({ ...config, cluster: [self], forceNewCluster: true });
    try {
      assert.equal(forced.warnings.length, 1);
      assert.match(
        forced.warnings[0]!,
        /--force-new-cluster: .* one-node cluster .*Start the other nodes with empty data/,
      );
      assert.ok(forced.identity.forcedNewCluster);
      await waitFor("the forced node to lead alone", () => forced.host.isLeader);
      assert.deepEqual(forced.host.confState, { voters: [survivor], learners: [] });
      // Everything the old cluster acknowledged is still there, and it takes writes alone.
      const stale = await forced.pipeline.read({ op: "listVolumes" } as never, true);
      const names = (stale.items as { volume?: string; name?: string }[]).map((v) => v.volume ?? v.name);
      assert.ok(names.includes("before-everything"), JSON.stringify(stale));
      assert.ok(names.includes("after-removal"), JSON.stringify(stale));
    } finally {
      await forced.close();
    }
    // From now on its data says one member: the old three-member flags contradict it.
    await refused(
      config,
      new RegExp(
        `says the members are voters ${survivor}, but --cluster also names ${[1, 2, 3].filter((id) => id !== survivor).join(",")}: drop them`,
      ),
    );
    const again = await MetaraftNode.start({ ...config, cluster: [self] });
    try {
      assert.equal(again.warnings.length, 0);
      await waitFor("the restarted node to lead", () => again.host.isLeader);
    } finally {
      await again.close();
    }
  });

  it("a blank data directory with --force-new-cluster is refused: there is nothing to rebuild", async () => {
    const config = configOf(1);
    await refused({ ...config, dataDir: join(cluster.dir, "blank"), forceNewCluster: true }, /holds no data/);
  });

  it("the identity record survives a reopen of the log alone", async () => {
    const log = LmdbRaftLog.open(join(cluster.dir, "node-1", "raft"));
    try {
      const identity = log.identity();
      assert.equal(identity?.clusterId, cluster.clusterId);
      assert.equal(log.blank, false);
    } finally {
      await log.close();
    }
  });
});

describe("nodes bootstrapped from different --cluster lists", () => {
  it("refuse each other's handshakes with cluster-mismatch, naming both voter lists, and elect nobody", async () => {
    const dir = mkdtempSync(join(tmpdir(), "metaraft-bootstrap-"));
    const members = [];
    for (const id of [1, 2, 3]) {
      members.push({ id, host: "127.0.0.1", raftPort: await freePort(), clientPort: await freePort() });
    }
    const logs: string[] = [];
    const logger = {
      info: () => undefined,
      warn: (obj: object, msg: string) => logs.push(`${msg} ${JSON.stringify(obj)}`),
      error: (obj: object, msg: string) => logs.push(`${msg} ${JSON.stringify(obj)}`),
    };
    const base = {
      clusterId: "c",
      secret: "test-secret-of-sixteen-bytes",
      tickMs: 20,
      electionTicks: 10,
      logger,
    };
    const nodes: MetaraftNode[] = [];
    try {
      // Node 1 was told of three voters, node 2 (by mistake) of two: their logs differ at index 3.
      nodes.push(await MetaraftNode.start({ ...base, id: 1, cluster: members, dataDir: join(dir, "n1") }));
      nodes.push(
        await MetaraftNode.start({ ...base, id: 2, cluster: members.slice(0, 2), dataDir: join(dir, "n2") }),
      );
      await waitFor("both ends to refuse", () => {
        const text = logs.join("\n");
        return (
          text.includes("node 2's data was bootstrapped with voters 1,2, this node's with voters 1,2,3") &&
          text.includes("node 1's data was bootstrapped with voters 1,2,3, this node's with voters 1,2")
        );
      });
      // Each needs the other for a quorum, and no message crossed: nobody can have been elected.
      assert.deepEqual(
        nodes.map((n) => n.host.isLeader),
        [false, false],
      );
    } finally {
      for (const node of nodes) await node.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
