"""The web companion's static files, served at /_synapse/client/laiwang/web/ (docs/web.md).

The app is plain ES modules and CSS shipped in the package (`laiwang_module/webapp/`). Every file
is read once, when the module is built, into a table keyed by its name: a request is answered
only for a name in that table, so no path a client sends ever reaches the file system (no
traversal, whatever the encoding). Each answer carries a Content-Security-Policy that allows this
origin only: the app loads nothing from elsewhere and talks only to this homeserver.
"""

from __future__ import annotations

from pathlib import Path

from twisted.web.resource import Resource
from twisted.web.server import Request

WEB_PREFIX = "/_synapse/client/laiwang/web"
APP_DIR = Path(__file__).resolve().parent.parent / "webapp"

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}

# 'self' only; images may also be blob: URLs (authenticated media is fetched with the token).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

_COMMON_HEADERS = {
    b"Content-Security-Policy": CONTENT_SECURITY_POLICY.encode(),
    b"X-Content-Type-Options": b"nosniff",
    b"Referrer-Policy": b"no-referrer",
    b"X-Frame-Options": b"DENY",
    # The files change with the module: revalidate rather than run an old app on a new server.
    b"Cache-Control": b"no-cache",
}


def load_files(directory: Path = APP_DIR) -> dict[str, tuple[bytes, str]]:
    """`{name: (bytes, content type)}` of every servable file directly in `directory`."""
    files = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if path.is_file() and content_type is not None:
            files[path.name] = (path.read_bytes(), content_type)
    return files


class WebResource(Resource):
    """GET/HEAD of the app's files; `/web` redirects to `/web/`, which is `index.html`."""

    isLeaf = True

    def __init__(self, files: dict[str, tuple[bytes, str]]):
        super().__init__()
        self.files = files

    def render_GET(self, request: Request) -> bytes:
        for name, value in _COMMON_HEADERS.items():
            request.setHeader(name, value)
        # The raw path, never decoded: a name with an escape or a slash is simply not a name.
        path = request.path.decode("ascii", errors="replace")
        if path == WEB_PREFIX:
            request.setResponseCode(301)
            request.setHeader(b"Location", (WEB_PREFIX + "/").encode())
            return b""
        found = None
        if path.startswith(WEB_PREFIX + "/"):
            found = self.files.get(path[len(WEB_PREFIX) + 1 :] or "index.html")
        if found is None:
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"Not found\n"
        content, content_type = found
        request.setHeader(b"Content-Type", content_type.encode())
        return content

    def render_HEAD(self, request: Request) -> bytes:
        # twisted drops the body of a HEAD answer and keeps its Content-Length.
        return self.render_GET(request)


def build_web_resource() -> WebResource:
    return WebResource(load_files())
