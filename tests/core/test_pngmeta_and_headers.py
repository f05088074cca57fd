import json
import struct

import pytest

from app.core.pngmeta import format_parameters, parse_parameters
from app.core.safetensors_header import SafetensorsError, read_header


def test_a1111_parameters_round_trip():
    meta = {
        "prompt": "a red cat, masterpiece",
        "negative": "blurry",
        "steps": 20,
        "scheduler": "Euler a",
        "guidance": 7.0,
        "seed": 42,
        "width": 512,
        "height": 768,
        "model": "tiny-sd1",
    }
    text = format_parameters(meta)
    assert text.splitlines()[1] == "Negative prompt: blurry"
    assert "Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x768, Model: tiny-sd1" in text
    back = parse_parameters(text)
    for key in ("prompt", "negative", "steps", "scheduler", "seed", "width", "height", "model"):
        assert back[key] == meta[key]
    assert back["guidance"] == 7.0


def test_reads_an_a1111_string():
    text = (
        "masterpiece, 1girl\nNegative prompt: lowres\nSteps: 28, Sampler: DPM++ 2M Karras, CFG scale: 5.5, "
        "Seed: 123, Size: 832x1216, Model hash: abc, Model: ponyXL"
    )
    back = parse_parameters(text)
    assert back["scheduler"] == "DPM++ 2M Karras" and back["guidance"] == 5.5 and back["height"] == 1216


def _write(path, header: dict, data: bytes = b"", metadata=None):
    if metadata is not None:
        header = {"__metadata__": metadata, **header}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def test_header_reads_tensors_and_metadata(tmp_path):
    p = tmp_path / "a.safetensors"
    _write(p, {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8, {"ss_network_dim": "4"})
    h = read_header(p)
    assert list(h.tensors) == ["w"] and h.metadata == {"ss_network_dim": "4"}


@pytest.mark.parametrize(
    "content, needle",
    [
        (b"", "too short"),
        (struct.pack("<Q", 2**40), "absurd"),
        (struct.pack("<Q", 500) + b"{}", "truncated or not a safetensors"),
        (struct.pack("<Q", 4) + b"nope", "not JSON"),
    ],
)
def test_header_refuses_malformed_files(tmp_path, content, needle):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(content)
    with pytest.raises(SafetensorsError, match=needle) as info:
        read_header(p)
    assert str(p) in str(info.value)


def test_header_notices_missing_tensor_data(tmp_path):
    p = tmp_path / "cut.safetensors"
    _write(p, {"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}, b"\0" * 10)
    with pytest.raises(SafetensorsError, match="truncated"):
        read_header(p)
