import { createRequire } from "node:module";
import { isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { pack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import {
  CONSUMER_OPTIONS,
  parseConsumerOptions,
  QUEUE_SETTINGS_DEFAULT,
  type QueueConsumerContext,
  type QueueHandler,
} from "./options.js";
import { QUEUE_NAME, QUEUES_MAX } from "./records.js";

/**
 * Consumers named in a node's config file (`queues:`), for queues whose consumer is a module
 * rather than code of the process: each entry is `{name, module, options?}` plus any consumer
 * option (`maxItemsAtOnce`, `maxAttempts`, ...). The module's default export is a handler
 * factory, `(options, context) => handler`, called once when the node starts.
 */
export interface QueueDeclaration {
  readonly name: string;
  /** A file (`./x.js`, `/abs/x.js`, `file:` URL, or a name ending in .js/.mjs/.cjs) or a package. */
  readonly module: string;
  /** Handed to the factory as they are. */
  readonly options: Readonly<Record<string, unknown>>;
  /** The consumer options given (the rest default when the consumer starts). */
  readonly consumer: Readonly<Record<string, number>>;
}

/** Bytes of a declaration's options at most (MessagePack). */
export const QUEUE_OPTIONS_BYTES_MAX = 64 * 1024;

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Checks the `queues:` list of a config file; an error names the entry and what is wrong. */
export function parseQueueDeclarations(value: unknown, source: string): QueueDeclaration[] {
  const bad = (detail: string): MetaraftError =>
    new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${source}: queues ${detail}`);
  if (!Array.isArray(value)) throw bad("must be a list of {name, module, options?, <consumer options>?}");
  if (value.length > QUEUES_MAX) throw bad(`holds ${value.length} entries; at most ${QUEUES_MAX}`);
  const names = new Set<string>();
  const allowed = ["name", "module", "options", ...Object.keys(CONSUMER_OPTIONS)];
  return value.map((entry: unknown, i): QueueDeclaration => {
    if (!isMap(entry)) throw bad(`[${i}] must be a map`);
    for (const key of Object.keys(entry)) {
      if (!allowed.includes(key))
        throw bad(`[${i}] has an unknown key "${key}" (keys: ${allowed.join(", ")})`);
    }
    if (typeof entry.name !== "string" || !QUEUE_NAME.test(entry.name)) {
      throw bad(`[${i}].name must match ${QUEUE_NAME} (letters, digits, ., _ and -)`);
    }
    const name = entry.name;
    if (names.has(name)) throw bad(`[${i}]: the queue ${name} is declared twice`);
    names.add(name);
    if (typeof entry.module !== "string" || entry.module.length === 0 || entry.module.length > 4096) {
      throw bad(`[${i}] (${name}).module must be a module path or a package`);
    }
    const options = entry.options ?? {};
    if (!isMap(options)) throw bad(`[${i}] (${name}).options must be a map`);
    if (pack(options).length > QUEUE_OPTIONS_BYTES_MAX) {
      throw bad(`[${i}] (${name}).options exceed ${QUEUE_OPTIONS_BYTES_MAX} bytes`);
    }
    const consumer: Record<string, number> = {};
    for (const key of Object.keys(CONSUMER_OPTIONS)) {
      if (entry[key] !== undefined) consumer[key] = entry[key] as number;
    }
    parseConsumerOptions(name, consumer, QUEUE_SETTINGS_DEFAULT, `${source}: queues [${i}] (${name})`);
    return { name, module: entry.module, options, consumer };
  });
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

/** A package as `baseDir` sees it, else as metaraft does. */
function resolvePackage(module: string, baseDir: string): string {
  try {
    return pathToFileURL(createRequire(join(baseDir, "package.json")).resolve(module)).href;
  } catch {
    return module;
  }
}

/** Imports a declared consumer's module and makes its handler. */
export async function loadQueueHandler(
  declaration: QueueDeclaration,
  context: QueueConsumerContext,
): Promise<QueueHandler> {
  const { name, module } = declaration;
  const specifier = module.startsWith("file:")
    ? module
    : isFileModule(module)
      ? pathToFileURL(resolve(context.baseDir, module)).href
      : resolvePackage(module, context.baseDir);
  let loaded: Record<string, unknown>;
  try {
    loaded = (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    throw new MetaraftError(
      "MR_ERR_QUEUE_CONSUMER_LOAD_FAILED",
      `queue ${name}: module ${module} could not be imported: ${describe(error)}`,
      { cause: error, details: { queue: name, module } },
    );
  }
  const factory = loaded.default;
  if (typeof factory !== "function") {
    throw new MetaraftError(
      "MR_ERR_QUEUE_CONSUMER_INVALID",
      `queue ${name}: the default export of ${module} must be a handler factory (options, context) => handler, not ${factory === null ? "null" : typeof factory}`,
      { details: { queue: name, module } },
    );
  }
  let handler: unknown;
  try {
    handler = await (factory as (o: unknown, c: QueueConsumerContext) => unknown)(
      declaration.options,
      context,
    );
  } catch (error) {
    throw new MetaraftError(
      "MR_ERR_QUEUE_CONSUMER_LOAD_FAILED",
      `queue ${name}: the factory of ${module} threw: ${describe(error)}`,
      { cause: error, details: { queue: name, module } },
    );
  }
  if (typeof handler !== "function") {
    throw new MetaraftError(
      "MR_ERR_QUEUE_CONSUMER_INVALID",
      `queue ${name}: the factory of ${module} must return a handler function, not ${handler === null ? "null" : typeof handler}`,
      { details: { queue: name, module } },
    );
  }
  return handler as QueueHandler;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
