import { pack, unpack } from "msgpackr";
import { MetaraftError } from "../errors.js";
import type { StateReader } from "../execution/types.js";

/**
 * A stateful service's replicated record in the `serviceConfig` table (key: the service's
 * name), as SCM's container balancer keeps `shouldRun` and its progress: a new leader reads it
 * and resumes the service where it stood.
 */
export interface ServiceConfigRecord {
  readonly name: string;
  /** The service's configuration, checked by the service's own validator before it commits. */
  readonly config: unknown;
  readonly shouldRun: boolean;
  /** Where its work stands (a scan position, say); saved as it goes, no event. */
  readonly progress: unknown;
  /** The txid and time of the last change of `config` or `shouldRun`. */
  readonly changedTxid: number;
  readonly changedTime: number;
}

/** Services a cluster records at most. */
export const SERVICES_MAX = 64;
/** Bytes of one record's configuration and progress at most (MessagePack). */
export const SERVICE_CONFIG_BYTES_MAX = 64 * 1024;
export const SERVICE_NAME = /^[a-z][a-z0-9-]{0,62}$/;

export function encodeServiceConfig(record: ServiceConfigRecord): Uint8Array {
  return pack({ v: 1, ...record });
}

export function decodeServiceConfig(bytes: Uint8Array, key: string): ServiceConfigRecord {
  const r = unpack(bytes) as Partial<ServiceConfigRecord> & { v?: number };
  if (r?.v !== 1 || typeof r.name !== "string" || typeof r.shouldRun !== "boolean") {
    throw new MetaraftError("MR_ERR_LOG_CORRUPT", `service record ${key} is malformed`);
  }
  return {
    name: r.name,
    config: r.config ?? null,
    shouldRun: r.shouldRun,
    progress: r.progress ?? null,
    changedTxid: r.changedTxid ?? 0,
    changedTime: r.changedTime ?? 0,
  };
}

export function readServiceConfig(reader: StateReader, name: string): ServiceConfigRecord | undefined {
  const bytes = reader.get("serviceConfig", name);
  return bytes ? decodeServiceConfig(bytes, name) : undefined;
}

export function listServiceConfigs(reader: StateReader): ServiceConfigRecord[] {
  return reader
    .scan("serviceConfig", "", undefined, SERVICES_MAX + 1)
    .map((row) => decodeServiceConfig(row.value, row.key));
}
