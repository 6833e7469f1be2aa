// The official MCP TypeScript SDK client against a running server, doing what a real client
// does: 401 → protected-resource metadata → authorization-server metadata → dynamic
// registration → authorization with PKCE and `resource` → (the person signs in and approves) →
// code exchange → MCP calls → refresh with rotation. Prints one JSON line with the result.
//
// Environment: MCP_URL (the MCP endpoint), MCP_USERNAME, MCP_PASSWORD.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { signInAndApprove as personSignsIn, within } from '../lib/person.mjs';

const SDK_VERSION = '1.32.2';
const REDIRECT = 'http://127.0.0.1:53682/callback';

const mcpUrl = need('MCP_URL');
const username = need('MCP_USERNAME');
const password = need('MCP_PASSWORD');

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
  const location = await personSignsIn(authorizationUrl, { username, password });
  check(`${location.origin}${location.pathname}` === REDIRECT, `redirected to ${location}, expected ${REDIRECT}`);
  check(location.searchParams.get('iss') === issuer, `iss ${location.searchParams.get('iss')} is not the issuer ${issuer} (RFC 9207)`);
  return { code: location.searchParams.get('code'), state: location.searchParams.get('state') };
}

function text(result) {
  const block = result.content?.find((c) => c.type === 'text');
  check(block, `tool result has no text: ${JSON.stringify(result)}`);
  return block.text;
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
  const { code, state } = await within('sign-in and consent', signInAndApprove(authUrl.toString(), issuer));
  check(state === provider.sentState, `state ${state} is not the one sent (${provider.sentState})`);
  await within('code exchange', transport.finishAuth(code));
  check(provider.savedTokens?.access_token && provider.savedTokens?.refresh_token, 'no access and refresh token after the exchange');

  // 3. MCP as the signed-in user.
  transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: provider });
  client = new Client({ name: 'typescript-sdk-interop', version: '1.0.0' });
  await within('connect with a token', client.connect(transport));
  const tools = (await within('tools/list', client.listTools())).tools.map((t) => t.name);
  for (const t of ['whoami', 'add_note', 'list_notes']) check(tools.includes(t), `${t} missing from ${tools}`);
  const whoami = JSON.parse(text(await within('whoami', client.callTool({ name: 'whoami', arguments: {} }))));
  const msToFirstTool = Math.round(performance.now() - started);
  check(whoami.username === username, `whoami says ${whoami.username}, expected ${username}`);
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
  check(again.username === username, `whoami after refresh says ${again.username}`);
  check(provider.browserVisits === visits, 'the SDK sent the person through the pages again instead of refreshing');
  check(provider.savedTokens.access_token !== 'not-a-valid-token', 'the access token was not replaced');
  const rotated = provider.savedTokens.refresh_token !== before.refresh_token;
  check(rotated, 'the refresh token did not rotate');
  await client.close();

  console.log(
    JSON.stringify({
      client: 'typescript-sdk',
      sdk_version: SDK_VERSION,
      client_id: provider.info.client_id,
      whoami,
      tools,
      notes,
      refreshed: true,
      refresh_token_rotated: rotated,
      ms_401_to_first_tool_call: msToFirstTool,
    }),
  );
}

main().catch((e) => fail(e?.stack ?? String(e)));
