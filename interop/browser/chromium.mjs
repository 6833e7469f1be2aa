// Debian's headless Chromium through playwright-core (pinned here), launched one way for every
// test that drives pages in a real browser.
import { chromium } from 'playwright-core';

/** Debian's Chromium: no browser download of playwright's own. */
export const CHROMIUM = '/usr/bin/chromium';

/** Chromium, headless and quiet: no first run, sync, updates or background requests. */
export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/**
 * A context whose navigations to `callback` (the client's redirect URI, where no server
 * listens) are captured instead of loaded; returns it and the URLs captured so far.
 */
export async function capturing(browser, callback, options = {}) {
  const ctx = await browser.newContext(options);
  const callbacks = [];
  await ctx.route(`${callback}**`, (route) => {
    callbacks.push(route.request().url());
    return route.fulfill({ status: 200, contentType: 'text/plain', body: 'back at the client' });
  });
  return { ctx, callbacks };
}
