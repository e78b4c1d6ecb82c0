import assert from 'node:assert/strict'

import Docker from 'dockerode'

import {followStream, sharedRegistry, type TestRegistry} from '../helpers/registry.js'

/**
 * The test registry itself: it serves the sandbox versions over plain HTTP on loopback (the
 * Engine's default insecure range), with the digests the push reported, and what each version
 * carries is what the update tests rely on.
 */
describe('the test registry (docker-registry on loopback)', function () {
  this.timeout(180_000)
  const docker = new Docker()
  let registry: TestRegistry

  before(async () => {
    registry = await sharedRegistry()
  })

  it('answers the distribution endpoint with the pushed digest, and no version is present locally', async () => {
    for (const version of ['v1', 'v2', 'broken'] as const) {
      const info = (await docker.getImage(registry.ref(version)).distribution({})) as {Descriptor: {digest: string}}
      assert.equal(info.Descriptor.digest, registry.digests[version], version)
      await assert.rejects(docker.getImage(registry.ref(version)).inspect(), (error: {statusCode?: number}) => error.statusCode === 404)
    }

    assert.notEqual(registry.digests.v1, registry.digests.v2)
  })

  it('v2 pulls from it and carries its version in the file and the label', async () => {
    const ref = registry.ref('v2')
    try {
      await followStream(docker, (await docker.pull(ref)) as NodeJS.ReadableStream)
      const image = await docker.getImage(ref).inspect()
      assert.equal(image.Config.Labels['org.opencode-cloud.version'], 'v2')
      assert.ok(image.RepoDigests.includes(`${registry.repository}@${registry.digests.v2}`), image.RepoDigests.join(', '))
      const container = await docker.createContainer({Cmd: ['cat', '/etc/opencode-cloud-version'], Entrypoint: [], Image: ref})
      try {
        await container.start()
        await container.wait()
        const logs = (await container.logs({stdout: true})) as unknown as Buffer
        assert.match(logs.toString('utf8'), /v2\n/)
      } finally {
        await container.remove({force: true})
      }
    } finally {
      await docker.getImage(ref).remove({force: true}).catch(() => {})
    }
  })

  it('stops (the port refuses) and starts again on the same storage', async () => {
    await registry.stop()
    assert.equal(registry.running(), false)
    await assert.rejects(docker.getImage(registry.ref('v1')).distribution({}))
    await registry.start()
    const info = (await docker.getImage(registry.ref('v1')).distribution({})) as {Descriptor: {digest: string}}
    assert.equal(info.Descriptor.digest, registry.digests.v1)
  })
})
