// Zips dist/ the way the Grafana plugin catalog expects: one top-level folder named
// after the plugin id (logguardian-sidecar-app/…), written to <id>-<version>.zip.
import { readdirSync, readFileSync, statSync, createWriteStream } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import yazl from 'yazl';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');
const meta = JSON.parse(readFileSync(path.join(dist, 'plugin.json'), 'utf8'));
const out = path.join(root, `${meta.id}-${meta.info.version}.zip`);

const walk = (dir) =>
  readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    return statSync(full).isDirectory() ? walk(full) : [full];
  });

const required = ['plugin.json', 'module.js', 'README.md', 'CHANGELOG.md', 'LICENSE', 'datasource/plugin.json', 'datasource/module.js'];
const missing = required.filter((f) => !statSync(path.join(dist, f), { throwIfNoEntry: false }));
if (missing.length) {
  console.error(`dist/ is missing ${missing.join(', ')}: run npm run build first`);
  process.exit(1);
}
const zip = new yazl.ZipFile();
for (const file of walk(dist).sort()) {
  zip.addFile(file, `${meta.id}/${path.relative(dist, file).split(path.sep).join('/')}`);
}
zip.end();
zip.outputStream.pipe(createWriteStream(out)).on('close', () => console.log(out));
