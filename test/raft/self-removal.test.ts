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
