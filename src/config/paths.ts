import {homedir} from 'node:os'
import path from 'node:path'

/** Where occ keeps its files on the host. XDG variables are honoured when set; otherwise the Rust occ's paths. */
export interface OccPaths {
  home: string
  /** ~/.config/opencode-cloud */
  configDir: string
  configFile: string
  /** ~/.local/share/opencode-cloud */
  dataDir: string
  /** The base dirs the default bind mounts live under. */
  xdgData: string
  xdgState: string
  xdgCache: string
}

export function resolvePaths(env: NodeJS.ProcessEnv = process.env): OccPaths {
  const home = env.HOME && env.HOME.length > 0 ? env.HOME : homedir()
  const xdg = (name: string, fallback: string): string => {
    const value = env[name]
    // The XDG spec says relative values are invalid and must be ignored.
    return value && path.isAbsolute(value) ? value : path.join(home, fallback)
  }

  const xdgConfig = xdg('XDG_CONFIG_HOME', '.config')
  const xdgData = xdg('XDG_DATA_HOME', '.local/share')
  const configDir = path.join(xdgConfig, 'opencode-cloud')
  return {
    configDir,
    configFile: path.join(configDir, 'config.json'),
    dataDir: path.join(xdgData, 'opencode-cloud'),
    home,
    xdgCache: xdg('XDG_CACHE_HOME', '.cache'),
    xdgData,
    xdgState: xdg('XDG_STATE_HOME', '.local/state'),
  }
}
