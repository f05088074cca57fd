"""Flux.1 adapters on the Hub: the family filter asks for FLUX.1-dev's adapters, the [schnell]
choice for FLUX.1-schnell's, and unfiltered searches show them with the others."""

from __future__ import annotations

import pytest
from flux_hub import DEV, SCHNELL, flux_repos

from app.core.families import Family, spec
from app.core.hub.models import SearchQuery


@pytest.fixture
def flux_hub(fake_hub, monkeypatch):
    for repo in flux_repos():
        monkeypatch.setitem(fake_hub.repos, repo.repo_id, repo)
    return fake_hub


def test_flux_adapters_are_found_by_family_and_by_schnell(hub, flux_hub):
    sent = lambda: [r["query"] for r in flux_hub.requests if r["path"] == "/api/models"][-1]  # noqa: E731
    dev = hub.search(SearchQuery(family=Family.FLUX1))
    assert [r.repo_id for r in dev.repos] == ["gina/flux-dog-lora"]
    assert sent()["filter"] == ["lora", f"base_model:adapter:{DEV}"]
    schnell = hub.search(SearchQuery(family=Family.FLUX1, base_id=spec(Family.FLUX1).distilled.hub_base))
    assert [r.repo_id for r in schnell.repos] == ["hank/schnell-flat-lora"]
    assert sent()["filter"] == ["lora", f"base_model:adapter:{SCHNELL}"]

    everything = {r.repo_id: r for r in hub.search(SearchQuery()).repos}
    assert {"gina/flux-dog-lora", "hank/schnell-flat-lora", "alice/red-style-lora"} <= set(everything)
    dog = everything["gina/flux-dog-lora"]
    assert dog.family is Family.FLUX1 and dog.trigger_words == ["ohwx dog"]
    assert everything["hank/schnell-flat-lora"].family is Family.FLUX1


def test_a_gated_repo_says_whether_the_token_or_the_licence_is_missing(fake_hub, hf_cache):
    """FLUX.1-dev is gated: no token (401) and a token whose account has not accepted (403)."""
    from fake_hub import NOT_ACCEPTED_TOKEN

    from app.core.hub.client import Hub
    from app.core.hub.errors import HubError, HubErrorKind

    for token, sentence in (
        (
            False,
            "this repo is gated; accept its licence on its page on the Hub and save a Hub token in the Library settings",
        ),
        (
            NOT_ACCEPTED_TOKEN,
            "your Hub token may not download this gated repo yet; "
            "accept its licence on its page on the Hub with that account, then try again",
        ),
    ):
        hub = Hub(endpoint=fake_hub.url, token=token, cache_dir=hf_cache, timeout=5.0)
        with pytest.raises(HubError) as info:
            hub.download("dave/gated-sdxl-lora", "gated.safetensors")
        assert info.value.kind is HubErrorKind.NEEDS_TOKEN
        assert str(info.value).endswith(sentence), str(info.value)
