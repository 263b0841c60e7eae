import { pino } from "pino";
import { MetaraftError } from "../errors.js";
import type { ListenerDeclaration } from "../events/index.js";
import type { QueueDeclaration } from "../queues/index.js";
import { MetaraftNode } from "../server/node.js";
import { DEV_SECRET, type Settings, selfOf, toNodeConfig } from "./config.js";
import { EXIT_ERROR, errorLine } from "./output.js";

/** A signal this soon after the first is the same Ctrl-C, delivered twice. */
const REPEAT_SIGNAL_MS = 1000;

/** How long a clean shutdown may take before the process gives up on it. */
export const SHUTDOWN_TIMEOUT_MS = 15_000;

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

/**
 * `metaraft start`: one node in the foreground. Prints one line on stdout once it serves;
 * logs go to stderr. SIGINT or SIGTERM closes it cleanly (a second one exits at once); with
 * `stopWithParent`, so does the end of stdin (the parent `metaraft dev` is gone).
 */
export async function runNode(
  settings: Settings,
  options: {
    stopWithParent?: boolean;
    forceNewCluster?: boolean;
    join?: string;
    listeners?: readonly ListenerDeclaration[];
    queues?: readonly QueueDeclaration[];
  } = {},
): Promise<void> {
  const logger = pino({ level: settings.log.level, base: { node: settings.id } }, pino.destination(2));
  const self = selfOf(settings);
  const base = toNodeConfig(settings, {
    logger,
    onFatal: (error) => {
      // Serving on after a storage failure could answer with wrong data: stop, loudly.
      process.stderr.write(`${errorLine(error)} (node ${settings.id} stopped)\n`);
      logger.flush();
      process.exit(EXIT_ERROR);
    },
  });
  const config = {
    ...base,
    ...(options.forceNewCluster ? { forceNewCluster: true } : {}),
    ...(options.join ? { join: options.join } : {}),
    ...(options.listeners ? { listeners: options.listeners } : {}),
    ...(options.queues ? { queues: options.queues } : {}),
  };
  if (settings.secret === DEV_SECRET && settings.cluster.some((m) => !LOOPBACK.test(m.host))) {
    logger.warn({}, "the cluster listens beyond loopback with the dev secret: set secret in the config");
  }
  let closing = false;
  let closingSince = 0;
  let node: MetaraftNode | undefined;
  const shutdown = (why: string) => {
    if (closing) {
      // The same Ctrl-C may come twice (terminal and npm); a later one means "now".
      if (Date.now() - closingSince < REPEAT_SIGNAL_MS) return;
      process.stderr.write(`node ${settings.id}: ${why} again, exiting without a clean shutdown\n`);
      process.exit(EXIT_ERROR);
    }
    closing = true;
    closingSince = Date.now();
    logger.info({ why }, "shutting down");
    const timer = setTimeout(() => {
      process.stderr.write(`node ${settings.id}: shutdown took over ${SHUTDOWN_TIMEOUT_MS} ms, exiting\n`);
      process.exit(EXIT_ERROR);
    }, SHUTDOWN_TIMEOUT_MS);
    timer.unref();
    // A signal during start-up: close once the node is up (or exit if it never comes up).
    const closed = node ? node.close() : Promise.resolve();
    closed.then(
      () => {
        logger.info({}, "stopped");
        logger.flush();
        process.stdout.write(`node ${settings.id} stopped\n`);
        process.exit(0);
      },
      (error: unknown) => {
        process.stderr.write(`${errorLine(error)} (while stopping node ${settings.id})\n`);
        process.exit(EXIT_ERROR);
      },
    );
  };
  process.on("SIGINT", () => shutdown("SIGINT"));
  process.on("SIGTERM", () => shutdown("SIGTERM"));
  if (options.stopWithParent) {
    process.stdin.on("end", () => shutdown("parent gone"));
    process.stdin.on("error", () => shutdown("parent gone"));
    process.stdin.resume();
  }
  try {
    node = await MetaraftNode.start(config);
  } catch (error) {
    throw listenError(error);
  }
  for (const warning of node.warnings) process.stderr.write(`warning: ${warning}\n`);
  if (closing) {
    await node.close();
    process.exit(0);
  }
  process.stdout.write(
    `node ${settings.id} ready: client ${self.host}:${self.clientPort}, raft ${self.host}:${self.raftPort}, ` +
      `data ${config.dataDir}, cluster ${settings.clusterId} (members ${membersText(node.startMembers)})\n`,
  );
}

function membersText(members: { voters: readonly number[]; learners: readonly number[] }): string {
  if (members.voters.length === 0 && members.learners.length === 0) return "none yet: joining";
  const learners = members.learners.length > 0 ? `; learners ${members.learners.join(",")}` : "";
  return `${members.voters.join(",")}${learners}`;
}

/** A port already taken, or not ours to take, in one clear line. */
function listenError(error: unknown): unknown {
  const e = error as NodeJS.ErrnoException & { address?: string; port?: number };
  if (e?.syscall !== "listen") return error;
  const where = `${e.address ?? "?"}:${e.port ?? "?"}`;
  const why =
    e.code === "EADDRINUSE"
      ? `${where} is in use`
      : e.code === "EACCES"
        ? `${where}: permission denied`
        : e.code === "EADDRNOTAVAIL"
          ? `${where}: no such local address`
          : `${where}: ${e.code ?? e.message}`;
  return new MetaraftError("MR_ERR_LISTEN_FAILED", why, { cause: error });
}
