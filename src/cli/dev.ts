import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { MetaraftClient } from "../client/client.js";
import { MetaraftError } from "../errors.js";
import { type ConfigFile, loadConfigFile, resolveSettings, type Settings } from "./config.js";
import { CLUSTER_ID_ENV, DEFAULT_CLUSTER_ID, DEFAULT_ENDPOINTS, ENDPOINTS_ENV } from "./endpoints.js";
import { asUsage, EXIT_ERROR, usage } from "./output.js";

/**
 * `metaraft dev`: a local cluster of N `metaraft start` processes, in the foreground. Prints
 * each node's client endpoint as it comes up and the leader once one is elected; reports a
 * node that dies (the others go on); Ctrl-C (SIGINT) or SIGTERM stops every node cleanly and
 * exits 0 when they all stopped cleanly. A second Ctrl-C kills them at once.
 */

export interface DevOptions {
  readonly nodes: number;
  readonly data: string;
  readonly host: string;
  readonly basePort: number;
  readonly clientBasePort: number;
  /** Given on the command line; else the config file's, else metaraft-dev. */
  readonly clusterId?: string;
  /** Given on the command line; else the config file's, else `error` (quiet). */
  readonly logLevel?: string;
  /** Passed to every node; the dev cluster's own flags (id, cluster, data…) override it. */
  readonly config?: string;
  readonly secret?: string;
  readonly noSync?: boolean;
}

/** The nodes' log level unless told: only errors, so that the terminal shows the cluster's story. */
export const DEV_LOG_LEVEL = "error";
export const DEV_READY_TIMEOUT_MS = 60_000;
export const DEV_LEADER_TIMEOUT_MS = 15_000;
export const DEV_STOP_TIMEOUT_MS = 20_000;
/** A signal this soon after the first is the same Ctrl-C, delivered twice. */
export const REPEAT_SIGNAL_MS = 1000;

const script = fileURLToPath(new URL("./metaraft.js", import.meta.url));

interface Child {
  readonly id: number;
  readonly raftPort: number;
  readonly clientPort: number;
  process: ChildProcess;
  ready: boolean;
  exited: boolean;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last `error: …` line the node printed, without `error: `. */
  lastError?: string;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function complain(line: string): void {
  process.stderr.write(`${line}\n`);
}

const LEVELS: Readonly<Record<number, string>> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const QUIET_FIELDS = new Set(["level", "time", "pid", "hostname", "node", "msg"]);

/** A node's pino JSON log line made short and readable; other lines as they are. */
export function formatLogLine(line: string): string {
  if (!line.startsWith("{")) return line;
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const level = LEVELS[entry.level as number] ?? String(entry.level);
  const extra = Object.entries(entry)
    .filter(([name]) => !QUIET_FIELDS.has(name))
    .map(([name, value]) => {
      if (name === "err" && typeof value === "object" && value !== null) {
        return `err=${JSON.stringify((value as { message?: unknown }).message ?? value)}`;
      }
      return `${name}=${typeof value === "string" ? value : JSON.stringify(value)}`;
    });
  return [level, entry.msg, ...extra].filter((p) => p !== undefined && p !== "").join(" ");
}

function checkPorts(o: DevOptions): void {
  const ranges = [
    { flag: "--base-port", from: o.basePort },
    { flag: "--client-base-port", from: o.clientBasePort },
  ];
  for (const r of ranges) {
    if (r.from + o.nodes - 1 > 65535) throw usage(`${r.flag} ${r.from} leaves no room for ${o.nodes} nodes`);
  }
  if (o.basePort < o.clientBasePort + o.nodes && o.clientBasePort < o.basePort + o.nodes) {
    throw usage(
      `--base-port ${o.basePort} and --client-base-port ${o.clientBasePort} overlap for ${o.nodes} nodes`,
    );
  }
}

function describeExit(child: Child): string {
  return child.signal ? `signal ${child.signal}` : `code ${child.exitCode}`;
}

export async function runDev(o: DevOptions): Promise<number> {
  checkPorts(o);
  const dataRoot = resolve(o.data);
  const members = Array.from({ length: o.nodes }, (_, i) => ({
    id: i + 1,
    raftPort: o.basePort + i,
    clientPort: o.clientBasePort + i,
  }));
  const spec = members.map((m) => `${m.id}@${o.host}:${m.raftPort}:${m.clientPort}`).join(",");
  const endpoints = members.map((m) => `${o.host}:${m.clientPort}`).join(",");
  // Node 1's settings, checked here so that a bad config is one line, not one per node.
  let file: ConfigFile | undefined;
  let settings: Settings;
  try {
    file = o.config === undefined ? undefined : loadConfigFile(o.config);
    settings = resolveSettings({
      ...(file ? { file } : {}),
      flags: {
        id: "1",
        cluster: spec,
        data: join(dataRoot, "node-1"),
        ...(o.clusterId === undefined ? {} : { clusterId: o.clusterId }),
        ...(o.logLevel === undefined ? {} : { "log.level": o.logLevel }),
        ...(o.secret === undefined ? {} : { secret: o.secret }),
        ...(o.noSync ? { noSync: true } : {}),
      },
    });
  } catch (error) {
    throw error instanceof MetaraftError ? asUsage(error) : error;
  }
  try {
    mkdirSync(dataRoot, { recursive: true });
  } catch (error) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `cannot create data directory ${dataRoot} (${(error as NodeJS.ErrnoException).code ?? error})`,
    );
  }
  const clusterId = settings.clusterId;
  const logLevel =
    o.logLevel ?? (file && Object.hasOwn(file.values, "log.level") ? settings.log.level : DEV_LOG_LEVEL);
  say(
    `metaraft dev: starting ${o.nodes} node${o.nodes === 1 ? "" : "s"} (cluster ${clusterId}, data ${dataRoot})`,
  );

  const children: Child[] = [];
  let stopping = false;
  let finish: (code: number) => void = () => {};
  const finished = new Promise<number>((r) => {
    finish = r;
  });
  let allReady: () => void = () => {};
  let startFailed: (error: Error) => void = () => {};
  const ready = new Promise<void>((res, rej) => {
    allReady = res;
    startFailed = rej;
  });
  ready.catch(() => undefined);

  const alive = () => children.filter((c) => !c.exited);
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    const running = alive();
    if (running.length === 0) {
      finish(EXIT_ERROR);
      return;
    }
    say(`${why}: stopping ${running.length} node${running.length === 1 ? "" : "s"}…`);
    for (const c of running) c.process.kill("SIGTERM");
    const timer = setTimeout(() => {
      for (const c of alive()) {
        complain(`node ${c.id} did not stop in ${DEV_STOP_TIMEOUT_MS} ms: killing it`);
        c.process.kill("SIGKILL");
      }
    }, DEV_STOP_TIMEOUT_MS);
    timer.unref();
  };
  // A second Ctrl-C kills every node at once. Signals within a second of the first count as
  // the same one: under `npm start` a Ctrl-C arrives twice (from the terminal and from npm).
  let firstSignalAt: number | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (firstSignalAt === undefined) {
      firstSignalAt = Date.now();
      stop(signal);
      return;
    }
    if (Date.now() - firstSignalAt < REPEAT_SIGNAL_MS) return;
    complain(`${signal} again: killing every node`);
    for (const c of alive()) c.process.kill("SIGKILL");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  let clean = true;
  for (const m of members) {
    const args = [
      script,
      "start",
      "--id",
      String(m.id),
      "--cluster",
      spec,
      "--data",
      join(dataRoot, `node-${m.id}`),
      "--cluster-id",
      clusterId,
      "--log-level",
      logLevel,
      "--stop-with-parent",
      ...(o.config === undefined ? [] : ["--config", resolve(o.config)]),
      ...(o.secret === undefined ? [] : ["--secret", o.secret]),
      ...(o.noSync ? ["--no-sync"] : []),
    ];
    // Own process group: a Ctrl-C reaches only this process, which then stops the nodes in
    // order. A closed stdin tells a node that this process is gone (even after SIGKILL).
    const proc = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"], detached: true });
    const child: Child = { ...m, process: proc, ready: false, exited: false, exitCode: null, signal: null };
    children.push(child);
    proc.stdin!.on("error", () => undefined);
    createInterface({ input: proc.stderr! }).on("line", (line) => {
      if (line.startsWith("error: ")) child.lastError = line.slice("error: ".length);
      complain(`node ${m.id} | ${formatLogLine(line)}`);
    });
    createInterface({ input: proc.stdout! }).on("line", (line) => {
      if (!child.ready && /^node \d+ ready/.test(line)) {
        child.ready = true;
        say(
          `node ${m.id} ready: client ${o.host}:${m.clientPort}, raft ${o.host}:${m.raftPort}, pid ${proc.pid}`,
        );
        if (children.length === members.length && children.every((c) => c.ready)) allReady();
      }
    });
    proc.on("error", (error) => {
      complain(`node ${m.id}: cannot start a process (${error.message})`);
    });
    proc.on("exit", (code, signal) => {
      child.exited = true;
      child.exitCode = code;
      child.signal = signal;
      proc.stdin?.destroy();
      if (stopping) {
        if (code === 0) say(`node ${m.id} stopped`);
        else {
          clean = false;
          complain(`node ${m.id} exited with ${describeExit(child)} while stopping`);
        }
      } else if (!child.ready) {
        clean = false;
        // The node's own error line says why; name the node and how it ended.
        const why = child.lastError ?? `MR_ERR_INTERNAL: node ${m.id} exited without saying why`;
        startFailed(new Error(`${why} (node ${m.id} failed to start, ${describeExit(child)})`));
      } else {
        clean = false;
        const left = alive().length;
        complain(
          `node ${m.id} died (${describeExit(child)}); ${left} of ${members.length} node${members.length === 1 ? "" : "s"} still running`,
        );
      }
      if (alive().length === 0) {
        finish(stopping && clean ? 0 : EXIT_ERROR);
      }
    });
  }

  const readyTimer = setTimeout(
    () =>
      startFailed(
        new Error(
          new MetaraftError("MR_ERR_TIMEOUT", `the nodes were not ready in ${DEV_READY_TIMEOUT_MS} ms`)
            .message,
        ),
      ),
    DEV_READY_TIMEOUT_MS,
  );
  readyTimer.unref();
  try {
    await Promise.race([ready, finished.then(() => ready)]);
  } catch (error) {
    if (!stopping) {
      complain(`error: ${(error as Error).message}`);
      stop("start-up failed");
    }
    clearTimeout(readyTimer);
    await finished;
    return EXIT_ERROR;
  }
  clearTimeout(readyTimer);
  if (!stopping) {
    const leader = await waitForLeader(o.host, clusterId, members, () => stopping);
    if (!stopping) {
      // One write, so that whoever waits for "cluster ready" reads the hints with it.
      const lines = [
        `cluster ready: ${leader === undefined ? "no leader yet" : `leader node ${leader}`}, endpoints ${endpoints}`,
      ];
      if (endpoints !== DEFAULT_ENDPOINTS || clusterId !== DEFAULT_CLUSTER_ID) {
        const id = clusterId === DEFAULT_CLUSTER_ID ? "" : ` ${CLUSTER_ID_ENV}=${clusterId}`;
        lines.push(`client verbs: export ${ENDPOINTS_ENV}=${endpoints}${id}`);
      }
      lines.push("try: metaraft status; Ctrl-C stops every node");
      say(lines.join("\n"));
    }
  }
  const code = await finished;
  say(code === 0 ? "all nodes stopped" : "stopped, with errors");
  return code;
}

async function waitForLeader(
  host: string,
  clusterId: string,
  members: readonly { id: number; clientPort: number }[],
  cancelled: () => boolean,
): Promise<number | undefined> {
  const deadline = Date.now() + DEV_LEADER_TIMEOUT_MS;
  const clients = members.map(
    (m) =>
      new MetaraftClient({
        endpoints: [{ host, port: m.clientPort }],
        clusterId,
        timeoutMs: 1000,
      }),
  );
  try {
    while (Date.now() < deadline && !cancelled()) {
      const statuses = await Promise.all(clients.map((c) => c.status().catch(() => undefined)));
      const leader = statuses.find((s) => s?.role === "leader");
      if (leader && typeof leader.node === "number") return leader.node;
      await new Promise((r) => setTimeout(r, 100));
    }
    return undefined;
  } finally {
    for (const c of clients) c.close();
  }
}
