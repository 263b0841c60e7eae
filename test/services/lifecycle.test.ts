import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import type { LedgerEvent } from "../../src/events/index.js";
import type { LifecycleProgress, ServiceStatus } from "../../src/services/index.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const DAY_MS = 24 * 60 * 60 * 1000;

describe("the lifecycle service", () => {
  let cluster: InProcessCluster;
  /** The gatekeeper's clock: keys committed while it is set back are "old". */
  let skewMs = 0;

  before(async () => {
    cluster = await InProcessCluster.start({
      nodes: 3,
      clock: () => Date.now() - skewMs,
      lifecycle: { tickMs: 20, pageKeys: 7, passIntervalMs: 60_000 },
    });
  });
  after(async () => {
    await cluster.stop();
  });

  const services = async (): Promise<(ServiceStatus & { config: unknown })[]> =>
    (
      (await cluster.client().serviceList()) as unknown as {
        services: (ServiceStatus & { config: unknown })[];
      }
    ).services;
  const progress = async (): Promise<LifecycleProgress | null> =>
    (
      (await cluster.client().serviceGet("lifecycle")).service as {
        progress: LifecycleProgress | null;
      } | null
    )?.progress ?? null;

  it("runs on the leader only, and refuses a bad configuration naming the problem", async () => {
    await waitFor("the leader runs it", async () => (await services()).some((s) => s.state === "running"));
    const leader = await cluster.leader();
    const running = (await services()).find((s) => s.name === "lifecycle")!;
    assert.equal(running.node, leader.config.id);
    for (const node of cluster.nodes) {
      if (node && node !== leader) {
        assert.ok(
          node.services.manager.statuses().every((s) => s.state !== "running"),
          `node ${node.config.id}`,
        );
      }
    }
    await assert.rejects(
      cluster.client().serviceSet("lifecycle", { config: { buckets: { "no-slash": [] } } }),
      /MR_ERR_INVALID_ARGUMENT.*volume\/bucket/,
    );
    await assert.rejects(
      cluster.client().serviceSet("nosuch", { shouldRun: true }),
      /MR_ERR_SERVICE_NOT_FOUND/,
    );
  });

  it("expires exactly the keys its rules match, through the write path with LifecycleExpiration:Delete events", async () => {
    const client = cluster.client();
    await client.createVolume("lcv");
    await client.createBucket("lcv", "bkt");
    await client.createBucket("lcv", "other");
    skewMs = 10 * DAY_MS;
    for (let i = 0; i < 10; i++) await client.putKey("lcv", "bkt", `logs/old-${i}`, { size: i, etag: "e" });
    await client.putKey("lcv", "bkt", "data/old", { size: 1, etag: "e" });
    await client.putKey("lcv", "other", "logs/old", { size: 1, etag: "e" });
    skewMs = 0;
    await client.putKey("lcv", "bkt", "logs/new", { size: 1, etag: "e" });
    const before = (await client.status()).lastTxid as number;
    await client.serviceSet("lifecycle", {
      config: { buckets: { "lcv/bkt": [{ prefix: "logs/", expireAfterMs: 7 * DAY_MS }] } },
    });
    await waitFor("a pass over the bucket ended", async () => ((await progress())?.passes ?? 0) >= 1);
    // The scan enqueued them; the queue's consumer deletes them.
    const keysLeft = async (): Promise<string[]> =>
      ((await client.listKeys("lcv", "bkt")).items as { key: string }[]).map((k) => k.key);
    await waitFor("the queue's consumer deleted them", async () => (await keysLeft()).length === 2);
    assert.deepEqual(await keysLeft(), ["data/old", "logs/new"]);
    const queue = ((await client.queueStatus()).queues as { name: string; appendedEvents: number }[]).find(
      (q) => q.name === "lifecycle",
    );
    assert.equal(queue?.appendedEvents, 10, "the ten expired keys went through the lifecycle queue");
    assert.equal(
      ((await client.listKeys("lcv", "other")).items as unknown[]).length,
      1,
      "no rule for that bucket",
    );
    const events = (await client.readEvents({ afterTxid: before, limit: 1000 })).events as LedgerEvent[];
    assert.equal(events[0]!.type, "ServiceConfig:Set");
    assert.equal(events[0]!.key, "_service/lifecycle");
    const expired = events.filter((e) => e.type === "LifecycleExpiration:Delete");
    assert.deepEqual(
      expired.map((e) => e.key).sort(),
      Array.from({ length: 10 }, (_, i) => `logs/old-${i}`).sort(),
    );
    assert.ok(expired.every((e) => e.objectId !== undefined && e.volume === "lcv" && e.bucket === "bkt"));
    assert.equal((await progress())!.enqueued, 10);
  });

  it("spares a key overwritten after it was found expired (the handler checks the object id)", async () => {
    const client = cluster.client();
    skewMs = 10 * DAY_MS;
    await client.putKey("lcv", "other", "logs/x", { size: 1, etag: "e" });
    skewMs = 0;
    const found = (await client.lookupKey("lcv", "other", "logs/x")).key as { objectId: number };
    await client.putKey("lcv", "other", "logs/x", { size: 2, etag: "f" });
    const spared = await client.write("expireKey", {
      volume: "lcv",
      bucket: "other",
      key: "logs/x",
      objectId: found.objectId,
    });
    assert.equal(spared.expired, false);
    assert.equal(((await client.lookupKey("lcv", "other", "logs/x")).key as { size: number }).size, 2);
  });

  it("a new leader resumes the scan where it stood, and does not start it again", async () => {
    const client = cluster.client();
    await client.createBucket("lcv", "many");
    for (let i = 0; i < 140; i++)
      await client.putKey("lcv", "many", `k${String(i).padStart(3, "0")}`, { size: 1, etag: "e" });
    // Nothing in it expires: the scan walks every page and deletes nothing.
    await client.serviceSet("lifecycle", {
      config: { buckets: { "lcv/many": [{ prefix: "", expireAfterMs: 365 * DAY_MS }] } },
    });
    const passesBefore = (await progress())!.passes;
    const seen: { passes: number; startAfter: string | null; bucket: string | null }[] = [];
    let watching = true;
    const watcher = (async () => {
      while (watching) {
        const p = await progress().catch(() => null);
        if (p) seen.push({ passes: p.passes, startAfter: p.startAfter, bucket: p.bucket });
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    await waitFor("the scan is half way", () => {
      const last = seen.at(-1);
      return last?.bucket === "lcv/many" && (last.startAfter ?? "") >= "k060";
    });
    const leader = await cluster.leader();
    await cluster.stopNode(leader.config.id);
    await waitFor(
      "the next pass ended on the new leader",
      () => (seen.at(-1)?.passes ?? 0) > passesBefore,
      30_000,
    );
    watching = false;
    await watcher;
    // Within a pass, the position only moves forward: a scan started again would go back to k000.
    const inPass = seen.filter(
      (s) => s.passes === passesBefore && s.bucket === "lcv/many" && s.startAfter !== null,
    );
    for (let i = 1; i < inPass.length; i++) {
      assert.ok(
        inPass[i]!.startAfter! >= inPass[i - 1]!.startAfter!,
        `${inPass[i - 1]!.startAfter} then ${inPass[i]!.startAfter}`,
      );
    }
    const newLeader = await cluster.leader();
    assert.notEqual(newLeader.config.id, leader.config.id);
    assert.equal(newLeader.services.manager.statuses()[0]!.state, "running");
    await cluster.startNode(leader.config.id);
  });

  it("service stop and start take effect on the leader", async () => {
    const client = cluster.client();
    await client.serviceSet("lifecycle", { shouldRun: false });
    await waitFor("stopped", async () => (await services())[0]!.state === "stopped");
    await client.serviceSet("lifecycle", { shouldRun: true });
    await waitFor("running again", async () => (await services())[0]!.state === "running");
  });
});
