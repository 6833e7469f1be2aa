"""Drives a notes-server with FastMCP's client as a machine client authenticating with
`private_key_jwt` (RFC 7523), the way a FastMCP user sets it up.

`fastmcp.client.auth.PrivateKeyJWTOAuthProvider` does the OAuth part on its own: it meets the
401, discovers the protected-resource and authorization-server metadata, signs a client
assertion for the issuer with `SignedJWTParameters.create_assertion_provider()`, asks the token
endpoint for a `client_credentials` token with it, and retries the MCP request. This script
only watches the HTTP exchanges (through the transport's `httpx_client_factory`), lists the
tools, calls the harmless `whoami`, and checks every result.

Environment: MCP_URL (the MCP endpoint, e.g. http://127.0.0.1:PORT/mcp), MCP_CLIENT_ID (the
machine client the operator created), MCP_PRIVATE_KEY_FILE (its private key, PKCS#8 PEM),
MCP_SIGNING_ALG (ES256 unless set). The key is read from the file, never passed on the command
line. Prints one JSON line on success; exits non-zero with a message on any failure, after
logging to standard error what the token endpoint answered.
"""

from __future__ import annotations

import base64
import importlib.metadata
import json
import os
import sys
import time
import warnings
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2
from fastmcp import Client
from fastmcp.client.auth import PrivateKeyJWTOAuthProvider, SignedJWTParameters
from fastmcp.client.transports import StreamableHttpTransport

FASTMCP_VERSION = "4.1.6"
TOTAL_TIMEOUT_S = 100
STEP_TIMEOUT_S = 30
HTTP_TIMEOUT = httpx2.Timeout(15.0, read=30.0)
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


class FlowFailure(Exception):
    """An expectation of the flow did not hold."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise FlowFailure(message)


def log(message: str) -> None:
    print(f"[flow] {message}", file=sys.stderr, flush=True)


def decode_segment(segment: str) -> Any:
    """One base64url JSON segment of a JWT, decoded without verifying anything."""
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def describe_assertion(assertion: str) -> dict[str, Any]:
    """The header and claims of a client assertion as sent; the signature is left out."""
    parts = assertion.split(".")
    check(len(parts) == 3, f"the client assertion is not a compact JWS ({len(parts)} parts)")
    return {"header": decode_segment(parts[0]), "claims": decode_segment(parts[1])}


class Traffic:
    """Every HTTP exchange of FastMCP's client, the provider's token requests included."""

    def __init__(self, mcp_url: str) -> None:
        self.mcp_url = mcp_url
        self.unauthorized = 0
        self.token_requests: list[dict[str, Any]] = []
        self.discovery: list[str] = []

    async def on_request(self, request: httpx2.Request) -> None:
        request.extensions["flow_form"] = None
        if request.method == "POST" and "application/x-www-form-urlencoded" in request.headers.get(
            "content-type", ""
        ):
            request.extensions["flow_form"] = parse_qs(request.content.decode())

    async def on_response(self, response: httpx2.Response) -> None:
        request = response.request
        log(f"{request.method} {request.url.path} -> {response.status_code}")
        if response.status_code == 401 and str(request.url) == self.mcp_url:
            self.unauthorized += 1
        if request.method == "GET" and "/.well-known/" in request.url.path:
            self.discovery.append(f"{request.url.path} {response.status_code}")
        form = request.extensions.get("flow_form")
        if form is None or "grant_type" not in form:
            return
        await response.aread()
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = response.text[:500]
        one = {k: v[0] for k, v in form.items() if len(v) == 1}
        seen = {
            "status": response.status_code,
            "grant_type": one.get("grant_type"),
            "fields": sorted(form),
            "client_assertion_type": one.get("client_assertion_type"),
            "authorization_header": "authorization" in request.headers,
            "scope": one.get("scope"),
            "resource": one.get("resource"),
            "assertion": describe_assertion(one["client_assertion"]) if "client_assertion" in one else None,
            # Only the error of a refusal: a success carries the access token.
            "error": body.get("error") if isinstance(body, dict) else body,
            "error_description": body.get("error_description") if isinstance(body, dict) else None,
        }
        self.token_requests.append(seen)
        log(f"token request: {json.dumps({k: v for k, v in seen.items() if k != 'fields'})}")

    def factory(self, **kwargs: Any) -> httpx2.AsyncClient:
        """The transport's `httpx_client_factory`: FastMCP's client as it would be, watched."""
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return httpx2.AsyncClient(
            **kwargs, event_hooks={"request": [self.on_request], "response": [self.on_response]}
        )


def text_of(result: Any, tool: str) -> str:
    check(not result.is_error, f"{tool} returned an error: {result.content}")
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    check(len(texts) == 1, f"{tool}: expected one text content, got {result.content}")
    return texts[0]


async def run(traffic: Traffic) -> dict[str, Any]:
    mcp_url = os.environ.get("MCP_URL", "")
    client_id = os.environ.get("MCP_CLIENT_ID", "")
    key_file = os.environ.get("MCP_PRIVATE_KEY_FILE", "")
    alg = os.environ.get("MCP_SIGNING_ALG", "ES256")
    check(bool(mcp_url and client_id and key_file), "set MCP_URL, MCP_CLIENT_ID and MCP_PRIVATE_KEY_FILE")
    version = importlib.metadata.version("fastmcp")
    check(version == FASTMCP_VERSION, f"fastmcp {version} is installed, this flow is pinned to {FASTMCP_VERSION}")
    with open(key_file, encoding="ascii") as f:
        private_key = f.read()
    # The notes-server's issuer is its origin; naming it keeps the provider from sending the
    # assertion to whatever authorization server the MCP server points at.
    issuer = "{0.scheme}://{0.netloc}".format(urlsplit(mcp_url))

    # FastMCP's own signer: iss and sub the client id, aud the issuer it discovered. It takes no
    # `kid`, so the server picks the client's only key of the algorithm.
    signer = SignedJWTParameters(issuer=client_id, subject=client_id, signing_key=private_key, signing_algorithm=alg)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        provider = PrivateKeyJWTOAuthProvider(
            client_id=client_id, assertion_provider=signer.create_assertion_provider(), issuer=issuer
        )
        transport = StreamableHttpTransport(mcp_url, auth=provider, httpx_client_factory=traffic.factory)
    check(not caught, f"constructing the provider warned: {[str(w.message) for w in caught]}")
    provider_class = f"{type(provider).__module__}.{type(provider).__qualname__}"
    sdk_base = next(
        (f"{c.__module__}.{c.__qualname__}" for c in type(provider).__mro__[1:] if c.__module__.startswith("mcp.")),
        None,
    )

    client = Client(transport, timeout=STEP_TIMEOUT_S, init_timeout=STEP_TIMEOUT_S)
    started = time.monotonic()
    async with client:
        check(traffic.unauthorized >= 1, "the server never answered 401 to an unauthenticated MCP request")
        check(len(traffic.token_requests) == 1, f"expected one token request, saw {traffic.token_requests}")
        token_request = traffic.token_requests[0]
        check(token_request["status"] == 200, f"the token request failed: {token_request}")
        check(
            token_request["grant_type"] == "client_credentials", f"grant_type is {token_request['grant_type']!r}"
        )
        check(
            token_request["client_assertion_type"] == JWT_BEARER,
            f"client_assertion_type is {token_request['client_assertion_type']!r}",
        )
        check(
            "client_secret" not in token_request["fields"] and not token_request["authorization_header"],
            f"the token request carried a secret as well: {token_request['fields']}",
        )
        assertion = token_request["assertion"]
        check(assertion is not None, "the token request carried no client_assertion")
        check(assertion["header"].get("alg") == alg, f"the assertion is signed with {assertion['header']}")
        tokens = provider.context.current_tokens
        check(tokens is not None and bool(tokens.access_token), "the provider holds no access token")
        check(tokens.refresh_token is None, "a client_credentials response carried a refresh token")  # type: ignore[union-attr]
        protocol_version = client.protocol_version
        handshake = "initialize" if client.initialize_result is not None else "server/discover"
        log(f"connected by {handshake}: protocol {protocol_version}, server {client.server_info}")

        with anyio.fail_after(STEP_TIMEOUT_S):
            listed = await client.list_tools()
        tools = sorted(t.name for t in listed)
        check("whoami" in tools, f"whoami is not listed: {tools}")

        with anyio.fail_after(STEP_TIMEOUT_S):
            result = await client.call_tool("whoami", {})
        whoami = json.loads(text_of(result, "whoami"))
        check(isinstance(whoami, dict), f"whoami is not a JSON object: {whoami}")
        check(whoami.get("caller") == "machine client", f"whoami says the caller is {whoami.get('caller')!r}")
        check(whoami.get("username") == client_id, f"whoami names {whoami.get('username')!r}, not {client_id!r}")
        check(
            len(traffic.token_requests) == 1,
            f"the provider asked for another token: {traffic.token_requests[1:]}",
        )
        elapsed_ms = round((time.monotonic() - started) * 1000)

    return {
        "client": "fastmcp",
        "fastmcp_version": version,
        "mcp_version": importlib.metadata.version("mcp"),
        "provider_class": provider_class,
        "sdk_provider_class": sdk_base,
        "protocol_version": protocol_version,
        "handshake": handshake,
        "client_id": client_id,
        "discovery": traffic.discovery,
        "unauthorized": traffic.unauthorized,
        "token_request": {k: v for k, v in token_request.items() if k not in ("error", "error_description")},
        "token": {"token_type": tokens.token_type, "scope": tokens.scope, "expires_in": tokens.expires_in},  # type: ignore[union-attr]
        "tools": tools,
        "whoami": whoami,
        "ms_to_first_tool_call": elapsed_ms,
    }


async def main(traffic: Traffic) -> dict[str, Any]:
    with anyio.fail_after(TOTAL_TIMEOUT_S):
        return await run(traffic)


def leaves(error: BaseException) -> list[BaseException]:
    """The exceptions inside (nested) exception groups, as task groups raise them."""
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in leaves(inner)]
    return [error]


if __name__ == "__main__":
    traffic = Traffic(os.environ.get("MCP_URL", ""))
    try:
        outcome = anyio.run(main, traffic)
    except BaseException as error:  # noqa: BLE001 - every failure ends the run with a message
        # What the token endpoint answered, as one JSON line, for whoever reads the failure.
        print(f"[flow] token requests: {json.dumps(traffic.token_requests)}", file=sys.stderr)
        causes = leaves(error)
        failures = [e for e in causes if isinstance(e, FlowFailure)]
        if failures:
            for failure in failures:
                print(f"fastmcp interop FAILED: {failure}", file=sys.stderr)
        elif all(isinstance(e, TimeoutError) for e in causes):
            print(
                f"fastmcp interop FAILED: a step did not finish in time (limits {STEP_TIMEOUT_S} s per step, "
                f"{TOTAL_TIMEOUT_S} s in all)",
                file=sys.stderr,
            )
        else:
            import traceback

            traceback.print_exception(error)
            for cause in causes:
                print(f"fastmcp interop FAILED: {type(cause).__name__}: {cause}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(outcome, separators=(",", ":")))
