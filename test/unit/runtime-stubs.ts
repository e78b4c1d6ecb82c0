import type {Runtime} from '../../src/runtime/runtime.js'

/** The Runtime methods a unit test's fake never reaches (the stopped-container rollback's): each throws. */
export const UNUSED_CONTAINER_CONTROL: Pick<Runtime, 'holdLifecycle' | 'putArchive' | 'startContainer'> = {
  holdLifecycle() {
    throw new Error('holdLifecycle: not used by this test')
  },
  async putArchive() {
    throw new Error('putArchive: not used by this test')
  },
  async startContainer() {
    throw new Error('startContainer: not used by this test')
  },
}
