// Drives ferrolite's web console in headless Chromium, as a person would: sign in (a bad token
// first), install the mock app from the editor (errors first), start it, chat in the
// playground and watch the stream, then find the requests in the logs and the charts, stop
// and uninstall. Saves a screenshot of each page.
//
// Run by tests/it/console.rs, which starts the server. Environment:
//   FERROLITE_BASE_URL     the server, e.g. http://127.0.0.1:9527
//   FERROLITE_TOKEN        a token of a workspace with nothing installed
//   FERROLITE_CHROMIUM     the browser (default /usr/bin/chromium)
//   FERROLITE_SCREENSHOTS  where the PNGs go (default: no screenshots)

import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const base = required('FERROLITE_BASE_URL');
const token = required('FERROLITE_TOKEN');
const browserPath = process.env.FERROLITE_CHROMIUM || '/usr/bin/chromium';
const shots = process.env.FERROLITE_SCREENSHOTS;

const ANSWER = 'Hello from the console test! This answer streams word by word.';
const manifest = (params) => JSON.stringify({
  name: 'Console Mock',
  type: 'llm-proxy',
  version: '1.0.0',
  config: {
    service_id: 'console-mock',
    model_list: [{ model_name: 'console-chat', litellm_params: params }],
    litellm_settings: { routing_strategy: 'simple-shuffle' },
  },
}, null, 2);
// Priced per token so the cost chart has something to draw.
const GOOD = manifest({ model: 'gpt-4o-mini', mock_response: ANSWER, input_cost_per_token: 0.001, output_cost_per_token: 0.002 });
const BROKEN = GOOD.replace('"model": "gpt-4o-mini",', '').replace('"simple-shuffle"', '"round-robin"');

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set (tests/it/console.rs sets it)`);
    process.exit(2);
  }
  return value;
}

function step(text) {
  console.log(`- ${text}`);
}

async function shoot(page, name) {
  if (!shots) return;
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

/** What the server itself says about a request with `badToken`. */
async function serverMessage(workspace, badToken) {
  const response = await fetch(`${base}/${workspace}/services/server-apps/list_apps`, {
    method: 'POST',
    headers: { authorization: `Bearer ${badToken}` },
  });
  assert.equal(response.status, 401);
  return (await response.json()).error.message;
}

async function main() {
  if (shots) await mkdir(shots, { recursive: true });
  const profile = await mkdtemp(join(tmpdir(), 'ferrolite-console-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: browserPath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 1280, height: 860 },
  });
  const pageErrors = [];
  try {
    const page = context.pages()[0] || await context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('console', (m) => {
      if (m.type() === 'error') console.log(`  (browser console) ${m.text()}`);
    });

    step('an invalid token shows the server\'s error');
    await page.goto(`${base}/ui`);
    const workspace = JSON.parse(Buffer.from(token.split('.')[1], 'base64url')).ws;
    await page.fill('#token', 'not-a-token');
    await page.fill('#workspace', workspace);
    await page.click('#sign-in');
    const expected = await serverMessage(workspace, 'not-a-token');
    const shown = page.locator('.sign-in .notice.error');
    await shown.waitFor();
    assert.match(await shown.textContent(), new RegExp(expected.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    await shoot(page, 'sign-in');

    step('signing in with a good token (the workspace read from it)');
    await page.fill('#token', token);
    await page.fill('#workspace', '');
    await page.click('#sign-in');
    await page.locator('#who-workspace', { hasText: workspace }).waitFor();
    await page.locator('#installed .empty').waitFor();

    step('the editor shows each error at its JSON path, live');
    await page.click('#nav a[data-view=install]');
    await page.fill('#manifest', BROKEN);
    await page.locator('#verdict', { hasText: '2 errors' }).waitFor();
    for (const path of ['/config/model_list/0/litellm_params/model', '/config/litellm_settings/routing_strategy']) {
      await page.locator(`#errors li.error[data-path="${path}"]`).waitFor();
    }
    assert.ok(await page.locator('.gutter .line.bad').count() >= 2, 'error lines are marked in the gutter');
    assert.ok(await page.locator('#install').isDisabled(), 'an invalid manifest cannot be installed');
    // Clicking an error selects its place in the text.
    await page.click('#errors li[data-path="/config/litellm_settings/routing_strategy"]');
    const selected = await page.$eval('#manifest', (t) => t.value.slice(t.selectionStart, t.selectionEnd));
    assert.match(selected, /routing_strategy/);
    await shoot(page, 'install-errors');

    step('YAML errors are placed on their lines too');
    const yaml = [
      'name: Console Mock', 'type: llm-proxy', 'config:', '  service_id: console-mock', '  model_list:',
      '  - model_name: console-chat', '    litellm_params:', '      mock_response: hi', '  litellm_settings:',
      '    routing_strategy: round-robin', '',
    ].join('\n');
    await page.fill('#manifest', yaml);
    const at = (path, line) => page.locator(`#errors li[data-path="${path}"] .at`, { hasText: `line ${line}` }).waitFor();
    await at('/config/litellm_settings/routing_strategy', 10);
    await at('/config/model_list/0/litellm_params/model', 7); // missing: shown at its parent
    await page.locator('#verdict', { hasText: '2 errors' }).waitFor();

    step('a valid manifest installs');
    await page.fill('#manifest', GOOD);
    await page.locator('#verdict', { hasText: 'Valid' }).waitFor();
    await page.click('#install');
    await page.locator('.notice.ok', { hasText: 'Installed console-mock' }).waitFor();
    await shoot(page, 'install');

    step('the app starts from the apps page');
    await page.click('#nav a[data-view=apps]');
    const appRow = page.locator('tr[data-app="console-mock"]');
    await appRow.getByRole('button', { name: 'Start' }).click();
    const sessionRow = page.locator('#running tr[data-session]');
    await sessionRow.waitFor();
    const sessionId = await sessionRow.getAttribute('data-session');
    await appRow.locator('.badge.ok').waitFor();
    await shoot(page, 'apps');

    step('the playground streams an answer');
    await sessionRow.getByRole('link', { name: 'Playground' }).click();
    await page.locator('#model option[value="console-chat"]').waitFor({ state: 'attached' });
    await page.fill('#message', 'Hello, console!');
    await page.click('#send');
    const answer = page.locator('.msg.assistant[data-done]');
    await answer.waitFor();
    assert.equal((await answer.locator('.text').textContent()).trim(), ANSWER);
    const chunks = Number(await answer.getAttribute('data-chunks'));
    assert.ok(chunks > 1, `the answer came in ${chunks} chunk(s), not as a stream`);
    assert.match(await answer.locator('.meta').textContent(), /deployment console-chat\/0/);
    await shoot(page, 'playground');

    step('the logs show the request and follow new ones');
    await page.click('#nav a[data-view=logs]');
    await page.locator('#log-lines li', { hasText: 'POST /v1/chat/completions model=console-chat' }).first().waitFor();
    const before = await page.locator('#log-lines li').count();
    const sent = await fetch(`${base}/${workspace}/apps/console-mock/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'console-chat', messages: [{ role: 'user', content: 'again' }] }),
    });
    assert.equal(sent.status, 200);
    await page.waitForFunction((n) => document.querySelectorAll('#log-lines li').length > n, before);
    await page.locator('#log-lines li', { hasText: 'status=200' }).nth(1).waitFor();
    await shoot(page, 'logs');

    step('the charts count the requests, their tokens and cost');
    await page.click('#nav a[data-view=usage]');
    await page.locator('[data-tile=requests] .value', { hasText: '2' }).waitFor();
    for (const chart of ['requests', 'tokens', 'cost']) {
      assert.ok(await page.locator(`[data-chart=${chart}] rect.bar`).count() >= 1, `${chart} chart has bars`);
    }
    assert.ok(await page.locator('[data-chart=latency] circle.dot').count() >= 3, 'latency chart has p50/p95/p99');
    assert.notEqual(await page.locator('[data-tile=spend] .value').textContent(), '$0');
    await page.locator(`tr[data-deployment="console-chat/0"]`).waitFor();
    await shoot(page, 'usage');
    assert.equal(new URL(page.url()).hash, `#/usage?session=${sessionId}`);

    step('API keys: created once, used, limited, revoked');
    await page.click('#nav a[data-view=keys]');
    await page.locator('#key-list .empty').waitFor();
    await page.fill('#key-name', 'console-key');
    await page.fill('#key-models', 'console-chat');
    await page.fill('#key-rpm', '60');
    await page.click('#create-key');
    const secret = (await page.locator('#new-key-secret').textContent()).trim();
    assert.match(secret, /^sk-fl-/);
    const keyRow = page.locator('#key-list tr[data-key]');
    await keyRow.waitFor();
    assert.match(await keyRow.textContent(), /console-key.*console-chat.*60 rpm.*active/);
    const withKey = (model) => fetch(`${base}/${workspace}/apps/console-mock/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'with a key' }] }),
    });
    assert.equal((await withKey('console-chat')).status, 200);
    // The key's spend shows on the next refresh.
    await page.waitForFunction(() => document.querySelector('#key-list tr[data-key] td.spent')?.textContent !== '$0', null, { timeout: 15000 });
    await shoot(page, 'keys');
    await keyRow.getByRole('button', { name: 'Revoke' }).click();
    await keyRow.getByRole('button', { name: 'Confirm revoke' }).click();
    await page.locator('#key-list tr[data-key] .badge', { hasText: 'revoked' }).waitFor();
    assert.equal((await withKey('console-chat')).status, 401);

    step('stop and uninstall');
    await page.click('#nav a[data-view=apps]');
    await page.locator(`tr[data-session="${sessionId}"]`).getByRole('button', { name: 'Stop' }).click();
    await page.locator('#running .empty').waitFor();
    const uninstall = page.locator('tr[data-app="console-mock"]').getByRole('button', { name: /uninstall/i });
    await uninstall.click();
    await page.getByRole('button', { name: 'Confirm uninstall' }).click();
    await page.locator('#installed .empty').waitFor();

    step('sign out forgets the token');
    await page.click('#sign-out');
    await page.locator('#token').waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    step('a saved token the server refuses leads back to sign-in, saying why');
    await page.evaluate((ws) => sessionStorage.setItem('ferrolite.console', JSON.stringify({ token: 'stale', workspace: ws })), workspace);
    await page.reload();
    await page.locator('.sign-in .notice.error', { hasText: 'Signed out:' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);

    assert.deepEqual(pageErrors, [], 'no script errors on the page');
  } finally {
    await context.close();
    await rm(profile, { recursive: true, force: true });
  }
  console.log('all checks passed');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
