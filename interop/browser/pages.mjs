// The sign-in and consent pages in a real browser (Debian's headless Chromium), used as a
// person would: typing, clicking, going back. Prints one JSON line with what it saw.
//
// Environment: MCP_URL (the MCP endpoint), MCP_USERNAME, MCP_PASSWORD, SCREENSHOT_DIR.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { capturing, launch } from './chromium.mjs';

const mcpUrl = need('MCP_URL');
const username = need('MCP_USERNAME');
const password = need('MCP_PASSWORD');
const shots = process.env.SCREENSHOT_DIR ?? '.';
mkdirSync(shots, { recursive: true });
const base = new URL(mcpUrl).origin;
const CALLBACK = 'http://127.0.0.1:53999/callback';

function need(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}
function fail(message) {
  console.error(`browser test FAILED: ${message}`);
  process.exit(1);
}
function check(condition, message) {
  if (!condition) fail(message);
}

async function register() {
  const r = await fetch(`${base}/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: 'Browser Test Client', redirect_uris: [CALLBACK], token_endpoint_auth_method: 'none' }),
  });
  check(r.status === 201, `registration answered ${r.status}`);
  return (await r.json()).client_id;
}

function authorizeUrl(clientId) {
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const q = new URLSearchParams({
    response_type: 'code', client_id: clientId, redirect_uri: CALLBACK, code_challenge: challenge,
    code_challenge_method: 'S256', state: 'browser-state', scope: 'mcp:tools', resource: mcpUrl,
  });
  return { url: `${base}/authorize?${q}`, verifier };
}

/** A context whose navigations to the client's callback are captured instead of loaded. */
function context(browser, options = {}) {
  return capturing(browser, CALLBACK, options);
}

async function main() {
  const browser = await launch();
  const result = {};
  try {
    const clientId = await register();

    // 1. Sign in (a wrong password first), consent, back to the client.
    const { ctx, callbacks } = await context(browser);
    const page = await ctx.newPage();
    const { url, verifier } = authorizeUrl(clientId);
    const first = await page.goto(url);
    check(first.status() === 200, `authorize page answered ${first.status()}`);
    check((first.headers()['content-security-policy'] ?? '').includes("frame-ancestors 'none'"), 'no frame-ancestors in the CSP');
    await page.screenshot({ path: join(shots, 'sign-in.png'), fullPage: true });
    await page.fill('#username', username);
    await page.fill('#password', 'not the password');
    await page.click('button[type=submit]');
    check(await page.getByText('Wrong username or password').isVisible(), 'no error after a wrong password');
    check(await page.locator('#password').isVisible(), 'the form is gone after a wrong password');
    result.wrong_password_shown = true;
    await page.fill('#username', username);
    await page.fill('#password', password);
    await page.click('button[type=submit]');
    const consentText = await page.textContent('main');
    check(consentText.includes('Browser Test Client'), 'the consent page does not name the client');
    check(consentText.includes('127.0.0.1'), 'the consent page does not show the redirect host');
    check(consentText.includes('mcp:tools'), 'the consent page does not list the scopes');
    result.consent_shows_client_host_scopes = true;
    await page.screenshot({ path: join(shots, 'consent.png'), fullPage: true });
    const session = (await ctx.cookies()).find((c) => c.name === 'mcp_oauth_session');
    check(session && session.httpOnly && session.sameSite === 'Lax' && session.path === '/', `session cookie flags: ${JSON.stringify(session)}`);
    result.session_cookie = { httpOnly: session.httpOnly, sameSite: session.sameSite, secure: session.secure };
    await page.click('button[value=approve]');
    await page.waitForURL(`${CALLBACK}**`);
    check(callbacks.length === 1, `expected one redirect to the client, got ${callbacks.length}`);
    const back = new URL(callbacks[0]);
    check(back.searchParams.get('state') === 'browser-state' && back.searchParams.get('iss') === base, `redirect lacks state/iss: ${back}`);

    // 2. The back button after consent: Chromium does not resubmit the no-store POST on its own,
    //    and a person who resubmits anyway is refused. No second code either way.
    await page.goBack().catch(() => {});
    if (await page.locator('button[value=approve]').count()) {
      await page.click('button[value=approve]');
      check(/expired or was already completed/.test(await page.textContent('main')), 'a resubmitted consent was not refused');
    }
    check(callbacks.length === 1, 'the back button produced a second code');
    result.back_button_no_second_code = true;

    // 3. A double submit of one consent form (two clicks): one code.
    //    (Another client: consent to the first one is remembered, so its page would be skipped.)
    const twice = authorizeUrl(await register());
    const { ctx: fresh } = await context(browser);
    const p5 = await fresh.newPage();
    await p5.goto(twice.url);
    await p5.fill('#username', username);
    await p5.fill('#password', password);
    await p5.click('button[type=submit]');
    const fields = {
      pending: await p5.getAttribute('input[name=pending]', 'value'),
      csrf: await p5.getAttribute('input[name=csrf]', 'value'),
      decision: 'approve',
    };
    const action = `${base}${await p5.getAttribute('form', 'action')}`;
    const post = () => p5.request.post(action, { form: fields, maxRedirects: 0 });
    const [one, two] = await Promise.all([post(), post()]);
    const statuses = [one.status(), two.status()].sort();
    check(statuses[0] === 303 && statuses[1] === 400, `double submit answered ${statuses}`);
    result.double_submit_one_code = true;

    // 4. The code works once.
    const token = await fetch(`${base}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'authorization_code', code: back.searchParams.get('code'), code_verifier: verifier, redirect_uri: CALLBACK, client_id: clientId }),
    });
    check(token.status === 200, `code exchange answered ${token.status}`);
    const tokens = await token.json();

    // 4. An expired session before consent: a clear page asking to sign in again, not a 500.
    const { url: url2 } = authorizeUrl(await register());
    const p2 = await ctx.newPage();
    await ctx.clearCookies({ name: 'mcp_oauth_session' });
    await p2.goto(url2);
    await p2.fill('#username', username);
    await p2.fill('#password', password);
    await p2.click('button[type=submit]');
    const consent2 = p2.locator('button[value=approve]');
    if (await consent2.count()) {
      await ctx.clearCookies({ name: 'mcp_oauth_session' });
      const resp = p2.waitForResponse((r) => r.url().includes('/consent'));
      await consent2.click();
      check((await resp).status() < 500, 'an expired session gave a server error');
      check((await p2.textContent('main')).includes('sign in again'), 'no clear page after the session ended');
      result.expired_session_page = true;
    } else {
      fail('consent page expected after sign-in');
    }

    // 5. Framing is refused.
    const framer = await ctx.newPage();
    await framer.route('http://framer.test/', (r) => r.fulfill({ contentType: 'text/html', body: `<iframe src="${url2}" width=600 height=400></iframe>` }));
    await framer.goto('http://framer.test/');
    await framer.waitForTimeout(500);
    const inner = framer.frames().find((f) => f !== framer.mainFrame());
    const framed = inner ? await inner.locator('#password').count().catch(() => 0) : 0;
    check(framed === 0, 'the sign-in page rendered inside a frame');
    result.framing_refused = true;

    // 6. A cross-site form post without the CSRF cookie and token is refused.
    const evil = await ctx.newPage();
    await evil.route('http://evil.test/', (r) =>
      r.fulfill({
        contentType: 'text/html',
        body: `<form id=f method=post action="${base}/authorize/sign-in"><input name=pending value=x><input name=csrf value=y><input name=username value="${username}"><input name=password value="${password}"></form><script>document.getElementById('f').submit()</script>`,
      }),
    );
    const forged = evil.waitForResponse((r) => r.url().endsWith('/authorize/sign-in'));
    await evil.goto('http://evil.test/');
    check((await forged).status() === 403, `a cross-site post answered ${(await forged).status()}`);
    result.cross_site_post_refused = true;

    // 7. Without JavaScript, and at phone width.
    const { ctx: noJs, callbacks: noJsBack } = await context(browser, { javaScriptEnabled: false, viewport: { width: 375, height: 700 } });
    const p3 = await noJs.newPage();
    await p3.goto(authorizeUrl(await register()).url);
    await p3.fill('#username', username);
    await p3.fill('#password', password);
    await p3.click('button[type=submit]');
    await p3.screenshot({ path: join(shots, 'consent-phone.png'), fullPage: true });
    await p3.click('button[value=approve]');
    await p3.waitForURL(`${CALLBACK}**`);
    check(noJsBack.length === 1 && new URL(noJsBack[0]).searchParams.get('code'), 'no code without JavaScript');
    result.works_without_javascript = true;
    const { ctx: phone } = await context(browser, { viewport: { width: 375, height: 700 } });
    const p4 = await phone.newPage();
    await p4.goto(authorizeUrl(clientId).url);
    const width = await p4.evaluate(() => document.documentElement.scrollWidth);
    check(width <= 375, `the sign-in page scrolls sideways at phone width (${width}px)`);
    await p4.screenshot({ path: join(shots, 'sign-in-phone.png') });
    result.phone_width_ok = true;

    // 8. Connected apps: signed in at phone width through the page's own sign-in, the client
    //    is listed; revoking it removes it and its refresh token stops working.
    const { ctx: account } = await context(browser, { viewport: { width: 375, height: 700 } });
    const apps = await account.newPage();
    await apps.goto(`${base}/account/apps`);
    await apps.fill('#username', username);
    await apps.fill('#password', password);
    await apps.click('button[type=submit]');
    await apps.waitForURL(`${base}/account/apps`);
    const listed = apps.locator('section.app', { has: apps.locator(`input[name=client][value="${clientId}"]`) });
    check((await listed.count()) === 1, 'Connected apps does not list the client');
    const row = await listed.textContent();
    check(row.includes('Browser Test Client') && row.includes('unverified') && row.includes('mcp:tools'), `the row lacks name, unverified mark or scope: ${row}`);
    const appsWidth = await apps.evaluate(() => document.documentElement.scrollWidth);
    check(appsWidth <= 375, `Connected apps scrolls sideways at phone width (${appsWidth}px)`);
    await apps.screenshot({ path: join(shots, 'connected-apps-phone.png'), fullPage: true });
    await apps.setViewportSize({ width: 900, height: 700 });
    await apps.screenshot({ path: join(shots, 'connected-apps.png'), fullPage: true });
    result.connected_apps_lists_client = true;
    await listed.locator('button', { hasText: 'Revoke' }).click();
    await apps.waitForURL(`${base}/account/apps`);
    check((await apps.locator(`input[name=client][value="${clientId}"]`).count()) === 0, 'the revoked client is still listed');
    await apps.screenshot({ path: join(shots, 'connected-apps-revoked.png'), fullPage: true });
    const refreshed = await fetch(`${base}/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: tokens.refresh_token, client_id: clientId }),
    });
    check(refreshed.status === 400, `the revoked refresh token answered ${refreshed.status}`);
    result.connected_apps_revoke_works = true;
    // 9. "Not you? Sign out" on the consent page: the sign-in page again, the cookie gone, and a
    //    copy of the cookie taken before signs no one in.
    const { ctx: out } = await context(browser);
    const p6 = await out.newPage();
    await p6.goto(authorizeUrl(await register()).url);
    await p6.fill('#username', username);
    await p6.fill('#password', password);
    await p6.click('button[type=submit]');
    check(/Not\s+\S+\?\s*Sign out/.test(await p6.textContent('main')), 'the consent page offers no sign-out');
    const copied = (await out.cookies()).find((c) => c.name === 'mcp_oauth_session');
    check(copied, 'no session cookie after sign-in');
    await p6.getByRole('button', { name: 'Sign out' }).click();
    check(await p6.locator('#password').isVisible(), 'no sign-in page after signing out');
    check(!(await out.cookies()).some((c) => c.name === 'mcp_oauth_session'), 'the session cookie survived sign-out');
    await out.addCookies([copied]);
    await p6.goto(authorizeUrl(await register()).url);
    check(await p6.locator('#password').isVisible(), 'a copy of the cookie still signs in after sign-out');
    check((await p6.locator('button[value=approve]').count()) === 0, 'the consent page shown to a signed-out cookie');
    result.sign_out_ends_session = true;
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify({ client: 'chromium', ...result }));
}

main().catch((e) => fail(e?.stack ?? String(e)));
