import { connect } from "node:net";
import type { Endpoint } from "../client/rpc-client.js";
import { MetaraftError } from "../errors.js";
import { DEFAULT_CLIENT_PORT, DEFAULT_HOST, SETTINGS } from "../settings.js";
import { usage } from "./output.js";

/** The client ports of `metaraft dev --nodes 3` (and `npm start`) with its default ports. */
export const DEFAULT_ENDPOINTS = [0, 1, 2].map((i) => `${DEFAULT_HOST}:${DEFAULT_CLIENT_PORT + i}`).join(",");
export const ENDPOINTS_ENV = "METARAFT_ENDPOINTS";
export const CLUSTER_ID_ENV = "METARAFT_CLUSTER_ID";
export const DEFAULT_CLUSTER_ID: string = SETTINGS.clusterId.default;

/**
 * Parses `host:port,host:port` (IPv6 as `[::1]:8001`). `origin` names where the list came
 * from, for the error.
 */
export function parseEndpoints(list: string, origin: string): Endpoint[] {
  const parts = list
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p.length > 0);
  if (parts.length === 0) throw usage(`${origin} names no endpoint`);
  return parts.map((part) => {
    const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(part);
    const port = Number(match?.[3]);
    if (!match || port < 1 || port > 65535) {
      throw usage(`${origin}: "${part}" is not host:port`);
    }
    return { host: (match[1] ?? match[2])!, port };
  });
}

/** The flag, else the environment variable, else the local dev cluster. */
export function resolveEndpoints(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): Endpoint[] {
  if (flag !== undefined) return parseEndpoints(flag, "--endpoints");
  const fromEnv = env[ENDPOINTS_ENV];
  if (fromEnv !== undefined && fromEnv.trim() !== "") return parseEndpoints(fromEnv, ENDPOINTS_ENV);
  return parseEndpoints(DEFAULT_ENDPOINTS, "the default endpoints");
}

export function resolveClusterId(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const value = flag ?? (env[CLUSTER_ID_ENV]?.trim() || DEFAULT_CLUSTER_ID);
  if (value.length === 0) throw usage("--cluster-id must not be empty");
  return value;
}

export function showEndpoint(e: Endpoint): string {
  return e.host.includes(":") ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

export type Reachability = { readonly up: true } | { readonly up: false; readonly reason: string };

const REASONS: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host not found",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  ECONNRESET: "connection reset",
};

/** Whether something accepts TCP connections at the endpoint (nothing is sent). */
export function probe(endpoint: Endpoint, timeoutMs: number): Promise<Reachability> {
  return new Promise((resolve) => {
    const socket = connect({ host: endpoint.host, port: endpoint.port });
    const done = (result: Reachability) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ up: false, reason: "no answer" }), timeoutMs);
    // A probe never keeps the command alive once its call is done.
    timer.unref();
    socket.unref();
    socket.once("connect", () => done({ up: true }));
    socket.once("error", (error: NodeJS.ErrnoException) =>
      done({ up: false, reason: REASONS[error.code ?? ""] ?? error.code ?? error.message }),
    );
  });
}

/** MR_ERR_UNAVAILABLE listing each endpoint and why it could not be reached. */
export function unavailable(endpoints: readonly Endpoint[], results: readonly Reachability[]): MetaraftError {
  const reasons = new Set(results.map((r) => (r.up ? "" : r.reason)));
  const where = endpoints.map(showEndpoint).join(", ");
  const detail =
    reasons.size === 1
      ? `${where}: ${[...reasons][0]}`
      : endpoints
          .map((e, i) => {
            const r = results[i];
            return `${showEndpoint(e)}: ${r && !r.up ? r.reason : "?"}`;
          })
          .join(", ");
  return new MetaraftError("MR_ERR_UNAVAILABLE", detail);
}

const GIVE_UP = new Set(["MR_ERR_TIMEOUT", "MR_ERR_CONNECTION_CLOSED", "MR_ERR_UNAVAILABLE"]);

/**
 * Runs a call against the cluster and fails fast, in one clear error, when no endpoint accepts
 * connections at all (the client alone would retry until its deadline): a probe of every
 * endpoint runs beside the call. A call that times out while no endpoint answers also becomes
 * MR_ERR_UNAVAILABLE.
 */
export async function reaching<T>(
  endpoints: readonly Endpoint[],
  timeoutMs: number,
  call: () => Promise<T>,
): Promise<T> {
  const probes = Promise.all(endpoints.map((e) => probe(e, Math.min(timeoutMs, 3000))));
  const running = call();
  const allDown = probes.then((results) => {
    if (results.every((r) => !r.up)) throw unavailable(endpoints, results);
    return new Promise<never>(() => {});
  });
  allDown.catch(() => undefined);
  try {
    return await Promise.race([running, allDown]);
  } catch (error) {
    running.catch(() => undefined);
    if (error instanceof MetaraftError && GIVE_UP.has(error.code) && error.code !== "MR_ERR_UNAVAILABLE") {
      const results = await probes;
      if (results.every((r) => !r.up)) throw unavailable(endpoints, results);
    }
    throw error;
  }
}
