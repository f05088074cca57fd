"""A loopback fake of the Hugging Face Hub for tests (DESIGN.md section 6).

It serves what ``huggingface_hub`` (and ``app.core.hub``) ask for, with the headers the
real client requires:

- ``GET /api/models`` — search: ``filter=`` (all must be tags of the repo), ``search=``
  (substring of the id), ``sort=`` (downloads, likes, trendingScore, lastModified; always
  descending), ``limit=`` (page size) and ``Link: <…>; rel="next"`` paging with a cursor.
- ``GET /api/models/{id}`` and ``/api/models/{id}/revision/{rev}`` — ``siblings`` (with
  ``size`` and ``lfs`` when ``blobs=true``), ``cardData``, ``tags``, ``sha``, ``gated``.
- ``GET /api/models/{id}/tree/{rev}`` — the file listing.
- ``HEAD``/``GET /{id}/resolve/{rev}/{file}`` — ``ETag``, ``X-Repo-Commit``, and for LFS
  files ``X-Linked-Etag`` (the sha256) and ``X-Linked-Size`` with a 302 to a "CDN" on a
  different origin (``localhost`` instead of ``127.0.0.1``), like the real Hub. GET honours
  ``Range``.
- ``GET /api/whoami-v2`` — for ``huggingface_hub.login``.
- Errors: 404 with ``X-Error-Code: RepoNotFound`` / ``EntryNotFound`` /
  ``RevisionNotFound``; 401 ``X-Error-Code: GatedRepo`` for a gated repo without the token.

Faults for tests: ``truncate_once`` (close the connection after N bytes, once per file),
``corrupt`` (serve different bytes of the right length), ``slow`` (seconds to sleep per
64 KiB chunk), ``ignore_range`` (answer 200 with the whole file, as some CDNs do), ``stall`` (searches
hang until an Event is set). Every
request is recorded in ``requests``, with the bytes actually sent.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

TOKEN = "hf_loraloom_fake_token_0123456789"
# A valid account that has not accepted a gated repo's licence: the Hub answers 403 GatedRepo.
NOT_ACCEPTED_TOKEN = "hf_loraloom_fake_token_not_accepted"
CHUNK = 64 * 1024


# ------------------------------------------------------------------ repo content


def safetensors_bytes(
    tensors: dict[str, tuple[list[int], str]], metadata: dict[str, str] | None = None, seed: int = 0
) -> bytes:
    """A valid safetensors file; tensor data is seeded random bytes (so hashes mean something)."""
    sizes = {"F32": 4, "F16": 2}
    rng = random.Random(seed)
    header: dict[str, Any] = {}
    blobs, offset = [], 0
    for name, (shape, dtype) in tensors.items():
        n = sizes[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        blobs.append(rng.randbytes(n))
        offset += n
    if metadata:
        header["__metadata__"] = metadata
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


def kohya_sd1(rank: int = 4, metadata: dict[str, str] | None = None, seed: int = 0) -> bytes:
    mod = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    te = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    return safetensors_bytes(
        {
            f"{mod}.lora_down.weight": ([rank, 768], "F16"),
            f"{mod}.lora_up.weight": ([320, rank], "F16"),
            f"{te}.lora_down.weight": ([rank, 768], "F16"),
            f"{te}.lora_up.weight": ([768, rank], "F16"),
        },
        metadata,
        seed,
    )


def diffusers_sdxl(rank: int = 8, big: bool = False, seed: int = 1) -> bytes:
    mod = "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_v"
    tensors = {
        f"{mod}.lora_A.weight": ([rank, 2048], "F16"),
        f"{mod}.lora_B.weight": ([640, rank], "F16"),
        "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight": ([rank, 1280], "F16"),
        "text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight": ([1280, rank], "F16"),
    }
    if big:  # about 3 MB: several chunks, so progress, cancel and resume have room
        tensors["unet.mid_block.attentions.0.transformer_blocks.0.ff.net.2.lora_A.weight"] = ([rank, 5120], "F16")
        tensors["unet.mid_block.attentions.0.transformer_blocks.0.ff.net.2.lora_B.weight"] = ([196608, rank], "F16")
    return safetensors_bytes(tensors, None, seed)


def png_bytes(color: tuple[int, int, int], size: int = 24) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


def readme(card: dict[str, Any], body: str) -> bytes:
    """A model card: YAML front matter (written as JSON, which is YAML too) and Markdown."""
    return f"---\n{json.dumps(card, indent=1)}\n---\n\n{body}\n".encode()


@dataclass
class FakeFile:
    data: bytes
    lfs: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def git_sha(self) -> str:
        return hashlib.sha1(b"blob %d\0" % len(self.data) + self.data).hexdigest()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    card: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    downloads: int = 0
    likes: int = 0
    trending: float = 0.0
    last_modified: str = "2024-01-01T00:00:00.000Z"
    gated: bool | str = False
    sha: str = ""

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha1(self.repo_id.encode()).hexdigest()


def sample_repos() -> list[FakeRepo]:
    """A few LoRA repos of each family, a gated one, one with hostile file names, one non-LoRA."""
    sd1 = "runwayml/stable-diffusion-v1-5"
    sdxl = "stabilityai/stable-diffusion-xl-base-1.0"

    def lora_tags(base: str) -> list[str]:
        return [
            "diffusers",
            "lora",
            "text-to-image",
            "stable-diffusion",
            "template:sd-lora",
            f"base_model:{base}",
            f"base_model:adapter:{base}",
        ]

    red_card = {
        "license": "creativeml-openrail-m",
        "base_model": sd1,
        "instance_prompt": "zzred style",
        "tags": ["lora", "text-to-image"],
        "widget": [{"text": "zzred style, a cat", "output": {"url": "images/red.png"}}],
    }
    pixel_card = {
        "license": "openrail++",
        "base_model": sdxl,
        "instance_prompt": "pixel art, 8-bit",
        "widget": [{"text": "pixel art", "output": {"url": "images/pixel.png"}}],
    }
    ink_tags = json.dumps({"10_ink": {"inkdrawing": 30, "monochrome": 12, "sketch": 5, "cat": 1}})
    return [
        FakeRepo(
            "alice/red-style-lora",
            {
                "README.md": FakeFile(readme(red_card, "# Red style\n\nMakes everything **red**."), lfs=False),
                "red-style.safetensors": FakeFile(
                    kohya_sd1(4, {"ss_base_model_version": "sd_v1", "ss_network_alpha": "2.0"})
                ),
                "images/red.png": FakeFile(png_bytes((220, 30, 30))),
            },
            red_card,
            lora_tags(sd1),
            downloads=500,
            likes=20,
            trending=5.0,
            last_modified="2024-03-01T00:00:00.000Z",
        ),
        FakeRepo(
            "bob/sdxl-pixel-lora",
            {
                "README.md": FakeFile(readme(pixel_card, "# Pixel\n\nPixel art for SDXL."), lfs=False),
                "pytorch_lora_weights.safetensors": FakeFile(diffusers_sdxl(8, big=True)),
                "images/pixel.png": FakeFile(png_bytes((30, 200, 30))),
            },
            pixel_card,
            lora_tags(sdxl),
            downloads=900,
            likes=5,
            trending=9.0,
            last_modified="2024-01-15T00:00:00.000Z",
        ),
        FakeRepo(
            "carol/sd1-ink-lora",
            {
                "ink.safetensors": FakeFile(
                    kohya_sd1(8, {"ss_base_model_version": "sd_v1", "ss_tag_frequency": ink_tags}, seed=3)
                ),
                "ink.preview.png": FakeFile(png_bytes((20, 20, 20))),
            },
            {"base_model": sd1, "license": "mit"},
            lora_tags(sd1),
            downloads=100,
            likes=80,
            trending=1.0,
            last_modified="2024-06-01T00:00:00.000Z",
        ),
        FakeRepo(
            "dave/gated-sdxl-lora",
            {
                "gated.safetensors": FakeFile(diffusers_sdxl(4, seed=4)),
            },
            {"base_model": sdxl, "instance_prompt": "gatedword"},
            lora_tags(sdxl),
            downloads=50,
            likes=1,
            gated="manual",
        ),
        FakeRepo(
            "eve/hostile-names",
            {
                "../../escape.safetensors": FakeFile(kohya_sd1(4, seed=5)),
                "dir/../../../up.safetensors": FakeFile(kohya_sd1(4, seed=6)),
                "/abs.safetensors": FakeFile(kohya_sd1(4, seed=7)),
                "ok.safetensors": FakeFile(kohya_sd1(4, seed=8)),
            },
            {"base_model": sd1},
            lora_tags(sd1),
            downloads=10,
            likes=0,
        ),
        FakeRepo(
            "frank/full-model",
            {
                "model.safetensors": FakeFile(
                    safetensors_bytes(
                        {"conv_in.weight": ([320, 4, 3, 3], "F16"), "conv_out.weight": ([4, 320, 3, 3], "F16")}
                    )
                )
            },
            {"license": "mit"},
            ["diffusers", "text-to-image"],
            downloads=10_000,
            likes=999,
        ),
    ]


# ------------------------------------------------------------------ server


class FakeHub:
    def __init__(self, repos: list[FakeRepo] | None = None) -> None:
        self.repos = {r.repo_id: r for r in (repos if repos is not None else sample_repos())}
        self.requests: list[dict[str, Any]] = []
        self.truncate_once: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.slow = 0.0
        self.ignore_range = False
        self.stall: threading.Event | None = None  # when set to an Event, searches wait for it
        self.redirect_loop = False  # the API (search, model info) answers 302 to itself, for ever
        self.trickle = 0.0  # seconds between single bytes of API answers (a server trickling data)
        self.trickle_stop = threading.Event()  # set to end a trickle at once (the test is over)
        self._lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-hub", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn(self) -> str:
        return f"http://localhost:{self.port}"  # another origin, as the real CDN is

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self.truncate_once.clear()
        self.corrupt.clear()
        self.slow = 0.0
        self.ignore_range = False
        self.stall = None
        self.redirect_loop = False
        self.trickle = 0.0
        self.trickle_stop.set()  # any trickle still running from the last test ends now
        self.trickle_stop = threading.Event()

    def log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    def gets_of(self, filename: str) -> list[dict[str, Any]]:
        """File body requests (GET on resolve or the CDN) for one file name."""
        with self._lock:
            return [r for r in self.requests if r["method"] == "GET" and r.get("file") == filename]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    # -------------------------------------------------------- plumbing

    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, headers: dict[str, str] | None = None) -> None:
        if self.fake.trickle:
            return self._trickle(json.dumps(obj).encode(), headers)
        self._send(200, json.dumps(obj).encode(), headers)

    def _trickle(self, body: bytes, headers: dict[str, str] | None) -> None:
        """Headers at once, then the body one byte at a time, ``fake.trickle`` seconds apart."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        stop = self.fake.trickle_stop
        for i in range(len(body)):
            if stop.wait(self.fake.trickle):
                self.close_connection = True
                return
            try:
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        if commit:
            headers["X-Repo-Commit"] = commit
        self._send(status, json.dumps({"error": message}).encode(), headers)

    def _authorised(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {TOKEN}"

    def do_HEAD(self) -> None:  # noqa: N802
        self._route()

    def do_GET(self) -> None:  # noqa: N802
        self._route()

    def _route(self) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query)
        entry = {
            "method": self.command,
            "path": path,
            "query": query,
            "range": self.headers.get("Range"),
            "auth": bool(self.headers.get("Authorization")),
            "host": self.headers.get("Host", ""),
        }
        self.fake.log(entry)
        if self.fake.redirect_loop and path.startswith("/api/models"):
            return self._send(302, b"", {"Location": self.path})
        if path == "/api/models":
            return self._search(query)
        if path == "/api/whoami-v2":
            if self._authorised():
                return self._json(
                    {
                        "type": "user",
                        "name": "tester",
                        "auth": {"accessToken": {"displayName": "loraloom-test", "role": "read"}},
                    }
                )
            return self._error(401, None, "Invalid credentials in Authorization header")
        if path.startswith("/api/models/"):
            return self._model_api(path[len("/api/models/") :], query)
        if path.startswith("/cdn/"):
            return self._cdn(path[len("/cdn/") :], entry)
        segments = path.lstrip("/").split("/")
        if len(segments) >= 5 and segments[2] == "resolve":
            repo_id = "/".join(segments[:2])
            entry["file"] = "/".join(segments[4:])
            return self._resolve(repo_id, segments[3], entry["file"], entry)
        return self._error(404, None, "Not Found")

    # -------------------------------------------------------- API

    def _model_json(self, repo: FakeRepo, blobs: bool) -> dict[str, Any]:
        siblings = []
        for name, f in repo.files.items():
            sib: dict[str, Any] = {"rfilename": name}
            if blobs:
                sib.update(size=len(f.data), blobId=f.git_sha)
                if f.lfs:
                    sib["lfs"] = {"sha256": f.sha256, "size": len(f.data), "pointerSize": 134}
            siblings.append(sib)
        return {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": repo.sha,
            "lastModified": repo.last_modified,
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": repo.trending,
            "tags": repo.tags,
            "pipeline_tag": "text-to-image",
            "library_name": "diffusers",
            "cardData": repo.card,
            "siblings": siblings,
            "createdAt": "2023-12-01T00:00:00.000Z",
        }

    def _search(self, query: dict[str, list[str]]) -> None:
        if self.fake.stall is not None:
            self.fake.stall.wait(30)
        filters = query.get("filter", [])
        text = (query.get("search") or [""])[0].lower()
        repos = [r for r in self.fake.repos.values() if all(f in r.tags for f in filters) and text in r.repo_id.lower()]
        sort = (query.get("sort") or [""])[0]
        key = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "trendingScore": lambda r: r.trending,
            "lastModified": lambda r: r.last_modified,
        }.get(sort)
        if key is not None:
            repos.sort(key=key, reverse=True)
        limit = int((query.get("limit") or ["1000"])[0])
        start = int((query.get("cursor") or ["0"])[0])
        page = repos[start : start + limit]
        headers = {}
        if start + limit < len(repos):
            nxt = {k: v for k, v in query.items() if k != "cursor"}
            nxt["cursor"] = [str(start + limit)]
            headers["Link"] = f'<{self.fake.url}/api/models?{urlencode(nxt, doseq=True)}>; rel="next"'
        self._json([self._model_json(r, blobs=False) for r in page], headers)

    def _model_api(self, rest: str, query: dict[str, list[str]]) -> None:
        segs = rest.split("/")
        repo = self.fake.repos.get("/".join(segs[:2]))
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        tail = segs[2:]
        if tail and tail[0] == "revision":
            if len(tail) < 2 or tail[1] not in ("main", repo.sha):
                return self._error(404, "RevisionNotFound", "Invalid rev id")
            tail = []
        if not tail:
            return self._json(
                self._model_json(repo, blobs=query.get("blobs") == ["True"] or query.get("blobs") == ["true"])
            )
        if tail[0] == "tree":
            return self._json(
                [
                    {
                        "type": "file",
                        "path": n,
                        "size": len(f.data),
                        "oid": f.git_sha,
                        **({"lfs": {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}} if f.lfs else {}),
                    }
                    for n, f in repo.files.items()
                ]
            )
        return self._error(404, None, "Not Found")

    # -------------------------------------------------------- files

    def _resolve(self, repo_id: str, revision: str, filename: str, entry: dict[str, Any]) -> None:
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if revision not in ("main", repo.sha):
            return self._error(404, "RevisionNotFound", "Invalid rev id")
        if repo.gated and not self._authorised():
            known = self.headers.get("Authorization", "") == f"Bearer {NOT_ACCEPTED_TOKEN}"
            return self._error(403 if known else 401, "GatedRepo", f"Access to model {repo_id} is restricted.")
        f = repo.files.get(filename)
        if f is None:
            return self._error(404, "EntryNotFound", f"{filename} does not exist", commit=repo.sha)
        headers = {"X-Repo-Commit": repo.sha, "Accept-Ranges": "bytes"}
        if f.lfs:
            headers.update(
                {
                    "ETag": f'"{f.sha256}"',
                    "X-Linked-Etag": f'"{f.sha256}"',
                    "X-Linked-Size": str(len(f.data)),
                    "Location": f"{self.fake.cdn}/cdn/{quote(repo_id)}/{f.sha256}/{quote(filename)}",
                }
            )
            self.send_response(302)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        headers["ETag"] = f'"{f.git_sha}"'
        self._body(filename, f.data, headers, entry)

    def _cdn(self, rest: str, entry: dict[str, Any]) -> None:
        owner, name, sha, *file_parts = rest.split("/")
        repo = self.fake.repos.get(f"{owner}/{name}")
        filename = "/".join(file_parts)
        entry["file"] = filename
        f = repo.files.get(filename) if repo else None
        if f is None or f.sha256 != sha:
            return self._error(404, None, "NoSuchKey")
        data = f.data
        if filename in self.fake.corrupt:
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        self._body(filename, data, {"ETag": f'"{sha}"'}, entry)

    def _body(self, filename: str, data: bytes, headers: dict[str, str], entry: dict[str, Any]) -> None:
        start = 0
        rng = self.headers.get("Range")
        status = 200
        if rng and rng.startswith("bytes=") and self.command == "GET" and not self.fake.ignore_range:
            first, _, last = rng[len("bytes=") :].partition("-")
            start = int(first or 0)
            if start >= len(data):
                return self._send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
            status = 206
            end = min(int(last), len(data) - 1) if last.strip() else len(data) - 1  # as the Hub: an end is kept
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data = data[: end + 1]
        body = data[start:]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = self.fake.truncate_once.pop(filename, None) if start == 0 else None
        if cut is not None:
            body = body[:cut]
            self.close_connection = True
        entry["sent"] = 0  # bytes written to the socket (a client that hangs up gets fewer)
        for i in range(0, len(body), CHUNK):
            if self.fake.slow:
                time.sleep(self.fake.slow)
            try:
                self.wfile.write(body[i : i + CHUNK])
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            entry["sent"] += len(body[i : i + CHUNK])
        if cut is not None:
            self.wfile.flush()
