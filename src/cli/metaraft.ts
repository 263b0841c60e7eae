#!/usr/bin/env node
import { formatOf, printError } from "./output.js";
import { program, reportFailure } from "./program.js";

/** `metaraft ARGS`: runs one command line of the tree in program.ts and exits with its status. */

async function main(argv: readonly string[]): Promise<number> {
  const format = formatOf(argv.slice(2));
  // `metaraft key ls … | head` closes stdout early: not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
  const root = program();
  try {
    await root.parseAsync([...argv]);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    return reportFailure(root, error, format);
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
    // A failed start may leave a listener open: do not wait for it.
    if (code !== 0) process.exit(code);
  },
  (error: unknown) => {
    printError(error, formatOf(process.argv.slice(2)));
    process.exit(1);
  },
);
