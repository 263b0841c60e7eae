import { MetaraftError } from "../errors.js";

/**
 * A listener's options as users write them in config (`snake_case`, units last:
 * `checkpoint_ms`, `rotate_bytes`), declared as a table the way `src/settings.ts` declares the
 * node's settings: each with its type, default and range. `parseOptions` checks a declared
 * table against what the user wrote and names the listener and the option in every refusal,
 * so that a typo (`checkpoint_event`) is an error at `init`, not an option silently ignored.
 */

export interface IntegerOption {
  readonly type: "integer";
  readonly default: number;
  readonly min: number;
  readonly max: number;
  readonly help: string;
}

export interface EnumOption<T extends string = string> {
  readonly type: "enum";
  readonly values: readonly T[];
  readonly default: T;
  readonly help: string;
}

export interface StringOption {
  readonly type: "string";
  /** Absent: the option is required. */
  readonly default?: string;
  /** UTF-8 bytes at most (and at least 1). */
  readonly bytesMax: number;
  readonly help: string;
}

/** A map of strings to strings (HTTP headers). */
export interface StringMapOption {
  readonly type: "strings";
  readonly entriesMax: number;
  /** UTF-8 bytes of each key and each value at most. */
  readonly bytesMax: number;
  readonly help: string;
}

export type OptionSpec = IntegerOption | EnumOption | StringOption | StringMapOption;
export type OptionTable = Readonly<Record<string, OptionSpec>>;

type ValueOf<S extends OptionSpec> = S extends IntegerOption
  ? number
  : S extends EnumOption<infer T>
    ? T
    : S extends StringOption
      ? string
      : S extends StringMapOption
        ? Readonly<Record<string, string>>
        : never;

/** The parsed options of a table: every option present, defaults filled in. */
export type OptionValues<T extends OptionTable> = { readonly [K in keyof T]: ValueOf<T[K]> };

export type RawOptions = Readonly<Record<string, unknown>>;

/** A refusal naming the listener and the option: `MR_ERR_INVALID_ARGUMENT`. */
export function optionError(listener: string, option: string, problem: string): MetaraftError {
  return new MetaraftError("MR_ERR_INVALID_ARGUMENT", `listener ${listener}: option ${option} ${problem}`, {
    details: { listener, option },
  });
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Checks `raw` against `table`: every option of the table, defaulted when absent; an option
 * not in the table is refused unless `rest` is given, which then receives it (the base class
 * parses the common options and hands the rest to the subclass).
 */
export function parseOptions<T extends OptionTable>(
  listener: string,
  table: T,
  raw: RawOptions,
  rest?: Record<string, unknown>,
): OptionValues<T> {
  if (!isPlainObject(raw)) throw optionError(listener, "(all)", "must be an object of options");
  for (const [name, value] of Object.entries(raw)) {
    if (Object.hasOwn(table, name)) continue;
    if (!rest) {
      const known = Object.keys(table);
      throw optionError(
        listener,
        name,
        `is not an option of this listener${known.length ? ` (it takes ${known.join(", ")})` : " (it takes none)"}`,
      );
    }
    rest[name] = value;
  }
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) {
    out[name] = parseOption(listener, name, spec, raw[name]);
  }
  return out as OptionValues<T>;
}

function parseOption(listener: string, name: string, spec: OptionSpec, value: unknown): unknown {
  switch (spec.type) {
    case "integer": {
      if (value === undefined) return spec.default;
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        throw optionError(listener, name, `must be an integer (got ${JSON.stringify(value)})`);
      }
      if (value < spec.min || value > spec.max) {
        throw optionError(listener, name, `must be ${spec.min} to ${spec.max} (got ${value})`);
      }
      return value;
    }
    case "enum": {
      if (value === undefined) return spec.default;
      if (typeof value !== "string" || !spec.values.includes(value)) {
        throw optionError(
          listener,
          name,
          `must be one of ${spec.values.join(", ")} (got ${JSON.stringify(value)})`,
        );
      }
      return value;
    }
    case "string": {
      if (value === undefined) {
        if (spec.default === undefined) throw optionError(listener, name, "is required");
        return spec.default;
      }
      if (typeof value !== "string" || value.length === 0) {
        throw optionError(listener, name, "must be a non-empty string");
      }
      if (Buffer.byteLength(value) > spec.bytesMax) {
        throw optionError(listener, name, `must be at most ${spec.bytesMax} bytes`);
      }
      return value;
    }
    case "strings": {
      if (value === undefined) return {};
      if (!isPlainObject(value)) throw optionError(listener, name, "must be an object of strings");
      const entries = Object.entries(value);
      if (entries.length > spec.entriesMax) {
        throw optionError(listener, name, `must have at most ${spec.entriesMax} entries`);
      }
      for (const [key, v] of entries) {
        if (typeof v !== "string") throw optionError(listener, `${name}.${key}`, "must be a string");
        if (Buffer.byteLength(key) > spec.bytesMax || Buffer.byteLength(v) > spec.bytesMax) {
          throw optionError(listener, `${name}.${key}`, `must be at most ${spec.bytesMax} bytes`);
        }
      }
      return Object.freeze({ ...value });
    }
  }
}
