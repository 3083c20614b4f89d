"""moto's S3 server behind a WSGI wrapper that answers `503 SlowDown` to a seeded share of requests.

It serves on 127.0.0.1 only, and never refuses more than `most_in_a_row` requests in a row, so a client that
retries enough always gets through: the fault is the throttling S3 does under load, not an outage.
moto keeps its buckets per process, so the session's own moto server sees what was written through this one.
"""

from __future__ import annotations

import random
import threading
from typing import TYPE_CHECKING, Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

_SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>throttled</RequestId></Error>"
)


class ThrottlingS3:
    """A running S3 endpoint (`url`) that throttles `share` of its requests; `refused`/`served` count them."""

    def __init__(self, share: float = 0.3, seed: int = 12, most_in_a_row: int = 3) -> None:
        self.share, self.most_in_a_row = share, most_in_a_row
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.in_a_row = self.refused = self.served = 0
        self.app = DomainDispatcherApplication(create_backend_app)
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=MotoRequestHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="throttling-s3", daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.url = f"http://{host!s}:{port}"

    def _refuse_next(self) -> bool:
        with self.lock:
            refuse = self.in_a_row < self.most_in_a_row and self.random.random() < self.share
            self.in_a_row = self.in_a_row + 1 if refuse else 0
            self.refused += refuse
            self.served += not refuse
            return refuse

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not self._refuse_next():
            return self.app(environ, start_response)  # type: ignore[no-any-return]
        # Read the request's body, as S3 does, so the connection stays usable for the client's retry.
        body = environ["wsgi.input"]
        if environ.get("wsgi.input_terminated"):
            body.read()
        else:
            body.read(int(environ.get("CONTENT_LENGTH") or 0))
        start_response("503 Slow Down", [("Content-Type", "application/xml"), ("Content-Length", str(len(_SLOW_DOWN)))])
        return [_SLOW_DOWN]

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
