"""Upload an image through an app's form, as a browser would (CSRF token, session cookie)."""

from __future__ import annotations

import re
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
import zlib


def png(width: int = 4, height: int = 3) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2,
                                                              0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def upload(address: str, title: str, image: bytes, *, resource: str = "photos",
           model: str = "photo", file_field: str = "image") -> str:
    """POST the form on http://address/<resource>; return the new record's page's path.
    The session cookie is passed by hand: an app behind TLS marks it Secure, which a cookie
    jar would not send over the plain HTTP this test speaks to nginx."""
    opener = urllib.request.build_opener(NoRedirect)
    with opener.open(f"http://{address}/{resource}/new", timeout=10) as r:
        form = r.read().decode()
        cookie = "; ".join(c.split(";", 1)[0] for c in r.headers.get_all("Set-Cookie") or [])
    token = re.search(r'name="authenticity_token" value="([^"]+)"', form).group(1)
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (("authenticity_token", token), (f"{model}[title]", title)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{model}[{file_field}]"; '
                 f'filename="upload.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
                 + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    req = urllib.request.Request(f"http://{address}/{resource}", data=b"".join(parts),
                                 method="POST")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    req.add_header("Cookie", cookie)
    try:
        opener.open(req, timeout=30)
    except urllib.error.HTTPError as e:
        if e.code not in (302, 303):
            raise
        return urllib.parse.urlparse(e.headers["Location"]).path
    raise AssertionError("the form did not redirect to the new record")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None
