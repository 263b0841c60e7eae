import { type ChildProcess, execFile, spawn } from "node:child_process";
import { createServer } from "node:net";
import { fileURLToPath } from "node:url";

/** The `metaraft` command, and `metaraft dev`, as real processes for the CLI tests. */

export const cliPath = fileURLToPath(new URL("../../src/cli/metaraft.js", import.meta.url));
/** The repository (the directory `npm start` runs in): dist/test/helpers/ is three levels down. */
export const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

/** How long a test waits for one thing dev or a node does before it calls it a failure. */
export const WAIT_MS = 15_000;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A free port from the OS (bind port 0) whose next `count - 1` ports are free too. */
export async function freeRange(count: number, avoid: ReadonlySet<number> = new Set()): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = await new Promise<number>((resolve, reject) => {
      const server = createServer();
      server.once("error", reject);
      server.listen(0, "127.0.0.1", () => {
        const port = (server.address() as { port: number }).port;
        server.close(() => resolve(port));
      });
    });
    if (base + count > 65535) continue;
    const ports = Array.from({ length: count }, (_, i) => base + i);
    if (ports.some((p) => avoid.has(p))) continue;
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base;
  }
  throw new Error("no free port range");
}

/** The environment without METARAFT_* variables: a command finds its endpoints itself. */
export function cleanEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const name of Object.keys(env)) if (name.startsWith("METARAFT_")) delete env[name];
  return env;
}

export interface Run {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a program to completion (20 s at most). */
export function run(file: string, args: readonly string[], cwd = repoRoot): Promise<Run> {
  return new Promise((resolve) => {
    execFile(file, args, { env: cleanEnv(), cwd, timeout: 20_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === "number" ? error.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** `metaraft ARGS`. */
export function cli(args: readonly string[]): Promise<Run> {
  return run(process.execPath, [cliPath, ...args]);
}

/** Retries `attempt` until it returns something, for at most `timeoutMs`. */
export async function eventually<T>(
  what: string,
  attempt: () => Promise<T | undefined>,
  timeoutMs = WAIT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await attempt();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not in ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

type Stream = "stdout" | "stderr";

/** A process whose output a test waits on, line patterns rather than time. */
export class Watched {
  readonly child: ChildProcess;
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly output: Record<Stream, string> = { stdout: "", stderr: "" };
  readonly #waiters = new Set<() => void>();
  #exited = false;

  constructor(child: ChildProcess) {
    this.child = child;
    this.exit = new Promise((resolve) =>
      child.once("close", (code, signal) => {
        this.#exited = true;
        for (const w of this.#waiters) w();
        resolve({ code, signal });
      }),
    );
    for (const stream of ["stdout", "stderr"] as const) {
      child[stream]!.on("data", (chunk: Buffer) => {
        this.output[stream] += chunk.toString();
        for (const w of this.#waiters) w();
      });
    }
  }

  get text(): string {
    return `--- stdout\n${this.output.stdout}\n--- stderr\n${this.output.stderr}`;
  }

  /** Every match of `pattern` (global) in `stream` once there are at least `count`. */
  waitFor(stream: Stream, pattern: RegExp, count = 1, timeoutMs = WAIT_MS): Promise<RegExpExecArray[]> {
    assertGlobal(pattern);
    return new Promise((resolve, reject) => {
      const check = () => {
        const matches = [...this.output[stream].matchAll(pattern)];
        if (matches.length >= count) done(() => resolve(matches));
        else if (this.#exited)
          done(() => reject(new Error(`exited before ${stream} matched ${pattern}:\n${this.text}`)));
      };
      const timer = setTimeout(
        () =>
          done(() =>
            reject(new Error(`${stream} did not match ${pattern} in ${timeoutMs} ms:\n${this.text}`)),
          ),
        timeoutMs,
      );
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        settle();
      };
      this.#waiters.add(check);
      check();
    });
  }

  /** Sends `signal` (to its whole process group when it was started detached) and waits for the exit. */
  async kill(signal: NodeJS.Signals = "SIGKILL", group = false): Promise<void> {
    if (this.#exited || this.child.pid === undefined) return;
    try {
      process.kill(group ? -this.child.pid : this.child.pid, signal);
    } catch {
      // Gone already.
    }
    await this.exit;
  }
}

function assertGlobal(pattern: RegExp): void {
  if (!pattern.global) throw new Error(`${pattern} needs the g flag`);
}

export interface DevCluster {
  readonly dev: Watched;
  readonly endpoints: readonly string[];
}

/** `metaraft dev --nodes N` on free loopback ports, in the repository, once it prints its hints. */
export async function startDev(
  dataDir: string,
  nodes: number,
  extra: readonly string[],
): Promise<DevCluster> {
  const raftBase = await freeRange(nodes);
  const clientBase = await freeRange(nodes, new Set(Array.from({ length: nodes }, (_, i) => raftBase + i)));
  const child = spawn(
    process.execPath,
    [
      cliPath,
      "dev",
      "--nodes",
      String(nodes),
      "--data",
      dataDir,
      "--base-port",
      String(raftBase),
      "--client-base-port",
      String(clientBase),
      ...extra,
    ],
    { cwd: repoRoot, env: cleanEnv(), stdio: ["ignore", "pipe", "pipe"] },
  );
  const dev = new Watched(child);
  await dev.waitFor("stdout", /Ctrl-C stops every node\n/g, 1, 30_000);
  return { dev, endpoints: Array.from({ length: nodes }, (_, i) => `127.0.0.1:${clientBase + i}`) };
}

/** The pids node `id` was ready with, in order (dev prints a `ready` line per process). */
export function readyPids(dev: Watched, id: number): number[] {
  const pattern = new RegExp(`^node ${id} ready: client \\S+, raft \\S+, pid (\\d+)$`, "gm");
  return [...dev.output.stdout.matchAll(pattern)].map((m) => Number(m[1]));
}
