import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parseDocument, stringify } from "yaml";
import { MetaraftError } from "../errors.js";
import { type ListenerDeclaration, parseListenerDeclarations } from "../events/index.js";
import { parseQueueDeclarations, type QueueDeclaration } from "../queues/index.js";
import { parseCluster } from "../server/kv-node.js";
import type { NodeConfig } from "../server/node.js";
import {
  DEFAULT_HOST,
  defaultOf,
  type NodeAddress,
  type PathedSetting,
  SETTING_LIST,
  SETTINGS,
  type Setting,
  type Settings,
} from "../settings.js";

/**
 * The configuration of one node, as `metaraft start` reads it: a YAML file (`--config FILE`),
 * then flags, which override the file, then defaults that run node 1 of a one-node cluster on
 * this machine. Every setting is declared once, in `SETTINGS` (src/settings.ts); this module
 * reads, checks and describes them from that table: the YAML paths, the flags, the checks, the
 * lines of `metaraft start --help` and its config template.
 */

export {
  CORE_MODES,
  DEFAULT_CLIENT_PORT,
  DEFAULT_DATA_ROOT,
  DEFAULT_HOST,
  DEFAULT_RAFT_PORT,
  EXECUTION_MODES,
  LOG_LEVELS,
  type LogLevel,
  SETTING_LIST,
  SETTINGS,
  type Settings,
} from "../settings.js";

/** The dev-cluster secret; fine on loopback, to be replaced anywhere else. */
export const DEV_SECRET: string = SETTINGS.secret.default;
export const DEV_CLUSTER_ID: string = SETTINGS.clusterId.default;

type Check = (value: unknown, fromFlag: boolean) => unknown;

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

function checkOf(setting: Setting): Check {
  switch (setting.type) {
    case "integer":
      return integer(setting.min, setting.max);
    case "enum":
      return oneOf(setting.values);
    case "string":
      return text(setting.minBytes, setting.maxBytes);
    case "boolean":
      return boolean();
    case "members":
      return checkCluster;
  }
}

const BY_PATH = new Map(SETTING_LIST.map((s) => [s.path, s]));
const CHECKS = new Map(SETTING_LIST.map((s) => [s.path, checkOf(s)]));

/** Values by setting path, not yet checked. */
export type RawSettings = Readonly<Record<string, unknown>>;

export interface ConfigFile {
  readonly name: string;
  readonly values: RawSettings;
  /** The `listeners:` list: plugins the node registers when it leads (relative module paths resolved against the file's directory). */
  readonly listeners?: readonly ListenerDeclaration[];
  /** The `queues:` list: queue consumers the node runs when it leads (relative module paths resolved against the file's directory). */
  readonly queues?: readonly QueueDeclaration[];
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
  let listeners: ListenerDeclaration[] | undefined;
  let queues: QueueDeclaration[] | undefined;
  const walk = (object: Record<string, unknown>, prefix: string): void => {
    for (const [key, value] of Object.entries(object)) {
      const path = prefix + key;
      // Not a setting: a list of plugins, each a map (DESIGN.md, "The event ledger and plugins").
      if (path === "listeners") {
        if (value !== null && value !== undefined) listeners = parseListenerDeclarations(value, name);
        continue;
      }
      // Not a setting either: queue consumers, each a module (DESIGN.md, "Durable queues").
      if (path === "queues") {
        if (value !== null && value !== undefined) queues = parseQueueDeclarations(value, name);
        continue;
      }
      if (BY_PATH.has(path)) {
        if (value !== null && value !== undefined) values[path] = value;
        continue;
      }
      const isSection = SETTING_LIST.some((s) => s.path.startsWith(`${path}.`));
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
  return { name, values, ...(listeners ? { listeners } : {}), ...(queues ? { queues } : {}) };
}

function suggestion(path: string): string {
  const last = path.split(".").pop()!.toLowerCase().replaceAll(/[-_]/g, "");
  const near = SETTING_LIST.find(
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
  const parsed = parseConfigText(source, file);
  if (!parsed.listeners && !parsed.queues) return parsed;
  // A module path in a config file means a path beside the file, wherever the node starts from.
  const dir = dirname(resolve(file));
  const beside = <T extends { readonly module: string }>(d: T): T =>
    d.module.startsWith("./") || d.module.startsWith("../") ? { ...d, module: resolve(dir, d.module) } : d;
  return {
    ...parsed,
    ...(parsed.listeners ? { listeners: parsed.listeners.map(beside) } : {}),
    ...(parsed.queues ? { queues: parsed.queues.map(beside) } : {}),
  };
}

/**
 * Takes the settings' flags from commander's option values (keyed by camel-cased flag), keeping
 * only the flags that were given.
 */
export function flagValues(options: Readonly<Record<string, unknown>>): RawSettings {
  const values: Record<string, unknown> = {};
  for (const s of SETTING_LIST) {
    if (s.type === "boolean" && s.flag.startsWith("no-")) {
      // Commander turns --no-sync into sync: false, and sync: true when absent.
      if (options[camel(s.flag.slice(3))] === false) values[s.path] = true;
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
  const flags = sources.flags ?? {};
  const origin = (path: string): "flag" | "file" | "default" =>
    Object.hasOwn(flags, path)
      ? "flag"
      : sources.file !== undefined && Object.hasOwn(sources.file.values, path)
        ? "file"
        : "default";
  const where = (path: string): string => {
    const from = origin(path);
    return from === "flag"
      ? `--${BY_PATH.get(path)!.flag}`
      : from === "file"
        ? `${path} in ${sources.file!.name}`
        : `${path} (default)`;
  };
  const take = (setting: PathedSetting, id: number): unknown => {
    const from = origin(setting.path);
    if (from === "default") return defaultOf(setting, id);
    const value = from === "flag" ? flags[setting.path] : sources.file!.values[setting.path];
    try {
      return CHECKS.get(setting.path)!(value, from === "flag");
    } catch (error) {
      if (!(error instanceof Rule)) throw error;
      throw invalid(`${where(setting.path)} ${error.message}`);
    }
  };
  // The id first: the defaults of the cluster and the data directory depend on it.
  const id = take(BY_PATH.get("id")!, 0) as number;
  const cluster = take(BY_PATH.get("cluster")!, id) as NodeAddress[];
  if (!cluster.some((m) => m.id === id)) {
    throw invalid(
      `${where("id")} is ${id}, which is not a member of ${where("cluster")} (members ${cluster.map((m) => m.id).join(", ")})`,
    );
  }
  const settings: Record<string, unknown> = {};
  for (const s of SETTING_LIST) {
    const value = s.path === "id" ? id : s.path === "cluster" ? cluster : take(s, id);
    const names = s.path.split(".");
    let section = settings;
    for (const name of names.slice(0, -1)) section = (section[name] ??= {}) as Record<string, unknown>;
    section[names.at(-1)!] = value;
  }
  return settings as unknown as Settings;
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
    ...settings.raft,
    execution: { ...settings.execution },
    events: { ...settings.events },
    watch: { ...settings.watch },
    lifecycle: { ...settings.lifecycle },
    queue: { ...settings.queue },
    kv: { ...settings.kv },
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

/** The flag's argument in help (`<ms>`); none for a boolean. */
export function argOf(setting: Setting): string | undefined {
  switch (setting.type) {
    case "integer":
      return setting.unit === "ms" || setting.unit === "bytes" ? `<${setting.unit}>` : "<n>";
    case "boolean":
      return undefined;
    default:
      return setting.arg;
  }
}

/** 4194304 as `4194304 (4 MiB)`: a byte count is written in bytes, and read more easily in KiB or MiB. */
function showNumber(n: number, unit: string | undefined): string {
  if (unit === "bytes") {
    const [size, suffix] = n >= 1024 * 1024 ? [n / (1024 * 1024), "MiB"] : [n / 1024, "KiB"];
    return n >= 1024 && Number.isInteger(size) ? `${n} (${size} ${suffix})` : `${n} bytes`;
  }
  return unit === undefined ? String(n) : `${n} ${unit}`;
}

/** The default as help shows it. */
export function defaultText(setting: Setting): string {
  if (setting.defaultHelp !== undefined) return setting.defaultHelp;
  const value = defaultOf(setting, 1);
  return typeof value === "number" && setting.type === "integer"
    ? showNumber(value, setting.unit)
    : String(value);
}

/** The values a setting takes, as help shows them; none for a boolean or the cluster. */
export function rangeText(setting: Setting): string | undefined {
  switch (setting.type) {
    case "integer":
      return setting.max === Number.MAX_SAFE_INTEGER
        ? `at least ${setting.min}`
        : `${setting.min} to ${showNumber(setting.max, setting.unit)}`;
    case "enum":
      return `one of ${setting.values.join(", ")}`;
    case "string":
      return `${setting.minBytes} to ${setting.maxBytes} bytes`;
    default:
      return undefined;
  }
}

/** A setting's line of `metaraft start --help`: what it does, its YAML path, default and range. */
export function helpOf(setting: PathedSetting): string {
  const range = rangeText(setting);
  return `${setting.help} [${setting.path}; default ${defaultText(setting)}${range ? `; ${range}` : ""}]`;
}

/** A value as it is written in the template: plain where YAML reads it back as the same string. */
function yamlScalar(value: unknown): string {
  if (typeof value === "string") return /^[\w./-]+$/.test(value) ? value : JSON.stringify(value);
  return String(value);
}

function exampleOf(setting: Setting): string {
  return yamlScalar(setting.example ?? defaultOf(setting, 1));
}

/**
 * The config template of `metaraft start --help`: every setting with its default (or an
 * example, for the cluster and the secret), sections as one-line maps.
 */
function configTemplate(): string {
  const lines = ["Config file (YAML; flags override it; every key is optional):"];
  for (const [name, entry] of Object.entries(SETTINGS)) {
    if ("type" in entry) {
      const setting = entry as Setting;
      lines.push(`  ${name}: ${exampleOf(setting)}`);
      if (setting.note !== undefined) lines.push(`  #   ${setting.note}`);
    } else {
      const fields = Object.entries(entry as Record<string, Setting>).map(
        ([key, setting]) => `${key}: ${exampleOf(setting)}`,
      );
      lines.push(`  ${name}: {${fields.join(", ")}}`);
    }
  }
  lines.push("Print the effective config of a command line with --print-config.");
  return lines.join("\n");
}

/** Lines for `metaraft start --help`: the YAML file's shape. */
export const CONFIG_HELP = configTemplate();
