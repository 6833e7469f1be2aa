// A person in Chromium who signs in through the upstream identity provider, for the interop
// clients: on our sign-in page they press "Sign in with …", sign in on the provider's own pages
// (node-oidc-provider's development interactions: a login form, then its consent form), come
// back, and approve on our consent page. The client's callback is captured, never loaded.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { capturing, launch } from './chromium.mjs';

export { CHROMIUM } from './chromium.mjs';

function ensure(condition, message) {
  if (!condition) throw new Error(message);
}

/**
 * Opens `authorizationUrl` in a fresh Chromium, signs in at the provider as `login` (any
 * password: the development interactions accept any), approves here, and returns the URL the
 * browser was sent back to at `callback` (with the code, state and iss). With `screenshots`,
 * the provider's login page, its consent page (when it shows one) and ours are saved there.
 * Throws, with where the browser was, at the first step that does not go as a person would
 * expect.
 */
export async function signInUpstreamAndApprove(authorizationUrl, { login, callback, screenshots }) {
  const ours = new URL(authorizationUrl).origin;
  if (screenshots) mkdirSync(screenshots, { recursive: true });
  const shot = (page, name) => (screenshots ? page.screenshot({ path: join(screenshots, name), fullPage: true }) : undefined);
  const browser = await launch();
  try {
    const { ctx, callbacks } = await capturing(browser, callback);
    // The provider's pages import a web font: nothing off this machine is fetched, so the test
    // neither waits on nor depends on the network.
    await ctx.route((url) => url.hostname !== '127.0.0.1' && url.hostname !== 'localhost', (route) => route.abort());
    const page = await ctx.newPage();
    const first = await page.goto(authorizationUrl);
    ensure(first.status() === 200, `our sign-in page answered ${first.status()}`);

    // Our sign-in page: the provider's button, not the password form.
    await page.getByRole('button', { name: /^Sign in with / }).click();
    await page.locator('input[name=login]').waitFor();
    const at = new URL(page.url());
    ensure(at.origin !== ours, `the login form is on our origin (${at}), not the provider's`);
    await shot(page, 'upstream-login.png');
    await page.fill('input[name=login]', login);
    await page.fill('input[name=password]', 'any password');
    await page.getByRole('button', { name: 'Sign-in' }).click();

    // The provider's consent ("Continue"), unless it remembers one; then our consent page.
    const continueThere = page.getByRole('button', { name: 'Continue' });
    const approveHere = page.locator('button[value=approve]');
    await continueThere.or(approveHere).first().waitFor();
    if (await continueThere.count()) {
      await shot(page, 'upstream-provider-consent.png');
      await continueThere.click();
    }
    await approveHere.waitFor();
    ensure(new URL(page.url()).origin === ours, `the approve button is not on our origin: ${page.url()}`);
    await shot(page, 'upstream-consent.png');
    await approveHere.click();
    await page.waitForURL(`${callback}**`);
    ensure(callbacks.length === 1, `expected one redirect to the client, got ${callbacks.length}`);
    return new URL(callbacks[0]);
  } catch (e) {
    const where = browser.contexts()[0]?.pages()[0]?.url();
    throw new Error(`${e.message}\n(the browser was at ${where})`, { cause: e });
  } finally {
    await browser.close();
  }
}
