"""Drives a notes-server with the official MCP Python SDK client, the way a real client does.

The SDK does everything an MCP client does on its own: it meets the 401, discovers the
protected-resource and authorization-server metadata, registers dynamically, runs the
authorization-code flow with PKCE, exchanges the code, retries, and later refreshes. This
script only plays the person at the browser (sign in, approve) inside the SDK's
`redirect_handler`, hands the redirect back through its `callback_handler`, and checks every
result.

Environment: MCP_URL (the MCP endpoint, e.g. http://127.0.0.1:PORT/mcp), MCP_USERNAME,
MCP_PASSWORD. Prints one JSON line on success; exits non-zero with a message on any failure.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import socket
import sys
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import anyio
import httpx2
from mcp.client import Client, ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

SDK_VERSION = "2.3.0"
TOTAL_TIMEOUT_S = 100
STEP_TIMEOUT_S = 30
HTTP_TIMEOUT = httpx2.Timeout(15.0, read=30.0)


class FlowFailure(Exception):
    """An expectation of the flow did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise FlowFailure(message)


def log(message: str) -> None:
    print(f"[flow] {message}", file=sys.stderr, flush=True)


class MemoryStorage:
    """The SDK's `TokenStorage`, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.token_writes = 0

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.token_writes += 1

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class FormParser(HTMLParser):
    """The first `<form>` of a page: its action, method and input fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.method: str | None = None
        self.fields: dict[str, str] = {}
        self._in_form = False
        self._forms = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: (v or "") for k, v in attrs}
        if tag == "form":
            self._forms += 1
            if self._forms == 1:
                self._in_form = True
                self.action = a.get("action")
                self.method = a.get("method", "get").lower()
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and "name" in a:
            self.fields[a["name"]] = a.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False


def parse_form(html: str, page_url: str, what: str) -> tuple[str, dict[str, str]]:
    parser = FormParser()
    parser.feed(html)
    check(parser.action is not None, f"{what}: no <form> in the page:\n{html[:2000]}")
    check(parser.method == "post", f"{what}: the form's method is {parser.method!r}, expected post")
    for name in ("pending", "csrf"):
        check(bool(parser.fields.get(name)), f"{what}: hidden input {name!r} missing or empty: {parser.fields}")
    return urljoin(page_url, parser.action or ""), parser.fields


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """The person at the browser: signs in and approves, keeping cookies like a browser does."""

    def __init__(self, username: str, password: str, redirect_uri: str) -> None:
        self.username = username
        self.password = password
        self.redirect_uri = redirect_uri
        self.http = httpx2.AsyncClient(follow_redirects=False, timeout=HTTP_TIMEOUT)
        self.visits = 0
        self.location: str | None = None
        self.expected_issuer: str | None = None
        self.seen_iss: str | None = None

    async def authorize(self, authorization_url: str) -> None:
        """The SDK's redirect handler: open the URL, sign in, approve, keep the redirect."""
        self.visits += 1
        with anyio.fail_after(STEP_TIMEOUT_S):
            await self._authorize(authorization_url)

    async def _authorize(self, authorization_url: str) -> None:
        log(f"browser opens {authorization_url.split('?')[0]}")
        query = parse_qs(urlsplit(authorization_url).query)
        for name in ("client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method", "response_type"):
            check(name in query, f"authorization URL lacks {name}: {authorization_url}")
        check(query["code_challenge_method"] == ["S256"], f"PKCE method is {query['code_challenge_method']}")
        check(query["redirect_uri"] == [self.redirect_uri], f"redirect_uri is {query['redirect_uri']}")

        page = await self.http.get(authorization_url)
        check(page.status_code == 200, f"GET authorize: {page.status_code} {page.text[:2000]}")
        check("text/html" in page.headers.get("content-type", ""), f"GET authorize: not HTML: {page.headers}")
        check(self.http.cookies.get("mcp_oauth_csrf") is not None, f"no mcp_oauth_csrf cookie: {page.headers}")
        action, fields = parse_form(page.text, str(page.url), "sign-in page")
        check("username" in page.text and "password" in page.text, "sign-in page has no username/password fields")

        signed_in = await self.http.post(
            action, data={**fields, "username": self.username, "password": self.password}
        )
        check(signed_in.status_code == 200, f"POST sign-in: {signed_in.status_code} {signed_in.text[:2000]}")
        alert = re.search(r'<p class="error"[^>]*>(.*?)</p>', signed_in.text, re.S)
        check(alert is None, f"sign-in refused: {alert.group(1) if alert else ''}")
        check(
            self.http.cookies.get("mcp_oauth_session") is not None,
            f"no mcp_oauth_session cookie after sign-in: {signed_in.headers}",
        )
        check("decision" in signed_in.text, f"sign-in did not lead to the consent page:\n{signed_in.text[:2000]}")
        action, fields = parse_form(signed_in.text, str(signed_in.url), "consent page")

        approved = await self.http.post(action, data={**fields, "decision": "approve"})
        check(approved.status_code == 303, f"POST consent: {approved.status_code} {approved.text[:2000]}")
        location = approved.headers.get("location")
        check(location is not None, f"POST consent: 303 without Location: {approved.headers}")
        self.location = location
        log("browser approved; redirected to the client's callback")

    async def callback(self) -> AuthorizationCodeResult:
        """The SDK's callback handler: what the loopback callback server would have received."""
        check(self.location is not None, "callback handler called before the redirect handler finished")
        location, self.location = self.location or "", None
        check(
            location.split("?")[0] == self.redirect_uri,
            f"redirected to {location.split('?')[0]}, expected the redirect URI {self.redirect_uri}",
        )
        params = parse_qs(urlsplit(location).query)
        check("error" not in params, f"authorization failed: {params}")
        for name in ("code", "state", "iss"):
            check(len(params.get(name, [])) == 1, f"redirect lacks exactly one {name!r}: {location}")
        iss = self.seen_iss = params["iss"][0]
        check(
            iss == self.expected_issuer,
            f"iss in the authorization response is {iss!r}, the issuer is {self.expected_issuer!r}",
        )
        return AuthorizationCodeResult(code=params["code"][0], state=params["state"][0], iss=iss)


class Traffic:
    """Watches every HTTP exchange of the SDK's client (event hooks see the auth flow's too)."""

    def __init__(self, mcp_url: str) -> None:
        self.mcp_url = mcp_url
        self.first_401: float | None = None
        self.unauthorized = 0
        self.token_requests: list[tuple[str, int]] = []
        self.registrations: list[int] = []
        self.token_endpoint: str | None = None

    async def on_request(self, request: httpx2.Request) -> None:
        request.extensions["flow_grant"] = None
        if request.method == "POST" and "application/x-www-form-urlencoded" in request.headers.get(
            "content-type", ""
        ):
            form = parse_qs(request.content.decode())
            request.extensions["flow_grant"] = (form.get("grant_type") or [None])[0]

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        log(f"{request.method} {request.url.path} -> {response.status_code}")
        if response.status_code == 401 and str(request.url) == self.mcp_url:
            self.unauthorized += 1
            if self.first_401 is None:
                self.first_401 = time.monotonic()
        grant = request.extensions.get("flow_grant")
        if grant is not None:
            self.token_requests.append((grant, response.status_code))
        if request.method == "POST" and request.url.path.endswith("/register"):
            self.registrations.append(response.status_code)


def text_of(result: Any, tool: str) -> str:
    check(not result.is_error, f"{tool} returned an error: {result.content}")
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    check(len(texts) == 1, f"{tool}: expected one text content, got {result.content}")
    return texts[0]


async def whoami(client: Client) -> dict[str, Any]:
    with anyio.fail_after(STEP_TIMEOUT_S):
        result = await client.call_tool("whoami", {})
    body = json.loads(text_of(result, "whoami"))
    check(isinstance(body, dict), f"whoami is not a JSON object: {body}")
    return body


async def run() -> dict[str, Any]:
    mcp_url = os.environ.get("MCP_URL", "")
    username = os.environ.get("MCP_USERNAME", "")
    password = os.environ.get("MCP_PASSWORD", "")
    check(bool(mcp_url and username and password), "set MCP_URL, MCP_USERNAME and MCP_PASSWORD")
    version = importlib.metadata.version("mcp")
    check(version == SDK_VERSION, f"mcp {version} is installed, this flow is pinned to {SDK_VERSION}")
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(mcp_url))
    path = urlsplit(mcp_url).path

    redirect_uri = f"http://127.0.0.1:{free_loopback_port()}/callback"
    storage = MemoryStorage()
    browser = Browser(username, password, redirect_uri)
    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="MCP Python SDK interop",
            redirect_uris=[redirect_uri],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.authorize,
        callback_handler=browser.callback,
    )
    # The SDK checks `iss` itself; the browser checks it too, against the server's origin (the
    # notes-server's issuer), which the PRM and the metadata must also name exactly (below).
    browser.expected_issuer = origin

    traffic = Traffic(mcp_url)
    http = httpx2.AsyncClient(
        auth=provider,
        timeout=HTTP_TIMEOUT,
        event_hooks={"request": [traffic.on_request], "response": [traffic.on_response]},
    )
    async with browser.http, http:
        transport = streamable_http_client(mcp_url, http_client=http)
        async with Client(transport, read_timeout_seconds=STEP_TIMEOUT_S) as client:
            session = client.session
            check(isinstance(session, ClientSession), f"the SDK built a {type(session)}, not a ClientSession")
            check(traffic.first_401 is not None, "the server never answered 401 to an unauthenticated MCP request")
            check(browser.visits == 1, f"the SDK sent the user to the browser {browser.visits} times")
            # The SDK probes `server/discover` first and adopts a 2026-07-28 (stateless) session
            # when the server answers it, else falls back to the `initialize` handshake.
            check(
                (session.discover_result is None) != (session.initialize_result is None),
                "the SDK completed neither server/discover nor initialize",
            )
            handshake = "server/discover" if session.discover_result is not None else "initialize"
            protocol_version = client.protocol_version
            log(f"connected by {handshake}: protocol {client.protocol_version}, server {client.server_info}")

            # The issuer the SDK discovered agrees, exactly, with the PRM and the server's origin.
            ctx = provider.context
            check(ctx.protected_resource_metadata is not None, "the SDK found no protected-resource metadata")
            check(ctx.oauth_metadata is not None, "the SDK found no authorization-server metadata")
            issuer = str(ctx.oauth_metadata.issuer)  # type: ignore[union-attr]
            check(issuer == origin, f"metadata issuer {issuer!r} != server origin {origin!r}")
            check(ctx.auth_server_url == issuer, f"PRM authorization_servers[0] {ctx.auth_server_url!r} != {issuer!r}")
            # The same, byte for byte, in the documents as served (not as the SDK re-rendered them).
            with anyio.fail_after(STEP_TIMEOUT_S):
                prm_raw = (await browser.http.get(f"{origin}/.well-known/oauth-protected-resource{path}")).json()
                as_raw = (await browser.http.get(f"{origin}/.well-known/oauth-authorization-server")).json()
            check(prm_raw.get("resource") == mcp_url, f"PRM resource {prm_raw.get('resource')!r} != {mcp_url!r}")
            check(
                prm_raw.get("authorization_servers", [None])[0] == as_raw.get("issuer") == browser.seen_iss == origin,
                f"issuer strings disagree: PRM authorization_servers {prm_raw.get('authorization_servers')}, "
                f"AS metadata issuer {as_raw.get('issuer')!r}, iss {browser.seen_iss!r}, origin {origin!r}",
            )
            check(traffic.registrations == [201], f"registrations answered {traffic.registrations}, expected [201]")

            client_info = storage.client_info
            check(client_info is not None and bool(client_info.client_id), "no client_id registered")
            client_id = client_info.client_id  # type: ignore[union-attr]
            check(
                client_info.token_endpoint_auth_method == "none",  # type: ignore[union-attr]
                f"registered with {client_info.token_endpoint_auth_method}",  # type: ignore[union-attr]
            )
            check(
                traffic.token_requests == [("authorization_code", 200)],
                f"token requests so far: {traffic.token_requests}",
            )
            tokens = storage.tokens
            check(tokens is not None and bool(tokens.access_token), "no access token stored")
            check(bool(tokens.refresh_token), "the token response carried no refresh token")  # type: ignore[union-attr]

            with anyio.fail_after(STEP_TIMEOUT_S):
                listed = await client.list_tools()
            tools = sorted(t.name for t in listed.tools)
            for name in ("whoami", "add_note", "list_notes"):
                check(name in tools, f"tool {name!r} not listed: {tools}")

            me = await whoami(client)
            first_tool_call = time.monotonic()
            ms_401_to_first_tool_call = round((first_tool_call - traffic.first_401) * 1000)  # type: ignore[operator]
            check(me.get("username") == username, f"whoami says {me.get('username')!r}, expected {username!r}")
            check(me.get("client_id") == client_id, f"whoami client_id {me.get('client_id')!r} != {client_id!r}")

            note = f"interop note from the Python SDK at {time.time():.3f}"
            with anyio.fail_after(STEP_TIMEOUT_S):
                added = await client.call_tool("add_note", {"text": note})
            text_of(added, "add_note")
            with anyio.fail_after(STEP_TIMEOUT_S):
                listed_notes = await client.call_tool("list_notes", {})
            notes = json.loads(text_of(listed_notes, "list_notes")).get("notes")
            check(isinstance(notes, list) and note in notes, f"the note is not listed: {notes}")

            # Refresh: the access token is now garbage and, the way the SDK tracks it, expired.
            # The SDK must refresh with the refresh token before its next request, or that
            # request fails. A full re-authorization would show up as a second browser visit.
            old = storage.tokens
            assert old is not None and old.refresh_token is not None
            stale = old.model_copy(update={"access_token": "garbage-" + old.access_token[::-1][:16]})
            await storage.set_tokens(stale)
            ctx.current_tokens = stale
            ctx.token_expiry_time = time.time() - 1
            unauthorized_before = traffic.unauthorized
            token_requests_before = len(traffic.token_requests)

            me_again = await whoami(client)
            check(me_again.get("username") == username, f"whoami after refresh says {me_again.get('username')!r}")
            new = storage.tokens
            assert new is not None
            refreshes = traffic.token_requests[token_requests_before:]
            refreshed = refreshes == [("refresh_token", 200)]
            check(refreshed, f"expected one successful refresh_token request, saw {refreshes}")
            check(browser.visits == 1, f"the SDK re-authorized in the browser instead of refreshing ({browser.visits})")
            check(
                traffic.unauthorized == unauthorized_before,
                "the MCP server saw the stale token: the SDK did not refresh before sending",
            )
            check(new.access_token != stale.access_token, "the access token did not change")
            check(bool(new.refresh_token), "the refresh response lost the refresh token")
            rotated = new.refresh_token != old.refresh_token
            check(rotated, "the refresh token did not rotate")

        # A client that pins the handshake era (`mode="legacy"`: `initialize`, a session id, the
        # GET stream) on the same tokens: no new 401, no new authorization.
        async with Client(
            streamable_http_client(mcp_url, http_client=http), mode="legacy", read_timeout_seconds=STEP_TIMEOUT_S
        ) as legacy:
            check(legacy.session.initialize_result is not None, "mode='legacy' did not complete initialize")
            legacy_version = legacy.protocol_version
            log(f"connected by initialize: protocol {legacy_version}")
            with anyio.fail_after(STEP_TIMEOUT_S):
                legacy_tools = sorted(t.name for t in (await legacy.list_tools()).tools)
            check(legacy_tools == tools, f"initialize-era tools {legacy_tools} != {tools}")
            me_legacy = await whoami(legacy)
            check(me_legacy.get("username") == username, f"initialize-era whoami says {me_legacy.get('username')!r}")
            with anyio.fail_after(STEP_TIMEOUT_S):
                legacy_notes = json.loads(text_of(await legacy.call_tool("list_notes", {}), "list_notes"))["notes"]
            check(legacy_notes == notes, f"initialize-era notes {legacy_notes} != {notes}")
        check(browser.visits == 1, f"the initialize-era connection sent the user to the browser ({browser.visits})")
        check(traffic.unauthorized == unauthorized_before, "the initialize-era connection met a 401")

        return {
            "client": "python-sdk",
            "sdk_version": version,
            "protocol_version": protocol_version,
            "handshake": handshake,
            "legacy_protocol_version": legacy_version,
            "client_id": client_id,
            "whoami": me,
            "tools": tools,
            "notes": notes,
            "refreshed": refreshed,
            "refresh_token_rotated": rotated,
            "ms_401_to_first_tool_call": ms_401_to_first_tool_call,
        }


async def main() -> dict[str, Any]:
    with anyio.fail_after(TOTAL_TIMEOUT_S):
        return await run()


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as task groups raise them."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


if __name__ == "__main__":
    try:
        outcome = anyio.run(main)
    except BaseException as error:  # noqa: BLE001 - every failure ends the run with a message
        causes = leaves(error)
        failures = [e for e in causes if isinstance(e, FlowFailure)]
        if failures:
            for failure in failures:
                print(f"python-sdk interop FAILED: {failure}", file=sys.stderr)
        elif all(isinstance(e, TimeoutError) for e in causes):
            print(f"python-sdk interop FAILED: a step did not finish in time (limits {STEP_TIMEOUT_S} s per step, "
                  f"{TOTAL_TIMEOUT_S} s in all)", file=sys.stderr)
        else:
            import traceback

            traceback.print_exception(error)
            for cause in causes:
                print(f"python-sdk interop FAILED: {type(cause).__name__}: {cause}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(outcome, separators=(",", ":")))
