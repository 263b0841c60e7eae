import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Election, type Leader, Mutex, readContenders } from "../../src/client/lock.js";
import { MetaraftError } from "../../src/errors.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const code = (error: unknown) => (error instanceof MetaraftError ? error.code : String(error));

async function rejectsWith(promise: Promise<unknown>, expected: string): Promise<void> {
  await assert.rejects(promise, (error) => {
    assert.equal(code(error), expected, String(error));
    return true;
  });
}

/** Whether `promise` is still pending once the cluster has had `turns` round trips to settle it. */
async function pending(
  promise: Promise<unknown>,
  probe: () => Promise<unknown>,
  turns = 5,
): Promise<boolean> {
  let settled = false;
  promise.then(
    () => {
      settled = true;
    },
    () => {
      settled = true;
    },
  );
  for (let i = 0; i < turns; i++) await probe();
  return !settled;
}

describe("locks and elections over the keyspace", () => {
  it("a mutex admits one holder at a time, in the order its contenders came, with growing tokens", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const workers = 4;
      const rounds = 4;
      let holders = 0;
      let maxHolders = 0;
      const tokens: number[] = [];
      await Promise.all(
        Array.from({ length: workers }, async (_, w) => {
          const client = cluster.client();
          const session = await client.createSession({ ttlMs: 5_000 });
          const mutex = new Mutex(client, session, "locks/counter/");
          for (let r = 0; r < rounds; r++) {
            const token = await mutex.lock();
            holders++;
            maxHolders = Math.max(maxHolders, holders);
            tokens.push(token);
            // A read-modify-write that loses updates unless one worker at a time runs it.
            const got = (await client.kvGet("counter")).kv as { value: string } | null;
            await client.kvGet(`locks/round/${w}`);
            await client.kvPut("counter", String(Number(got?.value ?? "0") + 1));
            holders--;
            await mutex.unlock();
          }
        }),
      );
      assert.equal(maxHolders, 1);
      const admin = cluster.client();
      assert.equal(((await admin.kvGet("counter")).kv as { value: string }).value, String(workers * rounds));
      // Each holder's token is larger than the one before it: the fencing order.
      assert.deepEqual(
        tokens,
        [...tokens].sort((a, b) => a - b),
      );
      assert.equal(new Set(tokens).size, tokens.length);
      assert.deepEqual((await admin.kvRange("locks/counter/")).items, []);
    } finally {
      await cluster.stop();
    }
  });

  it("waiters take the lock in the order they asked, and none before the holder lets go", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const admin = cluster.client();
      const mutexes = await Promise.all(
        Array.from({ length: 4 }, async () => {
          const client = cluster.client();
          return new Mutex(client, await client.createSession({ ttlMs: 5_000 }), "locks/fifo/");
        }),
      );
      const order: number[] = [];
      const first = await mutexes[0]!.lock();
      order.push(0);
      // Each asks once the one before it is in line, so their keys' create order is 1, 2, 3.
      const waits: Promise<void>[] = [];
      for (let i = 1; i < 4; i++) {
        waits.push(mutexes[i]!.lock().then(() => void order.push(i)));
        await waitFor(`waiter ${i} in line`, async () => (await admin.kvGet(mutexes[i]!.key)).kv !== null);
      }
      assert.equal(await pending(Promise.race(waits), () => admin.kvGet("x")), true);
      // Past its bound of contenders a read refuses, rather than page on without end.
      assert.equal((await readContenders(admin, "locks/fifo/", 4)).contenders.length, 4);
      await rejectsWith(readContenders(admin, "locks/fifo/", 3), "MR_ERR_LOCK_CONTENDED");
      await mutexes[0]!.unlock();
      for (let i = 1; i < 4; i++) {
        await waitFor(`waiter ${i} to hold the lock`, () => order.length === i + 1);
        assert.equal(order[i], i);
        assert.ok(mutexes[i]!.token! > first);
        await mutexes[i]!.unlock();
      }
      await Promise.all(waits);
    } finally {
      await cluster.stop();
    }
  });

  it("a holder whose session expires loses the lock to the next in line, and its fenced write is refused", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, session: { expiryCheckMs: 100 } });
    try {
      // The holder's heartbeats go through one client, its calls through another: closing the
      // first is a process that froze, its session left to expire, while its calls still work.
      const heartbeats = cluster.client();
      const calls = cluster.client();
      const doomed = new Mutex(calls, await heartbeats.createSession({ ttlMs: 2_000 }), "locks/job/");
      const held = await doomed.lock();
      const next = cluster.client();
      const successor = new Mutex(next, await next.createSession({ ttlMs: 5_000 }), "locks/job/");
      const waiting = successor.lock();
      assert.equal(await pending(waiting, () => next.kvGet("x")), true);

      const frozenAt = Date.now();
      heartbeats.close();
      const token = await waiting;
      const waited = Date.now() - frozenAt;
      assert.ok(waited <= 2_000 + 1_500, `the successor waited ${waited} ms`);
      assert.ok(token > held);

      // The old holder wakes and writes under its lock: the guard refuses it, and nothing lands.
      await rejectsWith(
        doomed.guard([{ op: "put", key: "job/output", value: "stale" }]),
        "MR_ERR_LOCK_NOT_HELD",
      );
      assert.equal((await next.kvGet("job/output")).kv, null);
      await successor.guard([{ op: "put", key: "job/output", value: "fresh" }]);
      assert.equal(((await next.kvGet("job/output")).kv as { value: string }).value, "fresh");
    } finally {
      await cluster.stop();
    }
  });

  it("a change of the cluster's leader takes the lock from nobody: the holder keeps it, the waiter waits", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3, session: { expiryCheckMs: 100 } });
    try {
      const [holder, waiter] = await Promise.all(
        [0, 1].map(async () => {
          const client = cluster.client();
          return new Mutex(client, await client.createSession({ ttlMs: 2_000 }), "locks/failover/");
        }),
      );
      const token = await holder!.lock();
      const waiting = waiter!.lock();
      const admin = cluster.client();
      await waitFor(
        "the waiter in line",
        async () => ((await admin.kvRange("locks/failover/")).items as unknown[]).length === 2,
      );
      const old = await cluster.leader();
      await cluster.stopNode(old.config.id);
      await waitFor("a new leader", async () => (await cluster.leader()).config.id !== old.config.id);
      // Two TTLs under the new leader: long enough for any wrongful expiry to show.
      let took = false;
      waiting.then(
        () => {
          took = true;
        },
        () => {},
      );
      const until = Date.now() + 4_000;
      await waitFor("two TTLs", () => took || Date.now() >= until);
      assert.equal(await pending(waiting, () => admin.kvGet("x")), true, "the waiter took a held lock");
      await holder!.guard([{ op: "put", key: "failover/output", value: "still mine" }]);
      assert.equal(holder!.token, token);
      await holder!.unlock();
      assert.ok((await waiting) > token);
    } finally {
      await cluster.stop();
    }
  });

  it("a waiter that gives up leaves the line without holding up the ones behind it", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const admin = cluster.client();
      const [holder, quitter, patient] = await Promise.all(
        [0, 1, 2].map(async () => {
          const client = cluster.client();
          return new Mutex(client, await client.createSession({ ttlMs: 5_000 }), "locks/quit/");
        }),
      );
      await holder!.lock();
      const abort = new AbortController();
      const quitting = quitter!.lock({ signal: abort.signal });
      await waitFor("the quitter in line", async () => (await admin.kvGet(quitter!.key)).kv !== null);
      const waiting = patient!.lock();
      await waitFor("the patient one in line", async () => (await admin.kvGet(patient!.key)).kv !== null);
      abort.abort();
      await rejectsWith(quitting, "MR_ERR_CANCELLED");
      assert.equal((await admin.kvGet(quitter!.key)).kv, null);
      assert.equal(await pending(waiting, () => admin.kvGet("x")), true, "the holder still holds it");
      await holder!.unlock();
      await waiting;
      // A lock whose session is gone fails at once.
      const client = cluster.client();
      const closed = await client.createSession({ ttlMs: 5_000 });
      await closed.close();
      await rejectsWith(new Mutex(client, closed, "locks/quit/").lock(), "MR_ERR_SESSION_EXPIRED");
    } finally {
      await cluster.stop();
    }
  });

  it("an election: the first candidate leads, observers see each leader and proclamation, a resigned leader cannot proclaim", async () => {
    const cluster = await InProcessCluster.start({ nodes: 3 });
    try {
      const observer = cluster.client();
      const abort = new AbortController();
      const seen: (Leader | undefined)[] = [];
      const observing = (async () => {
        for await (const leader of Election.observe(observer, "elect/db/", { signal: abort.signal })) {
          seen.push(leader);
        }
      })();
      await waitFor("the observer's first view", () => seen.length === 1);
      assert.equal(seen[0], undefined);

      const [a, b] = await Promise.all(
        [0, 1].map(async () => {
          const client = cluster.client();
          return new Election(client, await client.createSession({ ttlMs: 5_000 }), "elect/db/");
        }),
      );
      // An observer sees states, not every change (as a watch of a key does): each step waits
      // for it, so that it sees them all.
      const sees = (value: string) =>
        waitFor(`the observer to see ${value}`, () => seen.at(-1)?.value === value);
      await a!.campaign("node-a:5432");
      await sees("node-a:5432");
      const bLeads = b!.campaign("node-b:5432");
      await waitFor("b in line", async () => (await observer.kvGet(b!.key)).kv !== null);
      assert.equal(((await Election.leader(observer, "elect/db/")) as Leader).value, "node-a:5432");
      await a!.proclaim("node-a:6432");
      await sees("node-a:6432");
      await a!.resign();
      await bLeads;
      await rejectsWith(a!.proclaim("node-a:7432"), "MR_ERR_LOCK_NOT_HELD");
      await sees("node-b:5432");
      // b's joining the line changed no leader: the observer saw only the changes.
      assert.deepEqual(
        seen.map((l) => l?.value),
        [undefined, "node-a:5432", "node-a:6432", "node-b:5432"],
      );
      abort.abort();
      await observing;
    } finally {
      await cluster.stop();
    }
  });
});
