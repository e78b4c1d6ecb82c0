import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['lib/**', 'plugins/*/lib/**', 'packages/*/dist/**', 'node_modules/**', '.cache/**', 'coverage/**', 'oclif.manifest.json']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        AbortController: 'readonly',
        Buffer: 'readonly',
        clearTimeout: 'readonly',
        console: 'readonly',
        process: 'readonly',
        setTimeout: 'readonly',
        URL: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
      'no-restricted-imports': [
        'error',
        {
          // Commands are adapters: Docker and process logic belong to the runtime core.
          paths: [
            {message: 'Use the runtime core (src/runtime) instead.', name: 'dockerode'},
            {message: 'Use the runtime core (src/runtime) instead.', name: 'execa'},
          ],
        },
      ],
    },
  },
  {
    files: ['src/runtime/**', 'src/docker/**', 'src/service/**', 'src/protocol/**', 'plugins/**', 'packages/**', 'test/**', 'bench/**', 'scripts/**'],
    rules: {'no-restricted-imports': 'off'},
  },
  {
    files: ['test/**', 'bench/**', 'packages/*/test/**'],
    rules: {'@typescript-eslint/no-non-null-assertion': 'off'},
  },
)
