"""app.core.hub against the loopback fake Hub, through the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import socket
import threading

import pytest
from fake_hub import TOKEN

from app.core.adapters import inspect_adapter
from app.core.families import Family
from app.core.hub.client import Hub
from app.core.hub.download import PARTIAL_SUFFIX
from app.core.hub.errors import HubError, HubErrorKind
from app.core.hub.models import HubSort, SearchQuery, family_of_base, is_safe_name

BIG = "pytorch_lora_weights.safetensors"


def ids(page):
    return [r.repo_id for r in page.repos]


def test_search_filters_sorts_and_pages(hub, fake_hub):
    page = hub.search(SearchQuery(sort=HubSort.DOWNLOADS))
    # Only repos tagged "lora"; the full model with the most downloads is not one of them.
    assert ids(page) == [
        "bob/sdxl-pixel-lora",
        "alice/red-style-lora",
        "carol/sd1-ink-lora",
        "dave/gated-sdxl-lora",
        "eve/hostile-names",
    ]
    assert page.next_url is None
    assert ids(hub.search(SearchQuery(sort=HubSort.LIKES)))[0] == "carol/sd1-ink-lora"
    assert ids(hub.search(SearchQuery(sort=HubSort.UPDATED)))[0] == "carol/sd1-ink-lora"
    assert ids(hub.search(SearchQuery(sort=HubSort.TRENDING)))[0] == "bob/sdxl-pixel-lora"
    assert ids(hub.search(SearchQuery(family=Family.SDXL))) == ["bob/sdxl-pixel-lora", "dave/gated-sdxl-lora"]
    assert ids(hub.search(SearchQuery(text="INK"))) == ["carol/sd1-ink-lora"]
    sent = [r["query"] for r in fake_hub.requests if r["path"] == "/api/models"]
    assert sent[-2]["filter"] == ["lora", "base_model:adapter:stabilityai/stable-diffusion-xl-base-1.0"]
    assert "cardData" in sent[-1]["expand"] and sent[-1]["sort"] == ["downloads"]

    first = hub.search(SearchQuery(limit=2))
    second = hub.more(first.next_url)
    third = hub.more(second.next_url)
    assert ids(first) + ids(second) + ids(third) == ids(page)
    assert third.next_url is None

    red = next(r for r in page.repos if r.repo_id == "alice/red-style-lora")
    assert red.family is Family.SD1 and red.trigger_words == ["zzred style"]
    assert red.preview_files == ["images/red.png"] and red.downloads == 500
    assert [f.name for f in red.adapter_files] == ["red-style.safetensors"]


def test_details_parse_the_card_and_list_files_with_sha256(hub, fake_hub):
    repo = hub.details("alice/red-style-lora")
    assert repo.base_models == ["runwayml/stable-diffusion-v1-5"] and repo.family is Family.SD1
    assert repo.license == "creativeml-openrail-m" and repo.trigger_words == ["zzred style"]
    assert repo.description.startswith("# Red style") and "Makes everything **red**." in repo.description
    assert "instance_prompt" not in repo.description  # the YAML header is not shown as text
    files = {f.name: f for f in repo.files}
    data = fake_hub.repos["alice/red-style-lora"].files["red-style.safetensors"].data
    assert files["red-style.safetensors"].size == len(data)
    assert files["red-style.safetensors"].sha256 == hashlib.sha256(data).hexdigest()
    assert files["README.md"].sha256 is None  # not an LFS file
    assert repo.sha == fake_hub.repos["alice/red-style-lora"].sha
    # Trigger words from the safetensors metadata when the card has none.
    assert hub.details("carol/sd1-ink-lora").trigger_words == []


def test_download_progress_then_cache_hit(hub, fake_hub, hf_cache):
    expected = fake_hub.repos["bob/sdxl-pixel-lora"].files[BIG]
    events: list[tuple[int, int | None]] = []
    path = hub.download("bob/sdxl-pixel-lora", BIG, on_progress=lambda done, total: events.append((done, total)))
    assert path.read_bytes() == expected.data
    assert path.is_relative_to(hf_cache / "models--bob--sdxl-pixel-lora" / "snapshots")
    assert (hf_cache / "models--bob--sdxl-pixel-lora" / "refs" / "main").read_text() == fake_hub.repos[
        "bob/sdxl-pixel-lora"
    ].sha
    assert path.resolve().name == expected.sha256  # the standard cache layout: blobs/<sha256>
    assert events[0][0] == 0 and events[-1] == (len(expected.data), len(expected.data))
    assert all(total == len(expected.data) for _, total in events)
    assert [d for d, _ in events] == sorted(d for d, _ in events)
    assert inspect_adapter(path).family is Family.SDXL
    # The token never goes to the CDN host.
    assert all(not r["auth"] for r in fake_hub.gets_of(BIG))

    gets = len(fake_hub.gets_of(BIG))
    events.clear()
    again = hub.download("bob/sdxl-pixel-lora", BIG, on_progress=lambda d, t: events.append((d, t)))
    assert again == path and len(fake_hub.gets_of(BIG)) == gets
    assert events == [(len(expected.data), len(expected.data))]


def test_cancel_then_resume_continues_where_it_stopped(hub, fake_hub, hf_cache):
    expected = fake_hub.repos["bob/sdxl-pixel-lora"].files[BIG]
    fake_hub.slow = 0.003
    cancel = threading.Event()

    def stop_after_some(done, total):
        if done > 0:
            cancel.set()

    with pytest.raises(HubError) as info:
        hub.download("bob/sdxl-pixel-lora", BIG, on_progress=stop_after_some, cancel=cancel)
    assert info.value.kind is HubErrorKind.CANCELLED
    partial = hf_cache / "models--bob--sdxl-pixel-lora" / "blobs" / (expected.sha256 + PARTIAL_SUFFIX)
    kept = partial.stat().st_size
    assert 0 < kept < len(expected.data)
    assert hub.cached("bob/sdxl-pixel-lora", BIG) is None  # not in the cache until complete

    fake_hub.slow = 0.0
    events: list[int] = []
    path = hub.download("bob/sdxl-pixel-lora", BIG, on_progress=lambda d, t: events.append(d))
    assert path.read_bytes() == expected.data and not partial.exists()
    assert fake_hub.gets_of(BIG)[-1]["range"] == f"bytes={kept}-"
    assert events[0] == kept  # the bar starts where it stopped, not at 0 %


def test_a_server_that_ignores_range_gets_a_clean_restart(hub, fake_hub, hf_cache):
    expected = fake_hub.repos["bob/sdxl-pixel-lora"].files[BIG]
    partial = hf_cache / "models--bob--sdxl-pixel-lora" / "blobs" / (expected.sha256 + PARTIAL_SUFFIX)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(expected.data[:100_000])
    fake_hub.ignore_range = True
    path = hub.download("bob/sdxl-pixel-lora", BIG)
    assert path.read_bytes() == expected.data  # not the old 100 kB followed by the whole file
    assert fake_hub.gets_of(BIG)[-1]["range"] == "bytes=100000-"


def test_a_second_writer_of_the_same_file_is_told_not_blocked(hub, fake_hub, hf_cache, monkeypatch):
    from huggingface_hub.utils import WeakFileLock

    import app.core.hub.download as hub_download

    monkeypatch.setattr(hub_download, "LOCK_WAIT_S", 0.2)
    sha = fake_hub.repos["bob/sdxl-pixel-lora"].files[BIG].sha256
    lock = hf_cache / ".locks" / "models--bob--sdxl-pixel-lora" / f"{sha}.loraloom.lock"
    lock.parent.mkdir(parents=True)
    with WeakFileLock(lock):  # as another process downloading it would hold it
        with pytest.raises(HubError) as info:
            hub.download("bob/sdxl-pixel-lora", BIG)
    assert info.value.kind is HubErrorKind.INCOMPLETE and "another download" in str(info.value)
    assert hub.download("bob/sdxl-pixel-lora", BIG).is_file()


def test_not_found_repo_file_and_revision(hub, fake_hub):
    with pytest.raises(HubError) as repo:
        hub.details("nobody/nothing")
    assert repo.value.kind is HubErrorKind.NOT_FOUND and "nobody/nothing" in str(repo.value)
    with pytest.raises(HubError) as repo_dl:
        hub.download("nobody/nothing", "x.safetensors")
    assert repo_dl.value.kind is HubErrorKind.NOT_FOUND
    with pytest.raises(HubError) as missing:
        hub.download("alice/red-style-lora", "missing.safetensors")
    assert missing.value.kind is HubErrorKind.FILE_NOT_FOUND and "missing.safetensors" in str(missing.value)
    with pytest.raises(HubError) as rev:
        hub.download("alice/red-style-lora", "red-style.safetensors", revision="no-such-branch")
    assert rev.value.kind is HubErrorKind.NOT_FOUND


def test_gated_repo_needs_a_token(hub, fake_hub, hf_cache):
    assert hub.details("dave/gated-sdxl-lora").gated  # the card is public
    with pytest.raises(HubError) as info:
        hub.download("dave/gated-sdxl-lora", "gated.safetensors")
    assert info.value.kind is HubErrorKind.NEEDS_TOKEN and "token" in str(info.value)
    assert not list(hf_cache.rglob("*.safetensors"))
    with_token = Hub(endpoint=fake_hub.url, token=TOKEN, cache_dir=hf_cache)
    path = with_token.download("dave/gated-sdxl-lora", "gated.safetensors")
    assert path.read_bytes() == fake_hub.repos["dave/gated-sdxl-lora"].files["gated.safetensors"].data
    # The token goes to the Hub (HEAD on resolve), never to the CDN that serves the bytes.
    assert [r["auth"] for r in fake_hub.requests if r["method"] == "HEAD"][-1]
    assert fake_hub.gets_of("gated.safetensors") and not any(g["auth"] for g in fake_hub.gets_of("gated.safetensors"))
    assert all(g["host"].startswith("localhost") for g in fake_hub.gets_of("gated.safetensors"))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_is_offline_and_the_cache_still_answers(hub, fake_hub, hf_cache):
    cached = hub.download("alice/red-style-lora", "red-style.safetensors")
    down = Hub(endpoint=f"http://127.0.0.1:{closed_port()}", token=False, cache_dir=hf_cache, timeout=2.0)
    for call in (
        lambda: down.search(SearchQuery()),
        lambda: down.details("alice/red-style-lora"),
        lambda: down.download("carol/sd1-ink-lora", "ink.safetensors"),
    ):
        with pytest.raises(HubError) as info:
            call()
        assert info.value.kind is HubErrorKind.OFFLINE and "cannot reach" in str(info.value)
    assert down.download("alice/red-style-lora", "red-style.safetensors") == cached


def test_offline_mode_makes_no_request(hub, fake_hub, monkeypatch):
    from huggingface_hub import constants

    cached = hub.download("alice/red-style-lora", "red-style.safetensors")
    fake_hub.reset()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert Hub.offline()
    with pytest.raises(HubError) as info:
        hub.search(SearchQuery())
    assert info.value.kind is HubErrorKind.OFFLINE
    assert hub.download("alice/red-style-lora", "red-style.safetensors") == cached
    assert fake_hub.requests == []


def test_truncated_transfer_resumes_by_itself(hub, fake_hub):
    expected = fake_hub.repos["bob/sdxl-pixel-lora"].files[BIG]
    fake_hub.truncate_once[BIG] = 700_000
    path = hub.download("bob/sdxl-pixel-lora", BIG)
    assert path.read_bytes() == expected.data
    assert [g["range"] for g in fake_hub.gets_of(BIG)] == [None, "bytes=700000-"]


def test_sha256_mismatch_never_enters_the_cache(hub, fake_hub, hf_cache):
    fake_hub.corrupt.add("red-style.safetensors")
    with pytest.raises(HubError) as info:
        hub.download("alice/red-style-lora", "red-style.safetensors")
    assert info.value.kind is HubErrorKind.CORRUPT and "sha256" in str(info.value)
    left = [p for p in hf_cache.rglob("*") if p.is_file() and ".locks" not in p.relative_to(hf_cache).parts]
    assert not left  # no blob, no partial, no link (only lock files)
    assert hub.cached("alice/red-style-lora", "red-style.safetensors") is None


def test_a_changed_file_is_refused_before_download(hub, fake_hub):
    with pytest.raises(HubError) as info:
        hub.download("alice/red-style-lora", "red-style.safetensors", expected_sha256="0" * 64)
    assert info.value.kind is HubErrorKind.CORRUPT and not fake_hub.gets_of("red-style.safetensors")


@pytest.mark.parametrize("name", ["../../escape.safetensors", "dir/../../../up.safetensors", "/abs.safetensors"])
def test_hostile_file_names_never_leave_the_cache(hub, fake_hub, hf_cache, tmp_path, name):
    repo = hub.details("eve/hostile-names")
    listed = {f.name: f for f in repo.files}
    assert not listed[name].safe and not listed[name].is_adapter
    assert [f.name for f in repo.adapter_files] == ["ok.safetensors"]
    with pytest.raises(HubError) as info:
        hub.download("eve/hostile-names", name)
    assert info.value.kind is HubErrorKind.BAD_NAME
    assert not [r for r in fake_hub.requests if r.get("file") == name]
    hub.download("eve/hostile-names", "ok.safetensors")
    storage = hf_cache / "models--eve--hostile-names"
    written = [p for p in tmp_path.rglob("*") if p.is_file() or p.is_symlink()]
    assert written and all(p.is_relative_to(hf_cache) for p in written)
    # Outside the repo's folder, only huggingface_hub's own bookkeeping.
    written = [p for p in written if p.name != "CACHEDIR.TAG" and ".locks" not in p.parts]
    assert all(p.is_relative_to(storage) for p in written)
    assert {p.relative_to(storage).parts[0] for p in written} <= {"blobs", "snapshots", "refs"}
    hostile = {"escape.safetensors", "up.safetensors", "abs.safetensors"}
    assert not [p for p in tmp_path.parent.rglob("*") if p.name in hostile]
    assert not any((parent / n).exists() for parent in (tmp_path.parents[0], tmp_path.parents[1]) for n in hostile)


def test_bad_repo_ids_are_refused_without_a_request(hub, fake_hub):
    for repo_id in ("../etc", "a/b/c", "no-owner"):
        with pytest.raises(HubError) as info:
            hub.download(repo_id, "x.safetensors")
        assert info.value.kind is HubErrorKind.BAD_NAME
    assert fake_hub.requests == []


def test_family_of_base_and_safe_names():
    assert family_of_base(["stabilityai/stable-diffusion-xl-base-1.0"]) is Family.SDXL
    assert family_of_base(["runwayml/stable-diffusion-v1-5"]) is Family.SD1
    assert family_of_base(["stabilityai/stable-diffusion-2-1"]) is Family.SD2
    assert family_of_base(["cagliostrolab/animagine-xl-3.1"]) is Family.SDXL
    assert family_of_base(["someone/pony-diffusion-v6"]) is Family.SDXL
    assert family_of_base(["someone/mystery-model"]) is None
    assert is_safe_name("images/a.png") and is_safe_name("a.safetensors")
    for bad in ("", "../a", "a/../b", "/a", "a\\b", "C:/x", "a//b", "./a"):
        assert not is_safe_name(bad), bad


def test_a_damaged_cached_copy_is_replaced_not_trusted(hub, fake_hub, hf_cache):
    path = hub.download("alice/red-style-lora", "red-style.safetensors")
    blob = path.resolve()
    blob.write_bytes(b"\0" * blob.stat().st_size)  # bit rot, or another tool's half-written file
    again = hub.download("alice/red-style-lora", "red-style.safetensors")
    assert again.read_bytes() == fake_hub.repos["alice/red-style-lora"].files["red-style.safetensors"].data
    assert len(fake_hub.gets_of("red-style.safetensors")) == 2
