import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Harness } from "./harness.js";

/**
 * Found by the simulator (seed 3542 of 20,000, once members are removed down to one voter):
 * the only voter elects itself without a message, and its eager appends carried entries of the
 * new term to a learner before that term (and its vote) were durable. It crashed before its
 * write, restarted in the old term, elected itself in the same term again and wrote other
 * entries at the same indices: the learner kept the first ones (same index, same term) and
 * applied an entry the leader never committed.
 */
describe("a leader whose term is not durable yet", () => {
  it("sends its appends only after the term is written, so a crash cannot give two logs one term", () => {
    const h = new Harness({ seed: 5 });
    h.addNodes(2, [1], [2]);
    const leader = h.node(1);
    leader.raft.campaign();
    assert.equal(leader.raft.role, "leader");
    assert.match(h.propose(1, "a"), /^proposed 1\/2/);
    // What a host sends before its write of the Ready finishes.
    leader.outbox.push(...leader.raft.takeEagerMessages());
    h.deliver(1);
    h.processReady(2);

    h.restart(1); // before the write: the term, the vote and the entries are lost
    h.node(1).raft.campaign();
    assert.equal(h.node(1).raft.role, "leader");
    assert.equal(h.node(1).raft.term, 1, "the same term again");
    assert.match(h.propose(1, "b"), /^proposed 1\/2/);
    h.stabilize();
    assert.deepEqual(h.log(2), h.log(1));
    assert.deepEqual(h.node(2).machine, ["b"]);
  });
});
