import assert from 'node:assert/strict'

import {insideSandbox, parseRuntimeEnv, resolveRuntimeKind, type RuntimeChoice} from '../../src/runtime/resolve.js'

const inside = (): boolean => true
const outside = (): boolean => false

describe('runtime resolution', () => {
  describe('precedence: --runtime > OPENCODE_RUNTIME > detection', () => {
    it('an explicit flag wins over the env and over detection', () => {
      assert.deepEqual(resolveRuntimeKind('host', 'container', inside), {detected: false, kind: 'host'})
      assert.deepEqual(resolveRuntimeKind('container', 'host', outside), {detected: false, kind: 'container'})
    })

    it('the env wins over detection when there is no flag, or the flag is auto', () => {
      assert.deepEqual(resolveRuntimeKind(undefined, 'host', inside), {detected: false, kind: 'host'})
      assert.deepEqual(resolveRuntimeKind('auto', 'host', inside), {detected: false, kind: 'host'})
      assert.deepEqual(resolveRuntimeKind(undefined, 'container', outside), {detected: false, kind: 'container'})
    })

    it('detection decides when neither is set (and says it detected)', () => {
      assert.deepEqual(resolveRuntimeKind(undefined, undefined, inside), {detected: true, kind: 'container'})
      assert.deepEqual(resolveRuntimeKind('auto', 'auto', inside), {detected: true, kind: 'container'})
      assert.deepEqual(resolveRuntimeKind(undefined, undefined, outside), {detected: false, kind: 'host'})
    })

    it('does not run detection when the choice is explicit', () => {
      const explode = (): boolean => {
        throw new Error('detection must not run')
      }

      for (const flag of ['host', 'container'] as RuntimeChoice[]) resolveRuntimeKind(flag, undefined, explode)
      resolveRuntimeKind(undefined, 'host', explode)
    })
  })

  describe('OPENCODE_RUNTIME is read leniently', () => {
    it('is case- and space-insensitive', () => {
      assert.equal(parseRuntimeEnv('HOST'), 'host')
      assert.equal(parseRuntimeEnv(' Container '), 'container')
      assert.deepEqual(resolveRuntimeKind(undefined, ' HOST\n', inside), {detected: false, kind: 'host'})
    })

    it('anything unknown (or empty) means auto, never an error', () => {
      for (const value of [undefined, '', 'auto', 'docker', 'hostt', '1', 'true']) {
        assert.equal(parseRuntimeEnv(value), 'auto', String(value))
        assert.deepEqual(resolveRuntimeKind(undefined, value, outside), {detected: false, kind: 'host'})
      }
    })
  })

  describe('insideSandbox: both kinds of marker are needed', () => {
    const with_ = (...files: string[]) => (file: string) => files.includes(file)

    it('container marker + sandbox marker → inside', () => {
      assert.equal(insideSandbox(with_('/.dockerenv', '/etc/opencode-cloud-version')), true)
      assert.equal(insideSandbox(with_('/run/.containerenv', '/opt/opencode/COMMIT')), true)
    })

    it('only one kind → not inside', () => {
      assert.equal(insideSandbox(with_('/.dockerenv')), false)
      assert.equal(insideSandbox(with_('/run/.containerenv')), false)
      assert.equal(insideSandbox(with_('/etc/opencode-cloud-version', '/opt/opencode/COMMIT')), false)
      assert.equal(insideSandbox(with_()), false)
    })
  })
})
