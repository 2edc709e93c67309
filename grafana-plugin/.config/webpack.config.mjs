// Build of the app and its nested datasource, in the shape @grafana/create-plugin
// produces: AMD modules with Grafana's shared libraries as externals, plugin.json files
// with %VERSION%/%TODAY%/%PLUGIN_ID% filled in, assets copied next to them in dist/.
import CopyWebpackPlugin from 'copy-webpack-plugin';
import ForkTsCheckerWebpackPlugin from 'fork-ts-checker-webpack-plugin';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));
const pluginId = JSON.parse(readFileSync(path.join(root, 'src/plugin.json'), 'utf8')).id;
const today = new Date().toISOString().slice(0, 10);

export const EXTERNALS = [
  'lodash',
  'jquery',
  'moment',
  'slate',
  'emotion',
  '@emotion/react',
  '@emotion/css',
  'prismjs',
  'slate-plain-serializer',
  '@grafana/slate-react',
  'react',
  'react-dom',
  'react-redux',
  'redux',
  'rxjs',
  'react-router',
  'react-router-dom',
  'd3',
  'angular',
  /^@grafana\/ui/i,
  /^@grafana\/runtime/i,
  /^@grafana\/data/i,
  /^@grafana\/schema/i,
];

export const swcRule = {
  test: /\.[tj]sx?$/,
  exclude: /node_modules/,
  use: {
    loader: 'swc-loader',
    options: {
      jsc: {
        baseUrl: root,
        target: 'es2015',
        loose: false,
        parser: { syntax: 'typescript', tsx: true, decorators: false, dynamicImport: true },
        transform: { react: { runtime: 'automatic' } },
      },
    },
  },
};

const fillPluginJson = (content) =>
  content
    .toString()
    .replaceAll('%VERSION%', pkg.version)
    .replaceAll('%TODAY%', today)
    .replaceAll('%PLUGIN_ID%', pluginId);

export default (env = {}) => ({
  context: path.join(root, 'src'),
  devtool: env.production ? 'source-map' : 'eval-source-map',
  mode: env.production ? 'production' : 'development',
  entry: {
    module: './module.tsx',
    'datasource/module': './datasource/module.ts',
  },
  externals: [
    ...EXTERNALS,
    // Resolve the public path of lazily loaded chunks the way Grafana expects.
    ({ request }, callback) => (request === 'amd-module' ? callback(undefined, request) : callback()),
  ],
  module: { rules: [swcRule] },
  output: {
    clean: { keep: /gpx_/ },
    filename: '[name].js',
    library: { type: 'amd' },
    path: path.join(root, 'dist'),
    publicPath: `public/plugins/${pluginId}/`,
    uniqueName: pluginId,
  },
  resolve: { extensions: ['.js', '.jsx', '.ts', '.tsx'], modules: [path.join(root, 'src'), 'node_modules'] },
  plugins: [
    new CopyWebpackPlugin({
      patterns: [
        { from: path.join(root, 'README.md'), to: '.' },
        { from: path.join(root, 'CHANGELOG.md'), to: '.' },
        { from: path.join(root, 'LICENSE'), to: '.' },
        { from: 'plugin.json', to: '.', transform: fillPluginJson },
        { from: 'datasource/plugin.json', to: 'datasource', transform: fillPluginJson },
        { from: 'img/**/*', to: '.' },
        // Screenshots the browser test takes of each page (tests/test_grafana_plugin.py).
        { from: path.join(root, '../docs/img/grafana/*.png'), to: 'img/[name][ext]', noErrorOnMissing: true },
        { from: 'datasource/img/**/*', to: '.' },
        { from: path.join(root, 'dashboards'), to: 'dashboards' },
      ],
    }),
    new ForkTsCheckerWebpackPlugin({ typescript: { configFile: path.join(root, 'tsconfig.json') } }),
  ],
  performance: { hints: false },
});
