import { readFileSync } from "node:fs";
import { Command, CommanderError, Option } from "commander";
import { parse as parseYaml } from "yaml";
import { MetaraftError } from "../errors.js";
import {
  argOf,
  CONFIG_HELP,
  DEFAULT_CLIENT_PORT,
  DEFAULT_DATA_ROOT,
  DEFAULT_HOST,
  DEFAULT_RAFT_PORT,
  DEV_CLUSTER_ID,
  flagValues,
  helpOf,
  LOG_LEVELS,
  loadConfigFile,
  resolveSettings,
  SETTING_LIST,
  settingsToYaml,
} from "./config.js";
import { RESTART_WINDOW_MS, RESTARTS_MAX, runDev } from "./dev.js";
import { DEFAULT_ENDPOINTS } from "./endpoints.js";
import {
  asUsage,
  EXIT_USAGE,
  exitCodeOf,
  OUTPUT_FORMATS,
  type OutputFormat,
  printError,
  UsageError,
} from "./output.js";
import { addVerbs, clientOptions, integerArg } from "./verbs.js";
import { addWatchVerbs } from "./watch.js";

/**
 * The `metaraft` command: `start` (one node), `dev` (a local cluster of nodes), and the client
 * verbs `volume`, `bucket`, `key`, `status` and `endpoint health`. An error prints one line on
 * stderr, `error: MR_ERR_X: message` (under `-w json`, one JSON object
 * `{"error":{"code","message"}}`), and exits 1; a usage error is MR_ERR_USAGE, names the verb's
 * `--help`, and exits 2.
 */

/** `metaraft key put`: the words that name a command, from the root down. */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/**
 * What one parse of a command line leaves for its caller to report: each `program()` has its
 * own, so the shell's fresh program per line starts clean.
 */
interface RunState {
  /** The usage error commander found while parsing, kept until it is printed in its format. */
  parseError?: UsageError;
  /** The verb being run, once commander has parsed its command line. */
  running?: string;
}

const runStates = new WeakMap<Command, RunState>();

/**
 * Every command reports its own parse errors: commander's text becomes a usage error naming
 * that command's `--help` (the root's output settings are copied, so each is set here).
 */
function reportParseErrors(command: Command, state: RunState): void {
  const path = commandPath(command);
  command.configureOutput({
    outputError: (text) => {
      const detail = text
        .trim()
        .replace(/^error: /, "")
        .replaceAll(/\s*\n\s*/g, " ");
      state.parseError = usage(detail, path);
    },
  });
  for (const sub of command.commands) reportParseErrors(sub, state);
}

function usage(detail: string, command: string): UsageError {
  const error = new UsageError(detail);
  error.command = command;
  return error;
}

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

/**
 * The whole command tree. Building it runs nothing; `parseAsync` runs one command line. Each verb
 * group is added by one `addXVerbs(root)` call below.
 */
export function program(): Command {
  const root = new Command("metaraft")
    .description("a replicated metadata service: run nodes and use the namespace")
    .version(version(), "-V, --version")
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureHelp({ showGlobalOptions: true })
    .addOption(
      new Option("-w, --output <format>", "print results and errors as a table or as JSON")
        .choices(OUTPUT_FORMATS)
        .default("table"),
    )
    .addOption(new Option("--json", "the same as --output json").implies({ output: "json" }))
    .addHelpText(
      "after",
      `
Examples:
  npm start                                  a local 3-node cluster, data in ./data (= metaraft dev --nodes 3)
  metaraft volume create vol1
  metaraft bucket create vol1 photos
  metaraft key put vol1 photos 2024/cat.jpg --size 1234 --etag abc --meta camera=x100
  metaraft key ls vol1 photos --prefix 2024/
  metaraft status                            exit 1 if a node is unreachable or there is no leader
  metaraft endpoint health -w json
  metaraft watch vol1/photos/ --from 1      every event under the prefix, then new ones (Ctrl-C stops)
  metaraft shell                             an interactive shell: Tab completes verbs and names, history in ~/.metaraft_history

Client verbs reach ${DEFAULT_ENDPOINTS} unless --endpoints or
$METARAFT_ENDPOINTS says otherwise. -w/--output works on every verb, before or after it.
Under -w json results go to stdout as JSON and an error goes to stderr as one JSON line,
{"error":{"code":"MR_ERR_X","message":"…"}}. Exit status: 0 ok, 1 error (or an unhealthy
cluster), 2 usage error (MR_ERR_USAGE).`,
    );

  const start = root
    .command("start")
    .description("run one node in the foreground (Ctrl-C stops it cleanly)")
    .option("-c, --config <file>", "a YAML config file; flags override it")
    .option("--print-config", "print the effective config as YAML and exit");
  for (const s of SETTING_LIST) {
    const arg = argOf(s);
    start.addOption(new Option(arg === undefined ? `--${s.flag}` : `--${s.flag} ${arg}`, helpOf(s)));
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
    let file: ReturnType<typeof loadConfigFile> | undefined;
    try {
      file = typeof options.config === "string" ? loadConfigFile(options.config) : undefined;
      settings = resolveSettings({ ...(file ? { file } : {}), flags: flagValues(options) });
    } catch (error) {
      throw error instanceof MetaraftError ? asUsage(error) : error;
    }
    if (options.printConfig === true) {
      const format = start.optsWithGlobals().output as OutputFormat;
      process.stdout.write(
        format === "json"
          ? `${JSON.stringify(parseYaml(settingsToYaml(settings)), null, 2)}\n`
          : settingsToYaml(settings),
      );
      return;
    }
    const { runNode } = await import("./start.js");
    await runNode(settings, {
      stopWithParent: options.stopWithParent === true,
      forceNewCluster: options.forceNewCluster === true,
      ...(typeof options.join === "string" ? { join: options.join } : {}),
      ...(file?.listeners ? { listeners: file.listeners } : {}),
      ...(file?.queues ? { queues: file.queues } : {}),
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
        "the nodes' log level, in their log files and on the terminal (default: the config's, else info in <dir>/node-i/node.log and error on the terminal)",
      ).choices(LOG_LEVELS),
    )
    .option("--no-sync", "do not fsync (tests and benchmarks only)")
    .option(
      "--restart",
      `restart a node that dies, with backoff, at most ${RESTARTS_MAX} times in ${RESTART_WINDOW_MS / 1000} s (default: leave it down and print the command that restarts it)`,
    )
    .action(async (options: Record<string, unknown>) => {
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
        ...(options.restart === true ? { restart: true } : {}),
      });
    });

  clientOptions(
    root
      .command("shell")
      .description(
        "an interactive shell: every verb, one connection, Tab completion of verbs, options and names, history, watches in the background",
      ),
  )
    .addHelpText(
      "after",
      `
A line runs as 'metaraft LINE' would (quote with '…' or "…", escape with \\). Tab completes verbs,
options and the cluster's names; up-arrow walks the history ($METARAFT_HISTORY, else
~/.metaraft_history; its newest lines, bounded). 'watch PREFIX' prints its events above the prompt
until 'unwatch'. Ctrl-C clears the line; exit, quit or Ctrl-D leaves.`,
    )
    .action(async (_options: unknown, command: Command) => {
      const { runShell } = await import("./shell.js");
      await runShell(command.optsWithGlobals());
    });

  addVerbs(root);
  addWatchVerbs(root);
  const state: RunState = {};
  runStates.set(root, state);
  reportParseErrors(root, state);
  // An action's own usage error (a bad endpoint, a bad setting) names that verb's --help too.
  root.hook("preAction", (_root, command) => {
    state.running = commandPath(command);
  });
  return root;
}

/**
 * Prints why `root.parseAsync` failed, in the format asked for, and gives the exit status: help
 * and version (printed already) 0, a usage error 2, any other error 1.
 */
export function reportFailure(root: Command, error: unknown, format: OutputFormat): number {
  const state = runStates.get(root) ?? {};
  if (error instanceof CommanderError) {
    // Help and version are printed already; a parse error waits in state.parseError.
    if (state.parseError !== undefined) printError(state.parseError, format);
    return error.exitCode === 0 ? 0 : EXIT_USAGE;
  }
  if (error instanceof UsageError && error.command === undefined) {
    error.command = state.running ?? "metaraft";
  }
  printError(error, format);
  return exitCodeOf(error);
}
