/** Leader-only services with replicated configuration (DESIGN.md, "Services"): the one entry point of `src/services/`. */
export {
  decodeServiceConfig,
  encodeServiceConfig,
  listServiceConfigs,
  readServiceConfig,
  SERVICE_CONFIG_BYTES_MAX,
  SERVICE_NAME,
  SERVICES_MAX,
  type ServiceConfigRecord,
} from "./config.js";
export {
  type ExpiredKey,
  type ExpiryQueue,
  LIFECYCLE_SERVICE,
  type LifecycleConfig,
  type LifecycleOptions,
  type LifecycleProgress,
  type LifecycleRule,
  LifecycleService,
  validateLifecycleConfig,
} from "./lifecycle.js";
export {
  SERVICE_MANAGER_DEFAULTS,
  SERVICE_RUNS_KEPT,
  SERVICES_PER_NODE_MAX,
  ServiceManager,
} from "./manager.js";
export { type ConfigValidator, serviceSpecs } from "./requests.js";
export type { Service, ServiceReport, ServiceRun, ServiceState, ServiceStatus } from "./service.js";
export { type StatefulParts, StatefulService, type Submit } from "./stateful.js";
