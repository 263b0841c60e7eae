import { closeSync, fstatSync, openSync, renameSync, writeSync } from "node:fs";

/**
 * The logs of `metaraft dev`: each node's lines, made readable, appended to one file per node,
 * and the test of which of them the terminal shows too.
 */

/** A node's log file past this many bytes moves to `<file>.1`: at most twice this on disk per node. */
export const LOG_FILE_BYTES_MAX = 64 * 1024 * 1024;

/** pino's level numbers; `silent` shows nothing. */
export const LEVEL_VALUES: Readonly<Record<string, number>> = {
  trace: 10,
  debug: 20,
  info: 30,
  warn: 40,
  error: 50,
  fatal: 60,
  silent: Number.POSITIVE_INFINITY,
};

const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: "TRACE",
  20: "DEBUG",
  30: "INFO",
  40: "WARN",
  50: "ERROR",
  60: "FATAL",
};
const QUIET_FIELDS = new Set(["level", "time", "pid", "hostname", "node", "msg"]);

export interface LogLine {
  /** pino's level number; absent for a line that is not pino JSON (`error: …`, `node 1 ready: …`). */
  readonly level?: number;
  /** pino's epoch milliseconds, when the line has them. */
  readonly time?: number;
  readonly text: string;
}

/** A node's pino JSON log line made short and readable; other lines as they are. */
export function parseLogLine(line: string): LogLine {
  if (!line.startsWith("{")) return { text: line };
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return { text: line };
  }
  const level = typeof entry.level === "number" ? entry.level : undefined;
  const name = (level === undefined ? undefined : LEVEL_NAMES[level]) ?? String(entry.level);
  const extra = Object.entries(entry)
    .filter(([field]) => !QUIET_FIELDS.has(field))
    .map(([field, value]) => {
      if (field === "err" && typeof value === "object" && value !== null) {
        return `err=${JSON.stringify((value as { message?: unknown }).message ?? value)}`;
      }
      return `${field}=${typeof value === "string" ? value : JSON.stringify(value)}`;
    });
  const text = [name, entry.msg, ...extra].filter((p) => p !== undefined && p !== "").join(" ");
  return {
    ...(level === undefined ? {} : { level }),
    ...(typeof entry.time === "number" ? { time: entry.time } : {}),
    text,
  };
}

export function formatLogLine(line: string): string {
  return parseLogLine(line).text;
}

/**
 * Whether the terminal shows a node's line: pino lines at `threshold` or above, and every
 * other line (the node's own `error: …` and `warning: …` lines are not pino's).
 */
export function showsOnTerminal(line: LogLine, threshold: number): boolean {
  return line.level === undefined || line.level >= threshold;
}

/**
 * One node's log file, appended to across restarts (as ZooKeeper's and etcd's logs are), one
 * timestamped line at a time. Writes are synchronous: the lines are few (a node logs at `info`
 * only connections and shutdowns), and a line is in the file once the terminal shows it.
 */
export class LogFile {
  readonly path: string;
  readonly #bytesMax: number;
  readonly #onError: (error: NodeJS.ErrnoException) => void;
  #fd: number | undefined;
  #bytes: number;

  /** Throws if the file cannot be opened; a later write error goes to `onError`, once. */
  constructor(path: string, onError: (error: NodeJS.ErrnoException) => void, bytesMax = LOG_FILE_BYTES_MAX) {
    if (!(bytesMax > 0)) throw new RangeError(`bytesMax must be positive, got ${bytesMax}`);
    this.path = path;
    this.#bytesMax = bytesMax;
    this.#onError = onError;
    this.#fd = openSync(path, "a");
    this.#bytes = fstatSync(this.#fd).size;
  }

  /** `line` with the time it happened (`time`, else now) in front. */
  write(line: string, time: number = Date.now()): void {
    if (this.#fd === undefined) return;
    const data = `${new Date(time).toISOString()} ${line}\n`;
    const size = Buffer.byteLength(data);
    try {
      if (this.#bytes > 0 && this.#bytes + size > this.#bytesMax) this.#rotate();
      writeSync(this.#fd, data);
      this.#bytes += size;
    } catch (error) {
      // A full disk must not stop the cluster: the terminal still shows what it shows.
      this.close();
      this.#onError(error as NodeJS.ErrnoException);
    }
  }

  close(): void {
    if (this.#fd === undefined) return;
    const fd = this.#fd;
    this.#fd = undefined;
    try {
      closeSync(fd);
    } catch {
      // Closing cannot lose a synchronous write that returned.
    }
  }

  #rotate(): void {
    closeSync(this.#fd!);
    this.#fd = undefined;
    renameSync(this.path, `${this.path}.1`);
    this.#fd = openSync(this.path, "a");
    this.#bytes = 0;
  }
}
