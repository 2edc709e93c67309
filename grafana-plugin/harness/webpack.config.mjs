// Bundles the harness page with React and @grafana/* included (no Grafana to provide them).
import HtmlWebpackPlugin from 'html-webpack-plugin';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { swcRule } from '../.config/webpack.config.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export default {
  mode: 'development',
  devtool: false,
  context: root,
  entry: './harness/index.tsx',
  module: {
    rules: [
      swcRule,
      // @grafana/ui's ESM build imports some packages without file extensions.
      { test: /\.m?js$/, resolve: { fullySpecified: false } },
      { test: /\.css$/, use: ['style-loader', 'css-loader'] },
      { test: /\.(svg|png|woff2?|ttf|eot)$/, type: 'asset/resource' },
    ],
  },
  output: { path: path.join(root, 'harness-dist'), filename: 'harness.js', publicPath: '/', clean: true },
  resolve: {
    extensions: ['.js', '.jsx', '.ts', '.tsx'],
    fallback: { fs: false, path: false },
    // Grafana shares one react-router v6 with its UI library and plugins; @grafana/ui's
    // nested v5-compat copy would otherwise render <Link>s outside our router's context.
    alias: {
      'react-router-dom-v5-compat': path.join(root, 'node_modules/react-router-dom'),
      react: path.join(root, 'node_modules/react'),
      'react-dom': path.join(root, 'node_modules/react-dom'),
    },
  },
  plugins: [new HtmlWebpackPlugin({ title: 'LogGuardian plugin harness', templateContent: '<!doctype html><html><head><meta charset="utf-8"><title>LogGuardian</title></head><body><div id="root"></div></body></html>' })],
  performance: { hints: false },
};
