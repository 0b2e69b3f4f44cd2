"""Where media comes from when a request names it: data URLs, allowed local files, http(s) URLs.

`MediaFetcher` turns each reference into a local path for `aurora.media.load_visual` to decode,
and is the only place besides the loaders that opens or fetches media:

- `data:<mime>;base64,...` is written to a temporary file whose extension comes from the MIME type;
- `file://...` URLs and plain paths are allowed only inside `allowed_local_media_path`, checked on
  the real path (after `..` and symlinks are resolved), before anything else is looked at;
- `http(s)://...` is fetched with a total time limit and a size cap. Every address the host name
  resolves to is checked before connecting (loopback, private, link-local, multicast, reserved and
  other non-global addresses are refused unless `allow_private_urls`), and the connection goes to
  the checked address itself, so a second DNS answer cannot point it elsewhere (DNS rebinding).
  Redirects are followed by hand, each hop checked the same way.

Temporary files live in one directory per fetcher, removed by `close()` (or leaving the `with`).
Every refusal or failure is a `MediaError` with a one-line message.
"""

from __future__ import annotations

import base64
import binascii
import fractions
import io
import http.client
import ipaddress
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from aurora.errors import ConfigError, MediaError
from aurora.media.loader import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

# MIME type -> file extension the loaders know (the decoder picks by extension).
MIME_EXTENSIONS = {
    "video/mp4": ".mp4",
    "video/webm": ".webm",
    "video/x-matroska": ".mkv",
    "video/matroska": ".mkv",
    "video/quicktime": ".mov",
    "video/x-msvideo": ".avi",
    "video/avi": ".avi",
    "video/msvideo": ".avi",
    "image/gif": ".gif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jpg": ".jpg",
    "image/webp": ".webp",
    # sound (OpenAI's input_audio parts; models with an audio branch)
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/wave": ".wav",
    "audio/mp3": ".mp3",
    "audio/mpeg": ".mp3",
    "audio/flac": ".flac",
    "audio/ogg": ".ogg",
    "audio/mp4": ".m4a",
    "audio/m4a": ".m4a",
}
# vLLM's frames-as-video data URLs (comma-joined base64 images) -> the codec their packets are.
FRAME_VIDEO_CODECS = {"video/jpeg": ("mjpeg", ".mkv"), "video/png": ("png", ".mov")}
MAX_VIDEO_FRAMES = 512
_KNOWN_EXTENSIONS = VIDEO_EXTENSIONS + IMAGE_EXTENSIONS
_REDIRECTS = (301, 302, 303, 307, 308)
_CHUNK = 1 << 16


@dataclass(frozen=True)
class SourcePolicy:
    """What a fetcher may open. The defaults refuse local files and private network addresses."""

    allowed_local_media_path: str | None = None  # a directory; None = no local files at all
    timeout: float = 30.0  # seconds for one http(s) fetch, connect to last byte
    max_bytes: int = 200 * 1024**2  # per media item, whatever its source
    allow_private_urls: bool = False
    max_redirects: int = 3

    def __post_init__(self):
        if not self.timeout > 0:
            raise ConfigError(f"media timeout must be > 0 seconds, got {self.timeout}")
        if self.max_bytes < 1:
            raise ConfigError(f"max media bytes must be >= 1, got {self.max_bytes}")
        if self.allowed_local_media_path is not None:
            root = os.path.realpath(os.path.expanduser(self.allowed_local_media_path))
            if not os.path.isdir(root):
                raise ConfigError(f"allowed local media path {self.allowed_local_media_path!r} is not a directory")
            object.__setattr__(self, "allowed_local_media_path", root)


class MediaFetcher:
    """Resolves media references to local paths under a `SourcePolicy`; owns the temp files."""

    def __init__(self, policy: SourcePolicy | None = None, cancel: threading.Event | None = None):
        self.policy = policy or SourcePolicy()
        self.cancel = cancel  # checked while downloading: a gone client stops its download
        self._directory: str | None = None

    def __enter__(self) -> "MediaFetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Delete every temporary file this fetcher wrote."""
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def fetch(self, reference: str) -> str:
        """A data URL, file URL, local path or http(s) URL -> a local path to decode."""
        if not isinstance(reference, str) or not reference.strip():
            raise MediaError("a media URL must be a non-empty string")
        reference = reference.strip()
        if "\x00" in reference:
            raise MediaError("a media URL or path must not contain a NUL byte")
        scheme = urllib.parse.urlsplit(reference).scheme.lower() if ":" in reference else ""
        if scheme == "data":
            return self._from_data_url(reference)
        if scheme in ("http", "https"):
            return self._from_http(reference)
        if scheme == "file":
            parts = urllib.parse.urlsplit(reference)
            if parts.netloc not in ("", "localhost"):
                raise MediaError(f"file URLs must name a local file, got host {parts.netloc!r}")
            return self._from_local(urllib.parse.unquote(parts.path))
        if scheme and len(scheme) > 1:  # one letter is a Windows drive, not a scheme
            raise MediaError(f"unsupported media URL scheme {scheme!r}: use data:, file://, http:// or https://")
        return self._from_local(reference)

    # ---- sources -----------------------------------------------------------------------------

    def _from_local(self, path: str) -> str:
        """A local file, only inside the allowed directory (checked on its real path)."""
        root = self.policy.allowed_local_media_path
        if root is None:
            raise MediaError("local media files are not allowed on this server (start it with --allowed-local-media-path DIR)")
        candidate = os.path.join(root, os.path.expanduser(path))  # relative paths are relative to the root
        real = os.path.realpath(candidate)
        if os.path.commonpath([real, root]) != root:
            raise MediaError(f"local media {_short(path)!r} is outside the allowed media directory")
        if not os.path.isfile(real):
            raise MediaError(f"local media {_short(path)!r} is not a file in the allowed media directory")
        if os.path.getsize(real) > self.policy.max_bytes:
            raise MediaError(f"local media {_short(path)!r} is larger than {self.policy.max_bytes} bytes")
        return real

    def _from_data_url(self, url: str) -> str:
        header, comma, payload = url[len("data:"):].partition(",")
        if not comma:
            raise MediaError("malformed data URL: expected data:<mime type>;base64,<data>")
        fields = [f.strip().lower() for f in header.split(";")]
        mime, is_base64 = fields[0], "base64" in fields[1:]
        if mime in FRAME_VIDEO_CODECS and is_base64:
            return self._from_frames(mime, payload)
        extension = MIME_EXTENSIONS.get(mime)
        if extension is None:
            raise MediaError(f"unsupported media type {mime or '(none)'!r} in data URL; supported: {', '.join(MIME_EXTENSIONS)}")
        estimate = len(payload) * 3 // 4 if is_base64 else len(payload)
        if estimate > self.policy.max_bytes:
            raise MediaError(f"data URL media is larger than {self.policy.max_bytes} bytes")
        try:
            if is_base64:
                data = base64.b64decode("".join(payload.split()), validate=True)  # line breaks are allowed
            else:
                data = urllib.parse.unquote_to_bytes(payload)
        except (binascii.Error, ValueError):
            raise MediaError("malformed data URL: the base64 payload does not decode") from None
        if not data:
            raise MediaError("data URL holds no data")
        path = self._new_file(extension)
        Path(path).write_bytes(data)
        return path

    def _from_frames(self, mime: str, payload: str) -> str:
        """vLLM's frames-as-video (``data:video/jpeg;base64,<frame>,<frame>,...``): the images
        become the packets of one MJPEG (or PNG) video, copied without re-encoding."""
        import av
        from PIL import Image

        pieces = payload.split(",")
        if len(pieces) > MAX_VIDEO_FRAMES:
            raise MediaError(f"a frames-as-video data URL may hold at most {MAX_VIDEO_FRAMES} frames, got {len(pieces)}")
        if sum(len(p) for p in pieces) * 3 // 4 > self.policy.max_bytes:
            raise MediaError(f"data URL media is larger than {self.policy.max_bytes} bytes")
        frames, size = [], None
        for i, piece in enumerate(pieces):
            try:
                data = base64.b64decode("".join(piece.split()), validate=True)
                with Image.open(io.BytesIO(data)) as image:
                    kind, frame_size = image.format, image.size
            except (binascii.Error, ValueError, OSError):
                raise MediaError(f"malformed frames-as-video data URL: frame {i} is not a base64 image") from None
            expected = "JPEG" if mime == "video/jpeg" else "PNG"
            if kind != expected:
                raise MediaError(f"frame {i} of a {mime} data URL is {kind}, not {expected}")
            if size is not None and frame_size != size:
                raise MediaError(f"the frames of a {mime} data URL differ in size ({size} and {frame_size})")
            size = frame_size
            frames.append(data)
        codec, extension = FRAME_VIDEO_CODECS[mime]
        path = self._new_file(extension)
        try:
            with av.open(path, "w") as container:
                stream = container.add_stream(codec, rate=1)
                stream.width, stream.height = size
                stream.pix_fmt = "yuvj420p" if mime == "video/jpeg" else "rgb24"
                stream.time_base = fractions.Fraction(1, 1000)
                for i, data in enumerate(frames):  # a nominal 1 frame per second
                    packet = av.Packet(data)
                    packet.pts = packet.dts = i * 1000
                    packet.time_base, packet.stream = stream.time_base, stream
                    packet.is_keyframe = True
                    container.mux(packet)
        except (av.error.FFmpegError, ValueError) as e:
            raise MediaError(f"cannot assemble the frames of a {mime} data URL into a video ({e})") from None
        return path

    def _from_http(self, url: str) -> str:
        deadline = time.monotonic() + self.policy.timeout
        for _ in range(self.policy.max_redirects + 1):
            parts = urllib.parse.urlsplit(url)
            host = parts.hostname
            if not host:
                raise MediaError(f"media URL {_short(url)!r} has no host")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                raise MediaError(f"media URL {_short(url)!r} has an invalid port") from None
            addresses = self._checked_addresses(host, port, deadline)
            connection = _pinned_connection(parts.scheme, host, port, addresses, _remaining(deadline))
            try:
                target = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
                connection.request("GET", target, headers={"User-Agent": "aurora-media-fetcher", "Accept": "*/*"})
                response = connection.getresponse()
                if response.status in _REDIRECTS and response.getheader("Location"):
                    url = urllib.parse.urljoin(url, response.getheader("Location"))
                    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
                        raise MediaError(f"media URL redirected to an unsupported scheme: {_short(url)!r}")
                    continue
                if response.status != 200:
                    raise MediaError(f"fetching media {_short(url)!r} failed: HTTP {response.status} {response.reason}")
                extension = _extension_for(url, response.getheader("Content-Type", ""))
                return self._download(response, connection, extension, deadline, url)
            except (OSError, http.client.HTTPException) as e:
                reason = "timed out" if isinstance(e, (TimeoutError, socket.timeout)) else str(e) or type(e).__name__
                raise MediaError(f"fetching media {_short(url)!r} failed: {reason}") from None
            finally:
                connection.close()
        raise MediaError(f"fetching media {_short(url)!r} failed: more than {self.policy.max_redirects} redirects")

    # ---- helpers -----------------------------------------------------------------------------

    def _checked_addresses(self, host: str, port: int, deadline: float) -> list[str]:
        """Resolve `host` and refuse if ANY address is not public (unless private ones are allowed)."""
        addresses = _resolve(host, port, _remaining(deadline))
        if not self.policy.allow_private_urls:
            for address in addresses:
                if not is_public_address(address):
                    raise MediaError(
                        f"media host {host!r} resolves to a non-public address ({address}); "
                        "refused (start the server with --allow-private-media-urls to allow it)"
                    )
        return addresses

    def _download(self, response, connection, extension: str, deadline: float, url: str) -> str:
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > self.policy.max_bytes:
            raise MediaError(f"media {_short(url)!r} is larger than {self.policy.max_bytes} bytes")
        path = self._new_file(extension)
        size = 0
        with open(path, "wb") as out:
            while True:
                if self.cancel is not None and self.cancel.is_set():
                    raise MediaError("media download cancelled")
                if connection.sock is not None:
                    connection.sock.settimeout(_remaining(deadline))
                chunk = response.read(_CHUNK)
                if not chunk:
                    break
                size += len(chunk)
                if size > self.policy.max_bytes:
                    raise MediaError(f"media {_short(url)!r} is larger than {self.policy.max_bytes} bytes")
                out.write(chunk)
        if size == 0:
            raise MediaError(f"media {_short(url)!r} is empty")
        return path

    def _new_file(self, extension: str) -> str:
        if self._directory is None:
            self._directory = tempfile.mkdtemp(prefix="aurora-media-")
        handle, path = tempfile.mkstemp(suffix=extension, dir=self._directory)
        os.close(handle)
        return path


def is_public_address(address: str) -> bool:
    """True for globally routable unicast addresses; False for loopback, private, link-local,
    multicast, reserved, unspecified, shared (CGNAT) and IPv6 forms that embed such an IPv4."""
    ip = ipaddress.ip_address(address.split("%")[0])  # drop an IPv6 zone id
    if ip.version == 6:
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public_address(str(embedded)):
            return False
    bad = ip.is_loopback or ip.is_private or ip.is_link_local or ip.is_multicast or ip.is_reserved or ip.is_unspecified
    return ip.is_global and not bad


def _resolve(host: str, port: int, timeout: float) -> list[str]:
    """All addresses of `host`, in resolver order; a resolver that hangs is given up on."""
    result: dict = {}

    def lookup():
        try:
            result["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as e:
            result["error"] = e

    thread = threading.Thread(target=lookup, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise MediaError(f"resolving media host {host!r} timed out")
    if "error" in result:
        raise MediaError(f"cannot resolve media host {host!r}: {result['error']}")
    addresses = list(dict.fromkeys(info[4][0] for info in result["infos"]))
    if not addresses:
        raise MediaError(f"media host {host!r} has no address")
    return addresses


def _pinned_connection(scheme: str, host: str, port: int, addresses: list[str], timeout: float):
    """An http.client connection whose socket goes to one of `addresses` (already checked), while
    the Host header and TLS server name (SNI and certificate check) stay `host`."""

    def open_socket(self):
        last = None
        for address in addresses:
            try:
                return socket.create_connection((address, port), timeout=self.timeout)
            except OSError as e:
                last = e
        raise last

    if scheme == "https":
        context = ssl.create_default_context()

        class Pinned(http.client.HTTPSConnection):
            def connect(self):
                self.sock = context.wrap_socket(open_socket(self), server_hostname=host)

        return Pinned(host, port, timeout=timeout, context=context)

    class Plain(http.client.HTTPConnection):
        def connect(self):
            self.sock = open_socket(self)

    return Plain(host, port, timeout=timeout)


def _extension_for(url: str, content_type: str) -> str:
    """The loader extension for a download: its MIME type, else the URL path's extension."""
    extension = MIME_EXTENSIONS.get(content_type.split(";")[0].strip().lower())
    if extension:
        return extension
    suffix = os.path.splitext(urllib.parse.urlsplit(url).path)[1].lower()
    if suffix in _KNOWN_EXTENSIONS:
        return suffix
    raise MediaError(f"media {_short(url)!r} has an unsupported type ({content_type or 'no Content-Type'})")


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise MediaError("fetching media timed out")
    return left


def _short(text: str, limit: int = 80) -> str:
    """A reference short enough for a one-line message (data URLs can be megabytes)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
