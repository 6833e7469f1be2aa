"""The Python peer: PyJWT's decode of the same ES256 token with the same key, checking the
issuer, the audience and the expiry, as a PyJWT-based MCP token verifier does.

Usage: python peer.py <fixture.json> <seconds>. Prints one JSON line.
"""

import json
import sys
import time

import jwt

fixture_path, seconds = sys.argv[1], float(sys.argv[2] if len(sys.argv) > 2 else "3")
with open(fixture_path, encoding="utf-8") as f:
    fixture = json.load(f)
key = jwt.PyJWK(fixture["jwk"], "ES256")
token = fixture["token"]


def verify():
    claims = jwt.decode(
        token,
        key,
        algorithms=["ES256"],
        issuer=fixture["issuer"],
        audience=fixture["audience"],
        leeway=60,
    )
    if "mcp:tools" not in claims.get("scope", "").split():
        raise SystemExit("the token lacks its scope")


def rate(f, duration):
    """Calls per second on this thread, after a tenth of the time as warm-up."""

    def run(d):
        start = time.perf_counter()
        n = 0
        while True:
            for _ in range(16):
                f()
            n += 16
            spent = time.perf_counter() - start
            if spent >= d:
                return n / spent

    run(duration / 10)
    return run(duration)


print(json.dumps({"name": "PyJWT jwt.decode", "rate": rate(verify, seconds)}))
