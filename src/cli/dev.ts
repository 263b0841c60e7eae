import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdirSync, realpathSync } from "node:fs";
import { delimiter, isAbsolute, join, relative, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { MetaraftClient } from "../client/client.js";
import { MetaraftError } from "../errors.js";
import { type ConfigFile, loadConfigFile, resolveSettings, type Settings } from "./config.js";
import { LEVEL_VALUES, LogFile, parseLogLine, showsOnTerminal } from "./dev-log.js";
import { CLUSTER_ID_ENV, DEFAULT_CLUSTER_ID, DEFAULT_ENDPOINTS, ENDPOINTS_ENV } from "./endpoints.js";
import { asUsage, EXIT_ERROR, usage } from "./output.js";

/**
 * `metaraft dev`: a local cluster of N `metaraft start` processes, in the foreground. The banner
 * names each node's pid, addresses, data directory and log file; then it prints each node's
 * client endpoint as it comes up and the leader once one is elected. A node that dies is
 * restarted under `--restart` (a bounded number of times, with backoff); otherwise dev prints
 * the command that restarts it by hand, and the others go on. Ctrl-C (SIGINT) or SIGTERM stops
 * every node cleanly and exits 0 when they all stopped cleanly. A second Ctrl-C kills them at
 * once.
 */

export interface DevOptions {
  readonly nodes: number;
  readonly data: string;
  readonly host: string;
  readonly basePort: number;
  readonly clientBasePort: number;
  /** Given on the command line; else the config file's, else metaraft-dev. */
  readonly clusterId?: string;
  /** Given on the command line; else the config file's, else DEV_LOG_LEVEL (the terminal: DEV_TERMINAL_LOG_LEVEL). */
  readonly logLevel?: string;
  /** Passed to every node; the dev cluster's own flags (id, cluster, data…) override it. */
  readonly config?: string;
  readonly secret?: string;
  readonly noSync?: boolean;
  /** Restart a node whose process exits unexpectedly, at most RESTARTS_MAX times in RESTART_WINDOW_MS. */
  readonly restart?: boolean;
}

/** The nodes' log level unless told: what `metaraft start` logs, into each node's log file. */
export const DEV_LOG_LEVEL = "info";
/** The level from which the terminal shows a node's log lines unless told: the cluster's story, not its chatter. */
export const DEV_TERMINAL_LOG_LEVEL = "error";
/** Each node's log file, in its data directory, appended to across restarts. */
export const DEV_LOG_FILE = "node.log";
export const DEV_READY_TIMEOUT_MS = 60_000;
export const DEV_LEADER_TIMEOUT_MS = 15_000;
export const DEV_STOP_TIMEOUT_MS = 20_000;
/** A signal this soon after the first is the same Ctrl-C, delivered twice. */
export const REPEAT_SIGNAL_MS = 1000;
/** Under --restart, one node is restarted at most this many times in RESTART_WINDOW_MS; then dev leaves it down. */
export const RESTARTS_MAX = 5;
export const RESTART_WINDOW_MS = 60_000;
/** The wait before a restart doubles with each restart in the window, from the min to the max. */
export const RESTART_BACKOFF_MIN_MS = 250;
export const RESTART_BACKOFF_MAX_MS = 4_000;

/** The wait before a restart when `recent` restarts of that node fall in the window already. */
export function restartDelayMs(recent: number): number {
  return Math.min(RESTART_BACKOFF_MAX_MS, RESTART_BACKOFF_MIN_MS * 2 ** recent);
}

/** One node's restarts under --restart: at most RESTARTS_MAX in any RESTART_WINDOW_MS. */
export class RestartBudget {
  readonly #now: () => number;
  /** When each restart within the window was granted, oldest first; at most RESTARTS_MAX. */
  #granted: number[] = [];

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** Restarts granted within the window, this one included once granted. */
  get used(): number {
    return this.#granted.length;
  }

  /** The wait before the next restart, or undefined when the window holds RESTARTS_MAX already. */
  grant(): number | undefined {
    const now = this.#now();
    this.#granted = this.#granted.filter((t) => now - t < RESTART_WINDOW_MS);
    if (this.#granted.length >= RESTARTS_MAX) return undefined;
    const delayMs = restartDelayMs(this.#granted.length);
    this.#granted.push(now);
    return delayMs;
  }
}

const script = fileURLToPath(new URL("./metaraft.js", import.meta.url));

interface DevNode {
  readonly id: number;
  readonly raftPort: number;
  readonly clientPort: number;
  readonly dataDir: string;
  /** `start` and every flag dev gives it, but --stop-with-parent (meaningless by hand). */
  readonly startArgs: readonly string[];
  readonly log: LogFile;
  /** The node's process while it runs. */
  process: ChildProcess | undefined;
  /** The current process said it serves. */
  ready: boolean;
  /** A process of this node served once: its exit is a death, not a failed start. */
  served: boolean;
  /** Set while a restart waits out its backoff. */
  restartTimer: NodeJS.Timeout | undefined;
  readonly restarts: RestartBudget;
  /** The last `error: …` line the current process printed, without `error: `. */
  lastError?: string;
}

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

function complain(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** An argument as a POSIX shell reads it back unchanged. */
export function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** `node` when the first `node` on the PATH is this very Node, else this Node's path. */
function nodeCommand(): string {
  try {
    const self = realpathSync(process.execPath);
    for (const dir of (process.env.PATH ?? "").split(delimiter)) {
      const candidate = join(dir, "node");
      if (dir !== "" && existsSync(candidate)) {
        return realpathSync(candidate) === self ? "node" : process.execPath;
      }
    }
  } catch {
    // An unreadable PATH entry: the full path works anyway.
  }
  return process.execPath;
}

/** The CLI as a command that needs no `npm link`: relative to the working directory when inside it. */
function cliCommand(): string {
  const path = relative(process.cwd(), script);
  const shown = path.startsWith("..") || isAbsolute(path) ? script : path;
  return `${shellQuote(nodeCommand())} ${shellQuote(shown)}`;
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

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `signal ${signal}` : `code ${code}`;
}

function plural(n: number, what: string): string {
  return `${n} ${what}${n === 1 ? "" : "s"}`;
}

function cannotCreate(what: string, path: string, error: unknown): MetaraftError {
  return new MetaraftError(
    "MR_ERR_INVALID_ARGUMENT",
    `cannot create ${what} ${path} (${(error as NodeJS.ErrnoException).code ?? error})`,
  );
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
  const clusterId = settings.clusterId;
  // A level the user chose is what both the files and the terminal get.
  const levelChosen =
    o.logLevel ?? (file && Object.hasOwn(file.values, "log.level") ? settings.log.level : undefined);
  const logLevel = levelChosen ?? DEV_LOG_LEVEL;
  const terminalLevel = levelChosen ?? DEV_TERMINAL_LOG_LEVEL;
  const terminalThreshold = LEVEL_VALUES[terminalLevel] ?? LEVEL_VALUES.error!;

  const nodes: DevNode[] = [];
  try {
    for (const m of members) {
      const dataDir = join(dataRoot, `node-${m.id}`);
      try {
        mkdirSync(dataDir, { recursive: true });
      } catch (error) {
        throw cannotCreate("data directory", dataDir, error);
      }
      const logPath = join(dataDir, DEV_LOG_FILE);
      let log: LogFile;
      try {
        log = new LogFile(logPath, (error) =>
          complain(
            `warning: cannot write node ${m.id}'s log to ${logPath} (${error.code ?? error.message}): its log file stops here`,
          ),
        );
      } catch (error) {
        throw cannotCreate("log file", logPath, error);
      }
      const startArgs = [
        "start",
        "--id",
        String(m.id),
        "--cluster",
        spec,
        "--data",
        dataDir,
        "--cluster-id",
        clusterId,
        "--log-level",
        logLevel,
        ...(o.config === undefined ? [] : ["--config", resolve(o.config)]),
        ...(o.secret === undefined ? [] : ["--secret", o.secret]),
        ...(o.noSync ? ["--no-sync"] : []),
      ];
      nodes.push({
        ...m,
        dataDir,
        startArgs,
        log,
        process: undefined,
        ready: false,
        served: false,
        restartTimer: undefined,
        restarts: new RestartBudget(),
      });
    }
  } catch (error) {
    for (const n of nodes) n.log.close();
    throw error;
  }

  let stopping = false;
  let clean = true;
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

  const running = () => nodes.filter((n) => n.process !== undefined);
  const finishIfDone = (): void => {
    if (running().length > 0 || nodes.some((n) => n.restartTimer !== undefined)) return;
    finish(stopping && clean ? 0 : EXIT_ERROR);
  };
  const stop = (why: string): void => {
    if (stopping) return;
    stopping = true;
    for (const n of nodes) {
      clearTimeout(n.restartTimer);
      n.restartTimer = undefined;
    }
    const alive = running();
    if (alive.length === 0) {
      finish(EXIT_ERROR);
      return;
    }
    say(`${why}: stopping ${plural(alive.length, "node")}…`);
    for (const n of alive) n.process!.kill("SIGTERM");
    const timer = setTimeout(() => {
      for (const n of running()) {
        complain(`node ${n.id} did not stop in ${DEV_STOP_TIMEOUT_MS} ms: killing it`);
        n.process!.kill("SIGKILL");
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
    for (const n of running()) n.process!.kill("SIGKILL");
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);

  /** A node that served died: restart it (within bounds) or say how to. */
  const died = (node: DevNode, how: string): void => {
    const lastError = node.lastError === undefined ? "" : `, last error: ${node.lastError}`;
    const lines = [
      `node ${node.id} died (${how}${lastError}); ${running().length} of ${plural(nodes.length, "node")} still running`,
    ];
    if (o.restart) {
      const delayMs = node.restarts.grant();
      if (delayMs !== undefined) {
        lines.push(
          `restarting node ${node.id} in ${delayMs} ms (restart ${node.restarts.used} of at most ${RESTARTS_MAX} in ${RESTART_WINDOW_MS / 1000} s)`,
        );
        node.restartTimer = setTimeout(() => {
          node.restartTimer = undefined;
          if (stopping) finishIfDone();
          else launch(node);
        }, delayMs);
        complain(lines.join("\n"));
        return;
      }
      lines.push(
        `node ${node.id} was restarted ${RESTARTS_MAX} times in ${RESTART_WINDOW_MS / 1000} s: dev leaves it down`,
      );
    }
    const command = [nodeCommand(), script, ...node.startArgs].map(shellQuote).join(" ");
    lines.push(
      `restart it by hand, in another terminal (its log then goes to that terminal, and Ctrl-C there stops it)${o.restart ? "" : "; dev --restart restarts a node itself"}:`,
      `  ${command}`,
    );
    complain(lines.join("\n"));
  };

  const launch = (node: DevNode): void => {
    const restarted = node.served;
    // Own process group: a Ctrl-C reaches only this process, which then stops the nodes in
    // order. A closed stdin tells a node that this process is gone (even after SIGKILL).
    const proc = spawn(process.execPath, [script, ...node.startArgs, "--stop-with-parent"], {
      stdio: ["pipe", "pipe", "pipe"],
      detached: true,
    });
    node.process = proc;
    node.ready = false;
    delete node.lastError;
    node.log.write(`metaraft dev: ${restarted ? "restarted" : "started"} node ${node.id}, pid ${proc.pid}`);
    proc.stdin!.on("error", () => undefined);
    createInterface({ input: proc.stderr! }).on("line", (raw) => {
      if (raw.startsWith("error: ")) node.lastError = raw.slice("error: ".length);
      const line = parseLogLine(raw);
      node.log.write(line.text, line.time);
      if (showsOnTerminal(line, terminalThreshold)) complain(`node ${node.id} | ${line.text}`);
    });
    createInterface({ input: proc.stdout! }).on("line", (raw) => {
      node.log.write(raw);
      if (!node.ready && /^node \d+ ready/.test(raw)) {
        node.ready = true;
        node.served = true;
        say(
          `node ${node.id} ready: client ${o.host}:${node.clientPort}, raft ${o.host}:${node.raftPort}, pid ${proc.pid}`,
        );
        if (nodes.every((n) => n.served)) allReady();
      }
    });
    proc.on("error", (error) => {
      complain(`node ${node.id}: cannot start a process (${error.message})`);
      // No process ran, so no close may follow.
      if (proc.pid === undefined) exited(node, proc, null, null);
    });
    // `close`, not `exit`: the node's last lines (its error) are read by then.
    proc.on("close", (code, signal) => exited(node, proc, code, signal));
  };

  const exited = (node: DevNode, proc: ChildProcess, code: number | null, signal: NodeJS.Signals | null) => {
    if (node.process !== proc) return;
    node.process = undefined;
    proc.stdin?.destroy();
    const how = describeExit(code, signal);
    node.log.write(`metaraft dev: node ${node.id} (pid ${proc.pid}) exited with ${how}`);
    if (stopping) {
      if (code === 0) say(`node ${node.id} stopped`);
      else {
        clean = false;
        complain(`node ${node.id} exited with ${how} while stopping`);
      }
    } else if (!node.served) {
      clean = false;
      // The node's own error line says why; name the node and how it ended.
      const why = node.lastError ?? `MR_ERR_INTERNAL: node ${node.id} exited without saying why`;
      startFailed(new Error(`${why} (node ${node.id} failed to start, ${how})`));
    } else {
      clean = false;
      died(node, how);
    }
    finishIfDone();
  };

  for (const n of nodes) launch(n);
  // Written before any node's output: nothing reads the pipes until this returns.
  const banner = [
    `metaraft dev: starting ${plural(o.nodes, "node")} (cluster ${clusterId}, data ${dataRoot}); ` +
      (o.restart
        ? `--restart: a node that dies is restarted, at most ${RESTARTS_MAX} times in ${RESTART_WINDOW_MS / 1000} s`
        : "a node that dies stays down (--restart restarts it)"),
    ...nodes.map(
      (n) =>
        `  node ${n.id}: pid ${n.process?.pid ?? "-"}, peer ${o.host}:${n.raftPort}, client ${o.host}:${n.clientPort}, ` +
        `data ${n.dataDir}, log ${n.log.path}`,
    ),
    `  each node logs at level ${logLevel} to its log file (appended to across restarts)` +
      (terminalThreshold === LEVEL_VALUES.silent
        ? "; the terminal shows none of it"
        : `; lines at ${terminalLevel} and above show here too, as "node N | …"`),
  ];
  say(banner.join("\n"));

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
    try {
      await Promise.race([ready, finished.then(() => ready)]);
    } catch (error) {
      if (!stopping) {
        complain(`error: ${(error as Error).message}`);
        stop("start-up failed");
      }
      await finished;
      return EXIT_ERROR;
    } finally {
      clearTimeout(readyTimer);
    }
    if (!stopping) {
      const leader = await waitForLeader(o.host, clusterId, members, () => stopping);
      if (!stopping) {
        // One write, so that whoever waits for "cluster ready" reads the hints with it.
        const lines = [
          `cluster ready: ${leader === undefined ? "no leader yet" : `leader node ${leader}`}, endpoints ${endpoints}`,
        ];
        let flags = "";
        if (endpoints !== DEFAULT_ENDPOINTS || clusterId !== DEFAULT_CLUSTER_ID) {
          const id = clusterId === DEFAULT_CLUSTER_ID ? "" : ` ${CLUSTER_ID_ENV}=${shellQuote(clusterId)}`;
          lines.push(`client verbs: export ${ENDPOINTS_ENV}=${endpoints}${id}`);
          // The hint works as printed, with or without the export.
          flags += endpoints === DEFAULT_ENDPOINTS ? "" : ` --endpoints ${shellQuote(endpoints)}`;
          flags += clusterId === DEFAULT_CLUSTER_ID ? "" : ` --cluster-id ${shellQuote(clusterId)}`;
        }
        lines.push(`try: ${cliCommand()} status${flags}`, "Ctrl-C stops every node");
        say(lines.join("\n"));
      }
    }
    const code = await finished;
    say(code === 0 ? "all nodes stopped" : "stopped, with errors");
    return code;
  } finally {
    for (const n of nodes) n.log.close();
  }
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
