import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { RpcClient } from "../../src/client/rpc-client.js";
import type { ServiceStatus } from "../../src/services/index.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const TICK_MS = 50;
const ELECTION_TICKS = 10;
const ELECTION_TIMEOUT_MS = TICK_MS * ELECTION_TICKS;

/** Services on real node processes: who runs them, by their own timestamps, as leadership moves. */
describe("services across leader changes (processes)", () => {
  let cluster: ProcessCluster;

  before(async () => {
    cluster = await ProcessCluster.start({
      kind: "metaraft",
      nodes: 3,
      tickMs: TICK_MS,
      electionTicks: ELECTION_TICKS,
      // The lifecycle service notes each tick: its runs' timestamps are that fine.
      extraArgs: ["--lifecycle-tick-ms=10"],
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  /** Each live node's own view of its services (no leader redirection). */
  async function views(): Promise<Map<number, ServiceStatus[]>> {
    const out = new Map<number, ServiceStatus[]>();
    for (const m of cluster.members) {
      if (!m.process) continue;
      const client = new RpcClient({
        endpoints: [{ host: "127.0.0.1", port: m.clientPort }],
        clusterId: cluster.clusterId,
        timeoutMs: 2_000,
      });
      try {
        const reply = (await client.call("serviceList", { stale: true })) as { services: ServiceStatus[] };
        out.set(m.id, reply.services);
      } catch {
        // A frozen or dying node: not a view.
      } finally {
        client.close();
      }
    }
    return out;
  }
  const runningOn = async (): Promise<number[]> =>
    [...(await views())]
      .filter(([, s]) => s.some((x) => x.name === "lifecycle" && x.state === "running"))
      .map(([id]) => id);

  it("exactly one node runs each service, the leader; after it is killed, exactly the new one", async () => {
    const leader = await cluster.leader();
    await waitFor(
      "the leader runs the lifecycle service",
      async () => (await runningOn()).join() === String(leader),
    );
    await cluster.kill(leader);
    const next = await cluster.leader(20_000);
    await waitFor("the new leader alone runs it", async () => (await runningOn()).join() === String(next));
    await cluster.startNode(leader);
    await waitFor(
      "the restarted node does not run it",
      async () => (await runningOn()).join() === String(next),
    );
  });

  it("a leader frozen past an election stops its services within an election timeout of waking, and its successor started only after it froze", async (t) => {
    const frozen = await cluster.leader();
    const pid = cluster.pid(frozen)!;
    await waitFor("the leader runs it", async () => (await runningOn()).includes(frozen));
    const frozeAt = Date.now();
    process.kill(pid, "SIGSTOP");
    let successor = 0;
    try {
      await waitFor(
        "another node runs it",
        async () => {
          const on = (await runningOn()).filter((id) => id !== frozen);
          successor = on[0] ?? 0;
          return on.length === 1;
        },
        20_000,
      );
    } finally {
      process.kill(pid, "SIGCONT");
    }
    const wokeAt = Date.now();
    await waitFor("the woken node stopped it", async () => {
      const mine = (await views()).get(frozen)?.find((s) => s.name === "lifecycle");
      return mine?.state === "stopped";
    });
    const all = await views();
    const frozenRun = all
      .get(frozen)!
      .find((s) => s.name === "lifecycle")!
      .runs.at(-1)!;
    const successorRun = all
      .get(successor)!
      .find((s) => s.name === "lifecycle")!
      .runs.at(-1)!;
    t.diagnostic(
      `frozen node stopped ${frozenRun.stoppedAt! - wokeAt} ms after it woke; successor started ${successorRun.startedAt - frozeAt} ms after the freeze`,
    );
    assert.ok(frozenRun.stoppedAt !== undefined);
    assert.ok(
      frozenRun.stoppedAt! - wokeAt <= ELECTION_TIMEOUT_MS,
      `the woken leader ran its service ${frozenRun.stoppedAt! - wokeAt} ms beside its successor`,
    );
    assert.ok(successorRun.startedAt >= frozeAt, "the successor started only once the old leader was gone");
    assert.ok(successorRun.stoppedAt === undefined, "the successor still runs it");
    assert.deepEqual(await runningOn(), [successor]);
  });
});
