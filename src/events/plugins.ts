import { isAbsolute, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { MetaraftError } from "../errors.js";
import type { EventListener } from "./listener.js";

// A minimal loader until the full one (builtins, validation) lands: a file path or a package
// whose default export is an EventListener, a class making one, or a factory.
export async function loadPlugin(
  declaration: { readonly name: string; readonly module: string; readonly options?: object },
  options: { readonly baseDir: string },
): Promise<EventListener> {
  const specifier =
    declaration.module.startsWith(".") || isAbsolute(declaration.module)
      ? pathToFileURL(resolve(options.baseDir, declaration.module)).href
      : declaration.module;
  let loaded: { default?: unknown };
  try {
    loaded = (await import(specifier)) as { default?: unknown };
  } catch (cause) {
    throw new MetaraftError(
      "MR_ERR_INVALID_ARGUMENT",
      `plugin ${declaration.name}: cannot load ${declaration.module}`,
      { cause },
    );
  }
  const exported = loaded.default;
  const made =
    typeof exported === "function"
      ? /^class\s/.test(Function.prototype.toString.call(exported))
        ? new (exported as new () => EventListener)()
        : (exported as () => EventListener)()
      : exported;
  return made as EventListener;
}
