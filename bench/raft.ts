import { mkdirSync, writeFileSync } from "node:fs";
import { cpus } from "node:os";
import { parseArgs } from "node:util";
import hdr from "hdr-histogram-js";
import type { RpcClient } from "../src/client/rpc-client.js";
import { ProcessCluster } from "../test/helpers/cluster.js";

/**
 * `npm run bench:raft`: three node processes on loopback with a no-op state machine and fsync
 * on; clients keep many 256-byte proposals in flight against the leader. Reports committed
 * entries per second, MB/s, commit latency (HdrHistogram) and entries per fsync'd write.
 */
const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "10" },
    clients: { type: "string", default: "4" },
    inflight: { type: "string", default: "64" },
    bytes: { type: "string", default: "256" },
    quick: { type: "boolean", default: false },
    /** Accepted so that `npm run bench -- --filter x` reaches every benchmark; unused here. */
    filter: { type: "string" },
  },
});
const seconds = values.quick ? 3 : Number(values.seconds);
const clientCount = Number(values.clients);
const inflight = Number(values.inflight);
const entryBytes = Number(values.bytes);
const WARMUP_MS = 1000;

async function main(): Promise<void> {
  process.stderr.write("starting 3 node processes (LMDB, fsync on)…\n");
  const cluster = await ProcessCluster.start({ nodes: 3, opaque: true, snapshotEntries: 100_000 });
  try {
    const leader = await cluster.leader();
    const histogram = hdr.build({
      lowestDiscernibleValue: 1,
      highestTrackableValue: 60_000_000,
      numberOfSignificantValueDigits: 3,
    });
    const clients: RpcClient[] = Array.from({ length: clientCount }, () => cluster.client(30_000));
    let committed = 0;
    let failed = 0;
    // The first second (connections, JIT, the first batches) is a ramp-up, not the steady state.
    const warmupEnds = Date.now() + WARMUP_MS;
    const started = warmupEnds;
    const deadline = started + seconds * 1000;
    let before: Record<string, unknown> = {};
    const beforeTaken = new Promise<void>((resolve) =>
      setTimeout(() => {
        cluster.status(leader).then((s) => {
          before = s;
          resolve();
        }, resolve);
      }, WARMUP_MS),
    );
    const payload = new Uint8Array(entryBytes).map((_, i) => i & 0xff);
    const loop = async (client: RpcClient) => {
      while (Date.now() < deadline) {
        const t0 = process.hrtime.bigint();
        const measured = Date.now() >= warmupEnds;
        try {
          await client.call("propose", { data: payload });
          if (!measured) continue;
          histogram.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
          committed++;
        } catch {
          if (measured) failed++;
        }
      }
    };
    const progress = setInterval(() => {
      const elapsed = Math.max(0.001, (Date.now() - started) / 1000);
      process.stderr.write(
        `\r${elapsed.toFixed(0)}/${seconds} s  ${(committed / elapsed).toFixed(0)} entries/s   `,
      );
    }, 500);
    await Promise.all(clients.flatMap((client) => Array.from({ length: inflight }, () => loop(client))));
    clearInterval(progress);
    await beforeTaken;
    process.stderr.write("\n");
    const elapsed = (Date.now() - started) / 1000;
    const after = await cluster.status(leader);
    const statsBefore = before.stats as { saves: number; entriesSaved: number };
    const statsAfter = after.stats as { saves: number; entriesSaved: number };
    const saves = statsAfter.saves - statsBefore.saves;
    const result = {
      machine: {
        cpus: cpus().length,
        model: cpus()[0]?.model,
        node: process.version,
        date: new Date().toISOString(),
      },
      config: {
        nodes: 3,
        fsync: true,
        entry_bytes: entryBytes,
        clients: clientCount,
        inflight_per_client: inflight,
        seconds,
      },
      committed_entries: committed,
      failed,
      entries_per_s: Math.round(committed / elapsed),
      mb_per_s: Number(((committed * entryBytes) / elapsed / 1e6).toFixed(2)),
      latency_us: {
        p50: histogram.getValueAtPercentile(50),
        p99: histogram.getValueAtPercentile(99),
        p999: histogram.getValueAtPercentile(99.9),
        max: histogram.maxValue,
      },
      leader_fsyncs: saves,
      entries_per_fsync: Number(
        ((statsAfter.entriesSaved - statsBefore.entriesSaved) / Math.max(1, saves)).toFixed(1),
      ),
    };
    console.table({
      "entries/s": result.entries_per_s,
      "MB/s": result.mb_per_s,
      "p50 latency (ms)": result.latency_us.p50 / 1000,
      "p99 latency (ms)": result.latency_us.p99 / 1000,
      "p999 latency (ms)": result.latency_us.p999 / 1000,
      "entries per leader fsync": result.entries_per_fsync,
      failed: result.failed,
    });
    // A quick run must not overwrite the reference results.
    const out = new URL(
      `../../bench/results/${values.quick ? "raft.partial" : "raft"}.json`,
      import.meta.url,
    );
    mkdirSync(new URL(".", out), { recursive: true });
    writeFileSync(out, `${JSON.stringify(result, null, 2)}\n`);
    process.stderr.write(`wrote ${out.pathname}\n`);
  } finally {
    await cluster.stop();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
