import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Leadership } from "../../src/host/index.js";

/** Records every notification as a line, in order. */
function recorder() {
  const seen: string[] = [];
  return {
    seen,
    listener: {
      leaderReady: (term: number) => seen.push(`ready ${term}`),
      notLeader: (term: number) => seen.push(`not-leader ${term}`),
      leaderChanged: (term: number, leader: number) => seen.push(`changed ${term} ${leader}`),
    },
  };
}

describe("leadership notifications", () => {
  it("a leader is ready only once its no-op is applied, and is told notLeader before the next leader", () => {
    const l = new Leadership(1);
    const r = recorder();
    l.subscribe(r.listener);
    l.observe(2, 0, 10); // an election under way: no leader to tell of
    l.observe(2, 1, 11); // this node leads term 2; its no-op is entry 11
    l.applied(10);
    assert.equal(l.ready, false);
    l.applied(11);
    l.applied(12); // told once
    l.observe(3, 2, 15); // node 2 leads term 3
    assert.deepEqual(r.seen, ["changed 2 1", "ready 2", "not-leader 2", "changed 3 2"]);
    assert.deepEqual(l.state, { term: 3, leader: 2, ready: false });
  });

  it("a leader that steps down before its no-op applies is never ready, and a later subscriber of a ready leader is told at once", () => {
    const l = new Leadership(1);
    const r = recorder();
    l.subscribe(r.listener);
    l.observe(4, 1, 20);
    l.observe(5, 0, 20); // stepped down; the no-op of term 4 never applied here
    l.applied(25);
    assert.deepEqual(r.seen, ["changed 4 1", "not-leader 4", "changed 5 0"]);
    l.observe(6, 1, 30);
    l.applied(30);
    const late = recorder();
    const unsubscribe = late.listener && l.subscribe(late.listener);
    assert.deepEqual(late.seen, ["changed 6 1", "ready 6"]);
    unsubscribe();
    l.observe(7, 3, 31);
    assert.deepEqual(late.seen, ["changed 6 1", "ready 6"], "unsubscribed");
    assert.deepEqual(r.seen.slice(-3), ["ready 6", "not-leader 6", "changed 7 3"]);
  });

  it("re-elected in a later term without a leader seen in between: notLeader for the old term, ready again only after the new no-op", () => {
    const l = new Leadership(1);
    const r = recorder();
    l.subscribe(r.listener);
    l.observe(2, 1, 5);
    l.applied(5);
    l.observe(4, 1, 9);
    l.applied(8);
    l.applied(9);
    assert.deepEqual(r.seen, ["changed 2 1", "ready 2", "not-leader 2", "changed 4 1", "ready 4"]);
  });
});
