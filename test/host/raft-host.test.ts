import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { unpack } from "msgpackr";
import { type HostTransport, RaftHost, type RaftHostOptions } from "../../src/host/index.js";
import { MemoryStorage, type NodeId, type RaftLogStore, type RaftUpdate } from "../../src/raft/index.js";
import { encodeKvCommand, type KvResult, KvStateMachine } from "../../src/server/kv-state-machine.js";

/** An in-process network: payloads cross on the next turn of the event loop unless the link is down. */
class LoopbackNetwork {
  readonly handlers = new Map<NodeId, (from: NodeId, payload: Uint8Array) => void>();
  readonly down = new Set<NodeId>();
  readonly sizes: number[] = [];
  /** Messages it returns true for are lost on the way (the sender thinks they went out). */
  drop: (from: NodeId, to: NodeId, payload: Uint8Array) => boolean = () => false;
  /** Bytes a link holds in flight at most; a send beyond it fails, as a full peer queue does. */
  linkBytesMax = Number.POSITIVE_INFINITY;
  readonly #inFlight = new Map<string, number>();

  transport(id: NodeId): HostTransport {
    return {
      send: (to, payload) => {
        if (this.down.has(to) || this.down.has(id)) return false;
        if (this.drop(id, to, payload)) return true;
        const link = `${id}->${to}`;
        const queued = this.#inFlight.get(link) ?? 0;
        if (queued + payload.length > this.linkBytesMax) return false;
        this.#inFlight.set(link, queued + payload.length);
        this.sizes.push(payload.length);
        // Delivered a little later, a message at a time, like a socket draining.
        setTimeout(() => {
          this.#inFlight.set(link, (this.#inFlight.get(link) ?? 0) - payload.length);
          this.handlers.get(to)?.(id, payload);
        }, 1);
        return true;
      },
      queuedBytes: (to) => this.#inFlight.get(`${id}->${to}`) ?? 0,
      onMessage: (handler) => this.handlers.set(id, handler),
    };
  }
}

/** Memory storage whose saves can be held open, to see what a host does while it writes. */
class GatedStorage extends MemoryStorage {
  held: { entries: number; release: () => void } | null = null;
  holdNext = false;

  override async save(update: RaftUpdate): Promise<void> {
    if (this.holdNext && update.entries.length > 0) {
      this.holdNext = false;
      await new Promise<void>((release) => {
        this.held = { entries: update.entries.length, release };
      });
      this.held = null;
    }
    super.save(update);
  }
}

/** Three hosts on `network` with KV state machines; `options` adds to (or replaces) the defaults. */
function startHosts(
  network: LoopbackNetwork,
  options: Partial<Omit<RaftHostOptions<KvResult>, "storage">> & {
    storage?: (id: NodeId) => RaftLogStore;
    machine?: () => KvStateMachine;
  } = {},
): { hosts: RaftHost<KvResult>[]; machines: Map<NodeId, KvStateMachine> } {
  const machines = new Map<NodeId, KvStateMachine>();
  const { storage, machine: newMachine, ...rest } = options;
  const hosts = [1, 2, 3].map((id) => {
    const machine = newMachine?.() ?? new KvStateMachine();
    machines.set(id, machine);
    return new RaftHost<KvResult>({
      id,
      peers: [1, 2, 3],
      storage: storage?.(id) ?? new MemoryStorage({ voters: [1, 2, 3], learners: [] }),
      transport: network.transport(id),
      stateMachine: machine,
      tickMs: 5,
      random: () => 0.5,
      ...rest,
    });
  });
  for (const host of hosts) host.start();
  return { hosts, machines };
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
    const { hosts, machines } = startHosts(network, {
      snapshotEntries: 50,
      snapshotTrailingEntries: 5,
      snapshotChunkBytes: 512,
    });
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
    const { hosts } = startHosts(network);
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

  it("applies entries already in its log while it writes newer ones", async () => {
    const network = new LoopbackNetwork();
    const storages = new Map<NodeId, GatedStorage>();
    const { hosts } = startHosts(network, {
      storage: (id) => {
        const storage = new GatedStorage({ voters: [1, 2, 3], learners: [] });
        storages.set(id, storage);
        return storage;
      },
    });
    try {
      await until(() => hosts.some((h) => h.isLeader), "a leader");
      const leader = hosts.find((h) => h.isLeader)!;
      const storage = storages.get(leader.raft.id)!;
      await leader.propose(encodeKvCommand({ op: "put", key: "warm", value: "up" }));
      // B's save is held: the followers commit B, but the leader cannot apply what it has not
      // yet made durable itself.
      storage.holdNext = true;
      let appliedB = false;
      const b = leader.propose(encodeKvCommand({ op: "put", key: "b", value: "1" }));
      void b.then(() => {
        appliedB = true;
      });
      await until(() => storage.held !== null, "the leader to write B");
      await until(
        () => hosts.every((h) => h === leader || h.raft.log.lastIndex() >= leader.raft.log.lastIndex()),
        "the followers to take B",
      );
      await sleep(30);
      assert.equal(appliedB, false, "B applied before the leader's own write of it");
      // C arrives while B is written; once B is durable, the next write (C's) is held, and B,
      // committed and now in the log, must be answered without waiting for C's write.
      const c = leader.propose(encodeKvCommand({ op: "put", key: "c", value: "2" }));
      // The leader's append of C does not wait for its own write of B.
      await until(
        () => hosts.every((h) => h.raft.log.lastIndex() >= leader.raft.log.lastIndex()),
        "C to reach the followers while B is still being written",
      );
      assert.ok(storage.held !== null);
      const heldB = storage.held!;
      storage.holdNext = true;
      heldB.release();
      await until(() => appliedB, "B to be applied while C is being written");
      assert.ok(storage.held !== null, "C's write is still held");
      storage.held!.release();
      await c;
    } finally {
      for (const host of hosts) {
        const held = storages.get(host.raft.id)!.held;
        held?.release();
        await host.stop();
      }
    }
  });

  it("serves concurrent reads in shared ReadIndex rounds; a read never joins a round begun before it", async () => {
    const network = new LoopbackNetwork();
    const { hosts, machines } = startHosts(network);
    try {
      await until(() => hosts.some((h) => h.isLeader), "a leader");
      const leader = hosts.find((h) => h.isLeader)!;
      await leader.propose(encodeKvCommand({ op: "put", key: "k", value: "v1" }));
      await leader.readBarrier();
      const rounds = leader.stats.readRounds;
      // The first read starts a round at once; the 99 behind it arrived after that round
      // began, so they must wait for the next one: two rounds, not one and not a hundred.
      await Promise.all(Array.from({ length: 100 }, () => leader.readBarrier()));
      assert.equal(leader.stats.readRounds - rounds, 2);
      // A read that starts after a write was answered sees it.
      await leader.propose(encodeKvCommand({ op: "put", key: "k", value: "v2" }));
      await leader.readBarrier();
      assert.equal(machines.get(leader.raft.id)!.get("k"), "v2");
    } finally {
      for (const host of hosts) await host.stop();
    }
  });

  it("starts a ReadIndex round again when its confirmations are lost", async () => {
    const network = new LoopbackNetwork();
    const { hosts } = startHosts(network, { readRetryMs: 30 });
    try {
      await until(() => hosts.some((h) => h.isLeader), "a leader");
      const leader = hosts.find((h) => h.isLeader)!;
      await leader.propose(encodeKvCommand({ op: "put", key: "k", value: "v" }));
      // Lose every answer to a heartbeat that carries a read's context, for the first 20 ms.
      const until20 = Date.now() + 20;
      network.drop = (_from, _to, payload) => {
        if (Date.now() > until20) return false;
        const message = unpack(payload) as { type?: string; ctx?: unknown };
        return message.type === "heartbeatResp" && message.ctx != null;
      };
      const rounds = leader.stats.readRounds;
      await leader.readBarrier();
      assert.ok(leader.stats.readRounds - rounds >= 2, "the lost round was started again");
      assert.ok(leader.isLeader);
    } finally {
      for (const host of hosts) await host.stop();
    }
  });

  it("streams a durable state machine's copy to a follower past the compacted log, however small the queue", async () => {
    /** A KV machine that claims its state is on disk, and streams its snapshot in small parts. */
    class DurableKv extends KvStateMachine {
      get durableIndex(): number {
        return this.appliedIndex;
      }

      async *snapshotStream(): AsyncGenerator<Uint8Array> {
        const data = this.snapshot();
        for (let offset = 0; offset < data.length; offset += 700) {
          yield data.subarray(offset, offset + 700);
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
    }
    const network = new LoopbackNetwork();
    // Far less than the state: sent in one go, the copy could never pass.
    network.linkBytesMax = 16 * 1024;
    const { hosts, machines } = startHosts(network, {
      machine: () => new DurableKv(),
      snapshotEntries: 20,
      snapshotTrailingEntries: 2,
      snapshotChunkBytes: 512,
      snapshotStreamQueuedBytesMax: 4 * 1024,
    });
    try {
      await until(() => hosts.some((h) => h.isLeader), "a leader");
      const leader = hosts.find((h) => h.isLeader)!;
      const lagging = hosts.find((h) => !h.isLeader)!;
      network.down.add(lagging.raft.id);
      const value = "v".repeat(1000);
      for (let i = 0; i < 100; i++) {
        await leader.propose(encodeKvCommand({ op: "put", key: `k${i}`, value: `${value}${i}` }));
      }
      assert.ok(leader.raft.log.firstIndex() > lagging.appliedIndex + 1, "compacted past the lagging node");
      network.down.delete(lagging.raft.id);
      await until(() => lagging.appliedIndex >= leader.appliedIndex, "the lagging node to catch up", 20_000);
      const lagMachine = machines.get(lagging.raft.id)!;
      for (let i = 0; i < 100; i++) assert.equal(lagMachine.get(`k${i}`), `${value}${i}`);
      assert.ok(lagging.stats.restores >= 1, "it caught up from a copy");
      assert.ok(Math.max(...network.sizes) < 2048, "no message carried more than a piece");
    } finally {
      for (const host of hosts) await host.stop();
    }
  });
});
