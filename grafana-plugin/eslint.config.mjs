import grafanaConfig from '@grafana/eslint-config';

export default [
  { ignores: ['dist/**', 'harness-dist/**', 'node_modules/**', '.config/**', 'coverage/**'] },
  ...grafanaConfig,
  {
    files: ['**/*.{ts,tsx}'],
    rules: { 'react/prop-types': 'off', 'react/react-in-jsx-scope': 'off' },
  },
];
