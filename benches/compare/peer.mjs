// The TypeScript peer: the official MCP SDK's requireBearerAuth middleware with a verifier
// built on jose, as an Express app would mount it, called in process with a request and a
// response that stand in for Express's. Also bare jose, for reference.
//
// Usage: node peer.mjs <fixture.json> <seconds>. Prints one JSON line per measurement.
import { readFileSync } from "node:fs";
import { importJWK, jwtVerify } from "jose";
import { requireBearerAuth } from "@modelcontextprotocol/sdk/server/auth/middleware/bearerAuth.js";

const [fixturePath, secondsArg] = process.argv.slice(2);
const fixture = JSON.parse(readFileSync(fixturePath, "utf8"));
const seconds = Number(secondsArg ?? "3");
const key = await importJWK(fixture.jwk, "ES256");
const options = { issuer: fixture.issuer, audience: fixture.audience, algorithms: ["ES256"], typ: "at+jwt" };

const verifier = {
  async verifyAccessToken(token) {
    const { payload } = await jwtVerify(token, key, options);
    return {
      token,
      clientId: payload.client_id,
      scopes: String(payload.scope ?? "").split(" ").filter(Boolean),
      expiresAt: payload.exp,
      resource: new URL(fixture.audience),
    };
  },
};
const middleware = requireBearerAuth({ verifier, requiredScopes: ["mcp:tools"], resourceMetadataUrl: fixture.prm });

const failed = (what) => { throw new Error(`the token was refused by ${what}`); };
const response = {
  set() { return this; },
  status() { return this; },
  json() { failed("requireBearerAuth"); },
};

async function viaMiddleware() {
  const req = { headers: { authorization: `Bearer ${fixture.token}` } };
  let passed = false;
  await middleware(req, response, () => { passed = true; });
  if (!passed || !req.auth) failed("requireBearerAuth");
}

async function bareJose() {
  await jwtVerify(fixture.token, key, options);
}

// Calls per second on this thread, after a tenth of the time as warm-up.
async function rate(f, time) {
  const run = async (ms) => {
    const start = performance.now();
    let n = 0;
    for (;;) {
      for (let i = 0; i < 16; i++) await f();
      n += 16;
      const spent = performance.now() - start;
      if (spent >= ms) return (n * 1000) / spent;
    }
  };
  await run(time * 100);
  return run(time * 1000);
}

for (const [name, f] of [["requireBearerAuth + jose (TypeScript SDK)", viaMiddleware], ["jose jwtVerify alone", bareJose]]) {
  console.log(JSON.stringify({ name, rate: await rate(f, seconds) }));
}
