import { MetaraftError } from "../errors.js";

/** Exit codes of every `metaraft` command. */
export const EXIT_OK = 0;
/** The service said no, or could not be reached. */
export const EXIT_ERROR = 1;
/** The command line or a setting is wrong; nothing was sent. */
export const EXIT_USAGE = 2;

/** How a command prints its result and its errors: `-w/--output table|json`. */
export const OUTPUT_FORMATS = ["table", "json"] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/**
 * The format asked for on the command line, read before commander parses it: an error found
 * while parsing (a usage error) must already come out in that format.
 */
export function formatOf(argv: readonly string[]): OutputFormat {
  let format: OutputFormat = "table";
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") break;
    let value: string | undefined;
    if (arg === "--json") value = "json";
    else if (arg === "-w" || arg === "--output") value = argv[i + 1];
    else if (arg.startsWith("--output=")) value = arg.slice("--output=".length);
    else if (arg.startsWith("-w") && arg.length > 2) value = arg.slice(2).replace(/^=/, "");
    if (value === "json" || value === "table") format = value;
  }
  return format;
}

/** A bad command line or setting, found before anything was sent: exit 2, code MR_ERR_USAGE. */
export class UsageError extends Error {
  /** The verb whose `--help` the error line names, e.g. `metaraft key put`. */
  command: string | undefined;
  constructor(
    readonly detail: string,
    /** The setting's own error, when a setting (not the command line's shape) is wrong. */
    readonly error?: MetaraftError,
  ) {
    super(detail);
  }
}

export function usage(detail: string): UsageError {
  return new UsageError(detail);
}

/** A setting's MR_ERR_INVALID_ARGUMENT (or any error) as a usage error. */
export function asUsage(error: MetaraftError): UsageError {
  return new UsageError(error.message.replace(/^MR_ERR_[A-Z_]+: /, ""), error);
}

function oneLine(text: string): string {
  return text.replaceAll(/\s*\n\s*/g, " ").trim();
}

/** The code and message of any error, as both output formats show them. */
export function describeError(error: unknown): { code: string; message: string; help?: string } {
  if (error instanceof UsageError) {
    return {
      code: "MR_ERR_USAGE",
      message: oneLine(error.detail),
      ...(error.command === undefined ? {} : { help: `${error.command} --help` }),
    };
  }
  if (error instanceof MetaraftError) {
    return { code: error.code, message: oneLine(error.message.replace(`${error.code}: `, "")) };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: "MR_ERR_INTERNAL", message: oneLine(message) };
}

/** The one line an error prints: `error: MR_ERR_X: message`, a usage error naming `--help`. */
export function errorLine(error: unknown): string {
  const { code, message, help } = describeError(error);
  return `error: ${code}: ${message}${help === undefined ? "" : ` (see '${help}')`}`;
}

/** The error under `-w json`: one JSON object on one line, `{"error":{"code","message"}}`. */
export function errorJson(error: unknown): string {
  return JSON.stringify({ error: describeError(error) });
}

/** Writes the error to stderr in the format asked for. */
export function printError(error: unknown, format: OutputFormat): void {
  process.stderr.write(`${format === "json" ? errorJson(error) : errorLine(error)}\n`);
}

export function exitCodeOf(error: unknown): number {
  return error instanceof UsageError ? EXIT_USAGE : EXIT_ERROR;
}

/**
 * Left-aligned columns, two spaces apart; no trailing blanks. A row's last cell is never
 * padded, so it does not widen its column (a short row's note runs on freely).
 */
export function table(header: readonly string[] | undefined, rows: readonly (readonly string[])[]): string {
  const all = header ? [header, ...rows] : rows;
  const widths: number[] = [];
  for (const row of all) {
    row.forEach((cell, i) => {
      if (i < row.length - 1 || row.length === (header?.length ?? row.length)) {
        widths[i] = Math.max(widths[i] ?? 0, cell.length);
      }
    });
  }
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** `name  value` lines, the names aligned. */
export function fields(pairs: readonly (readonly [string, string])[]): string {
  return table(undefined, pairs);
}

export function time(ms: unknown): string {
  return typeof ms === "number" && Number.isFinite(ms) ? new Date(ms).toISOString() : "-";
}

export function cell(value: unknown): string {
  if (value === undefined || value === null || value === "") return "-";
  return typeof value === "string" ? value : JSON.stringify(value);
}

/** The reply without the RPC envelope's `id` and `ok`. */
export function body(reply: Record<string, unknown>): Record<string, unknown> {
  const { id: _id, ok: _ok, ...rest } = reply;
  return rest;
}

const TIME_FIELD = /At$/;

/**
 * A reply as JSON output shows it: every time field (`createdAt`, `modifiedAt`…, milliseconds
 * since the epoch on the wire) in ISO 8601, as the table shows it.
 */
export function jsonView(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(jsonView);
  if (typeof value !== "object" || value === null) return value;
  if (value instanceof Error) return describeError(value);
  return Object.fromEntries(
    Object.entries(value).map(([name, v]) => [
      name,
      TIME_FIELD.test(name) && typeof v === "number" ? time(v) : jsonView(v),
    ]),
  );
}

export function json(value: unknown): string {
  return JSON.stringify(jsonView(value), null, 2);
}
