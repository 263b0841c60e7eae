/**
 * `npm run bench:kv`: what keys past LMDB's 1,978-byte key limit cost the leader. Runs the
 * coordination keyspace's request specs as the leader executes them (validate, execute over
 * the node's LMDB state, apply the writes) for short keys and for 4 KiB keys, these alone in
 * their group or in a group of `kv.longKeyGroupMax` (256) keys that share their first 1,900
 * bytes, whose directory every create and delete rewrites. Reports µs per request and the
 * ratio to short keys, into bench/results/kv.json.
 *
 *   npm run bench:kv [-- --quick] [-- --filter <substring of a case id>]
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import cliProgress from "cli-progress";
import { Bench } from "tinybench";
import { KV_SHORT_KEY_BYTES, kvSpecs } from "../src/coordination/index.js";
import { StateStore } from "../src/execution/state-store.js";
import { type Request, type RequestSpec, toWriteOp } from "../src/execution/types.js";
import { openEnvironment } from "../src/storage/index.js";
import { machineInfo, writeResults } from "./common.js";

const { values } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    filter: { type: "string" },
  },
});
const quick = values.quick === true;
const GROUP = 256;
const RANGE = 100;
/** Each case goes round this many keys: one key over and over would time a cache, not a request. */
const EXTRA = 64;

/** One replica's state: specs run as the leader runs them, each write applied at once. */
class Leader {
  readonly dir = mkdtempSync(join(tmpdir(), "metaraft-bench-kv-"));
  readonly env = openEnvironment(this.dir, { noSync: true });
  readonly store = StateStore.open(this.env);
  readonly #specs = new Map<string, RequestSpec>(kvSpecs().map((s) => [s.op, s]));
  #txid = 1;
  #index = 0;

  run(raw: Request): unknown {
    const spec = this.#specs.get(raw.op)!;
    const request = spec.validate(raw);
    const txid = spec.kind === "write" ? ++this.#txid : this.#txid;
    const execution = spec.execute(request, { txid, time: 0, reader: this.store });
    if (execution.writes.length > 0) {
      this.store.apply(execution.writes.map(toWriteOp), { index: ++this.#index, lastTxid: txid });
    }
    return execution.reply;
  }

  async close(): Promise<void> {
    await this.store.flushed();
    await this.env.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

const pad = (stem: string, tail: string, bytes: number) =>
  `${stem}${tail}${"x".repeat(bytes - stem.length - tail.length)}`;
/** `n` keys of `bytes` bytes: with `shared`, all with one first 1,900 bytes (one group). */
function keys(n: number, bytes: number, shared: boolean): string[] {
  return Array.from({ length: n }, (_, i) => {
    const id = String(i).padStart(4, "0");
    return shared ? pad(`g/${"s".repeat(KV_SHORT_KEY_BYTES)}`, id, bytes) : pad(`g/${id}`, "", bytes);
  });
}

interface Shape {
  readonly id: string;
  readonly note: string;
  /** The keys put before measuring, in the range the cases read. */
  readonly keys: string[];
  /** Keys of the same shape not among them, which create-delete creates and deletes in turn. */
  readonly extra: string[];
}
const SHAPES: Shape[] = [
  {
    id: "short-64B",
    note: "64-byte keys (their own row keys)",
    keys: keys(GROUP, 64, false),
    extra: keys(GROUP + EXTRA, 64, false).slice(GROUP),
  },
  {
    id: "long-4KiB-alone",
    note: "4 KiB keys that differ in their first bytes (a group each)",
    keys: keys(GROUP, 4096, false),
    extra: keys(GROUP + EXTRA, 4096, false).slice(GROUP),
  },
  {
    id: `long-4KiB-group-${GROUP}`,
    note: `4 KiB keys sharing their first 1,900 bytes: one group of ${GROUP - 1}, and the created key makes ${GROUP}`,
    keys: keys(GROUP - 1, 4096, true),
    extra: keys(GROUP - 1 + EXTRA, 4096, true).slice(GROUP - 1),
  },
];

interface Row {
  case: string;
  shape: string;
  us_per_op: number;
  rme_pct: number;
  samples: number;
  vs_short: number | null;
}

async function main(): Promise<void> {
  const ops = ["get", "put-update", "create-delete", `range-${RANGE}`];
  const wanted = SHAPES.flatMap((s) => ops.map((op) => `${op}/${s.id}`)).filter(
    (id) => values.filter === undefined || id.includes(values.filter),
  );
  const bar = new cliProgress.SingleBar(
    { format: "{bar} {value}/{total} {label}", hideCursor: true, noTTYOutput: true, notTTYSchedule: 2000 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(wanted.length, 0, { label: "" });
  const rows: Row[] = [];
  for (const shape of SHAPES) {
    const leader = new Leader();
    try {
      for (const key of shape.keys) leader.run({ op: "kvPut", key, value: "v" });
      await leader.store.flushed();
      let n = 0;
      const next = (list: readonly string[]) => list[n++ % list.length]!;
      const bench = new Bench({
        time: quick ? 150 : 1500,
        warmupTime: quick ? 50 : 300,
        timestampProvider: "hrtimeNow",
        throws: true,
      });
      const add = (op: string, fn: () => void) => {
        // Each case starts with every earlier write committed: a node commits each turn of its
        // event loop, and a write-heavy case left in the overlay would slow the next one's reads.
        const beforeAll = () => leader.store.flushed();
        if (wanted.includes(`${op}/${shape.id}`)) bench.add(`${op}/${shape.id}`, fn, { beforeAll });
      };
      add("get", () => leader.run({ op: "kvGet", key: next(shape.keys) }));
      add("put-update", () => leader.run({ op: "kvPut", key: next(shape.keys), value: "w" }));
      // Two requests, reported per request: the group's directory is rewritten by both.
      add("create-delete", () => {
        const key = next(shape.extra);
        leader.run({ op: "kvPut", key, value: "v" });
        leader.run({ op: "kvDelete", key });
      });
      add(`range-${RANGE}`, () => {
        const reply = leader.run({ op: "kvRange", prefix: "g/", limit: RANGE }) as { items: unknown[] };
        if (reply.items.length !== RANGE) throw new Error(`a range returned ${reply.items.length}`);
      });
      bench.addEventListener("cycle", () => bar.increment(1, { label: shape.id }));
      await bench.run();
      for (const task of bench.tasks) {
        const result = task.result;
        if (result?.state !== "completed") throw new Error(`${task.name}: ${result?.state ?? "missing"}`);
        const perOp = task.name.startsWith("create-delete") ? 2 : 1;
        rows.push({
          case: task.name.split("/")[0]!,
          shape: shape.id,
          // tinybench reports milliseconds; the median resists the odd GC pause.
          us_per_op: Number(((result.latency.p50 * 1000) / perOp).toFixed(2)),
          rme_pct: Number(result.latency.rme.toFixed(1)),
          samples: result.latency.samplesCount,
          vs_short: null,
        });
      }
    } finally {
      await leader.close();
    }
  }
  bar.stop();
  for (const row of rows) {
    const short = rows.find((r) => r.case === row.case && r.shape === SHAPES[0]!.id);
    row.vs_short = short ? Number((row.us_per_op / short.us_per_op).toFixed(2)) : null;
  }
  console.table(rows);
  const partial = quick || values.filter !== undefined;
  writeResults(partial ? "kv.partial" : "kv", {
    benchmark: "kv",
    quick,
    filter: values.filter ?? null,
    machine: machineInfo(),
    shapes: SHAPES.map((s) => ({ id: s.id, note: s.note, keys: s.keys.length })),
    note: "median µs of leader CPU per request (validate, execute, apply into LMDB without fsync), single process; vs_short: the same case with 64-byte keys in this run",
    results: rows,
  });
}

await main();
