import { parseArgs } from "node:util";
import { pino } from "pino";
import { MetaraftError } from "../errors.js";
import { SETTINGS } from "../settings.js";
import { openRaftLog } from "../storage/index.js";
import { KvNode, parseCluster } from "./kv-node.js";

/**
 * One node process of the minimal replicated key-value store (used by the multi-process tests
 * and `npm run bench:raft`). Prints one JSON line `{"ready":…}` once it serves, and shuts down
 * cleanly on SIGTERM or SIGINT.
 */
async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      id: { type: "string" },
      cluster: { type: "string" },
      data: { type: "string" },
      "cluster-id": { type: "string", default: SETTINGS.clusterId.default },
      secret: { type: "string", default: SETTINGS.secret.default },
      "tick-ms": { type: "string", default: String(SETTINGS.raft.tickMs.default) },
      "election-ticks": { type: "string", default: String(SETTINGS.raft.electionTicks.default) },
      "snapshot-entries": { type: "string", default: String(SETTINGS.raft.snapshotEntries.default) },
      opaque: { type: "boolean", default: false },
    },
  });
  if (!values.id || !values.cluster || !values.data) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      "usage: --id N --cluster id@host:raft:client,... --data DIR",
    );
  }
  // Logs go to stderr as JSON lines; stdout carries only the ready line.
  const logger = pino({ base: { node: Number(values.id) } }, pino.destination(2));
  const storage = await openRaftLog(values.data);
  const node = await KvNode.start({
    id: Number(values.id),
    cluster: parseCluster(values.cluster),
    clusterId: values["cluster-id"],
    secret: values.secret,
    storage,
    tickMs: Number(values["tick-ms"]),
    electionTicks: Number(values["election-ticks"]),
    snapshotEntries: Number(values["snapshot-entries"]),
    opaque: values.opaque,
    logger,
    onFatal: (error) => {
      // Serving on after a storage failure could answer with wrong data: stop, loudly.
      process.stderr.write(`node ${values.id} stopped: ${error.message}\n`);
      process.exit(2);
    },
  });
  process.stdout.write(`${JSON.stringify({ ready: node.status() })}\n`);
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    node.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on("SIGTERM", shutdown);
  process.on("SIGINT", shutdown);
}

main().catch((error: unknown) => {
  process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
