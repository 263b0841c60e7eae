import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Raft } from "../../src/raft/index.js";
import { Harness } from "./harness.js";

/**
 * Found by the simulator (seed 95 of `npm run sim`, before the fix): a follower has a Ready in
 * flight whose committed entries hold a conf change, and, while the host writes it, steps a
 * snapshot from past that change (a host may step messages while a Ready is written: see
 * takeEagerMessages). The core took the snapshot's membership at once, and the host's apply of
 * the older change then landed on top of it: the follower counted the promoted voter 4 as a
 * learner again, for good.
 */
describe("a snapshot stepped while a Ready with a conf change is being applied", () => {
  it("replaces the membership only after that change is applied, and then with the snapshot's", () => {
    const h = new Harness({ seed: 3 });
    h.addNodes(3, [1, 2, 3]);
    h.addNodes(1, [1, 2, 3]); // node 4, to join
    h.node(1).raft.campaign();
    h.stabilize();

    // One round at a time, so that node 3's Ready applying addLearner 4 is caught in flight.
    assert.match(h.proposeConfChange(1, "addLearner", 4), /^proposed /);
    h.processReady(1);
    h.deliver(1); // the entry, to 2 and 3
    h.processReady(2);
    h.processReady(3);
    h.deliver(2);
    h.deliver(3); // their acknowledgements commit it
    h.processReady(1);
    h.deliver(1); // the commit, to 2 and 3
    const follower = h.node(3);
    const inFlight = follower.raft.ready();
    const stale = inFlight.committedEntries.find((e) => e.type === "confChange");
    assert.ok(stale, "the Ready in flight applies addLearner 4");

    // Meanwhile, out of node 3's reach, 4 catches up and is promoted, and the leader compacts
    // past all node 3 holds.
    h.cut.add("1->3");
    h.stabilize();
    assert.match(h.proposeConfChange(1, "addVoter", 4), /^proposed /);
    h.stabilize();
    const leader = h.node(1);
    assert.deepEqual(leader.raft.confState(), { voters: [1, 2, 3, 4], learners: [] });
    const index = leader.raft.log.applied;
    leader.storage.createSnapshot(index, leader.raft.confState(), new TextEncoder().encode("[]"));
    leader.storage.compact(index + 1);
    h.cut.clear();
    leader.raft.reportUnreachable(3); // probe node 3 again from what it acknowledged: compacted
    h.propose(1, "x");
    h.processReady(1);
    assert.ok(
      leader.outbox.some((m) => m.to === 3 && m.type === "snap"),
      "the leader sends node 3 its snapshot",
    );
    h.deliver(1); // node 3 steps the snapshot while its Ready is still in flight

    // The host finishes the Ready in flight: write, apply (the stale change included), advance.
    follower.storage.save({ hardState: inFlight.hardState, entries: inFlight.entries, snapshot: null });
    follower.raft.applyConfChange(Raft.decodeConfChange(stale));
    follower.raft.advance();
    assert.deepEqual(follower.raft.confState(), { voters: [1, 2, 3, 4], learners: [] });
    h.stabilize(); // the snapshot's Ready
    assert.deepEqual(follower.raft.confState(), { voters: [1, 2, 3, 4], learners: [] });
    assert.equal(follower.storage.snapshot().meta.index, index, "node 3 restored the snapshot");
  });
});
