/** The IMAP wire codec: parser, tokens, response compiler, sequence sets and sections. No I/O. */
export * from './constants.ts'
export * from './types.ts'
export { ImapParser } from './parser.ts'
export type { ParserInit } from './parser.ts'
export * from './compiler.ts'
export * from './sequence.ts'
export * from './section.ts'
