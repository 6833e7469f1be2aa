// mcp-remote, the stdio-to-HTTP bridge desktop MCP clients run, against a running server. This
// script is the desktop client on mcp-remote's stdin/stdout and the person at the browser
// mcp-remote opens: mcp-remote discovers, registers and opens the authorization URL through its
// usual opener, which a BROWSER script here records; the script signs in, approves and loads
// the loopback callback, then speaks JSON-RPC over stdio. Three runs, as a desktop user sees
// them: the first sign-in, a restart that reuses the stored tokens, a restart after the access
// token expired, which mcp-remote must refresh without a browser, and a run in mcp-remote's
// dual-era mode, which speaks the stateless 2026-07-28 revision to a server that offers it;
// then the operator removes the client and mcp-remote must register again.
// Prints one JSON line with what it observed.
//
// Environment: MCP_URL (the MCP endpoint), MCP_USERNAME, MCP_PASSWORD, and NOTES_SERVER_BIN
// with DATABASE_URL, the server's binary and database, to remove the client as an operator.
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { signInAndApprove as personSignsIn, within } from '../lib/person.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(join(here, 'node_modules/mcp-remote/package.json')));
const BRIDGE_VERSION = pkg.version;
const BRIDGE = join(here, 'node_modules/mcp-remote', pkg.bin['mcp-remote']);
const STEP_TIMEOUT_MS = 30_000;

const mcpUrl = need('MCP_URL');
const username = need('MCP_USERNAME');
const password = need('MCP_PASSWORD');

function need(name) {
  const v = process.env[name];
  if (!v) fail(`${name} is not set`);
  return v;
}

let bridgeLog = '';
function fail(message) {
  console.error(`mcp-remote interop FAILED: ${message}`);
  if (bridgeLog) console.error(`mcp-remote's log:\n${bridgeLog}`);
  process.exit(1);
}

function check(condition, message) {
  if (!condition) fail(message);
}


const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Everything mcp-remote writes lives under one temporary home: its config directory (tokens,
// client registration) and the browser stand-in.
const home = mkdtempSync(join(tmpdir(), 'mcp-remote-interop-'));
const configDir = join(home, '.mcp-auth');
const opened = join(home, 'opened-urls');
const browserScript = join(home, 'browser');
mkdirSync(configDir);
writeFileSync(opened, '');
// The opener mcp-remote uses (the `open` package, then xdg-open's generic path on a machine
// without a desktop) hands the URL to $BROWSER. This one only records it: the person is below.
writeFileSync(browserScript, `#!/bin/sh\nprintf '%s\\n' "$1" >> '${opened}'\n`);
chmodSync(browserScript, 0o755);

function openedUrls() {
  return readFileSync(opened, 'utf8').split('\n').filter(Boolean);
}

/** The stored tokens file for the one server this home has seen. */
function tokensFile() {
  const dirs = readdirSync(configDir).map((d) => join(configDir, d));
  for (const d of dirs) {
    const f = readdirSync(d).find((n) => n.endsWith('_tokens.json'));
    if (f) return join(d, f);
  }
  return undefined;
}

/** mcp-remote as a desktop client starts it, with stdio as the MCP transport. */
class Bridge {
  constructor(label, extraArgs = []) {
    this.label = label;
    const env = { ...process.env, HOME: home, MCP_REMOTE_CONFIG_DIR: configDir, BROWSER: browserScript };
    // No desktop: the opener must take the $BROWSER path, never a real browser.
    for (const k of ['DISPLAY', 'WAYLAND_DISPLAY', 'XDG_CURRENT_DESKTOP', 'DESKTOP_SESSION', 'KDE_FULL_SESSION', 'GNOME_DESKTOP_SESSION_ID']) delete env[k];
    this.child = spawn(process.execPath, [BRIDGE, mcpUrl, '--auth-timeout', '60', ...extraArgs], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => resolve({ code, signal })));
    this.child.stderr.setEncoding('utf8');
    let partial = '';
    this.child.stderr.on('data', (d) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop();
      for (const l of lines) bridgeLog += `[${label}] ${l}\n`;
    });
    this.child.stderr.on('end', () => {
      if (partial) bridgeLog += `[${label}] ${partial}\n`;
    });
    this.waiting = new Map();
    this.nextId = 1;
    createInterface({ input: this.child.stdout }).on('line', (line) => {
      let message;
      try {
        message = JSON.parse(line);
      } catch {
        bridgeLog += `[${label}] (stdout, not JSON) ${line}\n`;
        return;
      }
      const w = this.waiting.get(message.id);
      if (w) {
        this.waiting.delete(message.id);
        w(message);
      }
    });
  }
  send(message) {
    this.child.stdin.write(`${JSON.stringify(message)}\n`);
  }
  async request(method, params) {
    const id = this.nextId++;
    const reply = new Promise((resolve) => this.waiting.set(id, resolve));
    this.send({ jsonrpc: '2.0', id, method, params });
    const gone = this.exited.then(({ code, signal }) => {
      throw new Error(`mcp-remote exited (${code ?? signal}) before answering ${method}`);
    });
    const message = await within(`${this.label}: ${method}`, Promise.race([reply, gone]));
    check(!message.error, `${this.label}: ${method} failed: ${JSON.stringify(message.error)}`);
    return message.result;
  }
  /** The desktop client's side of a session: handshake, the tool list, `whoami`. */
  async session() {
    const init = await this.request('initialize', {
      protocolVersion: '2025-06-18',
      capabilities: {},
      clientInfo: { name: 'mcp-remote-interop', version: '1.0.0' },
    });
    this.send({ jsonrpc: '2.0', method: 'notifications/initialized' });
    const tools = (await this.request('tools/list', {})).tools.map((t) => t.name);
    const result = await this.request('tools/call', { name: 'whoami', arguments: {} });
    const text = result.content?.find((c) => c.type === 'text')?.text;
    check(text, `${this.label}: whoami returned no text: ${JSON.stringify(result)}`);
    return { protocolVersion: init.protocolVersion, serverName: init.serverInfo?.name, tools, whoami: JSON.parse(text) };
  }
  async stop() {
    this.child.stdin.end();
    this.child.kill('SIGTERM');
    const done = await Promise.race([this.exited, sleep(5_000).then(() => undefined)]);
    if (!done) {
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Signs in and approves; returns where the server sends the browser (mcp-remote's callback). */
function signInAndApprove(authorizationUrl) {
  return personSignsIn(authorizationUrl, { username, password });
}

async function waitForBrowser(count) {
  const deadline = Date.now() + STEP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const urls = openedUrls();
    if (urls.length >= count) return new URL(urls[count - 1]);
    await sleep(100);
  }
  fail(`mcp-remote did not open the browser within ${STEP_TIMEOUT_MS} ms`);
}

/** The person's part: the URL mcp-remote opened, sign-in and consent, then its callback page. */
async function browserStep(visit) {
  const authorizationUrl = await waitForBrowser(visit);
  const q = authorizationUrl.searchParams;
  const redirectUri = new URL(q.get('redirect_uri'));
  const callback = await within('sign-in and consent', signInAndApprove(authorizationUrl.toString()));
  check(`${callback.origin}${callback.pathname}` === redirectUri.toString(), `sent back to ${callback}, expected ${redirectUri}`);
  check(callback.searchParams.get('state') === q.get('state'), 'the state came back changed');
  const landed = await within('the callback page', fetch(callback));
  const landedText = await landed.text();
  check(landed.status === 200, `mcp-remote's callback answered ${landed.status}: ${landedText}`);
  return { authorizationUrl, callback, landed };
}

/** Removes a client as the operator does, with the server's own command line. */
async function removeClient(clientId) {
  const bin = need('NOTES_SERVER_BIN');
  const child = spawn(bin, ['clients', 'remove', clientId], { env: { ...process.env, DATABASE_URL: need('DATABASE_URL') }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  const code = await new Promise((resolve) => child.once('exit', resolve));
  check(code === 0, `notes-server clients remove ${clientId} failed (${code}): ${output}`);
}

async function main() {
  const metadata = await (await fetch(new URL('/.well-known/oauth-authorization-server', mcpUrl))).json();
  const started = performance.now();

  // 1. First start: mcp-remote opens the browser; the person signs in and approves; the
  //    browser lands on mcp-remote's loopback callback; then the desktop client talks MCP.
  const first = new Bridge('first');
  const { authorizationUrl, callback, landed } = await browserStep(1);
  const q = authorizationUrl.searchParams;
  const one = await first.session();
  const msToFirstTool = Math.round(performance.now() - started);
  const clientId = q.get('client_id');
  await first.stop();
  const file = tokensFile();
  check(file, `mcp-remote stored no tokens under ${configDir}`);
  const stored = JSON.parse(readFileSync(file, 'utf8'));
  check(stored.refresh_token, `mcp-remote stored no refresh token: ${Object.keys(stored)}`);

  // 2. Restart: the stored tokens are used, no browser.
  const second = new Bridge('restart');
  const two = await second.session();
  await second.stop();
  check(openedUrls().length === 1, `the restart opened the browser again: ${openedUrls()}`);

  // 3. Restart after the access token expired: mcp-remote refreshes, no browser.
  writeFileSync(file, JSON.stringify({ ...stored, expires_in: 1, expires_at: Date.now() - 3_600_000 }));
  const third = new Bridge('expired');
  const three = await third.session();
  await third.stop();
  check(openedUrls().length === 1, `the expired token sent the person to the browser again: ${openedUrls()}`);
  const afterRefresh = JSON.parse(readFileSync(tokensFile(), 'utf8'));

  // 4. The same stored sign-in with mcp-remote's dual-era mode, which probes with
  //    `server/discover` and speaks the stateless 2026-07-28 revision when the server does.
  const fourth = new Bridge('auto', ['--protocol', 'auto']);
  const four = await fourth.session();
  await fourth.stop();
  // mcp-remote says which era it settled on only in its log.
  four.modernEra = bridgeLog.split('\n').some((l) => l.startsWith('[auto]') && l.includes('Remote server speaks MCP 2026-07-28'));
  check(openedUrls().length === 1, `the dual-era run sent the person to the browser again: ${openedUrls()}`);
  const visitsBeforeRemoval = openedUrls().length;

  // 5. The operator removes the client. Once its access token is no longer accepted (a stand-in
  //    for one the server cannot verify any more: a JWT stays valid to its exp), the refresh
  //    gets 401 invalid_client, and mcp-remote must register again and send the person to sign
  //    in, rather than stay stuck with a client the server forgot.
  await removeClient(clientId);
  const kept = JSON.parse(readFileSync(tokensFile(), 'utf8'));
  writeFileSync(tokensFile(), JSON.stringify({ ...kept, access_token: 'no-longer-accepted', expires_at: Date.now() - 3_600_000 }));
  const fifth = new Bridge('removed');
  const again = await browserStep(visitsBeforeRemoval + 1);
  const five = await fifth.session();
  await fifth.stop();
  five.clientId = again.authorizationUrl.searchParams.get('client_id');

  console.log(
    JSON.stringify({
      client: 'mcp-remote',
      bridge_version: BRIDGE_VERSION,
      node_version: process.version,
      issuer: metadata.issuer,
      client_id: clientId,
      authorization_request: {
        response_type: q.get('response_type'),
        code_challenge_method: q.get('code_challenge_method'),
        resource: q.get('resource'),
        scope: q.get('scope'),
        redirect_uri: q.get('redirect_uri'),
        has_state: Boolean(q.get('state')),
      },
      callback_iss: callback.searchParams.get('iss'),
      callback_status: landed.status,
      browser_visits: openedUrls().length,
      first: one,
      restart: two,
      expired: three,
      protocol_auto: four,
      browser_visits_before_removal: visitsBeforeRemoval,
      after_removal: five,
      refresh_token_rotated: afterRefresh.refresh_token !== stored.refresh_token,
      access_token_changed: afterRefresh.access_token !== stored.access_token,
      ms_to_first_tool_call: msToFirstTool,
    }),
  );
}

main()
  .catch((e) => fail(e?.stack ?? String(e)))
  .finally(() => {
    // mcp-remote's own account of the runs, for whoever reads a failing test's output.
    process.stderr.write(bridgeLog);
    if (!process.env.MCP_REMOTE_KEEP_HOME) rmSync(home, { recursive: true, force: true });
  });
