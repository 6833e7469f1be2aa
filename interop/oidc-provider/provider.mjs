// node-oidc-provider (pinned in package-lock.json) as an external authorization server on a
// loopback port: the issuer a guard in front of an MCP endpoint trusts, found by discovery, or
// the identity provider people sign in with upstream.
//
// - Resource indicators (RFC 8707): each configured resource gets JWT access tokens (RFC 9068)
//   whose `aud` is the resource, signed with a key generated at startup.
// - client_credentials for the configured clients, so a test gets a token without a browser.
// - Sign-in for a browser flow: the provider's development interaction pages accept any login
//   and show a consent page; clients with redirect URIs get authorization_code (PKCE) and
//   refresh_token. As OpenID Connect Core 11 has it, a refresh token is issued only for the
//   `offline_access` scope, which the provider drops from a request without `prompt=consent`.
//
// Prints its issuer URL, alone on one line of standard output, once it accepts connections;
// everything else it says goes to standard error, among it one line per answer of its token
// endpoint, for a test to count:
//   grant.success grant_type=<grant type> client_id=<client> issued=<token kinds, comma-separated> scope=<scope>
//   grant.error grant_type=<grant type> error=<error code>
// and, with OIDC_TEST_CONTROLS only, the tokens each grant issued (a test that checks they are
// stored nowhere in the clear needs their values):
//   grant.tokens access_token=<token> refresh_token=<token or nothing>
//
// Configuration: the environment, then a JSON file given as the first argument, whose members
// replace the environment's:
//   OIDC_PORT           port on 127.0.0.1 (default 0: any free port)           {"port"}
//   OIDC_RESOURCES      resource URLs, comma-separated (the MCP URL first)     {"resources": [{"identifier", "scope"?, "ttl"?, "alg"?}]}
//   OIDC_SCOPE          scopes each resource grants (default "mcp:tools")
//   OIDC_CLIENT_ID      a confidential client (default "mcp-test-client")      {"clients": [client metadata]}
//   OIDC_CLIENT_SECRET  its secret (default generated; printed nowhere, so set it to use it)
//   OIDC_REDIRECT_URIS  its redirect URIs, comma-separated: with them it also gets
//                       authorization_code and refresh_token
//   OIDC_ACCESS_TOKEN_TTL  access token lifetime in seconds (default 600)  {"accessTokenTtl"}
//   OIDC_NO_DEFAULT_RESOURCE  set: a request naming no resource gets the provider's own
//                       access token (for its userinfo), not one for the first resource
//                                                                          {"noDefaultResource"}
//   OIDC_TEST_CONTROLS  set: for tests only, `POST /test/end-grants?account=<id>` ends every
//                       grant of the account, as a person who removes a client's access at the
//                       provider: its refresh tokens then get invalid_grant    {"testControls"}
// The first resource is used when a request names none.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import Provider, { errors } from 'oidc-provider';

// The provider's notices go to console.info, which is standard output: keep that for the issuer.
console.info = (...args) => console.error(...args);

const config = settings();
const keys = [signingKey('ec', { namedCurve: 'P-256' }, 'ES256'), signingKey('rsa', { modulusLength: 2048 }, 'RS256')];
const resources = new Map(config.resources.map((r) => [r.identifier, r]));

const server = createServer();
server.listen(config.port, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, providerConfiguration());
  logTokenAnswers(provider);
  const grants = config.testControls ? grantsByAccount(provider) : undefined;
  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (grants && req.url.startsWith('/test/')) testControl(provider, grants, req, res).catch((e) => res.writeHead(500).end(String(e)));
    else callback(req, res);
  });
  process.stdout.write(`${issuer}\n`);
});
server.on('error', (e) => fail(`cannot listen on 127.0.0.1:${config.port}: ${e.message}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => server.close(() => process.exit(0)));

function providerConfiguration() {
  return {
    clients: config.clients,
    jwks: { keys: keys.map((k) => k.jwk) },
    scopes: ['openid', 'offline_access', ...new Set(config.resources.flatMap((r) => r.scope.split(' ')))],
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    pkce: { required: () => true },
    ttl: {
      AccessToken: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtl,
      ClientCredentials: (_ctx, token) => token.resourceServer?.accessTokenTTL ?? config.accessTokenTtl,
    },
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Without OIDC_NO_DEFAULT_RESOURCE, a request naming no resource gets the first one; with
        // it, such a request gets the provider's own access token, the one its userinfo takes
        // (an upstream sign-in that calls the person's userinfo).
        defaultResource: (_ctx, _client, oneOf) => oneOf ?? (config.noDefaultResource ? undefined : config.resources[0]?.identifier),
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx, identifier) => {
          const resource = resources.get(identifier);
          if (!resource) throw new errors.InvalidTarget(`unknown resource ${identifier}`);
          return {
            scope: resource.scope,
            accessTokenFormat: 'jwt',
            accessTokenTTL: resource.ttl ?? config.accessTokenTtl,
            jwt: { sign: { alg: resource.alg ?? 'ES256' } },
          };
        },
      },
    },
    // Any login is an account whose id is what was typed; its claims follow from it: a login
    // that is an email address is that email, any other `<login>@example.com`; its name is
    // the login, capitalised. Like the provider's default (conformIdTokenClaims), the id_token
    // of a code flow carries `sub` only: the email and name are in the userinfo.
    findAccount: (_ctx, sub) => ({
      accountId: sub,
      claims: () => ({
        sub,
        email: sub.includes('@') ? sub : `${sub}@example.com`,
        email_verified: true,
        name: sub.charAt(0).toUpperCase() + sub.slice(1),
      }),
    }),
  };
}

// One line on standard error per answer of the token endpoint (see the header).
function logTokenAnswers(provider) {
  provider.on('grant.success', (ctx) => {
    const issued = ['access_token', 'refresh_token', 'id_token'].filter((t) => ctx.body?.[t]).join(',');
    console.error(`grant.success grant_type=${ctx.oidc.params?.grant_type} client_id=${ctx.oidc.client?.clientId} issued=${issued} scope=${ctx.body?.scope}`);
    if (config.testControls) console.error(`grant.tokens access_token=${ctx.body?.access_token ?? ''} refresh_token=${ctx.body?.refresh_token ?? ''}`);
  });
  provider.on('grant.error', (ctx, error) => {
    console.error(`grant.error grant_type=${ctx.oidc.params?.grant_type} error=${error.error ?? error.message}`);
  });
}

// The ids of each account's grants, as the provider saves them.
function grantsByAccount(provider) {
  const grants = new Map();
  provider.on('grant.saved', (grant) => {
    if (!grants.has(grant.accountId)) grants.set(grant.accountId, new Set());
    grants.get(grant.accountId).add(grant.jti);
  });
  return grants;
}

// OIDC_TEST_CONTROLS: `POST /test/end-grants?account=<id>` destroys the account's grants, so
// that the provider refuses their refresh tokens; answers how many it ended.
async function testControl(provider, grants, req, res) {
  const url = new URL(req.url, 'http://127.0.0.1');
  const account = url.searchParams.get('account');
  if (req.method !== 'POST' || url.pathname !== '/test/end-grants' || !account) {
    res.writeHead(404).end();
    return;
  }
  let ended = 0;
  for (const id of grants.get(account) ?? []) {
    const grant = await provider.Grant.find(id);
    if (grant) {
      await grant.destroy();
      ended += 1;
    }
  }
  grants.delete(account);
  console.error(`test: ended ${ended} grant(s) of ${account}`);
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ ended }));
}

// The configuration: defaults, the environment, then the JSON file.
function settings() {
  const env = process.env;
  const list = (v) => (v ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const scope = env.OIDC_SCOPE ?? 'mcp:tools';
  const redirectUris = list(env.OIDC_REDIRECT_URIS);
  const client = {
    client_id: env.OIDC_CLIENT_ID ?? 'mcp-test-client',
    client_secret: env.OIDC_CLIENT_SECRET ?? randomBytes(24).toString('base64url'),
    token_endpoint_auth_method: 'client_secret_basic',
    grant_types: ['client_credentials', ...(redirectUris.length ? ['authorization_code', 'refresh_token'] : [])],
    response_types: redirectUris.length ? ['code'] : [],
    redirect_uris: redirectUris,
    scope: `openid offline_access email profile ${scope}`,
  };
  const base = {
    port: Number(env.OIDC_PORT ?? 0),
    accessTokenTtl: Number(env.OIDC_ACCESS_TOKEN_TTL ?? 600),
    noDefaultResource: Boolean(env.OIDC_NO_DEFAULT_RESOURCE),
    testControls: Boolean(env.OIDC_TEST_CONTROLS),
    resources: list(env.OIDC_RESOURCES).map((identifier) => ({ identifier, scope })),
    clients: [client],
  };
  const file = process.argv[2];
  let fromFile = {};
  if (file) {
    try {
      fromFile = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      fail(`cannot read the configuration ${file}: ${e.message}`);
    }
  }
  const merged = { ...base, ...fromFile };
  merged.resources = merged.resources.map((r) => ({ scope, ...r }));
  if (!Number.isInteger(merged.port) || merged.port < 0 || merged.port > 65535) fail(`port ${merged.port} is not a port`);
  if (!merged.resources.length) fail('no resource: set OIDC_RESOURCES (the MCP URL) or "resources" in the file');
  for (const r of merged.resources) {
    if (!URL.canParse(r.identifier) || r.identifier.includes('#')) fail(`resource ${r.identifier} is not an absolute URL`);
  }
  return merged;
}

// A fresh private signing key as a JWK, with its key id.
function signingKey(type, options, alg) {
  const { privateKey } = generateKeyPairSync(type, options);
  const jwk = { ...privateKey.export({ format: 'jwk' }), alg, use: 'sig', kid: `${alg.toLowerCase()}-${randomBytes(6).toString('hex')}` };
  return { jwk };
}

function fail(message) {
  console.error(`oidc-provider: ${message}`);
  process.exit(1);
}
