// jsdom + SWC, as @grafana/create-plugin sets up jest for plugins.
module.exports = {
  testEnvironment: 'jsdom',
  // The first render of @grafana/ui is slow on a busy 2-core machine: time is not what these tests check.
  testTimeout: 60000,
  roots: ['<rootDir>/src'],
  setupFilesAfterEnv: ['<rootDir>/.config/jest-setup.js'],
  transform: {
    '^.+\\.(t|j)sx?$|^.+\\.mjs$': ['@swc/jest', { jsc: { transform: { react: { runtime: 'automatic' } } } }],
  },
  // ESM-only packages Grafana's libraries pull in must be transformed too.
  transformIgnorePatterns: ['node_modules/(?!(ol|@react-hookz|@ver0|d3|d3-.*|internmap|delaunator|robust-predicates|marked|uuid|@grafana/.*|rxjs|react-colorful|ngraph.*|color-.*|@kusto|monaco-promql|nanoid|@react-aria|react-calendar|get-user-locale|memoize|mimic-function|@wojtekmaj|date-arithmetic)/)'],
  moduleNameMapper: {
    '\\.(css|scss|sass)$': 'identity-obj-proxy',
    '\\.(svg|png|jpg)$': '<rootDir>/.config/file-stub.js',
  },
  testMatch: ['<rootDir>/src/**/*.test.{ts,tsx}'],
};
