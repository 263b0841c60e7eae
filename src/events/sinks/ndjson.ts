import { type FileHandle, mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { type RecordFormat, s3Record } from "../format.js";
import { LedgerListener } from "../ledger-listener.js";
import { type OptionTable, type OptionValues, parseOptions, type RawOptions } from "../options.js";
import type { LedgerEvent } from "../types.js";

/**
 * The NDJSON file sink: appends one JSON line per event to `path` — in both formats, so that a
 * line is always one event (`native`: the `LedgerEvent`; `s3`: `{"Records":[record]}`, one S3
 * event notification per event, as S3 itself sends them), a reader deduplicates line by line by
 * txid (or `sequencer`), and rotation never splits anything but between events.
 *
 * Rotation: before a line would take the file past `rotate_bytes`, the file is renamed to
 * `path.NNNNNN` (the next sequence number, 6 digits or more, so the names sort by age) and a new
 * one begun; the oldest rotated files beyond `rotate_files_max` are deleted. A line longer than
 * `rotate_bytes` gets a file of its own.
 *
 * `fsync`: `always` syncs every line before the next, `batch` (the default) once per `onEvents`
 * call (the batch is acknowledged, so checkpointed, only once it is on disk), `never` leaves it
 * to the OS (a crash may lose what was checkpointed: fast, for files that are only a view).
 */

export const NDJSON_OPTIONS = {
  path: {
    type: "string",
    bytesMax: 4096,
    help: "the file to append to; a relative path is taken from the node's base directory",
  },
  format: { type: "enum", values: ["native", "s3"], default: "native", help: "native or s3 records" },
  rotate_bytes: {
    type: "integer",
    default: 64 * 1024 * 1024,
    min: 1,
    max: 2 ** 40,
    help: "a file is rotated before it would grow past this",
  },
  rotate_files_max: {
    type: "integer",
    default: 10,
    min: 1,
    max: 100_000,
    help: "rotated files kept; the oldest beyond it are deleted",
  },
  fsync: {
    type: "enum",
    values: ["always", "batch", "never"],
    default: "batch",
    help: "sync every line, once per batch, or never",
  },
} as const satisfies OptionTable;

export type NdjsonOptions = OptionValues<typeof NDJSON_OPTIONS>;

/** The digits of a rotated file's sequence suffix at least. */
const SEQUENCE_DIGITS = 6;

export class NdjsonSink extends LedgerListener {
  readonly name = "ndjson";
  readonly version = "1.0.0";
  readonly #baseDir: string;
  #sink: NdjsonOptions | undefined;
  #path = "";
  #file: FileHandle | undefined;
  #size = 0;
  /** The last sequence number a rotated file took (read from the directory on open). */
  #sequence = 0;

  /** `baseDir`: where a relative `path` is taken from (the loader passes the node's). */
  constructor({ baseDir = process.cwd() }: { readonly baseDir?: string } = {}) {
    super();
    this.#baseDir = baseDir;
  }

  /** The file written to, resolved. */
  get path(): string {
    return this.#path;
  }

  protected override configure(options: RawOptions): void {
    this.#sink = parseOptions(this.context.name, NDJSON_OPTIONS, options);
    this.#path = resolve(this.#baseDir, this.#sink.path);
  }

  override async onEvents(events: readonly LedgerEvent[], signal: AbortSignal): Promise<void> {
    const sink = this.#sink!;
    const lines = events.map((event) => Buffer.from(`${line(event, sink.format)}\n`));
    try {
      let chunk: Buffer[] = [];
      let chunkBytes = 0;
      for (const bytes of lines) {
        signal.throwIfAborted();
        let file = await this.#open();
        if (this.#size + chunkBytes > 0 && this.#size + chunkBytes + bytes.length > sink.rotate_bytes) {
          await this.#append(file, chunk);
          chunk = [];
          chunkBytes = 0;
          await this.#rotate();
          file = await this.#open();
        }
        if (sink.fsync === "always") {
          await this.#append(file, [bytes]);
          await file.datasync();
        } else {
          chunk.push(bytes);
          chunkBytes += bytes.length;
        }
      }
      const file = await this.#open();
      await this.#append(file, chunk);
      if (sink.fsync === "batch") await file.datasync();
    } catch (error) {
      // Start again from a fresh handle: the file may have been moved, or the disk filled.
      await this.#close();
      throw error;
    }
  }

  protected override async onStop(): Promise<void> {
    await this.#close();
  }

  async #open(): Promise<FileHandle> {
    if (this.#file) return this.#file;
    await mkdir(dirname(this.#path), { recursive: true });
    for (const rotated of await this.#rotated()) this.#sequence = Math.max(this.#sequence, rotated.sequence);
    const file = await open(this.#path, "a");
    try {
      this.#size = (await file.stat()).size;
    } catch (error) {
      await file.close();
      throw error;
    }
    this.#file = file;
    return file;
  }

  async #append(file: FileHandle, chunk: readonly Buffer[]): Promise<void> {
    if (chunk.length === 0) return;
    const bytes = Buffer.concat(chunk);
    await file.appendFile(bytes);
    this.#size += bytes.length;
  }

  async #rotate(): Promise<void> {
    const sink = this.#sink!;
    const file = this.#file;
    this.#file = undefined;
    if (file) {
      if (sink.fsync !== "never") await file.datasync();
      await file.close();
    }
    this.#sequence++;
    await rename(this.#path, `${this.#path}.${String(this.#sequence).padStart(SEQUENCE_DIGITS, "0")}`);
    const rotated = await this.#rotated();
    rotated.sort((a, b) => a.sequence - b.sequence);
    for (const old of rotated.slice(0, Math.max(0, rotated.length - sink.rotate_files_max))) {
      await unlink(old.path);
    }
    if (sink.fsync !== "never") await syncDirectory(dirname(this.#path));
  }

  /** The rotated files of `path`, by their sequence number. */
  async #rotated(): Promise<{ path: string; sequence: number }[]> {
    const dir = dirname(this.#path);
    const prefix = `${basename(this.#path)}.`;
    const out: { path: string; sequence: number }[] = [];
    for (const name of await readdir(dir)) {
      if (!name.startsWith(prefix)) continue;
      const suffix = name.slice(prefix.length);
      if (!/^\d+$/.test(suffix)) continue;
      const path = join(dir, name);
      if ((await stat(path)).isFile()) out.push({ path, sequence: Number(suffix) });
    }
    return out;
  }

  async #close(): Promise<void> {
    const file = this.#file;
    this.#file = undefined;
    await file?.close().catch(() => undefined);
  }
}

function line(event: LedgerEvent, format: RecordFormat): string {
  return JSON.stringify(format === "native" ? event : { Records: [s3Record(event)] });
}

/** A rename is durable once its directory is synced. */
async function syncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, "r");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
