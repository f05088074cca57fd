"""A hostile or broken Hub and a full or read-only download folder: each ends in one sentence,
in bounded time, with what arrived kept."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from app.core.hub.client import Hub
from app.core.hub.download import PARTIAL_SUFFIX
from app.core.hub.errors import HubError, HubErrorKind
from app.core.hub.models import SearchQuery

BIG = "pytorch_lora_weights.safetensors"


@pytest.fixture
def quick_hub(fake_hub, hf_cache):
    """A client with a 1.5 s deadline for a whole search or metadata answer."""
    return Hub(endpoint=fake_hub.url, token=False, cache_dir=hf_cache, timeout=5.0, deadline=1.5)


@pytest.mark.timeout(60)
def test_a_redirect_loop_is_one_sentence(quick_hub, fake_hub):
    fake_hub.redirect_loop = True
    with pytest.raises(HubError) as search:
        quick_hub.search(SearchQuery(text="red"))
    assert str(search.value) == "search: the Hub sent redirect after redirect (a loop); try again later"
    with pytest.raises(HubError) as details:
        quick_hub.details("alice/red-style-lora")
    assert details.value.kind is HubErrorKind.SERVER
    assert str(details.value).startswith("alice/red-style-lora: the Hub sent redirect after redirect")


@pytest.mark.timeout(60)  # without the deadline these take hours: the bound of the test, not an assert
def test_a_server_trickling_a_byte_a_second_ends_at_the_deadline(quick_hub, fake_hub):
    fake_hub.trickle = 0.2
    for call, what in (
        (lambda: quick_hub.search(SearchQuery()), "search"),
        (lambda: quick_hub.details("alice/red-style-lora"), "alice/red-style-lora"),
    ):
        with pytest.raises(HubError) as caught:
            call()
        assert caught.value.kind is HubErrorKind.OFFLINE
        assert str(caught.value) == (
            f"{what}: the Hub is answering too slowly (no whole answer in 1.5 s); try again later"
        )


def test_search_and_details_still_work_through_the_deadline_reader(quick_hub, fake_hub):
    page = quick_hub.search(SearchQuery(text="red"))
    assert "alice/red-style-lora" in [r.repo_id for r in page.repos]
    repo = quick_hub.details("alice/red-style-lora")
    assert repo.files and all(f.size for f in repo.files)
    with pytest.raises(HubError) as missing:
        quick_hub.details("nobody/nothing")
    assert missing.value.kind is HubErrorKind.NOT_FOUND


def _fail_partial_writes(monkeypatch, code):
    real_open = Path.open

    def failing_open(self, mode="r", *args, **kwargs):
        fh = real_open(self, mode, *args, **kwargs)
        if self.name.endswith(PARTIAL_SUFFIX) and ("a" in mode or "w" in mode):
            fh.close()
            raise OSError(code, os.strerror(code))
        return fh

    monkeypatch.setattr(Path, "open", failing_open)


def test_a_full_disk_during_a_download_is_the_disk_full_sentence(hub, fake_hub, hf_cache, monkeypatch):
    with monkeypatch.context() as patched, pytest.raises(HubError) as caught:
        _fail_partial_writes(patched, errno.ENOSPC)
        hub.download("bob/sdxl-pixel-lora", BIG)
    blobs = hf_cache / "models--bob--sdxl-pixel-lora" / "blobs"
    assert caught.value.kind is HubErrorKind.DISK_FULL
    assert str(caught.value).startswith(f"Disk full while saving bob/sdxl-pixel-lora/{BIG} in {blobs}: free ")
    assert str(caught.value).endswith(" GB and Download again to resume")
    assert hub.download("bob/sdxl-pixel-lora", BIG).is_file()


def test_a_read_only_download_folder_is_a_permission_sentence(hub, fake_hub, hf_cache, monkeypatch):
    # Tests run as root, where chmod does not stop writes: the EROFS is injected.
    _fail_partial_writes(monkeypatch, errno.EROFS)
    with pytest.raises(HubError) as caught:
        hub.download("bob/sdxl-pixel-lora", BIG)
    assert caught.value.kind is HubErrorKind.PERMISSION
    assert str(caught.value).startswith(f"Cannot save bob/sdxl-pixel-lora/{BIG} in ")
    assert str(caught.value).endswith(
        "(Read-only file system): the folder is read-only or not yours; make it writable and Download again"
    )
