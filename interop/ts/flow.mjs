// The official MCP TypeScript SDK client against a running server, doing what a real client
// does: 401 → protected-resource metadata → authorization-server metadata → dynamic
// registration → authorization with PKCE and `resource` → (the person signs in and approves) →
// code exchange → MCP calls → refresh with rotation. Prints one JSON line with the result.
//
// Environment: MCP_URL (the MCP endpoint), and MCP_PERSON, who signs in:
// - `headless` (the default): a local user, MCP_USERNAME and MCP_PASSWORD, on our pages, in the
//   fetch-driven browser of interop/lib/person.mjs;
// - `chromium-upstream`: a person in Chromium (interop/browser) who signs in at the upstream
//   identity provider as MCP_UPSTREAM_LOGIN; the `upstream_profile` tool must then answer with
//   the provider's identity, MCP_UPSTREAM_EMAIL, before and after the refresh. Screenshots of
//   the provider's login page and our consent page go to SCREENSHOT_DIR, when set.
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { signInAndApprove as signInHere, within } from '../lib/person.mjs';

const SDK_VERSION = '1.32.2';
const REDIRECT = 'http://127.0.0.1:53682/callback';

const mcpUrl = need('MCP_URL');
const person = await personOf(process.env.MCP_PERSON ?? 'headless');

function need(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

function fail(message) {
  console.error(`typescript-sdk interop FAILED: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

/**
 * Who signs in, by MCP_PERSON: `signIn(url)` returns where the browser was sent back to; `ms`
 * bounds it; `username` is what whoami must say (a local user's); `upstreamEmail` is the
 * identity `upstream_profile` must report (an upstream sign-in's).
 */
async function personOf(mode) {
  if (mode === 'headless') {
    const username = need('MCP_USERNAME');
    const password = need('MCP_PASSWORD');
    return { mode, username, signIn: (url) => signInHere(url, { username, password }), ms: 30_000 };
  }
  if (mode === 'chromium-upstream') {
    const login = need('MCP_UPSTREAM_LOGIN');
    const email = need('MCP_UPSTREAM_EMAIL');
    const install = 'run `bash interop/install.sh` (or `bash interop/browser/install.sh`)';
    let chromium;
    try {
      chromium = await import('../browser/upstream-person.mjs');
    } catch (e) {
      if (e?.code === 'ERR_MODULE_NOT_FOUND') fail(`playwright-core is not installed in interop/browser: ${install}\n${e.message}`);
      throw e;
    }
    check(existsSync(chromium.CHROMIUM), `${chromium.CHROMIUM} is missing: ${install}`);
    const screenshots = process.env.SCREENSHOT_DIR;
    const signIn = (url) => chromium.signInUpstreamAndApprove(url, { login, callback: REDIRECT, screenshots });
    // Chromium starts, and two servers' pages load, on a machine that may be busy.
    return { mode, upstreamEmail: email, signIn, ms: 120_000 };
  }
  fail(`MCP_PERSON=${mode}: expected headless or chromium-upstream`);
}

/** An OAuthClientProvider that keeps everything in memory, exactly as the SDK hands it over. */
class MemoryProvider {
  constructor() {
    this.info = undefined;
    this.savedTokens = undefined;
    this.verifier = undefined;
    this.pendingAuthorization = undefined;
    this.sentState = undefined;
    this.browserVisits = 0;
  }
  get redirectUrl() {
    return REDIRECT;
  }
  get clientMetadata() {
    return {
      client_name: 'TypeScript SDK interop',
      redirect_uris: [REDIRECT],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() {
    this.sentState = randomBytes(16).toString('base64url');
    return this.sentState;
  }
  clientInformation() {
    return this.info;
  }
  saveClientInformation(info) {
    this.info = info;
  }
  tokens() {
    return this.savedTokens;
  }
  saveTokens(tokens) {
    this.savedTokens = tokens;
  }
  redirectToAuthorization(url) {
    this.browserVisits += 1;
    this.pendingAuthorization = url;
  }
  saveCodeVerifier(v) {
    this.verifier = v;
  }
  codeVerifier() {
    return this.verifier;
  }
}

/** Signs in, approves, and checks the redirect back: the registered callback, with RFC 9207 `iss`. */
async function signInAndApprove(authorizationUrl, issuer) {
  const location = await person.signIn(authorizationUrl);
  check(`${location.origin}${location.pathname}` === REDIRECT, `redirected to ${location}, expected ${REDIRECT}`);
  check(location.searchParams.get('iss') === issuer, `iss ${location.searchParams.get('iss')} is not the issuer ${issuer} (RFC 9207)`);
  return { code: location.searchParams.get('code'), state: location.searchParams.get('state') };
}

function text(result) {
  const block = result.content?.find((c) => c.type === 'text');
  check(block, `tool result has no text: ${JSON.stringify(result)}`);
  return block.text;
}

/** `upstream_profile`, checked: the provider's userinfo for the person who signed in there. */
async function upstreamProfile(client, what) {
  const answer = await within(what, client.callTool({ name: 'upstream_profile', arguments: {} }));
  check(!answer.isError, `${what} failed: ${JSON.stringify(answer)}`);
  const profile = JSON.parse(text(answer));
  check(typeof profile.provider === 'string' && profile.provider, `${what} names no provider: ${JSON.stringify(profile)}`);
  check(profile.userinfo?.email === person.upstreamEmail, `${what} says ${JSON.stringify(profile.userinfo)}, expected the email ${person.upstreamEmail}`);
  check(profile.userinfo?.sub, `${what} has no subject: ${JSON.stringify(profile)}`);
  return profile;
}

async function main() {
  const provider = new MemoryProvider();
  const started = performance.now();

  // 1. The first connection: 401 → discovery → registration → redirectToAuthorization.
  let transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  let client = new Client({ name: 'typescript-sdk-interop', version: '1.0.0' });
  try {
    await within('first connect', client.connect(transport));
    fail('the server accepted a connection without a token');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  check(provider.pendingAuthorization, 'the SDK never asked to open the authorization page');
  check(provider.info?.client_id, 'the SDK did not register a client');
  const authUrl = provider.pendingAuthorization;
  check(authUrl.searchParams.get('code_challenge_method') === 'S256', 'no S256 PKCE challenge in the authorization URL');
  check(authUrl.searchParams.get('resource'), 'no resource parameter in the authorization URL');

  // 2. The person signs in and approves; the SDK exchanges the code.
  const metadataUrl = new URL('/.well-known/oauth-authorization-server', mcpUrl);
  const issuer = (await (await fetch(metadataUrl)).json()).issuer;
  const { code, state } = await within('sign-in and consent', signInAndApprove(authUrl.toString(), issuer), person.ms);
  check(state === provider.sentState, `state ${state} is not the one sent (${provider.sentState})`);
  await within('code exchange', transport.finishAuth(code));
  check(provider.savedTokens?.access_token && provider.savedTokens?.refresh_token, 'no access and refresh token after the exchange');

  // 3. MCP as the signed-in user.
  transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  client = new Client({ name: 'typescript-sdk-interop', version: '1.0.0' });
  await within('connect with a token', client.connect(transport));
  const tools = (await within('tools/list', client.listTools())).tools.map((t) => t.name);
  const wanted = ['whoami', 'add_note', 'list_notes', ...(person.upstreamEmail ? ['upstream_profile'] : [])];
  for (const t of wanted) check(tools.includes(t), `${t} missing from ${tools}`);
  const whoami = JSON.parse(text(await within('whoami', client.callTool({ name: 'whoami', arguments: {} }))));
  const msToFirstTool = Math.round(performance.now() - started);
  check(whoami.caller === 'user' && whoami.username, `whoami names no user: ${JSON.stringify(whoami)}`);
  if (person.username) check(whoami.username === person.username, `whoami says ${whoami.username}, expected ${person.username}`);
  const upstream = person.upstreamEmail ? { profile: await upstreamProfile(client, 'upstream_profile') } : undefined;
  const note = `interop note from the TypeScript SDK ${randomBytes(4).toString('hex')}`;
  await within('add_note', client.callTool({ name: 'add_note', arguments: { text: note } }));
  const notes = JSON.parse(text(await within('list_notes', client.callTool({ name: 'list_notes', arguments: {} })))).notes;
  check(notes.includes(note), `the note is missing from ${JSON.stringify(notes)}`);

  // 4. Refresh: the access token goes bad, the server answers 401 invalid_token, and the SDK
  //    refreshes with its refresh token and retries, without sending the person again.
  const before = provider.savedTokens;
  provider.savedTokens = { ...before, access_token: 'not-a-valid-token' };
  const visits = provider.browserVisits;
  const again = JSON.parse(text(await within('whoami after refresh', client.callTool({ name: 'whoami', arguments: {} }))));
  check(again.username === whoami.username, `whoami after refresh says ${again.username}, before ${whoami.username}`);
  check(provider.browserVisits === visits, 'the SDK sent the person through the pages again instead of refreshing');
  check(provider.savedTokens.access_token !== 'not-a-valid-token', 'the access token was not replaced');
  const rotated = provider.savedTokens.refresh_token !== before.refresh_token;
  check(rotated, 'the refresh token did not rotate');
  if (upstream) {
    // The provider's token is kept for the grant, which the refresh continues.
    upstream.after_refresh = await upstreamProfile(client, 'upstream_profile after refresh');
    check(provider.browserVisits === visits, 'upstream_profile after the refresh sent the person through the pages again');
  }
  await client.close();

  console.log(
    JSON.stringify({
      client: 'typescript-sdk',
      sdk_version: SDK_VERSION,
      person: person.mode,
      client_id: provider.info.client_id,
      whoami,
      tools,
      notes,
      refreshed: true,
      refresh_token_rotated: rotated,
      upstream,
      ms_401_to_first_tool_call: msToFirstTool,
    }),
  );
}

main().catch((e) => fail(e?.stack ?? String(e)));
