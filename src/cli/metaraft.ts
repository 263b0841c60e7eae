#!/usr/bin/env node
import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { MetaraftError } from "../errors.js";
import {
  CONFIG_HELP,
  DEFAULT_CLIENT_PORT,
  DEFAULT_DATA_ROOT,
  DEFAULT_HOST,
  DEFAULT_RAFT_PORT,
  DEV_CLUSTER_ID,
  flagValues,
  LOG_LEVELS,
  loadConfigFile,
  resolveSettings,
  SETTINGS,
  settingsToYaml,
} from "./config.js";
import { DEFAULT_ENDPOINTS } from "./endpoints.js";
import { EXIT_USAGE, errorLine, exitCodeOf, UsageError } from "./output.js";
import { addVerbs, integerArg } from "./verbs.js";

/**
 * The `metaraft` command: `start` (one node), `dev` (a local cluster of nodes), and the client
 * verbs `volume`, `bucket`, `key` and `status`. An error prints one line on stderr,
 * `error: MR_ERR_X: message`, and exits 1; a usage error exits 2.
 */

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

function program(): Command {
  const root = new Command("metaraft")
    .description("a replicated metadata service: run nodes and use the namespace")
    .version(version(), "-V, --version")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // Commander's errors become one line (its "Did you mean" hint joins the first).
      outputError: (text, write) => write(`${text.trimEnd().replaceAll(/\s*\n\s*/g, " ")}\n`),
    })
    .addHelpText(
      "after",
      `
Examples:
  npm start                                  a local 3-node cluster, data in ./data (= metaraft dev --nodes 3)
  metaraft volume create vol1
  metaraft bucket create vol1 photos
  metaraft key put vol1 photos 2024/cat.jpg --size 1234 --etag abc --meta camera=x100
  metaraft key ls vol1 photos --prefix 2024/
  metaraft status

Client verbs reach ${DEFAULT_ENDPOINTS} unless --endpoints or
$METARAFT_ENDPOINTS says otherwise. Exit status: 0 ok, 1 error, 2 usage error.`,
    );

  const start = root
    .command("start")
    .description("run one node in the foreground (Ctrl-C stops it cleanly)")
    .option("-c, --config <file>", "a YAML config file; flags override it")
    .option("--print-config", "print the effective config as YAML and exit");
  for (const s of SETTINGS) {
    const option =
      s.arg === undefined
        ? new Option(`--${s.flag}`, `${s.description} [${s.path}]`)
        : new Option(`--${s.flag} ${s.arg}`, `${s.description} [${s.path}, default ${s.defaultText}]`);
    start.addOption(option);
  }
  start.addOption(
    new Option("--stop-with-parent", "stop when stdin closes (used by metaraft dev)").hideHelp(),
  );
  start.option(
    "--join <host:port>",
    "join a running cluster through one member's client address (add this node with 'member add' first)",
  );
  start.option(
    "--force-new-cluster",
    "disaster recovery: rebuild a one-node cluster from this node's data (removes every other member; commits the whole log)",
  );
  start.addHelpText("after", `\n${CONFIG_HELP}`);
  start.action(async (options: Record<string, unknown>) => {
    let settings: ReturnType<typeof resolveSettings>;
    try {
      const file = typeof options.config === "string" ? loadConfigFile(options.config) : undefined;
      settings = resolveSettings({ ...(file ? { file } : {}), flags: flagValues(options) });
    } catch (error) {
      throw error instanceof MetaraftError ? new UsageError(error) : error;
    }
    if (options.printConfig === true) {
      process.stdout.write(settingsToYaml(settings));
      return;
    }
    const { runNode } = await import("./start.js");
    await runNode(settings, {
      stopWithParent: options.stopWithParent === true,
      forceNewCluster: options.forceNewCluster === true,
      ...(typeof options.join === "string" ? { join: options.join } : {}),
    });
  });

  root
    .command("dev")
    .description("run a local cluster of N node processes in the foreground (Ctrl-C stops them all)")
    .option("-n, --nodes <n>", "how many nodes, 1 to 9", integerArg(1, 9), 3)
    .option("--data <dir>", "data root; node i keeps its data in <dir>/node-i", DEFAULT_DATA_ROOT)
    .option("--host <host>", "the address every node listens on", DEFAULT_HOST)
    .option(
      "--base-port <port>",
      "Raft port of node 1; node i uses port + i - 1",
      integerArg(1, 65535),
      DEFAULT_RAFT_PORT,
    )
    .option(
      "--client-base-port <port>",
      "client port of node 1; node i uses port + i - 1",
      integerArg(1, 65535),
      DEFAULT_CLIENT_PORT,
    )
    .option("--cluster-id <name>", `the cluster's id (default: the config's, else ${DEV_CLUSTER_ID})`)
    .option("-c, --config <file>", "a YAML node config for every node (id, cluster and data come from dev)")
    .option("--secret <secret>", "the peers' shared secret (default: the dev secret)")
    .addOption(
      new Option(
        "--log-level <level>",
        "the nodes' log level, logs to stderr (default: the config's, else error)",
      ).choices(LOG_LEVELS),
    )
    .option("--no-sync", "do not fsync (tests and benchmarks only)")
    .action(async (options: Record<string, unknown>) => {
      const { runDev } = await import("./dev.js");
      process.exitCode = await runDev({
        nodes: options.nodes as number,
        data: options.data as string,
        host: options.host as string,
        basePort: options.basePort as number,
        clientBasePort: options.clientBasePort as number,
        ...(typeof options.clusterId === "string" ? { clusterId: options.clusterId } : {}),
        ...(typeof options.logLevel === "string" ? { logLevel: options.logLevel } : {}),
        ...(typeof options.config === "string" ? { config: options.config } : {}),
        ...(typeof options.secret === "string" ? { secret: options.secret } : {}),
        ...(options.sync === false ? { noSync: true } : {}),
      });
    });

  addVerbs(root);
  return root;
}

async function main(argv: readonly string[]): Promise<number> {
  // `metaraft key ls … | head` closes stdout early: not an error.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(0);
    throw error;
  });
  try {
    await program().parseAsync([...argv]);
    return typeof process.exitCode === "number" ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Already printed by commander (help, version, or one line for a usage error).
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    process.stderr.write(`${errorLine(error)}\n`);
    return exitCodeOf(error);
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
    // A failed start may leave a listener open: do not wait for it.
    if (code !== 0) process.exit(code);
  },
  (error: unknown) => {
    process.stderr.write(`${errorLine(error)}\n`);
    process.exit(1);
  },
);
