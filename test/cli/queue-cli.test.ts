import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { readMeta } from "../../src/queues/index.js";
import type { MetaraftNode } from "../../src/server/node.js";
import { InProcessCluster } from "../helpers/nodes.js";
import { waitFor } from "../helpers/wait.js";

const cliPath = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));

interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `metaraft queue ...` as separate processes against real nodes. */
describe("metaraft queue", { timeout: 60_000 }, () => {
  let cluster: InProcessCluster;
  let node: MetaraftNode;
  let endpoints = "";
  let refuse = true;
  const processed: string[] = [];

  const verb = (...args: string[]): Promise<Run> => {
    const env = { ...process.env };
    delete env.METARAFT_ENDPOINTS;
    delete env.METARAFT_CLUSTER_ID;
    return new Promise((resolve) => {
      execFile(
        process.execPath,
        [cliPath, ...args, "--endpoints", endpoints, "--cluster-id", cluster.clusterId],
        { env, timeout: 20_000 },
        (error, stdout, stderr) =>
          resolve({ code: error ? (typeof error.code === "number" ? error.code : -1) : 0, stdout, stderr }),
      );
    });
  };
  const ok = (run: Run, what: string): string => {
    assert.equal(run.code, 0, `${what}: exit ${run.code}, stderr: ${run.stderr}`);
    return run.stdout;
  };

  before(async () => {
    cluster = await InProcessCluster.start({ nodes: 1 });
    node = cluster.nodes[0]!;
    const self = node.config.cluster[0]!;
    endpoints = `${self.host}:${self.clientPort}`;
    node.queues.forConsumer(
      "jobs",
      (events) => {
        const texts = events.map((e) => Buffer.from(e.data).toString());
        if (refuse && texts.some((t) => t.startsWith("bad"))) throw new Error("cannot do a bad job");
        processed.push(...texts);
      },
      { maxAttempts: 2, retryInitialMs: 5, retryMaxMs: 10, truncationMs: 20 },
    );
    await waitFor("the queue is registered", () => readMeta(node.store, "jobs") !== undefined);
  });
  after(async () => {
    await cluster?.stop();
  });

  it("adds events, lists the queue with its state and dead letters, and lists, retries and purges them", async () => {
    assert.equal(
      ok(await verb("queue", "add", "jobs", "good-1", "bad-1", "good-2"), "add"),
      "added 3 event(s) to jobs at offset 0; 44 bytes outstanding\n",
    );
    await waitFor("the bad one dead-lettered", () => readMeta(node.store, "jobs")?.deadLetters === 1);
    await waitFor("the rest processed", () => processed.length === 2);

    const table = ok(await verb("queue", "ls"), "ls");
    const [header, row] = table.split("\n");
    assert.match(
      header!,
      /^QUEUE\s+STATE\s+OUT BYTES\s+OUT EVENTS\s+APPENDED\s+PROCESSED\s+TRUNCATED\s+SEGMENTS\s+P50 MS\s+P99 MS\s+RETRIES\s+DEAD\s+LAST ERROR$/,
    );
    assert.match(row!, /^jobs\s+running\s/);
    assert.match(row!, /\s1\s+cannot do a bad job$/);
    const listed = JSON.parse(ok(await verb("queue", "ls", "--json"), "ls --json")) as {
      queues: Record<string, unknown>[];
    };
    const jobs = listed.queues.find((q) => q.name === "jobs")!;
    assert.equal(jobs.deadLetters, 1);
    assert.equal(jobs.appended, 44);
    assert.equal(jobs.processedEvents, 3);

    const dlq = ok(await verb("queue", "dlq", "ls", "jobs"), "dlq ls");
    assert.match(dlq, /^OFFSET\s+INDEX\s+ATTEMPTS\s+BYTES\s+DEAD-LETTERED\s+EVENT\s+ERROR\n/);
    assert.match(dlq, /\n15\s+1\s+2\s+14\s+\S+\s+"bad-1"\s+cannot do a bad job\n/);
    assert.match(dlq, /1 dead letter\(s\) in jobs\n$/);
    const dlqJson = JSON.parse(ok(await verb("queue", "dlq", "ls", "jobs", "-w", "json"), "dlq ls json")) as {
      deadLetters: { event: { text: string } }[];
    };
    assert.equal(dlqJson.deadLetters[0]!.event.text, "bad-1");

    refuse = false;
    assert.equal(
      ok(await verb("queue", "dlq", "retry", "jobs"), "retry"),
      "retried 1 dead letter(s) of jobs; 0 left\n",
    );
    await waitFor("the retried one processed", () => processed.includes("bad-1"));

    refuse = true;
    ok(await verb("queue", "add", "jobs", "bad-2"), "add bad-2");
    await waitFor("dead-lettered again", () => readMeta(node.store, "jobs")?.deadLetters === 1);
    assert.equal(
      ok(await verb("queue", "dlq", "purge", "jobs"), "purge"),
      "purged 1 dead letter(s) of jobs; 0 left\n",
    );
    assert.match(
      ok(await verb("queue", "dlq", "ls", "jobs"), "dlq ls empty"),
      /^0 dead letter\(s\) in jobs\n$/,
    );
  });

  it("fails in one line with the error's code", async () => {
    const unknown = await verb("queue", "dlq", "ls", "nope");
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /^error: MR_ERR_QUEUE_NOT_FOUND: no queue of that name \(queue nope\)\n$/);
    const badName = await verb("queue", "add", "a/b", "x");
    assert.equal(badName.code, 1);
    assert.match(badName.stderr, /MR_ERR_INVALID_NAME/);
  });
});
