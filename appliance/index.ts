// appliance/: what an operator touches. The configuration (defaults, TOML file, environment), the TLS
// certificate, the admin HTTP API, the logger, the `mailgrid` command and the local grid of `mailgrid
// cluster`, built on node/'s MailNode.

export { DEFAULT_CONFIG, ConfigError, envName, loadConfig, resolveConfig, toNodeInit } from './config.ts'
export type { Config, ConfigSources, LoadConfigOptions, MachineFacts, ResolvedConfig, ServiceConfig } from './config.ts'
export { clusterDown, clusterStatus, clusterUp, nodePorts } from './cluster.ts'
export type { ClusterFile, ClusterNode, PortName, UpOptions } from './cluster.ts'
export { gridLines, placement } from './gridview.ts'
export { loadTls, TlsError } from './tls.ts'
export type { LoadedTls, TlsInit } from './tls.ts'
export { createAdminServer, HTTP_STATUS } from './admin.ts'
export type { AdminComponents, AdminInit, AdminServer } from './admin.ts'
export { createLogger, namespaced } from './logger.ts'
export type { Logger, LoggerInit } from './logger.ts'
export { main } from './commands.ts'
export type { CliIo } from './commands.ts'
export { startNode } from './start.ts'
export type { StartOptions } from './start.ts'
