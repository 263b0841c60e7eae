import { readdirSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** `src/`, from a test compiled to `dist/test/` (or a subfolder of it one level down). */
export const SRC = resolve(dirname(fileURLToPath(import.meta.url)), "../../../src");

/** Every `.ts` file under `dir`, recursively. */
export function sourceFiles(dir: string = SRC): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}
