"""environment.yml, pyproject.toml and constraints.txt describe one environment."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(spec: str) -> str:
    return normalise(re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0])


def constraints() -> dict:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[normalise(name)] = version
    return pins


def conda_pip_pins() -> dict:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        match = re.fullmatch(r"\s+- ([A-Za-z0-9_.\-]+)==(\S+)", line)
        if match:
            pins[normalise(match[1])] = match[2]
    return pins


def test_environment_yml_lists_every_pyproject_dependency_with_the_constraints_pin():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {requirement_name(s) for s in project["dependencies"] + project["optional-dependencies"]["test"]}
    conda = conda_pip_pins()
    pins = constraints()
    assert set(conda) == wanted, f"only in pyproject: {wanted - set(conda)}; only in environment.yml: {set(conda) - wanted}"
    wrong = {name: (conda[name], pins.get(name)) for name in conda if pins.get(name) != conda[name]}
    assert not wrong, f"environment.yml pins differ from constraints.txt (yml, constraints): {wrong}"
    assert "- -e ." in (ROOT / "environment.yml").read_text(), "environment.yml must install the course itself"


def test_torch_and_torchvision_are_a_matching_pair_from_the_registry():
    pins = constraints()
    assert "+" not in pins["torch"], "torch must come from the registry, not a local +cpu wheel"
    import torch
    import torchvision

    assert torch.__version__.split("+")[0] == pins["torch"]
    assert torchvision.__version__.split("+")[0] == pins["torchvision"]
    assert torchvision.ops.nms(torch.tensor([[0.0, 0, 1, 1]]), torch.tensor([1.0]), 0.5).tolist() == [0]
