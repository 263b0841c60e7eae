import { readFileSync } from "node:fs";
import { isAbsolute, resolve } from "node:path";
import { parseDocument, stringify } from "yaml";
import type { CoreMode } from "../core/index.js";
import { MetaraftError } from "../errors.js";
import type { ExecutionMode } from "../execution/pipeline.js";
import { type NodeAddress, parseCluster } from "../server/kv-node.js";
import type { NodeConfig } from "../server/node.js";
import { CLUSTER_ID_BYTES_MAX, SECRET_BYTES_MIN } from "../transport/handshake.js";
import { DEFAULT_CLUSTER_ID } from "./endpoints.js";

/**
 * The configuration of one node, as `metaraft start` reads it: a YAML file (`--config FILE`),
 * then flags, which override the file, then defaults that run node 1 of a one-node cluster on
 * this machine. Every setting is described once, in `SETTINGS`, which gives its place in the
 * YAML file, its flag, its default, its check and its line of `metaraft start --help`.
 */

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const EXECUTION_MODES = [
  "leader-execution",
  "replicated-request",
] as const satisfies readonly ExecutionMode[];
export const CORE_MODES = ["auto", "ts", "wasm", "pool"] as const satisfies readonly CoreMode[];

/** The dev-cluster secret; fine on loopback, to be replaced anywhere else. */
export const DEV_SECRET = "metaraft-dev-secret-change-me";
export const DEV_CLUSTER_ID = DEFAULT_CLUSTER_ID;
export const DEFAULT_HOST = "127.0.0.1";
export const DEFAULT_RAFT_PORT = 7001;
export const DEFAULT_CLIENT_PORT = 8001;
export const DEFAULT_DATA_ROOT = "./data";

/** The effective configuration of a node, every setting filled in and checked. */
export interface Settings {
  readonly id: number;
  readonly cluster: readonly NodeAddress[];
  /** As given (relative paths are relative to the working directory). */
  readonly data: string;
  readonly clusterId: string;
  readonly secret: string;
  readonly raft: {
    readonly tickMs: number;
    readonly electionTicks: number;
    readonly snapshotEntries: number;
    readonly snapshotTrailingEntries: number;
  };
  readonly execution: {
    readonly mode: ExecutionMode;
    readonly batchers: number;
    readonly batchBytesMax: number;
  };
  readonly core: { readonly mode: CoreMode };
  readonly requestBytesMax: number;
  readonly noSync: boolean;
  readonly log: { readonly level: LogLevel };
}

type Check = (value: unknown, fromFlag: boolean) => unknown;

export interface SettingSpec {
  /** Where the setting sits in the YAML file, dotted. */
  readonly path: string;
  /** The flag, without `--`. */
  readonly flag: string;
  /** The flag's argument in help, e.g. `<ms>`; none for a boolean. */
  readonly arg?: string;
  readonly description: string;
  /** Shown in help. */
  readonly defaultText: string;
  readonly check: Check;
}

/** Thrown by a `Check`; becomes MR_ERR_INVALID_ARGUMENT naming the setting and where it came from. */
class Rule extends Error {}

function integer(min: number, max: number): Check {
  return (value, fromFlag) => {
    let n = value;
    if (fromFlag && typeof value === "string" && /^\s*-?\d[\d_]*\s*$/.test(value)) {
      n = Number(value.replaceAll("_", ""));
    }
    if (typeof n !== "number" || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new Rule(`must be an integer from ${min} to ${max}, not ${show(value)}`);
    }
    return n;
  };
}

function oneOf<T extends string>(values: readonly T[]): Check {
  return (value) => {
    if (typeof value !== "string" || !(values as readonly string[]).includes(value)) {
      throw new Rule(`must be one of ${values.join(", ")}, not ${show(value)}`);
    }
    return value;
  };
}

function text(minBytes: number, maxBytes: number): Check {
  return (value) => {
    if (typeof value !== "string") throw new Rule(`must be a string, not ${show(value)}`);
    const bytes = Buffer.byteLength(value);
    if (bytes < minBytes) {
      throw new Rule(minBytes <= 1 ? "must not be empty" : `must be at least ${minBytes} bytes long`);
    }
    if (bytes > maxBytes) throw new Rule(`must be at most ${maxBytes} bytes long`);
    return value;
  };
}

function boolean(): Check {
  return (value, fromFlag) => {
    if (typeof value === "boolean") return value;
    if (fromFlag && (value === "true" || value === "false")) return value === "true";
    throw new Rule(`must be true or false, not ${show(value)}`);
  };
}

function show(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "a map";
  return String(value);
}

const PORT_MAX = 65535;
const MiB = 1024 * 1024;

/** A cluster: `1@host:raftPort:clientPort,2@…`, or a list of such strings or of maps. */
function checkCluster(value: unknown): NodeAddress[] {
  let members: NodeAddress[];
  if (typeof value === "string") {
    members = parseMembers(value.split(","));
  } else if (Array.isArray(value)) {
    members = parseMembers(value);
  } else {
    throw new Rule(`must be "id@host:raftPort:clientPort,…" or a list of members, not ${show(value)}`);
  }
  if (members.length === 0) throw new Rule("must name at least one member");
  const ids = new Set<number>();
  const addresses = new Set<string>();
  for (const m of members) {
    if (!Number.isSafeInteger(m.id) || m.id < 1)
      throw new Rule(`member id ${m.id} must be a positive integer`);
    if (ids.has(m.id)) throw new Rule(`names member ${m.id} twice`);
    ids.add(m.id);
    for (const port of [m.raftPort, m.clientPort]) {
      if (!Number.isInteger(port) || port < 1 || port > PORT_MAX) {
        throw new Rule(`member ${m.id} has port ${port}, not from 1 to ${PORT_MAX}`);
      }
      const address = `${m.host}:${port}`;
      if (addresses.has(address)) throw new Rule(`uses ${address} twice`);
      addresses.add(address);
    }
  }
  return members;
}

function parseMembers(items: readonly unknown[]): NodeAddress[] {
  return items.map((item) => {
    if (typeof item === "string") {
      if (item.includes(",")) throw new Rule(`list item ${JSON.stringify(item)} must name one member`);
      try {
        const [member] = parseCluster(item);
        return member!;
      } catch {
        throw new Rule(`member ${JSON.stringify(item.trim())} is not id@host:raftPort:clientPort`);
      }
    }
    if (typeof item === "object" && item !== null && !Array.isArray(item)) {
      const { id, host, raftPort, clientPort, ...rest } = item as Record<string, unknown>;
      const extra = Object.keys(rest)[0];
      if (extra !== undefined) throw new Rule(`member has an unknown field "${extra}"`);
      if (typeof id !== "number" || typeof raftPort !== "number" || typeof clientPort !== "number") {
        throw new Rule("members given as maps need numbers id, raftPort and clientPort (and host)");
      }
      if (host !== undefined && (typeof host !== "string" || host.length === 0)) {
        throw new Rule(`member ${id} has a bad host ${show(host)}`);
      }
      return { id, host: (host as string | undefined) ?? DEFAULT_HOST, raftPort, clientPort };
    }
    throw new Rule(`member ${show(item)} is not id@host:raftPort:clientPort`);
  });
}

/** Every setting, in the order of `metaraft start --help` and of the YAML file. */
export const SETTINGS: readonly SettingSpec[] = [
  {
    path: "id",
    flag: "id",
    arg: "<n>",
    description: "this node's id, a member of the cluster",
    defaultText: "1",
    check: integer(1, Number.MAX_SAFE_INTEGER),
  },
  {
    path: "cluster",
    flag: "cluster",
    arg: "<members>",
    description: "every member, id@host:raftPort:clientPort joined by commas",
    defaultText: `"<id>@${DEFAULT_HOST}:${DEFAULT_RAFT_PORT}:${DEFAULT_CLIENT_PORT}" (a one-node cluster)`,
    check: checkCluster,
  },
  {
    path: "data",
    flag: "data",
    arg: "<dir>",
    description: "this node's data directory (created if missing)",
    defaultText: `${DEFAULT_DATA_ROOT}/node-<id>`,
    check: text(1, 4096),
  },
  {
    path: "clusterId",
    flag: "cluster-id",
    arg: "<name>",
    description: "the cluster's name; nodes and clients must agree on it",
    defaultText: DEV_CLUSTER_ID,
    check: text(1, CLUSTER_ID_BYTES_MAX),
  },
  {
    path: "secret",
    flag: "secret",
    arg: "<secret>",
    description: `the peers' shared secret (at least ${SECRET_BYTES_MIN} bytes)`,
    defaultText: "a dev secret: change it off loopback",
    check: text(SECRET_BYTES_MIN, 4096),
  },
  {
    path: "raft.tickMs",
    flag: "tick-ms",
    arg: "<ms>",
    description: "Raft tick (heartbeat interval)",
    defaultText: "50",
    check: integer(1, 60_000),
  },
  {
    path: "raft.electionTicks",
    flag: "election-ticks",
    arg: "<n>",
    description: "ticks without a leader before an election",
    defaultText: "10",
    check: integer(2, 10_000),
  },
  {
    path: "raft.snapshotEntries",
    flag: "snapshot-entries",
    arg: "<n>",
    description: "applied entries between snapshots (log compaction)",
    defaultText: "10000",
    check: integer(1, 2 ** 31 - 1),
  },
  {
    path: "raft.snapshotTrailingEntries",
    flag: "snapshot-trailing-entries",
    arg: "<n>",
    description: "entries kept behind a snapshot, so that a follower slightly behind catches up from the log",
    defaultText: "1000",
    check: integer(0, 2 ** 31 - 1),
  },
  {
    path: "execution.mode",
    flag: "execution-mode",
    arg: "<mode>",
    description: EXECUTION_MODES.join(" | "),
    defaultText: "leader-execution",
    check: oneOf(EXECUTION_MODES),
  },
  {
    path: "execution.batchers",
    flag: "batchers",
    arg: "<n>",
    description: "batches (Raft entries) in flight at once, 1 to 32",
    defaultText: "6",
    check: integer(1, 32),
  },
  {
    path: "execution.batchBytesMax",
    flag: "batch-bytes-max",
    arg: "<bytes>",
    description: "write-set bytes one batch takes at most",
    defaultText: String(4 * MiB),
    check: integer(1024, 8 * MiB),
  },
  {
    path: "core.mode",
    flag: "core-mode",
    arg: "<mode>",
    description: `the byte-level core: ${CORE_MODES.join(" | ")}`,
    defaultText: "auto",
    check: oneOf(CORE_MODES),
  },
  {
    path: "requestBytesMax",
    flag: "request-bytes-max",
    arg: "<bytes>",
    description: "the largest request a client may send",
    defaultText: String(4 * MiB),
    check: integer(1024, 16 * MiB),
  },
  {
    path: "noSync",
    flag: "no-sync",
    description: "do not fsync commits (tests and benchmarks only: loses data on a crash)",
    defaultText: "false",
    check: boolean(),
  },
  {
    path: "log.level",
    flag: "log-level",
    arg: "<level>",
    description: `log level (logs go to stderr): ${LOG_LEVELS.join(" | ")}`,
    defaultText: "info",
    check: oneOf(LOG_LEVELS),
  },
];

const BY_PATH = new Map(SETTINGS.map((s) => [s.path, s]));

/** Values by setting path, not yet checked. */
export type RawSettings = Readonly<Record<string, unknown>>;

export interface ConfigFile {
  readonly name: string;
  readonly values: RawSettings;
}

function invalid(detail: string): MetaraftError {
  return new MetaraftError("MR_ERR_INVALID_ARGUMENT", detail);
}

/**
 * Parses a YAML config into values by setting path. An unknown key is an error (a typo must
 * not be ignored silently); so is YAML that does not parse, with its line.
 */
export function parseConfigText(source: string, name: string): ConfigFile {
  const doc = parseDocument(source, { uniqueKeys: true });
  const problem = doc.errors[0];
  if (problem) {
    // The message's first line says what and where ("… at line 2, column 5:"), then an excerpt.
    const first = problem.message.split("\n")[0]!.trim().replace(/:$/, "");
    throw invalid(`${name} is not valid YAML: ${first}`);
  }
  let root: unknown;
  try {
    root = doc.toJS();
  } catch (error) {
    throw invalid(`${name} is not valid YAML: ${(error as Error).message.split("\n")[0]}`);
  }
  if (root === null || root === undefined) return { name, values: {} };
  if (typeof root !== "object" || Array.isArray(root)) {
    throw invalid(`${name} must hold a map of settings, not ${show(root)}`);
  }
  const values: Record<string, unknown> = {};
  const walk = (object: Record<string, unknown>, prefix: string): void => {
    for (const [key, value] of Object.entries(object)) {
      const path = prefix + key;
      if (BY_PATH.has(path)) {
        if (value !== null && value !== undefined) values[path] = value;
        continue;
      }
      const isSection = SETTINGS.some((s) => s.path.startsWith(`${path}.`));
      if (isSection && typeof value === "object" && value !== null && !Array.isArray(value)) {
        walk(value as Record<string, unknown>, `${path}.`);
        continue;
      }
      if (isSection && value === null) continue;
      throw invalid(
        isSection
          ? `${path} in ${name} must be a map of settings, not ${show(value)}`
          : `${name} has an unknown setting "${path}"${suggestion(path)}`,
      );
    }
  };
  walk(root as Record<string, unknown>, "");
  return { name, values };
}

function suggestion(path: string): string {
  const last = path.split(".").pop()!.toLowerCase().replaceAll(/[-_]/g, "");
  const near = SETTINGS.find(
    (s) => s.path.split(".").pop()!.toLowerCase() === last || s.flag.replaceAll("-", "") === last,
  );
  return near ? ` (did you mean ${near.path}?)` : "";
}

export function loadConfigFile(file: string): ConfigFile {
  let source: string;
  try {
    source = readFileSync(file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "";
    throw invalid(`cannot read config file ${file}${code ? ` (${code})` : ""}`);
  }
  return parseConfigText(source, file);
}

/**
 * Takes the settings' flags from commander's option values (keyed by camel-cased flag), keeping
 * only the flags that were given.
 */
export function flagValues(options: Readonly<Record<string, unknown>>): RawSettings {
  const values: Record<string, unknown> = {};
  for (const s of SETTINGS) {
    if (s.flag === "no-sync") {
      // Commander turns --no-sync into sync: false, and sync: true when absent.
      if (options.sync === false) values[s.path] = true;
      continue;
    }
    const value = options[camel(s.flag)];
    if (value !== undefined) values[s.path] = value;
  }
  return values;
}

export function camel(flag: string): string {
  return flag.replaceAll(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/**
 * Merges flags over the file over the defaults and checks every value. A bad value is one
 * MR_ERR_INVALID_ARGUMENT naming the setting and where it came from.
 */
export function resolveSettings(sources: { file?: ConfigFile; flags?: RawSettings } = {}): Settings {
  const take = (path: string, fallback: () => unknown): unknown => {
    const spec = BY_PATH.get(path)!;
    const flags = sources.flags ?? {};
    const fromFlag = Object.hasOwn(flags, path);
    const fromFile = !fromFlag && sources.file !== undefined && Object.hasOwn(sources.file.values, path);
    if (!fromFlag && !fromFile) return fallback();
    const value = fromFlag ? flags[path] : sources.file!.values[path];
    try {
      return spec.check(value, fromFlag);
    } catch (error) {
      if (!(error instanceof Rule)) throw error;
      const where = fromFlag ? `--${spec.flag}` : `${path} in ${sources.file!.name}`;
      throw invalid(`${where} ${error.message}`);
    }
  };
  const id = take("id", () => 1) as number;
  const cluster = take("cluster", () => [
    { id, host: DEFAULT_HOST, raftPort: DEFAULT_RAFT_PORT, clientPort: DEFAULT_CLIENT_PORT },
  ]) as NodeAddress[];
  if (!cluster.some((m) => m.id === id)) {
    const origin = (path: string) =>
      sources.flags && Object.hasOwn(sources.flags, path)
        ? `--${BY_PATH.get(path)!.flag}`
        : sources.file && Object.hasOwn(sources.file.values, path)
          ? `${path} in ${sources.file.name}`
          : `${path} (default)`;
    throw invalid(
      `${origin("id")} is ${id}, which is not a member of ${origin("cluster")} (members ${cluster.map((m) => m.id).join(", ")})`,
    );
  }
  return {
    id,
    cluster,
    data: take("data", () => `${DEFAULT_DATA_ROOT}/node-${id}`) as string,
    clusterId: take("clusterId", () => DEV_CLUSTER_ID) as string,
    secret: take("secret", () => DEV_SECRET) as string,
    raft: {
      tickMs: take("raft.tickMs", () => 50) as number,
      electionTicks: take("raft.electionTicks", () => 10) as number,
      snapshotEntries: take("raft.snapshotEntries", () => 10_000) as number,
      snapshotTrailingEntries: take("raft.snapshotTrailingEntries", () => 1_000) as number,
    },
    execution: {
      mode: take("execution.mode", () => "leader-execution") as ExecutionMode,
      batchers: take("execution.batchers", () => 6) as number,
      batchBytesMax: take("execution.batchBytesMax", () => 4 * MiB) as number,
    },
    core: { mode: take("core.mode", () => "auto") as CoreMode },
    requestBytesMax: take("requestBytesMax", () => 4 * MiB) as number,
    noSync: take("noSync", () => false) as boolean,
    log: { level: take("log.level", () => "info") as LogLevel },
  };
}

/** This node's own address. */
export function selfOf(settings: Settings): NodeAddress {
  return settings.cluster.find((m) => m.id === settings.id)!;
}

/** The `NodeConfig` for `MetaraftNode.start`; the data path made absolute. */
export function toNodeConfig(
  settings: Settings,
  extra: Pick<NodeConfig, "logger" | "onFatal"> = {},
  cwd: string = process.cwd(),
): NodeConfig {
  return {
    id: settings.id,
    cluster: settings.cluster,
    dataDir: isAbsolute(settings.data) ? settings.data : resolve(cwd, settings.data),
    clusterId: settings.clusterId,
    secret: settings.secret,
    tickMs: settings.raft.tickMs,
    electionTicks: settings.raft.electionTicks,
    snapshotEntries: settings.raft.snapshotEntries,
    snapshotTrailingEntries: settings.raft.snapshotTrailingEntries,
    execution: { ...settings.execution },
    core: { ...settings.core },
    requestBytesMax: settings.requestBytesMax,
    ...(settings.noSync ? { noSync: true } : {}),
    ...extra,
  };
}

/** The settings as a YAML config file (`metaraft start --print-config`), the cluster as a list. */
export function settingsToYaml(settings: Settings): string {
  const doc = {
    ...settings,
    cluster: settings.cluster.map((m) => `${m.id}@${m.host}:${m.raftPort}:${m.clientPort}`),
  };
  return stringify(doc);
}

/** Lines for `metaraft start --help`: the YAML file's shape. */
export const CONFIG_HELP = `Config file (YAML; flags override it; every key is optional):
  id: 1
  cluster: "1@127.0.0.1:7001:8001,2@127.0.0.1:7002:8002,3@127.0.0.1:7003:8003"
  #   or a list: ["1@127.0.0.1:7001:8001", ...] or [{id: 1, host: 127.0.0.1, raftPort: 7001, clientPort: 8001}, ...]
  data: ./data/node-1            # relative to the working directory
  clusterId: metaraft-dev
  secret: "a shared secret of 16+ bytes"
  raft: {tickMs: 50, electionTicks: 10, snapshotEntries: 10000, snapshotTrailingEntries: 1000}
  execution: {mode: leader-execution, batchers: 6, batchBytesMax: 4194304}
  core: {mode: auto}
  requestBytesMax: 4194304
  noSync: false
  log: {level: info}
Print the effective config of a command line with --print-config.`;
