// oauth4webapi, a strict OAuth 2 client, against a running server. Every response goes through
// the library's own checks: the 401 challenge (RFC 6750), protected-resource metadata whose
// `resource` must be the MCP URL (RFC 9728), authorization-server metadata whose `issuer` must
// be the one asked for (RFC 8414, and again through the OpenID-style document), registration
// (RFC 7591), the authorization response's `iss` and `state` (RFC 9207), the code exchange with
// PKCE S256 and `resource` (RFC 7636, RFC 8707), a refresh, and the access token itself as a
// resource server would check it (RFC 9068), MCP tool calls with the tokens, and revocation
// (RFC 7009).
// Prints one JSON line with what it observed.
//
// Environment: MCP_URL (the MCP endpoint), MCP_USERNAME, MCP_PASSWORD; CLIENT_AUTH `none`
// (the default: a public client) or `private_key_jwt` (the client registers its RS256 public key
// inline as `jwks` and signs a client assertion with the library's PrivateKeyJwt for the code
// exchange, the refresh and the revocation).
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import * as oauth from 'oauth4webapi';
import { signInAndApprove as personSignsIn } from '../lib/person.mjs';

const LIBRARY_VERSION = JSON.parse(
  readFileSync(new URL('./node_modules/oauth4webapi/package.json', import.meta.url)),
).version;
const REDIRECT = 'http://127.0.0.1:53683/callback';
const STEP_TIMEOUT_MS = 30_000;
// The test server listens on plain http on loopback; the library refuses http unless told.
const http = { [oauth.allowInsecureRequests]: true, signal: () => AbortSignal.timeout(STEP_TIMEOUT_MS) };

const mcpUrl = need('MCP_URL');
const username = need('MCP_USERNAME');
const password = need('MCP_PASSWORD');
const authMethod = process.env.CLIENT_AUTH ?? 'none';
if (!['none', 'private_key_jwt'].includes(authMethod)) fail(`CLIENT_AUTH ${authMethod} is not none or private_key_jwt`);

function need(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

function fail(message) {
  console.error(`oauth4webapi interop FAILED: ${message}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}

/** Runs a step; a library error names the step and carries the library's own detail. */
async function step(what, run) {
  try {
    return await run();
  } catch (e) {
    const detail = e?.cause !== undefined ? `\ncause: ${JSON.stringify(e.cause, null, 1)}` : '';
    fail(`${what}: ${e?.code ?? ''} ${e?.stack ?? e}${detail}`);
  }
}

/** Signs in, approves, and returns the URL the browser is sent back to (the loopback callback). */
function signInAndApprove(authorizationUrl) {
  return personSignsIn(authorizationUrl, { username, password });
}

/** One JSON-RPC call to the MCP endpoint through the library's resource request. */
async function mcp(accessToken, session, message) {
  const headers = new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream' });
  if (session.id) headers.set('mcp-session-id', session.id);
  if (session.protocolVersion) headers.set('mcp-protocol-version', session.protocolVersion);
  const response = await oauth.protectedResourceRequest(accessToken, 'POST', new URL(mcpUrl), headers, JSON.stringify(message), http);
  const sid = response.headers.get('mcp-session-id');
  if (sid) session.id = sid;
  const body = await response.text();
  check(response.ok, `MCP ${message.method} answered ${response.status}: ${body.slice(0, 2000)}`);
  if (message.id === undefined) return undefined;
  // Streamable HTTP answers with JSON or with an event stream that carries the JSON-RPC response.
  const payloads = response.headers.get('content-type')?.startsWith('text/event-stream')
    ? body.split('\n').filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).filter(Boolean)
    : [body];
  const reply = payloads.map((p) => JSON.parse(p)).find((m) => m.id === message.id);
  check(reply, `no reply to ${message.method} in: ${body.slice(0, 2000)}`);
  check(!reply.error, `${message.method} failed: ${JSON.stringify(reply.error)}`);
  return reply.result;
}

/** Calls `whoami` with the token over a fresh MCP session. */
async function whoami(accessToken) {
  const session = {};
  const init = await mcp(accessToken, session, {
    jsonrpc: '2.0',
    id: 1,
    method: 'initialize',
    params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'oauth4webapi-interop', version: LIBRARY_VERSION } },
  });
  session.protocolVersion = init.protocolVersion;
  await mcp(accessToken, session, { jsonrpc: '2.0', method: 'notifications/initialized' });
  const result = await mcp(accessToken, session, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'whoami', arguments: {} } });
  const text = result.content?.find((c) => c.type === 'text')?.text;
  check(text, `whoami returned no text: ${JSON.stringify(result)}`);
  return JSON.parse(text);
}

/** Checks the access token as a resource server does under RFC 9068, with the library's checks. */
async function checkAccessToken(as, accessToken) {
  const request = new Request(mcpUrl, { method: 'POST', headers: { authorization: `Bearer ${accessToken}` } });
  return oauth.validateJwtAccessToken(as, request, mcpUrl, http);
}

async function main() {
  const started = performance.now();

  // 1. A bad token at the MCP endpoint: the challenge must parse and point at the metadata.
  const challenge = await step('401 challenge', async () => {
    try {
      await oauth.protectedResourceRequest('not-a-token', 'POST', new URL(mcpUrl), new Headers({ 'content-type': 'application/json', accept: 'application/json, text/event-stream' }), '{"jsonrpc":"2.0","id":0,"method":"ping"}', http);
    } catch (e) {
      if (e instanceof oauth.WWWAuthenticateChallengeError) return e;
      throw e;
    }
    throw new Error('the MCP endpoint accepted a made-up token');
  });
  check(challenge.status === 401, `the challenge came with ${challenge.status}, expected 401`);
  const bearer = challenge.cause.find((c) => c.scheme === 'bearer');
  check(bearer, `no Bearer challenge: ${JSON.stringify(challenge.cause)}`);
  const resourceMetadataUrl = bearer.parameters.resource_metadata;
  check(resourceMetadataUrl, `the challenge has no resource_metadata: ${JSON.stringify(bearer)}`);

  // 2. Protected-resource metadata, then the issuer it names, strictly.
  const rs = await step('protected-resource metadata', async () =>
    oauth.processResourceDiscoveryResponse(new URL(mcpUrl), await fetch(resourceMetadataUrl, { headers: { accept: 'application/json' } })),
  );
  const issuer = rs.authorization_servers?.[0];
  check(issuer, `no authorization_servers in ${JSON.stringify(rs)}`);
  const as = await step('RFC 8414 discovery', async () =>
    oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { ...http, algorithm: 'oauth2' })),
  );
  check(as.issuer === issuer, `metadata issuer ${as.issuer} is not ${issuer} exactly`);
  const oidc = await step('OpenID-style discovery', async () =>
    oauth.processDiscoveryResponse(new URL(issuer), await oauth.discoveryRequest(new URL(issuer), { ...http, algorithm: 'oidc' })),
  );
  check(oidc.issuer === as.issuer, `the two metadata documents disagree on the issuer: ${oidc.issuer} vs ${as.issuer}`);
  check(as.code_challenge_methods_supported?.includes('S256'), 'S256 is not among code_challenge_methods_supported');
  check(as.authorization_response_iss_parameter_supported === true, 'authorization_response_iss_parameter_supported is not true');

  // 3. Dynamic registration: a public client, or one that authenticates with its own key.
  const metadata = {
    client_name: 'oauth4webapi interop',
    redirect_uris: [REDIRECT],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: authMethod,
  };
  let clientAuth = oauth.None();
  if (authMethod === 'private_key_jwt') {
    check(as.token_endpoint_auth_methods_supported?.includes('private_key_jwt'), 'private_key_jwt is not advertised');
    check(as.token_endpoint_auth_signing_alg_values_supported?.includes('RS256'), 'RS256 is not among the assertion algorithms');
    const keys = await oauth.generateKeyPair('RS256', { extractable: true });
    const kid = `interop-${oauth.generateRandomState().slice(0, 8)}`;
    const jwk = await crypto.subtle.exportKey('jwk', keys.publicKey);
    metadata.jwks = { keys: [{ kty: jwk.kty, n: jwk.n, e: jwk.e, kid, alg: 'RS256', use: 'sig' }] };
    metadata.token_endpoint_auth_signing_alg = 'RS256';
    clientAuth = oauth.PrivateKeyJwt({ key: keys.privateKey, kid });
  }
  const registered = await step('registration', async () =>
    oauth.processDynamicClientRegistrationResponse(await oauth.dynamicClientRegistrationRequest(as, metadata, http)),
  );
  check(registered.token_endpoint_auth_method === authMethod, `registered with ${registered.token_endpoint_auth_method}, asked for ${authMethod}`);
  check(registered.client_secret === undefined, 'a client secret was issued to a client that asked for none');
  const client = { client_id: registered.client_id, token_endpoint_auth_method: authMethod };

  // 4. Authorization request: PKCE S256, state, the MCP URL as resource.
  const verifier = oauth.generateRandomCodeVerifier();
  const state = oauth.generateRandomState();
  const authorizationUrl = new URL(as.authorization_endpoint);
  for (const [k, v] of Object.entries({
    response_type: 'code',
    client_id: client.client_id,
    redirect_uri: REDIRECT,
    code_challenge: await oauth.calculatePKCECodeChallenge(verifier),
    code_challenge_method: 'S256',
    state,
    scope: (rs.scopes_supported ?? as.scopes_supported ?? []).join(' '),
    resource: rs.resource,
  }))
    authorizationUrl.searchParams.set(k, v);
  const callback = await step('sign-in and consent', () => signInAndApprove(authorizationUrl.toString()));
  check(`${callback.origin}${callback.pathname}` === REDIRECT, `sent back to ${callback}, expected ${REDIRECT}`);

  // 5. The authorization response: `iss` must be the issuer (RFC 9207), `state` the one sent.
  const params = await step('authorization response (RFC 9207)', async () => oauth.validateAuthResponse(as, client, callback, state));

  // 6. The code exchange.
  const tokens = await step('code exchange', async () =>
    oauth.processAuthorizationCodeResponse(
      as,
      client,
      await oauth.authorizationCodeGrantRequest(as, client, clientAuth, params, REDIRECT, verifier, {
        ...http,
        additionalParameters: { resource: rs.resource },
      }),
    ),
  );
  check(tokens.token_type?.toLowerCase() === 'bearer', `token_type ${tokens.token_type}`);
  check(tokens.access_token && tokens.refresh_token, `no access and refresh token: ${JSON.stringify(Object.keys(tokens))}`);
  const claims = await step('access token (RFC 9068)', () => checkAccessToken(as, tokens.access_token));

  // 7. The MCP endpoint as the signed-in user.
  const me = await step('whoami', () => whoami(tokens.access_token));
  const msToFirstTool = Math.round(performance.now() - started);

  // 8. Refresh: a new pair, the refresh token rotated, and the new access token works.
  const refreshed = await step('refresh', async () =>
    oauth.processRefreshTokenResponse(
      as,
      client,
      await oauth.refreshTokenGrantRequest(as, client, clientAuth, tokens.refresh_token, {
        ...http,
        additionalParameters: { resource: rs.resource },
      }),
    ),
  );
  check(refreshed.access_token && refreshed.refresh_token, `the refresh returned no pair: ${JSON.stringify(Object.keys(refreshed))}`);
  const refreshedClaims = await step('refreshed access token (RFC 9068)', () => checkAccessToken(as, refreshed.access_token));
  const meAgain = await step('whoami after refresh', () => whoami(refreshed.access_token));

  // 9. Revocation (RFC 7009) of the current refresh token: it cannot be used again.
  await step('revocation', async () =>
    oauth.processRevocationResponse(await oauth.revocationRequest(as, client, clientAuth, refreshed.refresh_token, http)),
  );
  const afterRevocation = await step('refresh after revocation', async () => {
    try {
      await oauth.processRefreshTokenResponse(as, client, await oauth.refreshTokenGrantRequest(as, client, clientAuth, refreshed.refresh_token, http));
    } catch (e) {
      if (e instanceof oauth.ResponseBodyError) return { status: e.status, error: e.error };
      throw e;
    }
    throw new Error('a revoked refresh token was accepted');
  });

  console.log(
    JSON.stringify({
      client: 'oauth4webapi',
      library_version: LIBRARY_VERSION,
      node_version: process.version,
      issuer: as.issuer,
      resource: rs.resource,
      challenge: bearer.parameters,
      client_id: client.client_id,
      token_endpoint_auth_method: registered.token_endpoint_auth_method,
      iss_validated: params.get('iss') === as.issuer,
      state_validated: params.get('state') === state,
      token: {
        token_type: tokens.token_type,
        scope: tokens.scope,
        expires_in: tokens.expires_in,
        claims,
      },
      whoami: me,
      refresh: {
        refresh_token_rotated: refreshed.refresh_token !== tokens.refresh_token,
        access_token_changed: refreshed.access_token !== tokens.access_token,
        claims: refreshedClaims,
        whoami: meAgain,
      },
      after_revocation: afterRevocation,
      ms_to_first_tool_call: msToFirstTool,
    }),
  );
}

main().catch((e) => fail(e?.stack ?? String(e)));
