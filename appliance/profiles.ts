// Saved remote nodes for the CLI (issue 11, item 4): `mailgrid profile save NAME --url ... --token ...
// --fingerprint ...` keeps the three in one file of the operator's home, readable by its owner only, and
// `--profile NAME` (or MAILGRID_PROFILE) uses them, so the token need not be typed or kept in the shell.
// The file: $MAILGRID_PROFILES, else $XDG_CONFIG_HOME/mailgrid/profiles.json, else ~/.config/mailgrid/profiles.json.

import { mkdir, readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { dirname, join } from 'node:path'
import { writeFileDurable } from '../gossip/index.ts'

export const PROFILES_FILE = 'profiles.json'
export const PROFILE_NAME_CHARS_MAX = 64
export const PROFILES_BYTES_MAX = 1024 * 1024 // thousands of nodes; a bigger file is not ours

export interface Profile {
  url: string
  token: string
  fingerprint?: string
}

export class ProfileError extends Error {}

export function profilesPath (env: Record<string, string | undefined>): string {
  if (env.MAILGRID_PROFILES !== undefined && env.MAILGRID_PROFILES !== '') return env.MAILGRID_PROFILES
  const config = env.XDG_CONFIG_HOME !== undefined && env.XDG_CONFIG_HOME !== '' ? env.XDG_CONFIG_HOME : join(env.HOME ?? homedir(), '.config')
  return join(config, 'mailgrid', PROFILES_FILE)
}

export function checkProfileName (name: string): string | null {
  return new RegExp(`^[A-Za-z0-9][A-Za-z0-9._-]{0,${PROFILE_NAME_CHARS_MAX - 1}}$`).test(name) ? null : `a profile name is 1-${PROFILE_NAME_CHARS_MAX} of A-Z a-z 0-9 . _ - (got ${JSON.stringify(name)})`
}

export async function readProfiles (path: string): Promise<Record<string, Profile>> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw new ProfileError(`${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`)
  }
  if (text.length > PROFILES_BYTES_MAX) throw new ProfileError(`${path}: larger than ${PROFILES_BYTES_MAX} bytes, not a profiles file`)
  let v: unknown
  try { v = JSON.parse(text) } catch { throw new ProfileError(`${path}: not JSON`) }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ProfileError(`${path}: not a profiles file`)
  const out: Record<string, Profile> = {}
  for (const [name, p] of Object.entries(v as Record<string, Partial<Profile>>)) {
    if (typeof p?.url !== 'string' || typeof p.token !== 'string') throw new ProfileError(`${path}: profile ${name} needs url and token`)
    out[name] = { url: p.url, token: p.token, ...(typeof p.fingerprint === 'string' ? { fingerprint: p.fingerprint } : {}) }
  }
  return out
}

async function write (path: string, profiles: Record<string, Profile>): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 })
  await writeFileDurable(path, JSON.stringify(profiles, null, 2) + '\n', 0o600)
}

export async function saveProfile (path: string, name: string, profile: Profile): Promise<void> {
  const why = checkProfileName(name)
  if (why !== null) throw new ProfileError(why)
  await write(path, { ...await readProfiles(path), [name]: profile })
}

/** True when there was such a profile. */
export async function deleteProfile (path: string, name: string): Promise<boolean> {
  const all = await readProfiles(path)
  if (all[name] === undefined) return false
  delete all[name]
  await write(path, all)
  return true
}
