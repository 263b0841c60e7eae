import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { MetaraftError } from "../errors.js";
import type { EventListener } from "./listener.js";
import { isPlainObject } from "./options.js";
import { LISTENER_NAME } from "./registry.js";
import { NdjsonSink } from "./sinks/ndjson.js";
import { WebhookSink } from "./sinks/webhook.js";

/**
 * Loading a listener plugin: from its declaration (`{name, module, options}`, as the node's
 * config or `metaraft listeners add` give it) to a validated `EventListener`, not yet
 * initialised. The host then calls `init(context, options)`, `start()`, `stop()`.
 *
 * `module` is one of:
 * - a shipped sink by its bare name: `ndjson` or `webhook` (so a package of either name cannot
 *   be loaded as a plugin; no plugin needs to be one);
 * - a file: a path starting with `./`, `../` or `/`, a `file:` URL, or a name ending in `.js`,
 *   `.mjs` or `.cjs`; a relative path is taken from `baseDir`;
 * - otherwise a package name, resolved from `baseDir` (its `node_modules`) first, and then from
 *   metaraft's own.
 *
 * The module's default export is an `EventListener` object, a class (constructed with a
 * `PluginEnvironment`), or a factory function (called with one, maybe async). An object export
 * is one instance for every declaration that names the module in one process: export a class or
 * factory to register a plugin twice.
 */

export interface PluginDeclaration {
  /** The registered listener's name (`ListenerContext.name`). */
  readonly name: string;
  readonly module: string;
  /** Passed to `init` by the host; checked here to be an object. */
  readonly options?: Readonly<Record<string, unknown>>;
}

/** What a plugin's class or factory is given. */
export interface PluginEnvironment {
  /** The registered listener's name. */
  readonly name: string;
  /** The directory relative paths in the declaration and its options are taken from. */
  readonly baseDir: string;
}

export const BUILTIN_PLUGINS = {
  ndjson: (env: PluginEnvironment): EventListener => new NdjsonSink({ baseDir: env.baseDir }),
  webhook: (_env: PluginEnvironment): EventListener => new WebhookSink(),
} as const;

export type BuiltinPlugin = keyof typeof BUILTIN_PLUGINS;

export async function loadPlugin(
  declaration: PluginDeclaration,
  { baseDir }: { readonly baseDir: string },
): Promise<EventListener> {
  const { name, module } = checkDeclaration(declaration);
  const env: PluginEnvironment = { name, baseDir };
  if (Object.hasOwn(BUILTIN_PLUGINS, module)) return BUILTIN_PLUGINS[module as BuiltinPlugin](env);
  const loaded = await importModule(name, module, baseDir);
  if (!("default" in loaded) || loaded.default === undefined) {
    throw invalid(name, module, ["the module has no default export"]);
  }
  const listener = await instantiate(name, module, loaded.default, env);
  const problems = contractProblems(listener);
  if (problems.length > 0) throw invalid(name, module, problems);
  return listener as EventListener;
}

function checkDeclaration(declaration: PluginDeclaration): { name: string; module: string } {
  if (!isPlainObject(declaration)) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "a listener declaration must be an object");
  }
  const { name, module, options } = declaration;
  if (typeof name !== "string" || !LISTENER_NAME.test(name)) {
    throw new MetaraftError(
      "MR_ERR_INVALID_NAME",
      `listener name ${JSON.stringify(name)}: 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
  if (typeof module !== "string" || module.length === 0) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `listener ${name}: module must be a non-empty string`);
  }
  if (options !== undefined && !isPlainObject(options)) {
    throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `listener ${name}: options must be an object`);
  }
  return { name, module };
}

function isFileModule(module: string): boolean {
  return (
    module.startsWith("./") ||
    module.startsWith("../") ||
    module.startsWith("file:") ||
    isAbsolute(module) ||
    /\.[cm]?js$/.test(module)
  );
}

async function importModule(name: string, module: string, baseDir: string): Promise<Record<string, unknown>> {
  let specifier: string;
  if (module.startsWith("file:")) specifier = module;
  else if (isFileModule(module)) specifier = pathToFileURL(resolve(baseDir, module)).href;
  else specifier = resolvePackage(module, baseDir);
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    throw new MetaraftError(
      "MR_ERR_PLUGIN_LOAD_FAILED",
      `listener ${name}: module ${module} could not be imported: ${describe(error)}`,
      { cause: error, details: { listener: name, module } },
    );
  }
}

/**
 * A package as `baseDir` sees it; when that resolution fails (not installed there, or a
 * package that only exports an `import` condition) the bare name is imported from here.
 */
function resolvePackage(module: string, baseDir: string): string {
  try {
    return pathToFileURL(createRequire(join(baseDir, "package.json")).resolve(module)).href;
  } catch {
    return module;
  }
}

/** Whether `fn` is to be constructed: class syntax, or a constructor function with the methods on its prototype. */
function isConstructor(fn: (...args: unknown[]) => unknown): boolean {
  if (/^class[\s{]/.test(Function.prototype.toString.call(fn))) return true;
  const prototype = (fn as { prototype?: Record<string, unknown> }).prototype;
  return typeof prototype?.init === "function";
}

async function instantiate(
  name: string,
  module: string,
  exported: unknown,
  env: PluginEnvironment,
): Promise<unknown> {
  if (typeof exported !== "function") return exported;
  const fn = exported as (...args: unknown[]) => unknown;
  const constructs = isConstructor(fn);
  try {
    return constructs ? new (fn as unknown as new (env: PluginEnvironment) => unknown)(env) : await fn(env);
  } catch (error) {
    throw new MetaraftError(
      "MR_ERR_PLUGIN_LOAD_FAILED",
      `listener ${name}: module ${module}: its ${constructs ? "constructor" : "factory"} threw: ${describe(error)}`,
      { cause: error, details: { listener: name, module } },
    );
  }
}

/** What keeps `value` from being an `EventListener` (empty: nothing). */
export function contractProblems(value: unknown): string[] {
  if (typeof value !== "object" || value === null) {
    return [
      `the default export must be an EventListener, a class or a factory making one (got ${value === null ? "null" : typeof value})`,
    ];
  }
  const listener = value as Record<string, unknown>;
  const problems: string[] = [];
  for (const field of ["name", "version"] as const) {
    if (typeof listener[field] !== "string" || listener[field] === "") {
      problems.push(`${field} must be a non-empty string`);
    }
  }
  for (const method of ["init", "start", "stop"] as const) {
    if (typeof listener[method] !== "function") problems.push(`${method} must be a function`);
  }
  if (listener.status !== undefined && typeof listener.status !== "function") {
    problems.push("status must be a function when present");
  }
  return problems;
}

function invalid(name: string, module: string, problems: readonly string[]): MetaraftError {
  return new MetaraftError(
    "MR_ERR_PLUGIN_INVALID",
    `listener ${name}: the plugin in ${module}: ${problems.join("; ")}`,
    { details: { listener: name, module, problems } },
  );
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
