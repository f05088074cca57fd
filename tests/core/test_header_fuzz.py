"""Property-based fuzzing of the two parsers that read what others wrote (issue 10, deliver).

Whatever a ``.safetensors`` header or a protocol line holds, only the documented error
types escape: :class:`SafetensorsError` from ``read_header``, :class:`AdapterError` from
``inspect_adapter``, :class:`ProtocolError` from ``parse_command`` / ``parse_event``.
Derandomized and bounded (a few seconds each) so CI is stable.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.adapters import AdapterError, inspect_adapter
from app.core.safetensors_header import DTYPE_BITS, SafetensorsError, read_header
from app.worker import protocol as P

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Any JSON value, with the awkward ones over-represented: bools where ints belong, huge and
# negative ints, non-finite floats, nesting.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(list(DTYPE_BITS) + ["F33", ""]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
small_ints = st.integers(min_value=-2, max_value=4096) | st.booleans()
tensor_names = st.sampled_from(
    [
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight",
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight",
        "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha",
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.hada_w1_b",
        "unet.x.lora_A.weight",
        "w",
    ]
)
meta_values = st.one_of(
    st.text(max_size=16),
    st.sampled_from(["None", "inf", "-1", "0", "nan", "²", "1e400", "4", "2.5"]),
    values.map(lambda v: json.dumps(v, allow_nan=True)),
)
meta_keys = st.sampled_from(
    ["ss_network_dim", "ss_network_alpha", "ss_tag_frequency", "ss_base_model_version", "modelspec.thumbnail", "x"]
)


@st.composite
def headers(draw) -> tuple[dict, int]:
    """A valid header (so the reader gets past the cheap checks), then a few fields replaced by anything."""
    header: dict = {}
    offset = 0
    for name in draw(st.lists(tensor_names, min_size=1, max_size=4, unique=True)):
        dtype = draw(st.sampled_from(["F32", "F16", "BF16", "F64", "I32"]))
        shape = draw(st.lists(st.integers(min_value=0, max_value=6), max_size=3))
        size = DTYPE_BITS[dtype] // 8
        for d in shape:
            size *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.dictionaries(meta_keys, meta_values, max_size=4))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        name = draw(st.sampled_from(sorted(header)))
        if not isinstance(header[name], dict):
            header[name] = draw(values)
        elif name == "__metadata__":
            key = draw(meta_keys)
            header[name][key] = draw(meta_values | values)
        elif draw(st.booleans()):
            header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets", "extra"]))] = draw(values)
        else:
            header[name] = draw(values)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        header["__metadata__"] = draw(values)
    return header, offset + draw(st.integers(min_value=-4, max_value=4))


_FOLDER = tempfile.TemporaryDirectory(prefix="loraloom-fuzz-")  # one file, rewritten for each example


def _file(header_bytes: bytes, data_len: int, declared: int | None = None) -> Path:
    n = len(header_bytes) if declared is None else declared
    path = Path(_FOLDER.name) / "f.safetensors"
    path.write_bytes(struct.pack("<Q", n % 2**64) + header_bytes + b"\x01" * data_len)
    return path


def _only_documented_errors(path: Path) -> None:
    try:
        read_header(path)
    except SafetensorsError:
        pass
    try:
        inspect_adapter(path)
    except AdapterError:
        pass


@FUZZ
@given(headers())
def test_header_reader_raises_only_its_documented_error_on_structured_headers(header_and_size):
    header, data_len = header_and_size
    _only_documented_errors(_file(json.dumps(header, allow_nan=True).encode(), max(0, data_len)))


@FUZZ
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=64), st.none() | st.integers(0, 2**64 - 1))
def test_header_reader_raises_only_its_documented_error_on_any_bytes(raw, data_len, declared):
    _only_documented_errors(_file(raw, data_len, declared))


@FUZZ
@given(st.integers(min_value=1, max_value=20000), st.sampled_from(["[", '{"a":', '{"__metadata__":']))
def test_header_reader_survives_deep_nesting(depth, opener):
    _only_documented_errors(_file((opener * depth).encode(), 0))


commands = st.one_of(
    st.fixed_dictionaries(
        {"cmd": st.sampled_from([c.value for c in P.CommandName]) | values},
        optional={
            "job": st.fixed_dictionaries({"id": values, "kind": st.sampled_from([k.value for k in P.JobKind]) | values})
            | values,
            "id": values,
            "action": values,
        },
    ),
    values,
)


def _decoders(line: str | bytes) -> None:
    for parse in (P.parse_command, P.parse_event):
        try:
            parse(line)
        except P.ProtocolError:
            pass


@FUZZ
@given(commands)
def test_protocol_decoder_raises_only_protocol_error_on_json(obj):
    _decoders(json.dumps(obj, allow_nan=True))


@FUZZ
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_protocol_decoder_raises_only_protocol_error_on_any_line(line):
    _decoders(line)


@FUZZ
@given(
    st.integers(min_value=1, max_value=50000),
    st.sampled_from(["[", '{"cmd":', '{"a":{"b":']),
    st.integers(min_value=4000, max_value=6000),
)
def test_protocol_decoder_survives_deep_nesting_and_huge_integers(depth, opener, digits):
    _decoders(opener * depth)
    _decoders('{"cmd": "ping", "n": ' + "9" * digits + "}")
