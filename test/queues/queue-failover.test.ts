import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { MetaraftClient } from "../../src/client/client.js";
import { ProcessCluster } from "../helpers/cluster.js";
import { waitFor } from "../helpers/wait.js";

const consumerModule = fileURLToPath(new URL("../fixtures/queue-consumer.js", import.meta.url));
/** Every event is 100 bytes, 109 in the queue (its frame). */
const EVENT_BYTES = 100;
const FRAME_BYTES = EVENT_BYTES + 9;
const TRUNCATION_EVENTS = 50;
const BATCH_EVENTS_MAX = 20;

interface Line {
  readonly offset: number;
  readonly text: string;
  readonly pid: number;
}

/**
 * A queue consumer declared in the config file (`queues:`), in real node processes, while the
 * leader is `kill -9`ed twice under a continuous load of adds.
 */
describe("a durable queue across leader kills", () => {
  let cluster: ProcessCluster;
  let client: MetaraftClient;
  const dir = mkdtempSync(join(tmpdir(), "metaraft-queue-failover-"));
  const file = join(dir, "processed.log");

  before(async () => {
    const config = join(dir, "node.yaml");
    writeFileSync(
      config,
      [
        "queue:",
        "  segmentBytes: 16384",
        "queues:",
        "  - name: jobs",
        `    module: ${consumerModule}`,
        "    options:",
        `      file: ${file}`,
        `    maxItemsAtOnce: ${BATCH_EVENTS_MAX}`,
        `    truncationBytes: ${TRUNCATION_EVENTS * FRAME_BYTES}`,
        // Truncations by bytes only, so the bound on redelivery below is exact.
        "    truncationMs: 3600000",
        "",
      ].join("\n"),
    );
    cluster = await ProcessCluster.start({ kind: "metaraft", nodes: 3, extraArgs: [`--config=${config}`] });
    client = new MetaraftClient({
      endpoints: cluster.endpoints,
      clusterId: cluster.clusterId,
      timeoutMs: 20_000,
    });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  const lines = (): { parsed: Line[]; malformed: string[] } => {
    const parsed: Line[] = [];
    const malformed: string[] = [];
    if (!existsSync(file)) return { parsed, malformed };
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (line === "") continue;
      const m = /^(\d+) (w\d+-\d+\.+) (\d+)$/.exec(line);
      if (m && m[2]!.length === EVENT_BYTES)
        parsed.push({ offset: Number(m[1]), text: m[2]!, pid: Number(m[3]) });
      else malformed.push(line);
    }
    return { parsed, malformed };
  };

  it("processes every acknowledged event at least once, each run in order, redelivering at most the truncation interval", async (t) => {
    const firstTerm = (await cluster.status(await cluster.leader())).term as number;
    let adding = true;
    const acknowledged = new Set<string>();
    const writer = async (w: number): Promise<void> => {
      for (let i = 0; adding; i++) {
        const text = `w${w}-${i}`.padEnd(EVENT_BYTES, ".");
        // An add in flight when the leader dies may fail after its retries (or commit unseen):
        // only acknowledged ones must be processed; the others may be.
        await client.queueAdd("jobs", text).then(
          () => acknowledged.add(text),
          () => new Promise((r) => setTimeout(r, 20)),
        );
      }
    };
    const writers = [0, 1, 2].map(writer);
    for (let round = 0; round < 2; round++) {
      const before = lines().parsed.length;
      await waitFor("the consumer processes under load", () => lines().parsed.length > before + 300, 30_000);
      const leader = await cluster.leader();
      await cluster.kill(leader);
      const next = await cluster.leader(20_000);
      assert.notEqual(next, leader);
      const atKill = lines().parsed.length;
      await waitFor(
        "the new leader's consumer processes",
        () => lines().parsed.length > atKill + 300,
        30_000,
      );
      await cluster.startNode(leader);
    }
    adding = false;
    await Promise.all(writers);
    assert.ok(acknowledged.size > 900, `acknowledged ${acknowledged.size}`);
    const processed = (): Set<string> => new Set(lines().parsed.map((l) => l.text));
    await waitFor(
      "every acknowledged event processed",
      () => {
        const seen = processed();
        return [...acknowledged].every((text) => seen.has(text));
      },
      30_000,
    );
    const lastTerm = (await cluster.status(await cluster.leader())).term as number;
    const { parsed, malformed } = lines();
    // A process killed in the middle of its write leaves at most one broken line.
    assert.ok(malformed.length <= 2, `malformed lines: ${malformed.join(" | ")}`);
    // One offset, one event, whoever processed it.
    const byOffset = new Map<number, string>();
    for (const l of parsed) {
      const known = byOffset.get(l.offset);
      assert.ok(known === undefined || known === l.text, `offset ${l.offset}: ${known} and ${l.text}`);
      byOffset.set(l.offset, l.text);
    }
    // A run ends where the offsets go back: a new leader resuming from the replicated truncation.
    const runs: Line[][] = [[]];
    for (const l of parsed) {
      const run = runs.at(-1)!;
      if (run.length > 0 && l.offset <= run.at(-1)!.offset) runs.push([l]);
      else run.push(l);
    }
    assert.ok(runs.length >= 2, "the kills restarted processing at least once");
    assert.ok(
      runs.length <= 1 + (lastTerm - firstTerm),
      `${runs.length} runs for ${lastTerm - firstTerm} new terms: processing went back without a new leader`,
    );
    // Each run goes back at most what was processed since the last truncation (plus one batch),
    // twice over: the truncation in flight when the leader died may be lost with it.
    const boundBytes = 2 * (TRUNCATION_EVENTS + BATCH_EVENTS_MAX) * FRAME_BYTES;
    for (let i = 1; i < runs.length; i++) {
      const back = runs[i - 1]!.at(-1)!.offset - runs[i]![0]!.offset;
      assert.ok(back < boundBytes, `run ${i} went back ${back} bytes (bound ${boundBytes})`);
    }
    const duplicates = parsed.length - byOffset.size;
    assert.ok(
      duplicates <= (runs.length - 1) * 2 * (TRUNCATION_EVENTS + BATCH_EVENTS_MAX),
      `${duplicates} duplicates`,
    );
    t.diagnostic(
      `${acknowledged.size} acknowledged, ${byOffset.size} events processed, ${parsed.length} lines, ${runs.length} runs, ${duplicates} duplicates, terms ${firstTerm}..${lastTerm}`,
    );
  });
});
