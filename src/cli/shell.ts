import { readFileSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import * as readline from "node:readline";
import type { Command, Option } from "commander";
import { MetaraftClient } from "../client/client.js";
import type { Endpoint } from "../client/rpc-client.js";
import type { Watch } from "../client/watch.js";
import { resolveClusterId, resolveEndpoints, showEndpoint } from "./endpoints.js";
import {
  errorJson,
  errorLine,
  formatOf,
  type OutputFormat,
  printError,
  table,
  UsageError,
} from "./output.js";
import { program, reportFailure } from "./program.js";
import {
  action,
  type ClientFlags,
  type ClientSource,
  DEFAULT_TIMEOUT_MS,
  type Session,
  useClientSource,
} from "./verbs.js";
import { EVENT_HEADER, eventJson, eventRow } from "./watch.js";

/**
 * `metaraft shell`: an interactive shell in the manner of ZooKeeper's zkCli. Each line is split
 * into words as a POSIX shell would (quotes, backslash escapes) and run by a fresh `program()`,
 * so every verb of the CLI works here, those added later too, with the same output and `-w json`.
 * One client per connection setting serves the whole session. Tab completes verbs, subverbs and
 * options from the command tree, and volume, bucket, key and kv key names from the cluster.
 * `watch` (and `events tail`) run in the background: their events print above the prompt as they
 * come, until `unwatch`.
 */

/** Lines kept in the history file, and in readline's history. */
export const HISTORY_LINES_MAX = 1000;
export const HISTORY_ENV = "METARAFT_HISTORY";
/** Names one Tab asks the cluster for, at most. */
export const COMPLETION_NAMES_MAX = 50;
/** A Tab's (and the prompt's) lookup waits this long at most: a slow cluster never hangs the prompt. */
export const LOOKUP_MS = 500;
/** Background watches at once. */
export const WATCHES_MAX = 16;
/** Clients kept for the session, one per connection setting (a line's own --endpoints makes another). */
export const CLIENTS_MAX = 4;
/** Lines read while a command runs (type-ahead, or piped input), waiting their turn. */
export const LINES_PENDING_MAX = 1000;
/** Leaving the shell waits this long at most for its watches to cancel on the server. */
const WATCH_CLOSE_MS = 1000;

/** The verbs the shell does not run, and why (nor does it complete them). */
const REFUSED: readonly (readonly [path: string, why: string])[] = [
  ["start", "it runs a node in the foreground: give it a terminal of its own"],
  ["dev", "it runs a cluster in the foreground: give it a terminal of its own"],
  ["shell", "this is the shell already"],
  ["listeners run", "it runs until stopped: give it a terminal of its own"],
  ["agent", "it runs an agent until stopped: give it a terminal of its own"],
  ["lock", "it holds a lock until its command exits or Ctrl-C: give it a terminal of its own"],
  ["elect", "it campaigns or listens until Ctrl-C: give it a terminal of its own"],
  ["kv txn", "it reads its txn from stdin to the end: run 'metaraft kv txn < FILE' outside"],
];

const REFUSED_PATHS = new Set(REFUSED.map(([path]) => path));

/** `kv txn`: a subcommand's words below the root. */
function pathOf(parent: Command, name: string): string {
  const names = [name];
  for (let c: Command | null = parent; c?.parent; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

// ---- words ----

interface Scan {
  readonly words: string[];
  /** Where the last word starts in the text. */
  readonly lastStart: number;
  /** The text ends inside a word (no blank after it). */
  readonly inWord: boolean;
  /** The text ends inside a quote, or in a backslash with nothing to escape. */
  readonly open: "'" | '"' | "\\" | undefined;
}

/**
 * Splits a line into words as a POSIX shell does: blanks separate words, '…' is literal, "…"
 * lets a backslash escape " and \, and outside quotes a backslash escapes any character. `""` is
 * an empty word.
 */
function scan(text: string): Scan {
  const words: string[] = [];
  let word = "";
  let inWord = false;
  let lastStart = text.length;
  let quote: "'" | '"' | undefined;
  let dangling = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    const next = text[i + 1];
    if (quote === "'") {
      if (ch === "'") quote = undefined;
      else word += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = undefined;
      else if (ch === "\\" && (next === '"' || next === "\\")) word += text[++i];
      else word += ch;
    } else if (/\s/.test(ch)) {
      if (inWord) words.push(word);
      word = "";
      inWord = false;
    } else {
      if (!inWord) lastStart = i;
      inWord = true;
      if (ch === "\\") {
        if (next === undefined) dangling = true;
        else word += text[++i];
      } else if (ch === "'" || ch === '"') {
        quote = ch;
      } else {
        word += ch;
      }
    }
  }
  if (inWord) words.push(word);
  return { words, lastStart, inWord, open: quote ?? (dangling ? "\\" : undefined) };
}

/** A line's words; MR_ERR_USAGE for an unterminated quote or a trailing backslash. */
export function splitLine(line: string): string[] {
  const result = scan(line);
  if (result.open === "\\") throw new UsageError("the line ends in a backslash");
  if (result.open !== undefined) throw new UsageError(`the line ends inside a ${result.open} quote`);
  return result.words;
}

/** A word as typed back into a line: in the quote the user opened, else with backslashes. */
export function quoteWord(value: string, opened: string): string {
  if (opened === "'" && !value.includes("'")) return `'${value}'`;
  if (opened === '"' || opened === "'") return `"${value.replaceAll(/["\\]/g, "\\$&")}"`;
  return value.replaceAll(/[\s'"\\]/g, "\\$&");
}

// ---- the clients ----

/** The session's clients, one per connection setting, the least recently used closed past CLIENTS_MAX. */
class ClientPool implements ClientSource {
  readonly #clients = new Map<string, MetaraftClient>();

  constructor(readonly defaults: ClientFlags) {}

  client(settings: { endpoints: readonly Endpoint[]; clusterId: string; timeoutMs: number }): MetaraftClient {
    const key = JSON.stringify([
      settings.endpoints.map(showEndpoint),
      settings.clusterId,
      settings.timeoutMs,
    ]);
    let client = this.#clients.get(key);
    if (client) {
      this.#clients.delete(key);
    } else {
      client = new MetaraftClient(settings);
    }
    this.#clients.set(key, client);
    for (const [oldest, old] of this.#clients) {
      if (this.#clients.size <= CLIENTS_MAX) break;
      old.close();
      this.#clients.delete(oldest);
    }
    return client;
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }
}

/** The promise's value, or undefined once `ms` have passed (the call goes on to its own deadline). */
async function within<T>(ms: number, promise: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
    timer.unref();
  });
  try {
    return await Promise.race([promise.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

// ---- the command tree ----

function findCommand(from: Command, name: string): Command | undefined {
  return from.commands.find((c) => c.name() === name || c.aliases().includes(name));
}

function byPath(root: Command, path: string): Command | undefined {
  let command: Command | undefined = root;
  for (const name of path.split(" ")) command = command && findCommand(command, name);
  return command;
}

/** The options a command line can give at `command`: its own and its ancestors' (the root's -w). */
function optionsOf(command: Command): Option[] {
  const options: Option[] = [];
  for (let c: Command | null = command; c; c = c.parent) options.push(...c.options);
  return options;
}

function findOption(command: Command, word: string): Option | undefined {
  return optionsOf(command).find((o) => o.long === word || o.short === word);
}

const takesValue = (option: Option): boolean => option.required || option.optional;

/** A completion: a whole word (a blank follows it) or the start of a path (more may follow). */
interface Candidate {
  readonly value: string;
  readonly whole: boolean;
}

const wholeWords = (values: readonly string[]): Candidate[] =>
  values.map((value) => ({ value, whole: true }));

// ---- the shell ----

export interface ShellOptions {
  readonly flags: ClientFlags;
  readonly input?: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly output?: NodeJS.WriteStream;
  readonly historyFile?: string;
}

interface BackgroundWatch {
  readonly id: number;
  readonly prefix: string;
  readonly watch: Watch;
  readonly format: OutputFormat;
}

export class Shell {
  readonly #pool: ClientPool;
  readonly #endpoints: readonly Endpoint[];
  readonly #clusterId: string;
  readonly #timeoutMs: number;
  readonly #format: OutputFormat;
  readonly #out: NodeJS.WriteStream;
  readonly #rl: readline.Interface;
  readonly #terminal: boolean;
  readonly #historyFile: string;
  #historyWarned = false;
  /** The tree completion walks: built once, never run. */
  readonly #tree = program();
  readonly #pending: string[] = [];
  #busy = false;
  /** The input has ended (Ctrl-D, or the end of piped lines): leave once the lines read are run. */
  #closing = false;
  /** `exit` or `quit`: leave now. */
  #leaving = false;
  #shutdown: Promise<void> | undefined;
  /** The prompt is on the screen, waiting for a line: background output goes above it. */
  #prompting = false;
  readonly #watches = new Map<number, BackgroundWatch>();
  #watchSeq = 0;
  readonly #done: Promise<void>;
  #finish: () => void = () => undefined;

  constructor(options: ShellOptions) {
    const flags = options.flags;
    this.#endpoints = resolveEndpoints(flags.endpoints);
    this.#clusterId = resolveClusterId(flags.clusterId);
    this.#timeoutMs = flags.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#format = flags.output === "json" ? "json" : "table";
    this.#pool = new ClientPool({
      ...(flags.endpoints === undefined ? {} : { endpoints: flags.endpoints }),
      ...(flags.clusterId === undefined ? {} : { clusterId: flags.clusterId }),
      ...(flags.timeoutMs === undefined ? {} : { timeoutMs: flags.timeoutMs }),
    });
    this.#out = options.output ?? process.stdout;
    const input = options.input ?? process.stdin;
    this.#terminal = input.isTTY === true && this.#out.isTTY === true;
    this.#historyFile = options.historyFile ?? historyPath();
    this.#rl = readline.createInterface({
      input,
      output: this.#out,
      terminal: this.#terminal,
      history: this.#loadHistory(),
      historySize: HISTORY_LINES_MAX,
      completer: (text: string, callback: (error: null, result: [string[], string]) => void) => {
        this.complete(text).then(
          (result) => callback(null, result),
          () => callback(null, [[], text]),
        );
      },
      prompt: this.#promptFor(showEndpoint(this.#endpoints[0]!)),
    });
    this.#done = new Promise((resolve) => {
      this.#finish = resolve;
    });
  }

  /** Runs until `exit`, `quit` or the end of the input (Ctrl-D). */
  async run(): Promise<void> {
    this.#rl.on("history", (history: string[]) => this.#saveHistory(history));
    this.#rl.on("line", (line: string) => this.#enqueue(line));
    this.#rl.on("SIGINT", () => this.#interrupt());
    this.#rl.on("close", () => {
      this.#closing = true;
      if (!this.#busy) void this.#leave();
    });
    if (this.#terminal) {
      this.#write(
        `metaraft shell: ${this.#endpoints.map(showEndpoint).join(",")} (cluster ${this.#clusterId}). ` +
          "'help' lists the verbs, Tab completes, 'exit' or Ctrl-D leaves.\n",
      );
    }
    if (this.#terminal) await this.#refreshPrompt();
    // Lines typed (or piped) meanwhile may be running already: they prompt when done.
    if (!this.#busy) this.#prompt();
    await this.#done;
  }

  #promptFor(where: string): string {
    return `metaraft:${where}> `;
  }

  /** The prompt names the leader's client address, as the members report it (any member answers). */
  async #refreshPrompt(): Promise<void> {
    const first = showEndpoint(this.#endpoints[0]!);
    const reply = await within(LOOKUP_MS, this.#client().memberList({ stale: true, timeoutMs: LOOKUP_MS }));
    let where = `${first} (unreachable)`;
    if (reply) {
      const leader = (reply.members as { id?: unknown; client?: unknown }[]).find(
        (m) => m.id === reply.leader,
      );
      where = typeof leader?.client === "string" ? leader.client : `${first} (no leader)`;
    }
    this.#rl.setPrompt(this.#promptFor(where));
  }

  #client(): MetaraftClient {
    return this.#pool.client({
      endpoints: this.#endpoints,
      clusterId: this.#clusterId,
      timeoutMs: this.#timeoutMs,
    });
  }

  #prompt(): void {
    if (this.#closing || this.#leaving) return;
    this.#prompting = true;
    if (this.#terminal) this.#rl.prompt();
    else this.#rl.resume();
  }

  #write(text: string, stream: NodeJS.WriteStream = this.#out): void {
    stream.write(text);
  }

  /**
   * Prints a line while the prompt may be on the screen (a watch's event): the prompt and what is
   * typed after it are cleared, the line printed, and both drawn again below it.
   */
  #above(text: string, stream: NodeJS.WriteStream = this.#out): void {
    if (!(this.#prompting && this.#terminal)) {
      this.#write(`${text}\n`, stream);
      return;
    }
    readline.moveCursor(this.#out, 0, -this.#rl.getCursorPos().rows);
    readline.cursorTo(this.#out, 0);
    readline.clearScreenDown(this.#out);
    this.#write(`${text}\n`, stream);
    // readline would move up over the printed line to redraw a prompt that wrapped: it is gone.
    (this.#rl as unknown as { prevRows?: number }).prevRows = 0;
    this.#rl.prompt(true);
  }

  #interrupt(): void {
    // Ctrl-C abandons the line being typed, as a shell does; it does not leave.
    const typed = this.#rl.line;
    this.#rl.write(null, { ctrl: true, name: "e" });
    this.#write(typed.length > 0 ? "^C\n" : "^C (Ctrl-D or 'exit' leaves the shell)\n");
    this.#rl.write(null, { ctrl: true, name: "u" });
    this.#prompt();
  }

  #enqueue(line: string): void {
    this.#prompting = false;
    if (this.#pending.length >= LINES_PENDING_MAX) {
      printError(new UsageError(`more than ${LINES_PENDING_MAX} lines wait: this one is dropped`), "table");
      return;
    }
    this.#pending.push(line);
    if (!this.#busy) void this.#drain();
  }

  /** Runs the lines read, one at a time, the input paused meanwhile; then prompts, or leaves. */
  async #drain(): Promise<void> {
    this.#busy = true;
    this.#rl.pause();
    do {
      while (this.#pending.length > 0 && !this.#leaving) {
        if (await this.#runLine(this.#pending.shift()!)) this.#leaving = true;
      }
      if (this.#leaving || this.#closing) {
        this.#busy = false;
        await this.#leave();
        return;
      }
      if (this.#terminal) await this.#refreshPrompt();
    } while (this.#pending.length > 0);
    this.#busy = false;
    this.#prompt();
  }

  /** Runs one line; true when it asks to leave. */
  async #runLine(line: string): Promise<boolean> {
    let words: string[];
    try {
      words = splitLine(line);
    } catch (error) {
      printError(error, this.#format);
      return false;
    }
    if (words[0] === "metaraft") words = words.slice(1);
    const [verb, ...rest] = words;
    switch (verb) {
      case undefined:
        return false;
      case "exit":
      case "quit":
        return true;
      case "help":
        if (rest.length === 0) {
          this.#help();
          return false;
        }
        words = [...rest, "--help"];
        break;
      case "unwatch":
        await this.#unwatch(rest);
        return false;
    }
    const argv = this.#format === "json" ? ["-w", "json", ...words] : words;
    const root = this.#program();
    try {
      await root.parseAsync(argv, { from: "user" });
    } catch (error) {
      reportFailure(root, error, formatOf(argv));
    } finally {
      // A verb's exit status is the shell's no longer: the shell leaves with 0.
      process.exitCode = undefined;
    }
    return false;
  }

  /** A fresh tree for one line, its clients from the session, its long-running verbs adapted. */
  #program(): Command {
    const root = program();
    useClientSource(root, this.#pool);
    for (const [path, why] of REFUSED) {
      byPath(root, path)?.action(() => {
        throw new UsageError(`'${path}' does not run in the shell (${why})`);
      });
    }
    const background = action(async (session, [prefix], flags) => this.#watch(session, prefix ?? "", flags));
    byPath(root, "watch")?.action(background);
    byPath(root, "events tail")?.action(background);
    return root;
  }

  #help(): void {
    const rows = this.#tree.commands
      .filter((c) => !REFUSED_PATHS.has(c.name()))
      .map((c) => {
        const subs = c.commands.map((s) => s.name()).filter((s) => !REFUSED_PATHS.has(pathOf(c, s)));
        return [c.name(), subs.join("|"), c.description()];
      });
    // One line per verb: a description longer than the terminal is cut, 'VERB --help' has it whole.
    const width = Math.max(40, (this.#out.columns ?? 100) - 1);
    const cut = (line: string) => (line.length > width ? `${line.slice(0, width - 3)}...` : line);
    this.#write(
      [
        "Verbs, as the metaraft command has them ('help VERB' or 'VERB --help' says more):",
        ...table(
          undefined,
          rows.map((r) => ["", ...r]),
        )
          .split("\n")
          .map(cut),
        "",
        "In the shell:",
        table(undefined, [
          [
            "",
            "watch PREFIX, events tail",
            "print the events as they come, above the prompt, until 'unwatch'",
          ],
          ["", "unwatch [N|PREFIX]", "stop watch N (or those on PREFIX), or every watch"],
          ["", "help [VERB]", "this list, or a verb's help"],
          ["", "exit, quit, Ctrl-D", "leave the shell (Ctrl-C only clears the line)"],
        ]),
        `Not in the shell: ${REFUSED.map(([path]) => path).join(", ")}.`,
        "",
      ].join("\n"),
    );
  }

  // ---- background watches ----

  async #watch(session: Session, prefix: string, flags: Record<string, unknown>): Promise<void> {
    if (this.#watches.size >= WATCHES_MAX) {
      throw new UsageError(`${WATCHES_MAX} watches run already: 'unwatch' one first`);
    }
    const format: OutputFormat = session.json ? "json" : "table";
    const watch = session.client.watch({
      prefix,
      ...(flags.from === undefined ? {} : { fromTxid: flags.from as number }),
      ...(flags.progress === true
        ? {
            onProgress: (txid: number) =>
              this.#above(format === "json" ? JSON.stringify({ progress: txid }) : `(at txid ${txid})`),
          }
        : {}),
    });
    try {
      // Fails here, in the foreground and in one line, when no endpoint answers.
      await session.call(() => watch.opened());
    } catch (error) {
      await watch.close();
      throw error;
    }
    const id = ++this.#watchSeq;
    const entry = { id, prefix, watch, format };
    this.#watches.set(id, entry);
    const count = flags.count as number | undefined;
    if (format === "table") {
      this.#write(
        `watch ${id} on ${JSON.stringify(prefix)}: events print as they come; 'unwatch ${id}' stops it\n`,
      );
      this.#write(`${EVENT_HEADER}\n`);
    }
    void this.#follow(entry, count);
  }

  async #follow(entry: BackgroundWatch, count: number | undefined): Promise<void> {
    let seen = 0;
    try {
      if (count !== 0) {
        for await (const event of entry.watch) {
          this.#above(entry.format === "json" ? eventJson(event) : eventRow(event));
          if (count !== undefined && ++seen >= count) break;
        }
      }
      if (this.#watches.has(entry.id) && entry.format === "table") {
        this.#above(`(watch ${entry.id} done: ${seen} events)`);
      }
    } catch (error) {
      if (this.#watches.has(entry.id)) {
        this.#above(
          entry.format === "json" ? errorJson(error) : `watch ${entry.id}: ${errorLine(error)}`,
          process.stderr,
        );
      }
    } finally {
      this.#watches.delete(entry.id);
      await entry.watch.close();
    }
  }

  async #unwatch(args: readonly string[]): Promise<void> {
    const [which] = args;
    const chosen = [...this.#watches.values()].filter(
      (w) => which === undefined || String(w.id) === which || w.prefix === which,
    );
    if (chosen.length === 0) {
      this.#write(which === undefined ? "(no watch runs)\n" : `(no watch ${which})\n`);
      return;
    }
    for (const w of chosen) {
      this.#watches.delete(w.id);
      await within(WATCH_CLOSE_MS, w.watch.close());
      this.#write(`stopped watch ${w.id} on ${JSON.stringify(w.prefix)}\n`);
    }
  }

  /** Stops the watches, closes the clients and the terminal, once (`exit` closes readline, which says so). */
  #leave(): Promise<void> {
    this.#shutdown ??= (async () => {
      this.#prompting = false;
      if (this.#closing && this.#terminal) this.#write("\n");
      const watches = [...this.#watches.values()];
      this.#watches.clear();
      await within(WATCH_CLOSE_MS, Promise.all(watches.map((w) => w.watch.close())));
      this.#rl.close();
      this.#pool.close();
      this.#finish();
    })();
    return this.#shutdown;
  }

  // ---- history ----

  #loadHistory(): string[] {
    let text: string;
    try {
      text = readFileSync(this.#historyFile, "utf8");
    } catch {
      return [];
    }
    // The file is oldest first, as a shell's is; readline's history is newest first.
    return text
      .split("\n")
      .filter((l) => l.trim().length > 0)
      .slice(-HISTORY_LINES_MAX)
      .reverse();
  }

  #saveHistory(history: readonly string[]): void {
    const lines = history.slice(0, HISTORY_LINES_MAX).reverse();
    try {
      writeFileSync(this.#historyFile, lines.length > 0 ? `${lines.join("\n")}\n` : "", { mode: 0o600 });
    } catch (error) {
      if (this.#historyWarned) return;
      this.#historyWarned = true;
      const why = error instanceof Error ? error.message : String(error);
      this.#above(`(the history is not saved: ${why})`, process.stderr);
    }
  }

  // ---- completion ----

  async complete(text: string): Promise<[string[], string]> {
    const scanned = scan(text);
    const words = scanned.words.slice();
    const current = scanned.inWord ? words.pop()! : "";
    const raw = scanned.inWord ? text.slice(scanned.lastStart) : "";
    const opened = raw.startsWith("'") || raw.startsWith('"') ? raw[0]! : "";
    const candidates = (await this.#candidates(words, current)).filter((c) => c.value.startsWith(current));
    const unique = [...new Map(candidates.map((c) => [c.value, c])).values()];
    return [unique.map((c) => quoteWord(c.value, opened) + (c.whole ? " " : "")), raw];
  }

  async #candidates(typed: readonly string[], current: string): Promise<Candidate[]> {
    let words = typed;
    if (words[0] === "metaraft") words = words.slice(1);
    const root = this.#tree;
    if (words[0] === "help") words = words.slice(1);
    let command = root;
    const positional: string[] = [];
    let awaiting: Option | undefined;
    for (const word of words) {
      if (awaiting) {
        awaiting = undefined;
        continue;
      }
      if (word.startsWith("-") && word.length > 1) {
        const option = findOption(command, word);
        if (option && takesValue(option)) awaiting = option;
        continue;
      }
      const sub = positional.length === 0 ? findCommand(command, word) : undefined;
      if (sub) command = sub;
      else positional.push(word);
    }
    if (awaiting) return wholeWords(awaiting.argChoices ?? []);
    if (current.startsWith("-")) {
      const flags = optionsOf(command).flatMap((o) => [o.long, o.short]);
      return wholeWords([...flags.filter((f): f is string => f !== undefined), "--help"]);
    }
    if (command.commands.length > 0 && positional.length === 0) {
      const names = command.commands
        .map((c) => c.name())
        .filter((n) => !REFUSED_PATHS.has(pathOf(command, n)));
      return wholeWords(command === root ? [...names, "help", "exit", "quit", "unwatch"] : names);
    }
    if (typed[0] === "help") return [];
    const args = command.registeredArguments;
    const arg = args[Math.min(positional.length, args.length - 1)];
    if (!arg || (positional.length >= args.length && !arg.variadic)) return [];
    const valueAt = (name: string) => {
      const at = args.findIndex((a) => a.name() === name);
      return at >= 0 ? positional[at] : undefined;
    };
    return this.#names(command, arg.name(), current, valueAt("volume"), valueAt("bucket"));
  }

  /** Names from the cluster for an argument: volumes, buckets, keys, kv keys, watch paths. */
  async #names(
    command: Command,
    arg: string,
    prefix: string,
    volume: string | undefined,
    bucket: string | undefined,
  ): Promise<Candidate[]> {
    const group = command.parent?.parent ? command.parent.name() : "";
    // A name being created is new: the cluster's names are no help.
    if (command.name() === "create" && arg === command.registeredArguments.at(-1)?.name()) return [];
    if (group === "kv" && (arg === "key" || arg === "prefix")) return wholeWords(await this.#kvKeys(prefix));
    if (arg === "volume") return wholeWords(await this.#volumes(prefix));
    if (arg === "bucket" && volume !== undefined) return wholeWords(await this.#buckets(volume, prefix));
    if (arg === "key" && volume !== undefined && bucket !== undefined) {
      return wholeWords(await this.#keys(volume, bucket, prefix));
    }
    if (group === "" && command.name() === "watch" && arg === "prefix") return this.#paths(prefix);
    return [];
  }

  /** A watch path: `volume/`, `volume/bucket/`, `volume/bucket/key`, or `_kv/` and a kv key. */
  async #paths(prefix: string): Promise<Candidate[]> {
    const KV = "_kv/";
    if (prefix.startsWith(KV)) {
      return wholeWords((await this.#kvKeys(prefix.slice(KV.length))).map((k) => KV + k));
    }
    const [volume, bucket, ...key] = prefix.split("/");
    if (bucket === undefined) {
      const volumes = (await this.#volumes(volume ?? "")).map((v) => ({ value: `${v}/`, whole: false }));
      return [...volumes, { value: KV, whole: false }];
    }
    if (key.length === 0) {
      return (await this.#buckets(volume!, bucket)).map((b) => ({ value: `${volume}/${b}/`, whole: false }));
    }
    const keys = await this.#keys(volume!, bucket, key.join("/"));
    return wholeWords(keys.map((k) => `${volume}/${bucket}/${k}`));
  }

  async #lookup(
    call: (client: MetaraftClient, options: { limit: number; timeoutMs: number }) => Promise<unknown>,
    field: string,
  ): Promise<string[]> {
    const reply = (await within(
      LOOKUP_MS,
      call(this.#client(), { limit: COMPLETION_NAMES_MAX, timeoutMs: LOOKUP_MS }),
    )) as { items?: Record<string, unknown>[] } | undefined;
    return (reply?.items ?? []).map((item) => item[field]).filter((v): v is string => typeof v === "string");
  }

  #volumes(prefix: string): Promise<string[]> {
    return this.#lookup((c, o) => c.listVolumes({ prefix, ...o }), "name");
  }

  #buckets(volume: string, prefix: string): Promise<string[]> {
    return this.#lookup((c, o) => c.listBuckets(volume, { prefix, ...o }), "name");
  }

  #keys(volume: string, bucket: string, prefix: string): Promise<string[]> {
    return this.#lookup((c, o) => c.listKeys(volume, bucket, { prefix, ...o }), "key");
  }

  #kvKeys(prefix: string): Promise<string[]> {
    return this.#lookup((c, o) => c.kvRange(prefix, o), "key");
  }
}

/** `~/.metaraft_history`, or $METARAFT_HISTORY. */
export function historyPath(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env[HISTORY_ENV]?.trim();
  return fromEnv ? fromEnv : join(homedir(), ".metaraft_history");
}

/** `metaraft shell`: runs the shell on stdin and stdout until it is left. */
export async function runShell(flags: ClientFlags, options: Omit<ShellOptions, "flags"> = {}): Promise<void> {
  await new Shell({ flags, ...options }).run();
}
