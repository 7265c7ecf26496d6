"""Plain HTTP calls to the web page's server, for the tests (the unit tests' WebServer and the
integration tests' web node): one request per connection, no cookies, no retries."""
from __future__ import annotations

import http.client
import json
from email.message import Message


def request(port: int, method: str, path: str, body: bytes | str | None = None,
            headers: dict | None = None) -> tuple[int, Message, object]:
    """(status, response headers, the JSON answer or else the first 300 bytes of the body) of
    one request to 127.0.0.1:``port``."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
    finally:
        conn.close()
    try:
        return r.status, r.headers, json.loads(data)
    except ValueError:
        return r.status, r.headers, data[:300]


def post(port: int, path: str, payload, **headers) -> tuple[int, Message, object]:
    """POST ``payload`` (JSON-encoded unless bytes or str) as application/json."""
    body = payload if isinstance(payload, (bytes, str)) else json.dumps(payload)
    return request(port, 'POST', path, body, {'Content-Type': 'application/json', **headers})
