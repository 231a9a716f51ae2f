// Lint: typescript-eslint's recommended rules, no bare `new Error` in the
// product code, and the dependency arrows of docs/ARCHITECTURE.md as import
// rules, so that the document cannot drift from the code.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/** What each folder of src/ may import (besides itself, src/errors.ts and node: modules). */
const LAYERS = {
  model: [],
  inventory: ['model'],
  render: ['model', 'inventory', 'analyze'],
  analyze: ['model', 'inventory'],
  plan: ['model', 'inventory', 'render', 'analyze'],
  transport: ['model'],
  host: ['model', 'transport'],
  apply: ['model', 'inventory', 'analyze', 'plan', 'host', 'transport'],
  engine: ['model', 'inventory', 'render', 'analyze', 'plan', 'host', 'transport', 'apply'],
  lab: ['model', 'inventory', 'render', 'analyze', 'plan', 'transport'],
  cli: ['model', 'inventory', 'render', 'analyze', 'plan', 'host', 'transport', 'apply', 'engine', 'lab'],
};

const boundaries = Object.entries(LAYERS).map(([layer, allowed]) => {
  const forbidden = Object.keys(LAYERS).filter((other) => other !== layer && !allowed.includes(other));
  return {
    files: [`src/${layer}/**/*.ts`],
    ignores: ['**/*.test.ts', '**/fixtures/**'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: forbidden.map((other) => ({
            group: [`../${other}/*`, `../../${other}/*`],
            message: `src/${layer} may not import src/${other} (docs/ARCHITECTURE.md: ${layer} depends on ${allowed.join(', ') || 'nothing'})`,
          })),
        },
      ],
    },
  };
});

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'test-results/**', '.lab/**', '.docker-fleet/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['**/*.test.ts', '**/fixtures/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "NewExpression[callee.name='Error']",
          message: 'Throw a FleetError subclass (src/errors.ts): a plain Error reaches the user as "internal error".',
        },
      ],
    },
  },
  ...boundaries,
);
