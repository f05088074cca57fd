"""The 2026 captioners: WD v3 taggers (EVA02-large and the rest), Florence-2 PromptGen task
prompts and a vision-language model (JoyCaption's LLaVA architecture), each on a tiny
offline stand-in through the real loading, batching and writing code."""

from __future__ import annotations

import pytest
from PIL import Image

from app.core.configs import ConfigError
from app.core.dataset.caption_config import (
    FLORENCE_TASKS,
    KNOWN_MODELS,
    CaptionBackend,
    CaptionRequest,
    fill_prompt,
)
from app.engine.captioning import CaptionerError, detect_backend, load_captioner, run_captioning
from app.engine.captioning.tiny import write_tiny_wd_tagger


def _request(folder, model, **kw) -> CaptionRequest:
    return CaptionRequest.from_dict({"folder": str(folder), "model": str(model), "device": "cpu", **kw})


def _flat(path, color, size=(300, 300)):
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture(scope="module")
def tiny_llava(tmp_path_factory):
    from app.engine.captioning.tiny_vlm import write_tiny_llava

    return write_tiny_llava(tmp_path_factory.mktemp("vlm") / "tiny-joycaption")


# ---------------------------------------------------------------- WD v3 taggers


def test_every_known_model_id_picks_its_backend():
    for backend, ids in KNOWN_MODELS.items():
        for repo_id in ids:
            assert detect_backend(repo_id) is backend, repo_id


def test_eva02_v3_layout_is_detected_from_its_files_and_tags_at_448(tmp_path):
    """v3 taggers: a dynamic batch of N×448×448×3 BGR 0-255 images; detected from model.onnx + csv."""
    folder = write_tiny_wd_tagger(tmp_path / "wd-eva02-large-tagger-v3", size=448)
    assert detect_backend(str(folder)) is CaptionBackend.WD14
    tagger = load_captioner(_request(tmp_path, folder))
    assert tagger.size == 448 and tagger.max_batch is None
    images = [Image.new("RGB", (600, 300), (240, 10, 10)), Image.new("RGB", (200, 500), (10, 10, 240))]
    request = _request(tmp_path, folder)
    batched = tagger.caption_batch(images, request)
    assert batched == [tagger.caption_batch([im], request)[0] for im in images]
    tags = [t.split(", ") for t in batched]  # white padding to a square: the colour is not the top tag
    assert "red" in tags[0] and "blue" not in tags[0] and "blue" in tags[1] and "red" not in tags[1]


def test_v2_layout_with_keras_input_name_and_a_batch_of_one(tmp_path):
    folder = write_tiny_wd_tagger(tmp_path / "v2", size=448, fixed_batch=1, input_name="input_1:0")
    tagger = load_captioner(_request(tmp_path, folder))
    assert tagger.max_batch == 1
    out = tagger.caption_batch([Image.new("RGB", (64, 64), (10, 240, 10))] * 2, _request(tmp_path, folder))
    assert out[0] == out[1] and "green" in out[0].split(", ") and "red" not in out[0].split(", ")


# ---------------------------------------------------------------- Florence-2 PromptGen


def test_promptgen_task_prompts_caption_and_write(tiny_florence, tmp_path):
    for task in ("<GENERATE_TAGS>", "<MORE_DETAILED_CAPTION>", "<MIXED_CAPTION>", "<ANALYZE>"):
        assert task in FLORENCE_TASKS
    _flat(tmp_path / "a.png", (250, 0, 0))
    _flat(tmp_path / "b.png", (0, 0, 250))
    captioner = load_captioner(_request(tmp_path, tiny_florence))
    images = [Image.new("RGB", (80, 60), (200, 0, 0))]
    for task in FLORENCE_TASKS:
        texts = captioner.caption_batch(images, _request(tmp_path, tiny_florence, florence_task=task, max_new_tokens=6))
        assert texts[0] and "<" not in texts[0], task
    request = _request(tmp_path, tiny_florence, florence_task="<GENERATE_TAGS>", max_new_tokens=6, prefix="sks")
    summary = run_captioning(captioner, request)
    assert summary.written == 2
    assert (tmp_path / "a.txt").read_text().startswith("sks, ")


# ---------------------------------------------------------------- vision-language model


def test_prompt_template_fills_tags_and_trigger_and_names_a_wrong_field(tmp_path):
    assert fill_prompt("Caption this {trigger} photo; tags: {tags}.", "red, cat", "sks") == (
        "Caption this sks photo; tags: red, cat."
    )
    with pytest.raises(ConfigError, match=r"vlm_prompt: .*uses \{name\}; only \{tags\} and \{trigger\}"):
        _request(tmp_path, "", vlm_prompt="Describe {name}")
    with pytest.raises(ConfigError, match="vlm_prompt: .*not a valid template"):
        _request(tmp_path, "", vlm_prompt="Describe {tags")
    with pytest.raises(ConfigError, match="vlm_prompt is empty"):
        _request(tmp_path, "", vlm_prompt="  ")


def test_llava_folder_is_detected_and_captions_batched_like_one_at_a_time(tiny_llava, tmp_path):
    from app.engine.captioning.vlm import VlmCaptioner

    assert detect_backend(str(tiny_llava)) is CaptionBackend.VLM
    request = _request(tmp_path, tiny_llava, max_new_tokens=6, vlm_prompt="Tags: {tags}. Trigger {trigger}.")
    captioner = load_captioner(request)
    assert isinstance(captioner, VlmCaptioner)
    prompts = captioner._prompts(2, request, ["red, cat", "a much longer caption, blue"])
    assert "Tags: red, cat. Trigger ." in prompts[0] and "<image>" in prompts[0]
    images = [Image.new("RGB", (80, 60), (200, 0, 0)), Image.new("RGB", (50, 70), (0, 0, 200))]
    existing = ["red, cat", "a much longer caption, blue"]  # prompts of different lengths: left padding
    batched = captioner.caption_batch(images, request, existing)
    assert all(batched) and all("<" not in t for t in batched)
    assert batched == [captioner.caption_batch([im], request, [e])[0] for im, e in zip(images, existing)]


def test_discouraged_words_are_never_written(tiny_llava, tmp_path):
    request = _request(tmp_path, tiny_llava, max_new_tokens=12)
    captioner = load_captioner(request)
    image = [Image.new("RGB", (64, 64), (200, 0, 0))]
    free = captioner.caption_batch(image, request)[0]
    words = [w for w in free.replace(",", " ").split() if len(w) > 1]  # whole words, as the user types them
    assert words, f"the stand-in wrote no word to ban: {free!r}"
    banned = words[0]
    request = _request(tmp_path, tiny_llava, max_new_tokens=12, discouraged_words=f"{banned}, dog")
    after = captioner.caption_batch(image, request)[0]
    assert banned not in after.replace(",", " ").split(), (free, after)
    assert after != free


def test_vlm_run_skips_a_hostile_image_with_one_sentence(tiny_llava, tmp_path):
    _flat(tmp_path / "good.png", (0, 200, 0))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    request = _request(tmp_path, tiny_llava, max_new_tokens=6, prefix="sks", min_side=0)
    summary = run_captioning(load_captioner(request), request)
    assert summary.written == 1 and (tmp_path / "good.txt").read_text().startswith("sks, ")
    assert [s.path.name for s in summary.skipped] == ["bad.png"]
    reason = summary.skipped[0].reason
    assert reason.startswith("skipped: ") and "bad.png" in reason and "\n" not in reason
    assert not (tmp_path / "bad.txt").exists()


def test_vlm_missing_folder_and_offline_hub_are_one_sentence(tmp_path):
    with pytest.raises(CaptionerError, match="no such model folder"):
        load_captioner(_request(tmp_path, tmp_path / "joycaption", backend="vlm"))
    with pytest.raises(CaptionerError) as info:
        load_captioner(_request(tmp_path, "nobody-here/llava-that-does-not-exist", backend="vlm"))
    assert "nobody-here/llava-that-does-not-exist" in str(info.value) and "\n" not in str(info.value)
    assert info.value.kind.value == "model_not_found"


def test_four_bit_on_a_cpu_is_one_sentence(tiny_llava, tmp_path):
    with pytest.raises(CaptionerError, match="^4-bit loading needs a CUDA GPU; turn 4-bit off"):
        load_captioner(_request(tmp_path, tiny_llava, load_in_4bit=True))


def test_four_bit_on_a_gpu_captions(tiny_llava, tmp_path):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("4-bit loading needs a CUDA GPU")
    pytest.importorskip("bitsandbytes", reason="4-bit loading needs the bitsandbytes package")
    request = _request(tmp_path, tiny_llava, load_in_4bit=True, device="cuda", max_new_tokens=6)
    captioner = load_captioner(request)
    assert captioner.caption_batch([Image.new("RGB", (64, 64), (200, 0, 0))], request)[0]
