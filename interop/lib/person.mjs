// A person at the sign-in and consent pages, for the interop clients that need one: a browser
// without JavaScript that keeps cookies by hand, never follows redirects, and fills in the
// forms. Plain Node (fetch), no dependencies, so that every interop folder can import it.

/** Cookies by hand; redirects are never followed, so each hop can be checked. */
export class Browser {
  constructor() {
    this.cookies = new Map();
  }
  keep(response) {
    for (const c of response.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const i = pair.indexOf('=');
      this.cookies.set(pair.slice(0, i), pair.slice(i + 1));
    }
  }
  header() {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
  has(suffix) {
    return [...this.cookies.keys()].some((k) => k.endsWith(suffix));
  }
  async get(url) {
    const r = await fetch(url, { redirect: 'manual', headers: { cookie: this.header() } });
    this.keep(r);
    return r;
  }
  async post(url, fields) {
    const r = await fetch(url, {
      method: 'POST',
      redirect: 'manual',
      headers: { cookie: this.header(), 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
    this.keep(r);
    return r;
  }
}

function ensure(condition, message) {
  if (!condition) throw new Error(message);
}

/** HTML attribute values as the templates escape them. */
export function decode(s) {
  return s.replace(/&#x2f;|&#47;/gi, '/').replace(/&amp;/g, '&').replace(/&quot;/g, '"').replace(/&#39;|&#x27;/g, "'");
}

/** The page's form: where it posts and its hidden fields (the pending request and the CSRF token). */
export function form(page, base) {
  const action = page.match(/<form method="post" action="([^"]+)"/);
  ensure(action, `no form on the page:\n${page.slice(0, 2000)}`);
  const fields = {};
  for (const m of page.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)) fields[m[1]] = decode(m[2]);
  ensure(fields.pending && fields.csrf, `the form lacks pending/csrf fields:\n${page.slice(0, 2000)}`);
  return { action: new URL(decode(action[1]), base).toString(), fields };
}

/**
 * Opens the authorization URL, signs in, approves, and returns the URL the server sends the
 * browser back to (the client's callback, with the code, state and iss). Throws, with the page,
 * at the first step that does not go as a person would expect.
 */
export async function signInAndApprove(authorizationUrl, { username, password }) {
  const browser = new Browser();
  const first = await browser.get(authorizationUrl);
  const signIn = await first.text();
  ensure(first.status === 200, `authorization page answered ${first.status}:\n${signIn.slice(0, 2000)}`);
  ensure(browser.has('mcp_oauth_csrf'), 'no CSRF cookie on the sign-in page');
  const f1 = form(signIn, authorizationUrl);
  const second = await browser.post(f1.action, { ...f1.fields, username, password });
  const consent = await second.text();
  ensure(second.status === 200 && consent.includes('decision'), `sign-in did not lead to consent (${second.status}):\n${consent.slice(0, 2000)}`);
  ensure(browser.has('mcp_oauth_session'), 'no session cookie after sign-in');
  const f2 = form(consent, authorizationUrl);
  const third = await browser.post(f2.action, { ...f2.fields, decision: 'approve' });
  ensure(third.status === 303, `consent answered ${third.status}, expected 303`);
  return new URL(third.headers.get('location'));
}

/** `promise`, or a rejection naming `what` once `ms` have passed: no step of a flow hangs. */
export async function within(what, promise, ms = 30_000) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
