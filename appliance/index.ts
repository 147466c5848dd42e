// appliance/: what an operator touches. The configuration (defaults, TOML file, environment), the TLS
// certificate, the admin HTTP API, the logger and the `mailgrid` command, built on node/'s MailNode.

export { DEFAULT_CONFIG, ConfigError, envName, loadConfig, resolveConfig, toNodeInit } from './config.ts'
export type { Config, ConfigSources, LoadConfigOptions, ResolvedConfig, ServiceConfig } from './config.ts'
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
