import assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { NodeId } from "../../src/raft/index.js";
import { Harness } from "./harness.js";

/** Election timeouts of `id` until it leads (a refused pre-vote costs one). */
function electUntilLeader(h: Harness, id: NodeId): void {
  for (let round = 0; round < 5 && h.node(id).raft.role !== "leader"; round++) {
    for (const other of h.nodes.keys()) if (other !== id) h.tickElection(other); // leases run out
    h.tickElection(id);
    h.stabilize();
  }
}

/**
 * Found by the simulator (seed 45 of `npm run sim`, before the fix): the leader of voters {1, 2}
 * removes itself and takes one more write before the removal applies. Node 2 acknowledges the
 * removal but misses the commit that follows (it is down, or the message is lost); node 1
 * applies its removal and steps down. Node 2 still counts 1 as a voter and needs its vote, and
 * node 1, whose log is one entry longer, refused it: no leader, forever. Now the refusal
 * carries node 1's commit, so node 2 applies the removal and is elected alone.
 */
describe("a leader that removes itself", () => {
  it("tells the voter that missed the commit of the removal, in its vote refusal", () => {
    const h = new Harness({ seed: 7 });
    h.addNodes(2, [1, 2]);
    h.node(1).raft.campaign();
    h.stabilize();
    assert.equal(h.node(1).raft.role, "leader");

    assert.match(h.proposeConfChange(1, "removeNode", 1), /^proposed /);
    h.processReady(1);
    h.deliver(1); // the removal reaches node 2
    h.processReady(2);
    assert.match(h.propose(1, "late"), /^proposed /); // the write that leaves node 1 the longer log
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
    electUntilLeader(h, 2);
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
 * whose log is longer by that write, refused it its vote: no leader, forever.
 */
describe("a member that applied its removal", () => {
  it("tells the voter that lost the commit of the removal, in its vote refusal", () => {
    const h = new Harness({ seed: 11 });
    h.addNodes(2, [1, 2]);
    h.node(1).raft.campaign();
    h.stabilize();
    const leader = h.node(1);
    assert.equal(leader.raft.role, "leader");

    assert.match(h.proposeConfChange(1, "removeNode", 2), /^proposed /);
    h.processReady(1); // the removal is durable on node 1
    // A write whose appends go out (eagerly) before node 1 has written it.
    assert.match(h.propose(1, "late"), /^proposed /);
    leader.outbox.push(...leader.raft.takeEagerMessages());
    h.deliver(1);
    h.processReady(2);
    h.deliver(2); // node 2's acknowledgement commits the removal
    leader.outbox.push(...leader.raft.takeEagerMessages()); // the commit, before node 1 writes it
    h.deliver(1);
    h.processReady(2);
    assert.deepEqual(h.node(2).raft.confState().voters, [1], "node 2 applied its removal");
    assert.ok(h.node(2).raft.log.lastIndex() > leader.storage.lastIndex(), "node 2 holds the longer log");

    h.restart(1); // what node 1 had not written is lost: the write, and the commit of the removal
    assert.deepEqual(h.node(1).raft.confState().voters, [1, 2]);
    electUntilLeader(h, 1);
    assert.equal(h.node(1).raft.role, "leader");
    assert.deepEqual(h.node(1).raft.confState(), { voters: [1], learners: [] });
    assert.match(h.propose(1, "after"), /^proposed /);
  });
});
