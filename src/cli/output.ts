import { MetaraftError } from "../errors.js";

/** Exit codes of every `metaraft` command. */
export const EXIT_OK = 0;
/** The service said no, or could not be reached. */
export const EXIT_ERROR = 1;
/** The command line or a setting is wrong; nothing was sent. */
export const EXIT_USAGE = 2;

/** A bad command line or setting, found before anything was sent: exit 2. */
export class UsageError extends Error {
  constructor(readonly error: MetaraftError) {
    super(error.message);
  }
}

export function usage(detail: string): UsageError {
  return new UsageError(new MetaraftError("MR_ERR_INVALID_ARGUMENT", detail));
}

function oneLine(text: string): string {
  return text.replaceAll(/\s*\n\s*/g, " ").trim();
}

/** The one line an error prints: `error: MR_ERR_X: message`. */
export function errorLine(error: unknown): string {
  const inner = error instanceof UsageError ? error.error : error;
  if (inner instanceof MetaraftError) {
    const message = inner.message.startsWith(`${inner.code}:`)
      ? inner.message
      : `${inner.code}: ${inner.message}`;
    return `error: ${oneLine(message)}`;
  }
  const message = inner instanceof Error ? inner.message : String(inner);
  return `error: MR_ERR_INTERNAL: ${oneLine(message)}`;
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

export function json(value: unknown): string {
  return JSON.stringify(value, null, 2);
}
