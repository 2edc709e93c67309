// Drives the harness page in Debian's Chromium with Playwright: visits the four pages,
// clicks "Mark normal" on the most frequent template, and saves a screenshot of each
// page. Prints one JSON line with what it saw for the calling test to check.
//   node tests/e2e.mjs <harness base url> <screenshot dir>
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error('usage: node tests/e2e.mjs <harness url> <screenshot dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const app = `${base}/a/logguardian-sidecar-app`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const result = {};
const errors = [];
const consoleLines = [];
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
page.on('pageerror', (err) => errors.push(String(err)));
page.on('console', (msg) => consoleLines.push(`${msg.type()}: ${msg.text()}`));
try {

  await page.goto(`${app}/incidents`);
  await page.getByTestId('incident').first().waitFor({ timeout: 30000 });
  result.incidents = await page.getByTestId('incident').count();
  result.firstIncidentReasons = await page.getByTestId('incident-reasons').first().innerText();
  await page.screenshot({ path: path.join(shots, 'incidents.png') });

  await page.getByRole('tab', { name: 'Templates' }).click();
  const row = page.locator('tr[data-testid^="template-"]').first();
  await row.waitFor({ timeout: 30000 });
  result.templateId = (await row.getAttribute('data-testid')).slice('template-'.length);
  result.stateBefore = await row.getByTestId('template-state').innerText();
  await row.getByRole('button', { name: 'Mark normal' }).click();
  await row.getByRole('button', { name: 'Re-arm' }).waitFor({ timeout: 30000 });
  result.stateAfter = await row.getByTestId('template-state').innerText();
  await page.screenshot({ path: path.join(shots, 'templates.png') });

  await page.getByRole('tab', { name: 'Exceptions' }).click();
  await page
    .locator('[data-testid="exception-group"], [data-testid="exceptions-empty"], [data-testid="exceptions-unsupported"]')
    .first()
    .waitFor({ timeout: 30000 });
  result.exceptionGroups = await page.getByTestId('exception-group').count();
  await page.screenshot({ path: path.join(shots, 'exceptions.png') });

  await page.getByRole('tab', { name: 'Status' }).click();
  await page.getByTestId('status-summary').waitFor({ timeout: 30000 });
  result.status = await page.getByTestId('status-summary').innerText();
  await page.screenshot({ path: path.join(shots, 'status.png') });
  result.pageErrors = errors;
} catch (err) {
  // Leave evidence for the failing test: what the page showed and logged.
  await page.screenshot({ path: path.join(shots, 'failure.png') }).catch(() => {});
  console.error(`page errors: ${JSON.stringify(errors)}\nconsole:\n${consoleLines.slice(-30).join('\n')}`);
  throw err;
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
