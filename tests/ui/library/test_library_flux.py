"""The Library tab with Flux.1 adapters: the Flux badge in the table's colour, the Hub's
Flux.1 and Flux.1 [schnell] filters, a local Flux file's card."""

from __future__ import annotations

import pytest
from flux_hub import flux_repos

from app.core.families import Family, spec
from app.ui.library.cards import MISMATCH_COLOR, CardDelegate
from tests.ui.library.test_library_tab import cards, make_tab  # noqa: F401 - the fixture


@pytest.fixture
def flux_hub(fake_hub, monkeypatch):
    for repo in flux_repos():
        monkeypatch.setitem(fake_hub.repos, repo.repo_id, repo)
    return fake_hub


def test_hub_flux_filters_and_badge(qtbot, make_tab, flux_hub, tmp_path):  # noqa: F811
    folder = tmp_path / "loras"
    folder.mkdir()
    (folder / "dog.safetensors").write_bytes(flux_hub.repos["gina/flux-dog-lora"].files["dog.safetensors"].data)
    tab = make_tab(flux_hub.url, folder)
    local = tab.local_grid.cards.items
    assert [c.family for c in local] == ["flux1"] and local[0].badge() == "Flux.1"
    # The badges a card paints: the family in the table's colour; on an SD model, the mismatch mark.
    badges = CardDelegate._badges(local[0], "sd1")
    assert badges[0] == ("Flux.1", spec(Family.FLUX1).color) and badges[-1] == ("≠ base", MISMATCH_COLOR)

    tab.hub_button.click()
    labels = [tab.family_box.itemText(i) for i in range(tab.family_box.count())]
    flux = labels.index("Flux.1")
    assert labels[flux : flux + 2] == ["Flux.1", "Flux.1 [schnell]"]  # the newer families follow
    tab.family_box.setCurrentIndex(labels.index("Flux.1"))
    qtbot.waitUntil(lambda: cards(tab.hub_grid) == ["hub:gina/flux-dog-lora"], timeout=10_000)
    assert tab.hub_grid.cards.items[0].badge() == "Flux.1"
    tab.family_box.setCurrentIndex(labels.index("Flux.1 [schnell]"))
    qtbot.waitUntil(lambda: cards(tab.hub_grid) == ["hub:hank/schnell-flat-lora"], timeout=10_000)
    assert tab.family_filter() is Family.FLUX1
