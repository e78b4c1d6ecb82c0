import Show from './show.js'

export default class ConfigIndex extends Show {
  static override description = 'Show the configuration (same as `occ config show`).'
}
