"""Upload an image through the sample app's form, as a browser would (CSRF token, cookie)."""

from __future__ import annotations

import http.cookiejar
import re
import struct
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


def upload(address: str, title: str, image: bytes) -> str:
    """POST the form on http://address/photos; return the photo page's path."""
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    form = opener.open(f"http://{address}/photos/new", timeout=10).read().decode()
    token = re.search(r'name="authenticity_token" value="([^"]+)"', form).group(1)
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (("authenticity_token", token), ("photo[title]", title)):
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     f"{value}\r\n".encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="photo[image]"; '
                 f'filename="upload.png"\r\nContent-Type: image/png\r\n\r\n'.encode()
                 + image + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    req = urllib.request.Request(f"http://{address}/photos", data=b"".join(parts),
                                 method="POST")
    req.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    resp = opener.open(req, timeout=30)
    return urllib.parse.urlparse(resp.geturl()).path
