/**
 * `npm run bench:reads`: three `metaraft start` node processes on loopback, a bucket of keys,
 * and a load generator doing lookupKey with many calls in flight: linearizable reads (each after
 * a ReadIndex round on the leader, shared by the reads that arrived before it began) and stale
 * reads (any node, no round). Reports reads per second, latency (HdrHistogram), ReadIndex
 * rounds per read on the leader and CPU per process, into bench/results/reads.json.
 *
 *   npm run bench:reads [-- --seconds 6] [-- --connections 4] [-- --inflight 256] [-- --quick]
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import hdr from "hdr-histogram-js";
import { MetaraftClient } from "../src/client/client.js";
import { ProcessCluster } from "../test/helpers/cluster.js";
import { positiveInt, processCpuSeconds } from "./common.js";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "6" },
    connections: { type: "string", default: "4" },
    inflight: { type: "string", default: "256" },
    keys: { type: "string", default: "1000" },
    quick: { type: "boolean", default: false },
    /** Accepted so that `npm run bench -- --filter x` reaches every benchmark; selects cases by id. */
    filter: { type: "string" },
  },
});

const quick = values.quick === true;
const seconds = quick ? 2 : Number(values.seconds);
const connections = positiveInt("connections", values.connections);
const inflight = positiveInt("inflight", values.inflight);
const keyCount = positiveInt("keys", values.keys);
const WARMUP_MS = 1000;
const CASES = [
  { id: "linearizable", stale: false },
  { id: "stale", stale: true },
] as const;
const cases = CASES.filter((c) => values.filter === undefined || c.id.includes(values.filter));

interface ReadStats {
  raftStats?: { reads: number; readRounds: number };
}

async function runCase(spec: (typeof CASES)[number], bar: cliProgress.SingleBar) {
  bar.update(0, { label: spec.id, phase: "starting", rate: "-" });
  const cluster = await ProcessCluster.start({ nodes: 3, kind: "metaraft" });
  const clients: MetaraftClient[] = [];
  try {
    const leader = await cluster.leader();
    const endpoints = cluster.members.map((m) => ({ host: "127.0.0.1", port: m.clientPort }));
    for (let i = 0; i < connections; i++) {
      clients.push(new MetaraftClient({ endpoints, clusterId: cluster.clusterId, timeoutMs: 30_000 }));
    }
    const writer = clients[0]!;
    await writer.createVolume("reads");
    await writer.createBucket("reads", "bench");
    for (let i = 0; i < keyCount; i += 100) {
      await Promise.all(
        Array.from({ length: Math.min(100, keyCount - i) }, (_, j) =>
          writer.putKey("reads", "bench", `key-${i + j}`, { size: i + j, etag: `e${i + j}` }),
        ),
      );
    }
    const histogram = hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 60_000_000,
      numberOfSignificantValueDigits: 3,
    });
    let measuring = false;
    let stop = false;
    let reads = 0;
    let errors = 0;
    const loop = async (loopId: number) => {
      const client = clients[loopId % connections]!;
      for (let n = loopId; !stop; n += inflight) {
        const started = process.hrtime.bigint();
        const counted = measuring;
        try {
          await client.lookupKey("reads", "bench", `key-${n % keyCount}`, { stale: spec.stale });
          if (counted && measuring) {
            histogram.recordValue(Number((process.hrtime.bigint() - started) / 1000n));
            reads++;
          }
        } catch {
          if (counted) errors++;
          await new Promise((r) => setTimeout(r, 10));
        }
      }
    };
    const loops = Array.from({ length: inflight }, (_, i) => loop(i));
    bar.update(0, { label: spec.id, phase: "warm-up", rate: "-" });
    await new Promise((r) => setTimeout(r, WARMUP_MS));
    const before = (await cluster.status(leader)) as ReadStats;
    const pids = cluster.members.map((m) => cluster.pid(m.id));
    const cpuBefore = pids.map(processCpuSeconds);
    const loadgenBefore = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    measuring = true;
    const ticker = setInterval(() => {
      const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
      bar.update(Math.min(elapsed, seconds), {
        label: spec.id,
        phase: "measuring",
        rate: (reads / elapsed).toFixed(0),
      });
    }, 250);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    measuring = false;
    clearInterval(ticker);
    const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpuAfter = pids.map(processCpuSeconds);
    const loadgen = process.cpuUsage(loadgenBefore);
    const after = (await cluster.status(leader)) as ReadStats;
    stop = true;
    await Promise.all(loops);
    const pct = (cpu: number) => Number(((cpu / elapsed) * 100).toFixed(1));
    const b = before.raftStats;
    const a = after.raftStats;
    return {
      id: spec.id,
      stale: spec.stale,
      seconds: Number(elapsed.toFixed(3)),
      reads,
      reads_per_s: Math.round(reads / elapsed),
      errors,
      latency_us: {
        p50: histogram.getValueAtPercentile(50),
        p99: histogram.getValueAtPercentile(99),
        p999: histogram.getValueAtPercentile(99.9),
        max: histogram.maxValue,
      },
      /** Linearizable reads per ReadIndex round on the leader (reads reaching it, all kinds). */
      leader_reads_per_round:
        a && b && a.readRounds > b.readRounds
          ? Number(((a.reads - b.reads) / (a.readRounds - b.readRounds)).toFixed(1))
          : null,
      cpu_pct: {
        nodes: cluster.members.map((m, i) => ({
          node: m.id,
          leader: m.id === leader,
          pct:
            cpuAfter[i] === undefined || cpuBefore[i] === undefined
              ? null
              : pct(cpuAfter[i]! - cpuBefore[i]!),
        })),
        loadgen: pct((loadgen.user + loadgen.system) / 1e6),
      },
    };
  } finally {
    for (const client of clients) client.close();
    bar.update({ phase: "stopping" });
    await cluster.stop();
  }
}

async function main(): Promise<void> {
  process.stderr.write(
    `bench:reads: ${cases.length} case(s), ${keyCount} keys, ${connections} connections, ${inflight} reads in flight, ` +
      `${WARMUP_MS / 1000} s warm-up + ${seconds} s measured\n`,
  );
  const bar = new cliProgress.SingleBar(
    {
      format: "{label} {bar} {value}/{total} s  {phase}  {rate} reads/s",
      formatValue: (v, _options, type) => (type === "value" ? Number(v).toFixed(1) : String(v)),
      hideCursor: true,
      noTTYOutput: true,
      notTTYSchedule: 2000,
    },
    cliProgress.Presets.shades_classic,
  );
  const results = [];
  bar.start(seconds, 0, { label: "", phase: "", rate: "-" });
  try {
    for (const spec of cases) results.push(await runCase(spec, bar));
  } finally {
    bar.stop();
  }
  const ms = (us: number) => (us / 1000).toFixed(2);
  console.table(
    results.map((r) => ({
      case: r.id,
      "reads/s": r.reads_per_s,
      "p50 ms": ms(r.latency_us.p50),
      "p99 ms": ms(r.latency_us.p99),
      "p999 ms": ms(r.latency_us.p999),
      "reads per round": r.leader_reads_per_round ?? "-",
      "CPU% nodes": r.cpu_pct.nodes.map((n) => `${n.pct ?? "?"}${n.leader ? "*" : ""}`).join(" / "),
      "CPU% loadgen": r.cpu_pct.loadgen,
      errors: r.errors,
    })),
  );
  const complete = !quick && values.filter === undefined;
  const out = new URL(`../../bench/results/${complete ? "reads" : "reads.partial"}.json`, import.meta.url);
  mkdirSync(new URL(".", out), { recursive: true });
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        machine: {
          cpus: cpus().length,
          model: cpus()[0]?.model,
          node: process.version,
          date: new Date().toISOString(),
        },
        config: {
          nodes: 3,
          keys: keyCount,
          connections,
          inflight,
          seconds,
          warmup_s: WARMUP_MS / 1000,
          fsync: true,
        },
        results,
      },
      null,
      2,
    )}\n`,
  );
  process.stderr.write(`wrote ${out.pathname}\n`);
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
