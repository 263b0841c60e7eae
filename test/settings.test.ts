import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import {
  CONFIG_HELP,
  camel,
  defaultText,
  helpOf,
  parseConfigText,
  rangeText,
  resolveSettings,
  toNodeConfig,
} from "../src/cli/config.js";
import { CORE_MODE_DEFAULT } from "../src/core/index.js";
import { RAFT_DEFAULTS } from "../src/raft/index.js";
import { nodeSettings } from "../src/server/node.js";
import { RPC_DEFAULTS } from "../src/server/rpc-server.js";
import { defaultOf, type PathedSetting, SETTING_LIST, SETTINGS } from "../src/settings.js";

function at(settings: unknown, path: string): unknown {
  return path.split(".").reduce((value, name) => (value as Record<string, unknown>)[name], settings);
}

describe("settings table", () => {
  it("every default passes its own setting's check", () => {
    for (const s of SETTING_LIST) {
      const value = defaultOf(s, 1);
      const file = { name: "defaults.yaml", values: { [s.path]: value } };
      assert.deepEqual(at(resolveSettings({ file }), s.path), value, s.path);
    }
  });

  it("an empty config resolves to the table's defaults, setting by setting", () => {
    const resolved = resolveSettings();
    for (const s of SETTING_LIST) assert.deepEqual(at(resolved, s.path), defaultOf(s, 1), s.path);
    assert.deepEqual(resolveSettings({ file: parseConfigText("", "empty.yaml") }), resolved);
  });

  it("a node given no settings runs with the same ones as a node given the defaults", () => {
    const required = {
      id: 1,
      cluster: SETTINGS.cluster.default(1),
      dataDir: "/d",
      clusterId: "c",
      secret: "s",
    };
    const { id, cluster, data, clusterId, secret, log, ...expected } = resolveSettings();
    assert.deepEqual(nodeSettings(required), expected);
    assert.deepEqual(nodeSettings(toNodeConfig(resolveSettings())), expected);
  });

  it("the parts that default on their own take the table's value", () => {
    // The Raft core and the WASM host import nothing above them: the table refers to theirs.
    assert.equal(SETTINGS.raft.electionTicks.default, RAFT_DEFAULTS.electionTicks);
    assert.equal(SETTINGS.core.mode.default, CORE_MODE_DEFAULT);
    assert.equal(RPC_DEFAULTS.frameBytesMax, SETTINGS.requestBytesMax.default);
  });

  it("every help line shows the YAML path, the default and the range", () => {
    for (const s of SETTING_LIST) {
      const line = helpOf(s);
      assert.ok(line.includes(`[${s.path}; default ${defaultText(s)}`), line);
      const range = rangeText(s);
      if (s.type !== "boolean" && s.type !== "members") assert.ok(range && line.includes(range), line);
    }
    assert.match(helpOf(SETTING_LIST.find((s) => s.path === "raft.tickMs")!), /default 50 ms; 1 to 60000 ms/);
  });

  it("the config template is a valid config holding every setting, at its default unless an example", () => {
    const body = CONFIG_HELP.split("\n")
      .filter((line) => line.startsWith("  "))
      .map((line) => line.slice(2))
      .join("\n");
    const file = parseConfigText(body, "template");
    assert.deepEqual(Object.keys(file.values).sort(), SETTING_LIST.map((s) => s.path).sort());
    const resolved = resolveSettings({ file });
    for (const s of SETTING_LIST) {
      if (s.example === undefined) assert.deepEqual(at(resolved, s.path), defaultOf(s, 1), s.path);
    }
  });
});

/**
 * A default written a second time drifts from the first: the tick was once 50 ms in five
 * places. Outside src/settings.ts no line may give a setting its default beside its name or
 * flag (`tickMs: 50`, `tickMs ?? 50`, `"tick-ms": { …, default: "50" }`), except where the
 * table takes the default from (RAFT_DEFAULTS, CORE_MODE_DEFAULT).
 */
describe("settings: no default restated in src/", () => {
  const root = fileURLToPath(new URL("../../src/", import.meta.url));
  const sources = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
    );
  const units: Record<string, number> = { KiB: 1024, MiB: 1024 * 1024 };
  /** `4 * 1024 * 1024`, `4 * MiB`, `10_000`, `"50"`: the value the literal states. */
  const literalValue = (text: string): unknown => {
    if (/^"[^"]*"$/.test(text)) return text.slice(1, -1);
    if (text === "true" || text === "false") return text === "true";
    return text
      .split("*")
      .map((f) => f.trim().replaceAll("_", ""))
      .reduce((product, f) => product * (units[f] ?? Number(f)), 1);
  };
  const literal = String.raw`"[^"\n]*"|true|false|[\d_]+(?:\s*\*\s*(?:[\d_]+|KiB|MiB))*`;
  const patterns = (s: PathedSetting): RegExp[] => {
    const names = [...new Set([s.path.split(".").at(-1)!, camel(s.flag), s.flag])];
    return names.flatMap((name) => [
      new RegExp(String.raw`(?<![\w-])"?${name}"?\s*(?:\?\?|:|=(?!=))\s*(${literal})`, "g"),
      new RegExp(String.raw`(?<![\w-])"?${name}"?\s*:\s*\{[^}]*\bdefault:\s*(${literal})`, "g"),
    ]);
  };
  /** The literals on the line that give setting `s` its default. */
  const restated = (s: PathedSetting, line: string): string[] => {
    if (typeof s.default === "function") return [];
    const defaults: unknown[] = [s.default, String(s.default)];
    return patterns(s).flatMap((p) =>
      [...line.matchAll(p)].filter((m) => defaults.includes(literalValue(m[1]!))).map((m) => m[0].trim()),
    );
  };
  // A node id of 1 and an option that is off unless asked (`noSync ?? false`) are not defaults
  // written twice.
  const checked = SETTING_LIST.filter((s) => s.path !== "id" && s.type !== "boolean");
  const allowed = new Set([
    // The table's source: the Raft core imports nothing of the project.
    "raft/raft.ts raft.electionTicks",
    // The client's own fallback cluster id; src/client was out of this change's reach. Remove
    // this entry once it takes the table's.
    "client/client.ts clusterId",
  ]);

  it("finds none", () => {
    const found: string[] = [];
    for (const file of sources(root)) {
      const name = relative(root, file);
      if (name === "settings.ts") continue;
      readFileSync(file, "utf8")
        .split("\n")
        .forEach((line, i) => {
          if (/^\s*(\/\/|\/?\*)/.test(line)) return;
          for (const s of checked) {
            if (allowed.has(`${name} ${s.path}`)) continue;
            for (const text of restated(s, line)) found.push(`src/${name}:${i + 1}: ${s.path} = ${text}`);
          }
        });
    }
    assert.deepEqual(found, []);
  });

  it("catches a restated default", () => {
    const tick = SETTING_LIST.find((s) => s.path === "raft.tickMs")!;
    assert.equal(restated(tick, "      tickMs: options.tickMs ?? 50,").length, 1);
    assert.equal(restated(tick, "  tickMs: 50,").length, 1);
    assert.equal(restated(tick, '      "tick-ms": { type: "string", default: "50" },').length, 1);
    const secret = SETTING_LIST.find((s) => s.path === "secret")!;
    assert.equal(
      restated(secret, `      secret: { type: "string", default: "${SETTINGS.secret.default}" },`).length,
      1,
    );
    assert.deepEqual(restated(tick, "  tickMs: SETTINGS.raft.tickMs.default,"), []);
    assert.deepEqual(restated(tick, "  tickMs: 20,"), []);
    const bytes = SETTING_LIST.find((s) => s.path === "requestBytesMax")!;
    assert.equal(restated(bytes, "  requestBytesMax: 4 * 1024 * 1024,").length, 1);
    const mode = SETTING_LIST.find((s) => s.path === "execution.mode")!;
    assert.equal(restated(mode, '  mode: "leader-execution" as ExecutionMode,').length, 1);
    assert.deepEqual(restated(mode, '  if (this.mode === "leader-execution") {'), []);
  });
});
