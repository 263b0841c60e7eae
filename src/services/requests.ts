import { pack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { Execution, Request, RequestSpec } from "../execution/types.js";
import {
  encodeServiceConfig,
  listServiceConfigs,
  readServiceConfig,
  SERVICE_CONFIG_BYTES_MAX,
  SERVICE_NAME,
  SERVICES_MAX,
  type ServiceConfigRecord,
} from "./config.js";

/**
 * The replicated requests of stateful services (Ozone's `SetServiceConfiguration`): set a
 * service's configuration, `shouldRun` or progress, delete its record, read it. A change of
 * configuration or `shouldRun` is a ledger event (`ServiceConfig:Set`); progress, saved as the
 * work goes, is not (it would flood the ledger).
 */

/** Checks a service's configuration; the same function on every node, so that validation is deterministic. */
export type ConfigValidator = (config: unknown) => unknown;

interface SetRequest extends Request {
  readonly op: "serviceConfigSet";
  readonly name: string;
  readonly config?: unknown;
  readonly shouldRun?: boolean;
  readonly progress?: unknown;
}

const eventKey = (name: string): string => `_service/${name}`;

function nameOf(raw: Request): string {
  const name = raw.name;
  if (typeof name !== "string" || !SERVICE_NAME.test(name)) {
    throw new MetaraftError(
      "MR_ERR_INVALID_NAME",
      `service name ${JSON.stringify(name)}: lowercase letters, digits and '-'`,
    );
  }
  return name;
}

function bounded(what: string, value: unknown): void {
  const bytes = pack(value).length;
  if (bytes > SERVICE_CONFIG_BYTES_MAX) {
    throw new MetaraftError(
      "MR_ERR_REQUEST_TOO_LARGE",
      `${what} is ${bytes} bytes, over ${SERVICE_CONFIG_BYTES_MAX}`,
    );
  }
}

/** The specs, with the validators of the services this cluster knows (a name without one is refused). */
export function serviceSpecs(validators: ReadonlyMap<string, ConfigValidator>): RequestSpec[] {
  const known = (name: string): ConfigValidator => {
    const validator = validators.get(name);
    if (!validator) {
      throw new MetaraftError(
        "MR_ERR_SERVICE_NOT_FOUND",
        `no service ${name} (known: ${[...validators.keys()].join(", ") || "none"})`,
      );
    }
    return validator;
  };
  const set: RequestSpec<SetRequest> = {
    op: "serviceConfigSet",
    kind: "write",
    validate(raw) {
      const name = nameOf(raw);
      const validator = known(name);
      if (raw.shouldRun !== undefined && typeof raw.shouldRun !== "boolean") {
        throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", "shouldRun must be a boolean");
      }
      const config = raw.config === undefined ? undefined : validator(raw.config);
      if (config !== undefined) bounded("the configuration", config);
      if (raw.progress !== undefined) bounded("the progress", raw.progress);
      return {
        op: "serviceConfigSet",
        name,
        ...(config === undefined ? {} : { config }),
        ...(raw.shouldRun === undefined ? {} : { shouldRun: raw.shouldRun as boolean }),
        ...(raw.progress === undefined ? {} : { progress: raw.progress }),
      };
    },
    execute(request, { txid, time, reader }): Execution {
      const before = readServiceConfig(reader, request.name);
      if (!before && listServiceConfigs(reader).length >= SERVICES_MAX) {
        throw new MetaraftError("MR_ERR_INVALID_ARGUMENT", `${SERVICES_MAX} services are recorded already`);
      }
      const changed = request.config !== undefined || request.shouldRun !== undefined;
      const record: ServiceConfigRecord = {
        name: request.name,
        config: request.config !== undefined ? request.config : (before?.config ?? null),
        shouldRun: request.shouldRun ?? before?.shouldRun ?? true,
        progress: request.progress !== undefined ? request.progress : (before?.progress ?? null),
        changedTxid: changed ? txid : (before?.changedTxid ?? txid),
        changedTime: changed ? time : (before?.changedTime ?? time),
      };
      return {
        writes: [{ table: "serviceConfig", key: request.name, value: encodeServiceConfig(record) }],
        ...(changed ? { events: [{ type: "ServiceConfig:Set" as const, key: eventKey(request.name) }] } : {}),
        reply: { service: record },
      };
    },
  };
  const remove: RequestSpec<Request & { op: "serviceConfigDelete"; name: string }> = {
    op: "serviceConfigDelete",
    kind: "write",
    validate: (raw) => ({ op: "serviceConfigDelete", name: nameOf(raw) }),
    execute(request, { reader }): Execution {
      if (!readServiceConfig(reader, request.name)) {
        throw new MetaraftError("MR_ERR_SERVICE_NOT_FOUND", `service ${request.name} has no configuration`);
      }
      return {
        writes: [{ table: "serviceConfig", key: request.name, value: null }],
        events: [{ type: "ServiceConfig:Delete", key: eventKey(request.name) }],
        reply: {},
      };
    },
  };
  const get: RequestSpec<Request & { op: "serviceConfigGet"; name: string }> = {
    op: "serviceConfigGet",
    kind: "read",
    validate: (raw) => ({ op: "serviceConfigGet", name: nameOf(raw) }),
    execute: (request, { reader }) => ({
      writes: [],
      reply: { service: readServiceConfig(reader, request.name) ?? null },
    }),
  };
  return [set, remove, get];
}
