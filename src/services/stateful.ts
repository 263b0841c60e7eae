import type { StateReader } from "../execution/types.js";
import type { LeadershipState } from "../host/index.js";
import { readServiceConfig } from "./config.js";
import type { Service, ServiceReport } from "./service.js";

/** How a service writes through the log: the node submits it with its own client id. */
export type Submit = (request: {
  readonly op: string;
  readonly [field: string]: unknown;
}) => Promise<Record<string, unknown>>;

export interface StatefulParts {
  /** The node's applied state (a new leader's holds every committed change once it is ready). */
  readonly reader: StateReader;
  readonly submit: Submit;
}

/**
 * A service whose configuration, `shouldRun` and progress are replicated in the `serviceConfig`
 * table (Ozone's `StatefulService`): whichever node leads next reads them and resumes.
 */
export abstract class StatefulService<Config, Progress = unknown> implements Service {
  abstract readonly name: string;
  protected readonly parts: StatefulParts;
  #lastError: string | undefined;

  constructor(parts: StatefulParts) {
    this.parts = parts;
  }

  /** Checks a configuration as given by an operator (`service set`); throws MR_ERR_INVALID_ARGUMENT. The same on every node. */
  abstract validateConfiguration(config: unknown): Config;
  /** Whether it runs when nothing was ever saved. */
  protected defaultShouldRun(): boolean {
    return true;
  }

  abstract start(): void | Promise<void>;
  abstract stop(): void | Promise<void>;

  notifyStatusChanged(_status: LeadershipState): void {}

  shouldRun(): boolean {
    return readServiceConfig(this.parts.reader, this.name)?.shouldRun ?? this.defaultShouldRun();
  }

  readConfiguration(): Config | undefined {
    const config = readServiceConfig(this.parts.reader, this.name)?.config;
    return config === null || config === undefined ? undefined : (config as Config);
  }

  async saveConfiguration(config: Config): Promise<void> {
    await this.parts.submit({ op: "serviceConfigSet", name: this.name, config });
  }

  async deleteConfiguration(): Promise<void> {
    await this.parts.submit({ op: "serviceConfigDelete", name: this.name });
  }

  readProgress(): Progress | undefined {
    const progress = readServiceConfig(this.parts.reader, this.name)?.progress;
    return progress === null || progress === undefined ? undefined : (progress as Progress);
  }

  async saveProgress(progress: Progress): Promise<void> {
    await this.parts.submit({ op: "serviceConfigSet", name: this.name, progress });
  }

  protected set lastError(error: string | undefined) {
    this.#lastError = error;
  }

  report(): ServiceReport {
    const progress = this.readProgress();
    return {
      ...(progress === undefined ? {} : { progress }),
      ...(this.#lastError ? { lastError: this.#lastError } : {}),
    };
  }
}
