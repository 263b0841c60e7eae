import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

/**
 * `npm start`: a local cluster of node processes with data under ./data, in the foreground.
 * Ctrl-C (or SIGTERM) stops every node cleanly; a node that dies is reported and the rest go on.
 */
const nodeMain = fileURLToPath(new URL("../server/kv-node-main.js", import.meta.url));

const { values } = parseArgs({
  options: {
    nodes: { type: "string", default: "3" },
    data: { type: "string", default: "./data" },
    "raft-port": { type: "string", default: "7001" },
    "client-port": { type: "string", default: "8001" },
  },
});

const count = Number(values.nodes);
const dataDir = resolve(values.data);
const raftBase = Number(values["raft-port"]);
const clientBase = Number(values["client-port"]);
const members = Array.from({ length: count }, (_, i) => ({
  id: i + 1,
  raftPort: raftBase + i,
  clientPort: clientBase + i,
}));
const spec = members.map((m) => `${m.id}@127.0.0.1:${m.raftPort}:${m.clientPort}`).join(",");
const children = new Map<number, ChildProcess>();
let stopping = false;

mkdirSync(dataDir, { recursive: true });
for (const member of members) {
  const child = spawn(
    process.execPath,
    [nodeMain, `--id=${member.id}`, `--cluster=${spec}`, `--data=${join(dataDir, `node-${member.id}`)}`],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  children.set(member.id, child);
  createInterface({ input: child.stdout! }).once("line", () => {
    console.log(
      `node ${member.id} ready: clients 127.0.0.1:${member.clientPort}, peers 127.0.0.1:${member.raftPort}`,
    );
  });
  child.on("exit", (code, signal) => {
    children.delete(member.id);
    if (!stopping) console.error(`node ${member.id} exited (${signal ?? code})`);
    if (children.size === 0) process.exit(stopping ? 0 : 1);
  });
}
console.log(`metaraft: ${count} nodes, data in ${dataDir}. Ctrl-C stops the cluster.`);

const stop = () => {
  if (stopping) return;
  stopping = true;
  console.log("stopping…");
  for (const child of children.values()) child.kill("SIGTERM");
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
