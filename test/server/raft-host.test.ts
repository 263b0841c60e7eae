import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MemoryStorage, type NodeId } from "../../src/raft/index.js";
import { encodeKvCommand, KvStateMachine } from "../../src/server/kv-state-machine.js";
import { type HostTransport, RaftHost } from "../../src/server/raft-host.js";

/** An in-process network: payloads cross on the next turn of the event loop unless the link is down. */
class LoopbackNetwork {
  readonly handlers = new Map<NodeId, (from: NodeId, payload: Uint8Array) => void>();
  readonly down = new Set<NodeId>();
  readonly sizes: number[] = [];

  transport(id: NodeId): HostTransport {
    return {
      send: (to, payload) => {
        if (this.down.has(to) || this.down.has(id)) return false;
        this.sizes.push(payload.length);
        setImmediate(() => this.handlers.get(to)?.(id, payload));
        return true;
      },
      onMessage: (handler) => this.handlers.set(id, handler),
    };
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(condition: () => boolean, what: string, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("RaftHost", () => {
  it("replicates, compacts, and catches a lagging follower up with a chunked snapshot", async () => {
    const network = new LoopbackNetwork();
    const machines = new Map<NodeId, KvStateMachine>();
    const hosts = [1, 2, 3].map((id) => {
      const machine = new KvStateMachine();
      machines.set(id, machine);
      return new RaftHost({
        id,
        peers: [1, 2, 3],
        storage: new MemoryStorage({ voters: [1, 2, 3], learners: [] }),
        transport: network.transport(id),
        stateMachine: machine,
        tickMs: 5,
        snapshotEntries: 50,
        snapshotTrailingEntries: 5,
        snapshotChunkBytes: 512,
        random: () => 0.5,
      });
    });
    for (const host of hosts) host.start();
    try {
      await until(() => hosts.some((h) => h.isLeader), "a leader");
      const leader = hosts.find((h) => h.isLeader)!;
      const lagging = hosts.find((h) => !h.isLeader)!;
      network.down.add(lagging.raft.id);
      const value = "x".repeat(100);
      for (let i = 0; i < 200; i++) {
        await leader.propose(encodeKvCommand({ op: "put", key: `k${i}`, value: `${value}${i}` }));
      }
      assert.ok(
        leader.raft.log.firstIndex() > lagging.appliedIndex + 1,
        "the leader compacted past the lagging node",
      );
      const chunksBefore = network.sizes.length;
      network.down.delete(lagging.raft.id);
      await until(() => lagging.appliedIndex >= leader.appliedIndex, "the lagging node to catch up");
      const lagMachine = machines.get(lagging.raft.id)!;
      for (let i = 0; i < 200; i++) assert.equal(lagMachine.get(`k${i}`), `${value}${i}`);
      // The snapshot (over 20 KB of values) crossed as chunks of at most 512 bytes plus framing.
      const sent = network.sizes.slice(chunksBefore);
      assert.ok(
        sent.filter((size) => size > 400 && size < 700).length >= 30,
        "the snapshot went out in chunks",
      );
      assert.ok(Math.max(...sent) < 4096, "no message carried the whole snapshot");

      await leader.readBarrier();
      const result = await leader.propose(encodeKvCommand({ op: "put", key: "after", value: "snapshot" }));
      assert.ok(result.index > 200);
      await until(() => lagMachine.get("after") === "snapshot", "replication after the snapshot");
    } finally {
      for (const host of hosts) await host.stop();
    }
  });

  it("fails pending proposals with NOT_LEADER when leadership is lost", async () => {
    const network = new LoopbackNetwork();
    const hosts = [1, 2, 3].map(
      (id) =>
        new RaftHost({
          id,
          peers: [1, 2, 3],
          storage: new MemoryStorage({ voters: [1, 2, 3], learners: [] }),
          transport: network.transport(id),
          stateMachine: new KvStateMachine(),
          tickMs: 5,
          random: () => 0.5,
        }),
    );
    for (const host of hosts) host.start();
    try {
      await until(() => hosts.some((h) => h.isLeader), "a leader");
      const leader = hosts.find((h) => h.isLeader)!;
      // Cut the leader off: its proposal cannot commit, and CheckQuorum makes it step down.
      network.down.add(leader.raft.id);
      const pending = leader.propose(encodeKvCommand({ op: "put", key: "lost", value: "?" }));
      await assert.rejects(pending, (error: Error & { code?: string }) => error.code === "MR_ERR_NOT_LEADER");
      await assert.rejects(
        () => leader.readBarrier(),
        (error: Error & { code?: string }) => error.code === "MR_ERR_NOT_LEADER",
      );
    } finally {
      for (const host of hosts) await host.stop();
    }
  });
});
