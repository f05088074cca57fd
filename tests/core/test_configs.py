import pytest

from app.core.configs import ConfigError, GenerateRequest, Scheduler, parse_size


def test_defaults_are_valid_once_a_base_is_given():
    req = GenerateRequest(base="m")
    req.validate()
    assert req.scheduler is Scheduler.EULER


def test_unknown_key_is_named():
    with pytest.raises(ConfigError, match="unknown key 'promt'"):
        GenerateRequest.from_dict({"base": "m", "promt": "typo"})


@pytest.mark.parametrize(
    "field, value, needle",
    [
        ("steps", 0, "steps = 0"),
        ("steps", "ten", "steps must be a whole number"),
        ("width", 100, "width = 100 must be a multiple of 8"),
        ("guidance", "high", "guidance must be a number"),
        ("scheduler", "Heun", "scheduler = 'Heun' is not one of"),
        ("seed", -5, "seed = -5"),
        ("base", "  ", "base is empty"),
    ],
)
def test_bad_values_name_the_field(field, value, needle):
    data = {"base": "m", field: value}
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        GenerateRequest.from_dict(data, where="job")


def test_toml_round_trip_keeps_every_field(tmp_path):
    req = GenerateRequest(
        base="/models/x",
        prompt="a 'quoted' \"cat\"",
        negative="blur",
        seed=42,
        steps=9,
        guidance=3.5,
        width=640,
        height=384,
        scheduler=Scheduler.DPMPP_2M_KARRAS,
    )
    path = tmp_path / "gen.toml"
    req.save_toml(path)
    assert GenerateRequest.load_toml(path) == req
    assert [p.name for p in tmp_path.iterdir()] == ["gen.toml"]  # no temp file left behind


def test_broken_toml_names_the_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("base = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        GenerateRequest.load_toml(path)


def test_parse_size():
    assert parse_size("512x768") == (512, 768)
    with pytest.raises(ConfigError, match="WIDTHxHEIGHT"):
        parse_size("big")
