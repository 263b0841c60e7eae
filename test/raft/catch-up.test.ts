import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { Message } from "../../src/raft/index.js";
import { Harness } from "./harness.js";

const MESSAGE_BYTES_MAX = 8 * 1024;
const INFLIGHT_BYTES_MAX = 32 * 1024;
const ENTRY_BYTES = 1024;

const entryBytes = (m: Message): number =>
  m.type === "app" ? m.entries.reduce((sum, e) => sum + e.data.length, 0) : 0;

/**
 * A follower cut off while the leader appends, then healed while the leader keeps ticking (the
 * heartbeats whose answers used to trigger a fresh full append each): what it is sent, against
 * what it missed, and what any one round hands to the host.
 */
function catchUp(seed: number, ticksPerRound: number): { missed: number; sent: number; roundMax: number } {
  const h = new Harness({
    seed,
    raft: { messageBytesMax: MESSAGE_BYTES_MAX, inflightBytesMax: INFLIGHT_BYTES_MAX },
  });
  h.addNodes(3, [1, 2, 3]);
  h.node(1).raft.campaign();
  h.stabilize();
  assert.equal(h.node(1).raft.role, "leader");
  for (const link of ["1->3", "3->1", "2->3", "3->2"]) h.cut.add(link);
  const payload = "x".repeat(ENTRY_BYTES);
  for (let i = 0; i < 400; i++) {
    h.propose(1, payload);
    if (i % 20 === 0) h.node(1).raft.tick();
    h.stabilize();
  }
  const leader = h.node(1).raft;
  const follower = h.node(3).raft;
  const missed = (leader.log.lastIndex() - follower.log.lastIndex()) * ENTRY_BYTES;
  h.cut.clear();
  let sent = 0;
  let roundMax = 0;
  for (let round = 0; round < 10_000; round++) {
    if (
      follower.log.lastIndex() === leader.log.lastIndex() &&
      follower.log.committed === leader.log.committed
    )
      break;
    for (let t = 0; t < ticksPerRound; t++) leader.tick();
    for (const id of h.nodes.keys()) h.processReady(id);
    const toFollower = h.node(1).outbox.filter((m) => m.to === 3);
    const bytes = toFollower.reduce((sum, m) => sum + entryBytes(m), 0);
    sent += bytes;
    roundMax = Math.max(roundMax, bytes);
    h.deliver();
  }
  assert.equal(follower.log.lastIndex(), leader.log.lastIndex(), "the follower caught up");
  return { missed, sent, roundMax };
}

describe("catching up a lagging follower", () => {
  // Heartbeats drive the catch-up (without a tick, a healed link carries nothing new).
  // (Ten ticks without a delivery would be an election timeout unheard: CheckQuorum steps down.)
  for (const ticks of [1, 3, 5]) {
    it(`sends at most 2x what it missed, and at most the in-flight byte bound per round (${ticks} heartbeat ticks per round)`, () => {
      for (let seed = 1; seed <= 5; seed++) {
        const { missed, sent, roundMax } = catchUp(seed, ticks);
        assert.ok(missed >= 300 * ENTRY_BYTES, `missed ${missed}`);
        assert.ok(sent <= 2 * missed + MESSAGE_BYTES_MAX, `seed ${seed}: sent ${sent} for ${missed} missed`);
        assert.ok(
          // As in etcd, a heartbeat answer to a full window frees one slot: one more message each.
          roundMax <= INFLIGHT_BYTES_MAX + (ticks + 1) * MESSAGE_BYTES_MAX,
          `seed ${seed}: ${roundMax} bytes in one round > ${INFLIGHT_BYTES_MAX} in flight + one message per heartbeat`,
        );
      }
    });
  }
});
