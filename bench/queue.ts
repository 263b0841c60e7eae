/**
 * `npm run bench:queue`: three `metaraft start` node processes on loopback, one durable queue
 * whose consumer (declared in the config file, `queues:`) does nothing, and a load generator
 * adding 200-byte events through Raft and creating keys (open-key + commit-key pairs) beside them.
 * Cases, interleaved round by round in the same cluster:
 * - `keys`: key creates alone, the reference;
 * - `keys+queue`: the same key load with queue adds beside it: the queue's cost to key creates;
 * - `queue`: queue adds alone.
 * Reports events per second in (adds acknowledged) and out (processed by the leader's tail),
 * processing latency p50/p99 (add to handler success, from the leader's histogram), key creates
 * per second with their latency, and CPU per process, into bench/results/queue.json.
 *
 *   npm run bench:queue [-- --seconds 6] [-- --key-inflight 128] [-- --queue-inflight 64]
 *                       [-- --connections 4] [-- --repeat 3] [-- --quick] [-- --filter <case id>]
 *
 * A `--quick` or `--filter` run writes bench/results/queue.partial.json, never queue.json.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import hdr from "hdr-histogram-js";
import { MetaraftClient } from "../src/client/client.js";
import { QUEUE_METRICS, quantile } from "../src/queues/index.js";
import { ProcessCluster } from "../test/helpers/cluster.js";
import { clockTicks, positiveInt, processCpuSeconds, progressBar, writeResults } from "./common.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "6" },
    "key-inflight": { type: "string", default: "128" },
    "queue-inflight": { type: "string", default: "64" },
    "event-bytes": { type: "string", default: "200" },
    connections: { type: "string", default: "4" },
    repeat: { type: "string" },
    quick: { type: "boolean", default: false },
    /** `npm run bench -- --filter x` passes it to every benchmark: here it selects cases by id. */
    filter: { type: "string" },
  },
});

const quick = values.quick === true;
const filter = values.filter;
const seconds = quick ? 2 : Number(values.seconds);
if (!(seconds > 0)) throw new Error(`--seconds must be positive: ${values.seconds}`);
const repeat = positiveInt("repeat", values.repeat ?? (quick ? "1" : "3"));
const keyInflight = positiveInt("key-inflight", values["key-inflight"]);
const queueInflight = positiveInt("queue-inflight", values["queue-inflight"]);
const eventBytes = positiveInt("event-bytes", values["event-bytes"]);
const connections = positiveInt("connections", values.connections);
const WARMUP_MS = 1000;
/** How long the queue may take to drain between cases before the bench gives up on a clean start. */
const DRAIN_TIMEOUT_MS = 60_000;
const CALL_TIMEOUT_MS = 30_000;
const QUEUE = "bench";
const consumerModule = fileURLToPath(new URL("./queue-consumer.js", import.meta.url));

interface CaseSpec {
  readonly id: "keys" | "keys+queue" | "queue";
  readonly keys: boolean;
  readonly queue: boolean;
}
const ALL_CASES: readonly CaseSpec[] = [
  { id: "keys", keys: true, queue: false },
  { id: "keys+queue", keys: true, queue: true },
  { id: "queue", keys: false, queue: true },
];
const cases = ALL_CASES.filter((c) => filter === undefined || c.id === filter || c.id.includes(filter));

type Buckets = Map<number, number>;

interface CaseResult {
  readonly id: CaseSpec["id"];
  readonly seconds: number;
  readonly key_creates_per_s: number | null;
  readonly key_create_latency_ms: { p50: number; p99: number } | null;
  readonly events_in_per_s: number | null;
  readonly events_out_per_s: number | null;
  /** From the leader's histogram, estimated within its buckets (each 1.5x the last). */
  readonly processing_latency_ms: { p50: number | null; p99: number | null } | null;
  readonly add_latency_ms: { p50: number; p99: number } | null;
  /** After the window: how long until the tail had processed every event added. */
  readonly drain_ms: number | null;
  readonly errors: number;
  readonly error_codes: Record<string, number>;
  readonly leader_changed: boolean;
  readonly cpu_pct: { leader: number | null; followers: (number | null)[]; loadgen: number };
  /** Every run's headline figure (creates/s, or events in/s for `queue`), in run order. */
  readonly runs?: number[];
}

const errorCode = (error: unknown) =>
  typeof (error as { code?: unknown })?.code === "string" ? (error as { code: string }).code : "unknown";
const pct = (cpu: number, wall: number) => Number(((cpu / wall) * 100).toFixed(1));
const round2 = (n: number) => Number(n.toFixed(2));

/** The leader's processing-latency buckets for the bench queue (cumulative counts by upper bound, seconds). */
function latencyBuckets(metrics: string): Buckets {
  const buckets: Buckets = new Map();
  const line = new RegExp(`^${QUEUE_METRICS.latency}_bucket\\{([^}]*)\\} (\\d+)$`, "gm");
  for (const m of metrics.matchAll(line)) {
    const labels = Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
    if (labels.queue !== QUEUE) continue;
    buckets.set(labels.le === "+Inf" ? Number.POSITIVE_INFINITY : Number(labels.le), Number(m[2]));
  }
  return buckets;
}

function latencyDelta(before: Buckets, after: Buckets): { p50: number | null; p99: number | null } {
  const delta = [...after]
    .map(([le, count]) => [le, count - (before.get(le) ?? 0)] as [number, number])
    .sort((a, b) => a[0] - b[0]);
  const at = (q: number) => {
    const v = quantile(delta, q);
    return v === null ? null : round2(v * 1000);
  };
  return { p50: at(0.5), p99: at(0.99) };
}

async function main(): Promise<void> {
  if (cases.length === 0) {
    process.stderr.write(
      `bench:queue: --filter ${filter} matches none of ${ALL_CASES.map((c) => c.id).join(", ")}\n`,
    );
    return;
  }
  const dir = mkdtempSync(join(tmpdir(), "metaraft-bench-queue-"));
  const config = join(dir, "node.yaml");
  writeFileSync(
    config,
    ["queues:", `  - name: ${QUEUE}`, `    module: ${consumerModule}`, "    maxItemsAtOnce: 100", ""].join(
      "\n",
    ),
  );
  process.stderr.write(
    `bench:queue: 3 nodes; cases ${cases.map((c) => c.id).join(", ")}, ${repeat} round(s) interleaved; ` +
      `${keyInflight} key-create pairs and ${queueInflight} adds of ${eventBytes}-byte events in flight; ` +
      `${seconds} s measured per case\n`,
  );
  // The rate says its own unit (events or creates per second).
  const bar = progressBar("");
  bar.start(seconds, 0, { label: "", phase: "starting the cluster", rate: "" });
  const cluster = await ProcessCluster.start({
    kind: "metaraft",
    nodes: 3,
    extraArgs: [`--config=${config}`],
  });
  const clients: MetaraftClient[] = [];
  const runs: CaseResult[][] = cases.map(() => []);
  try {
    const leader = await cluster.leader();
    for (let i = 0; i < connections; i++) {
      clients.push(
        new MetaraftClient({
          endpoints: cluster.endpoints,
          clusterId: cluster.clusterId,
          timeoutMs: CALL_TIMEOUT_MS,
          inflightMax: keyInflight + queueInflight,
        }),
      );
    }
    // Status and metrics from the leader itself (`metrics` answers from whichever node is reached).
    const atLeader = new MetaraftClient({
      endpoints: [{ host: "127.0.0.1", port: cluster.members[leader - 1]!.clientPort }],
      clusterId: cluster.clusterId,
      timeoutMs: CALL_TIMEOUT_MS,
    });
    clients.push(atLeader);
    await clients[0]!.createVolume("bench");
    await clients[0]!.createBucket("bench", "keys");
    for (;;) {
      const queues = (await clients[0]!.queues()).queues as { name: string }[];
      if (queues.some((q) => q.name === QUEUE)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const queueRow = async () =>
      ((await atLeader.queueStatus()).queues as Record<string, number | string>[]).find(
        (q) => q.name === QUEUE,
      )!;
    const event = Buffer.alloc(eventBytes, "q");
    let keySeq = 0;

    const runCase = async (spec: CaseSpec, label: string): Promise<CaseResult> => {
      const keyLatency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
      const addLatency = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000 });
      let measuring = false;
      let stop = false;
      let creates = 0;
      let adds = 0;
      let errors = 0;
      const errorCodes: Record<string, number> = {};
      const failed = (error: unknown) => {
        if (!measuring) return;
        errors++;
        const c = errorCode(error);
        errorCodes[c] = (errorCodes[c] ?? 0) + 1;
      };
      const keyLoop = async (i: number) => {
        const client = clients[i % connections]!;
        while (!stop) {
          const key = `k-${keySeq++}`;
          const started = process.hrtime.bigint();
          const counted = measuring;
          try {
            const { openKeyId } = await client.openKey("bench", "keys", key, 1024);
            await client.commitKey("bench", "keys", key, openKeyId, { size: 1024, etag: "e" });
            if (counted && measuring) {
              keyLatency.recordValue(Number((process.hrtime.bigint() - started) / 1000n));
              creates++;
            }
          } catch (error) {
            failed(error);
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      };
      const addLoop = async (i: number) => {
        const client = clients[i % connections]!;
        while (!stop) {
          const started = process.hrtime.bigint();
          const counted = measuring;
          try {
            await client.queueAdd(QUEUE, event);
            if (counted && measuring) {
              addLatency.recordValue(Number((process.hrtime.bigint() - started) / 1000n));
              adds++;
            }
          } catch (error) {
            failed(error);
            await new Promise((r) => setTimeout(r, 10));
          }
        }
      };
      const loops = [
        ...Array.from({ length: spec.keys ? keyInflight : 0 }, (_, i) => keyLoop(i)),
        ...Array.from({ length: spec.queue ? queueInflight : 0 }, (_, i) => addLoop(i)),
      ];
      bar.update(0, { label, phase: "warm-up", rate: "" });
      await new Promise((r) => setTimeout(r, WARMUP_MS));
      const pids = cluster.members.map((m) => cluster.pid(m.id));
      const before = {
        row: await queueRow(),
        buckets: latencyBuckets(String((await atLeader.metrics()).text)),
      };
      const cpuBefore = pids.map(processCpuSeconds);
      const loadgenBefore = process.cpuUsage();
      const startHr = process.hrtime.bigint();
      const startMs = Date.now();
      measuring = true;
      const ticker = setInterval(() => {
        const elapsed = (Date.now() - startMs) / 1000;
        bar.update(Math.min(elapsed, seconds), {
          label,
          phase: "measuring",
          rate: spec.keys
            ? `${(creates / elapsed).toFixed(0)} creates/s`
            : `${(adds / elapsed).toFixed(0)} adds/s`,
        });
      }, 250);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      measuring = false;
      clearInterval(ticker);
      const elapsed = Number(process.hrtime.bigint() - startHr) / 1e9;
      const cpuAfter = pids.map(processCpuSeconds);
      const loadgen = process.cpuUsage(loadgenBefore);
      const after = {
        row: await queueRow(),
        buckets: latencyBuckets(String((await atLeader.metrics()).text)),
      };
      stop = true;
      bar.update(seconds, { label, phase: "draining", rate: "" });
      await Promise.all(loops);
      // Every case starts with the queue processed to its end.
      const drainStart = Date.now();
      let drained: number | null = null;
      while (Date.now() - drainStart < DRAIN_TIMEOUT_MS) {
        const row = await queueRow();
        if (row.processedEvents === row.appendedEvents) {
          drained = Date.now() - drainStart;
          break;
        }
        await new Promise((r) => setTimeout(r, 20));
      }
      const leaderNow = await cluster.leader();
      const cpu = cluster.members.map((_, i) => {
        const b = cpuBefore[i];
        const a = cpuAfter[i];
        return a === undefined || b === undefined ? null : pct(a - b, elapsed);
      });
      const lat = (h: typeof keyLatency, n: number) =>
        n > 0
          ? {
              p50: round2(Math.min(h.getValueAtPercentile(50), h.maxValue) / 1000),
              p99: round2(Math.min(h.getValueAtPercentile(99), h.maxValue) / 1000),
            }
          : null;
      return {
        id: spec.id,
        seconds: Number(elapsed.toFixed(3)),
        key_creates_per_s: spec.keys ? Math.round(creates / elapsed) : null,
        key_create_latency_ms: spec.keys ? lat(keyLatency, creates) : null,
        events_in_per_s: spec.queue ? Math.round(adds / elapsed) : null,
        events_out_per_s: spec.queue
          ? Math.round(
              ((after.row.processedEvents as number) - (before.row.processedEvents as number)) / elapsed,
            )
          : null,
        processing_latency_ms: spec.queue ? latencyDelta(before.buckets, after.buckets) : null,
        add_latency_ms: spec.queue ? lat(addLatency, adds) : null,
        drain_ms: spec.queue ? drained : 0,
        errors,
        error_codes: errorCodes,
        leader_changed: leaderNow !== leader,
        cpu_pct: {
          leader: cpu[leader - 1] ?? null,
          followers: cpu.filter((_, i) => i !== leader - 1),
          loadgen: pct((loadgen.user + loadgen.system) / 1e6, elapsed),
        },
      };
    };

    for (let round = 0; round < repeat; round++) {
      for (const [i, spec] of cases.entries()) {
        const label = `[${round * cases.length + i + 1}/${repeat * cases.length}] ${spec.id}`;
        runs[i]!.push(await runCase(spec, label));
      }
    }
  } finally {
    bar.stop();
    for (const client of clients) client.close();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const headline = (r: CaseResult) => r.key_creates_per_s ?? r.events_in_per_s ?? 0;
  const results = runs.map((caseRuns) => {
    const sorted = [...caseRuns].sort((a, b) => headline(a) - headline(b));
    return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, runs: caseRuns.map(headline) };
  });
  console.table(
    results.map((r) => ({
      case: r.id,
      "creates/s": r.key_creates_per_s ?? "-",
      "create p50/p99 ms": r.key_create_latency_ms
        ? `${r.key_create_latency_ms.p50} / ${r.key_create_latency_ms.p99}`
        : "-",
      "events in/s": r.events_in_per_s ?? "-",
      "events out/s": r.events_out_per_s ?? "-",
      "processing p50/p99 ms": r.processing_latency_ms
        ? `${r.processing_latency_ms.p50 ?? "?"} / ${r.processing_latency_ms.p99 ?? "?"}`
        : "-",
      "add p50/p99 ms": r.add_latency_ms ? `${r.add_latency_ms.p50} / ${r.add_latency_ms.p99}` : "-",
      "CPU% leader": r.cpu_pct.leader ?? "?",
      "CPU% followers": r.cpu_pct.followers.map((c) => c ?? "?").join("/"),
      "CPU% loadgen": r.cpu_pct.loadgen,
      runs: (r.runs ?? []).join(" "),
      errors: r.errors,
    })),
  );
  for (const r of results) {
    if (r.errors > 0) process.stderr.write(`${r.id}: ${r.errors} errors ${JSON.stringify(r.error_codes)}\n`);
    if (r.leader_changed) process.stderr.write(`${r.id}: the leader changed\n`);
    if (r.drain_ms === null)
      process.stderr.write(`${r.id}: the queue did not drain in ${DRAIN_TIMEOUT_MS} ms\n`);
  }
  const keysAlone = results.find((r) => r.id === "keys");
  const keysBeside = results.find((r) => r.id === "keys+queue");
  const cost =
    keysAlone?.key_creates_per_s && keysBeside?.key_creates_per_s
      ? {
          creates_per_s: { alone: keysAlone.key_creates_per_s, beside_queue: keysBeside.key_creates_per_s },
          creates_per_s_ratio: round2(keysBeside.key_creates_per_s / keysAlone.key_creates_per_s),
          create_p99_ms: {
            alone: keysAlone.key_create_latency_ms?.p99,
            beside_queue: keysBeside.key_create_latency_ms?.p99,
          },
          queue_events_in_per_s_beside: keysBeside.events_in_per_s,
        }
      : null;
  if (cost) {
    console.log(
      `key creates beside the queue load: ${cost.creates_per_s.beside_queue}/s against ${cost.creates_per_s.alone}/s alone ` +
        `(${cost.creates_per_s_ratio}x), p99 ${cost.create_p99_ms.beside_queue} ms against ${cost.create_p99_ms.alone} ms, ` +
        `while ${cost.queue_events_in_per_s_beside} events/s went in`,
    );
  }
  const result = {
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model,
      memory_gb: Number((totalmem() / 2 ** 30).toFixed(1)),
      node: process.version,
      clock_ticks_per_s: clockTicks,
      date: new Date().toISOString(),
    },
    config: {
      nodes: 3,
      transport: "loopback",
      fsync: true,
      event_bytes: eventBytes,
      events_per_add: 1,
      consumer: "a no-op handler declared in the config file, maxItemsAtOnce 100, other options default",
      key_inflight: keyInflight,
      queue_inflight: queueInflight,
      connections,
      seconds_per_case: seconds,
      warmup_s: WARMUP_MS / 1000,
      repeat,
      interleaved: "each round runs every case once, in the same cluster; a case reports its median round",
      quick,
      filter: filter ?? null,
      processing_latency:
        "add (the executor's time) to the handler's success on the leader, from the metaraft_queue_processing_latency_seconds histogram's buckets (window deltas), interpolated within a bucket",
      cpu_pct: "% of one core over the window (/proc/<pid>/stat utime+stime; loadgen: process.cpuUsage)",
    },
    results,
    cost_to_key_creates: cost,
  };
  const name = quick || filter !== undefined ? "queue.partial" : "queue";
  writeResults(name, result);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
