import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Harness } from "./harness.js";

/**
 * Found by the simulator (seed 45 of `npm run sim`, before the fix): the leader of voters {1, 2}
 * removes itself and takes one more proposal before the removal applies. Node 2 acknowledges
 * the removal but misses the commit that follows (it is down, or the message is lost); node 1
 * applies its removal and steps down. Node 2 still counts 1 as a voter and needs its vote, and
 * node 1, whose log is one entry longer, refuses it: no leader, forever.
 */
describe("a leader that removes itself", () => {
  it("takes no new entries until its removal applies, so the voter that missed the commit is elected", () => {
    const h = new Harness({ seed: 7 });
    h.addNodes(2, [1, 2]);
    h.node(1).raft.campaign();
    h.stabilize();
    assert.equal(h.node(1).raft.role, "leader");

    assert.match(h.proposeConfChange(1, "removeNode", 1), /^proposed /);
    h.processReady(1);
    h.deliver(1); // the removal reaches node 2
    h.processReady(2);
    // The write that left node 1 with the longer log.
    assert.match(h.propose(1, "late"), /^error MR_ERR_PROPOSAL_DROPPED/);
    h.cut.add("1->2"); // node 2 hears nothing more from node 1: neither that write nor the commit
    h.processReady(1);
    h.deliver(1);
    h.deliver(2); // node 2's acknowledgement commits the removal
    h.processReady(1);
    h.deliver(1); // the commit, lost
    assert.deepEqual(h.node(1).raft.confState().voters, [2]);
    assert.notEqual(h.node(1).raft.role, "leader");
    assert.deepEqual(h.node(2).raft.confState().voters, [1, 2], "node 2 did not learn of the commit");

    h.cut.clear();
    h.tickElection(2);
    h.stabilize();
    assert.equal(h.node(2).raft.role, "leader");
    assert.deepEqual(h.node(2).raft.confState(), { voters: [2], learners: [] });
  });
});

/**
 * Found by the simulator (seed 656, once a slow disk was among its faults): the leader of
 * voters {1, 2} removes node 2 and takes one more write, which its appends carry to node 2 at
 * once, before its own slow write of it. Node 2 learns of the commit of its removal, applies it
 * and stops campaigning; node 1 crashes before its write and its commit are durable. Node 1
 * restarts not knowing the removal committed, so it still counts node 2 as a voter, and node 2,
 * whose log is longer by that write, refuses it its vote: no leader, forever.
 */
describe("a leader removing a member", () => {
  it("sends it no entry past its removal, so it never holds more than a remaining voter", () => {
    const h = new Harness({ seed: 11 });
    h.addNodes(2, [1, 2]);
    h.node(1).raft.campaign();
    h.stabilize();
    const leader = h.node(1);
    assert.equal(leader.raft.role, "leader");

    const removal = leader.raft.proposeConfChange({ kind: "removeNode", node: 2 }).index;
    h.processReady(1); // the removal is durable on node 1
    // A write whose appends would go out (eagerly) before node 1 has written it.
    assert.equal(h.propose(1, "late"), `proposed 1/${removal + 1}`);
    leader.outbox.push(...leader.raft.takeEagerMessages());
    for (const m of leader.outbox) {
      if (m.type === "app" && m.to === 2)
        assert.ok(
          m.entries.every((e) => e.index <= removal),
          "past the removal",
        );
    }
    h.deliver(1);
    h.processReady(2);
    h.deliver(2); // node 2's acknowledgement commits the removal
    leader.outbox.push(...leader.raft.takeEagerMessages()); // the commit, before node 1 writes it
    h.deliver(1);
    h.processReady(2);
    assert.deepEqual(h.node(2).raft.confState().voters, [1], "node 2 applied its removal");

    h.restart(1); // what node 1 had not written is lost: the commit of the removal
    assert.deepEqual(h.node(1).raft.confState().voters, [1, 2]);
    h.tickElection(2); // node 2's lease on leader 1 runs out (it does not campaign: it is removed)
    h.tickElection(1);
    h.stabilize();
    assert.equal(h.node(1).raft.role, "leader");
    assert.deepEqual(h.node(1).raft.confState(), { voters: [1], learners: [] });
    assert.match(h.propose(1, "after"), /^proposed /);
  });
});
