import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MetaraftClient } from "../../src/client/client.js";
import { MetaraftError } from "../../src/errors.js";
import { ProcessCluster } from "../helpers/cluster.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A small seeded generator, so that a failing kill schedule can be replayed. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0;
    return state / 2 ** 32;
  };
}

const SECONDS = 20;

describe("metaraft node processes under repeated kill -9", () => {
  for (const mode of ["leader-execution", "replicated-request"] as const) {
    it(`${mode}: lose no acknowledged key while random nodes die and come back, snapshotting all along`, async () => {
      const seed = 20261122 + (mode === "leader-execution" ? 0 : 1);
      const random = seeded(seed);
      const cluster = await ProcessCluster.start({
        nodes: 3,
        kind: "metaraft",
        executionMode: mode,
        snapshotEntries: 50,
        snapshotTrailingEntries: 10,
      });
      const client = new MetaraftClient({
        endpoints: cluster.endpoints,
        clusterId: cluster.clusterId,
        timeoutMs: 30_000,
      });
      try {
        await client.createVolume("chaos");
        await client.createBucket("chaos", "keys");
        const acknowledged = new Map<string, number>();
        let writing = true;
        let next = 0;
        const writer = async () => {
          while (writing) {
            const key = `k${next++}`;
            try {
              const { openKeyId } = await client.openKey("chaos", "keys", key, 1);
              const committed = (await client.commitKey("chaos", "keys", key, openKeyId, {
                size: 1,
                etag: key,
              })) as { objectId: number };
              acknowledged.set(key, committed.objectId);
            } catch (error) {
              if (!(error instanceof MetaraftError)) throw error;
              await sleep(20);
            }
          }
        };
        const writers = Array.from({ length: 8 }, writer);
        const end = Date.now() + SECONDS * 1000;
        let kills = 0;
        while (Date.now() < end) {
          await sleep(800 + random() * 800);
          const victim = 1 + Math.floor(random() * 3);
          await cluster.kill(victim);
          kills++;
          await sleep(400 + random() * 800);
          await cluster.startNode(victim);
        }
        writing = false;
        await Promise.all(writers);
        assert.ok(kills >= 5, `${kills} kills`);
        assert.ok(acknowledged.size > 200, `${acknowledged.size} keys acknowledged (seed ${seed})`);

        // Every node catches up and holds every acknowledged key, as acknowledged.
        const leader = await cluster.leader(20_000);
        const target = ((await cluster.status(leader)) as { applied: number }).applied;
        for (const member of cluster.members) {
          const { applied } = (await cluster.statusWhenApplied(member.id, target)) as { applied: number };
          assert.ok(applied >= target, `node ${member.id} applied ${applied} of ${target} (seed ${seed})`);
          assert.doesNotMatch(member.stderr, /MR_ERR_(LOG_CORRUPT|INTERNAL)/, `node ${member.id} failed`);
          assert.deepEqual(
            await cluster.keysNotHeld(member.id, "chaos", "keys", acknowledged),
            [],
            `node ${member.id} (seed ${seed})`,
          );
        }
      } finally {
        client.close();
        await cluster.stop();
      }
    });
  }
});
