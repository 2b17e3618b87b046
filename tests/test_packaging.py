"""The package pyproject.toml describes: ranges that admit the exact pins make installs, one
version, the console script, and a wheel that holds the whole engine and nothing else."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import hmm_engine
from hmm_engine.cli import main

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line and not line.startswith("-r"):
            requirement = Requirement(line)
            (version,) = [spec.version for spec in requirement.specifier if spec.operator == "=="]
            pins[requirement.name.lower().replace("_", "-")] = version
    return pins


def _ranges(requirements: list[str]) -> dict[str, Requirement]:
    parsed = [Requirement(r) for r in requirements]
    return {r.name.lower().replace("_", "-"): r for r in parsed if r.name != "hmm-engine"}


@pytest.mark.parametrize("pins_file, groups", [
    ("requirements.txt", ["dependencies", "app"]),
    ("requirements-dev.txt", ["dev"]),
    ("requirements-bench.txt", ["bench"]),
])
def test_every_pin_is_a_declared_dependency_inside_its_range(pins_file, groups):
    project = PYPROJECT["project"]
    declared = {}
    for group in groups:
        declared.update(_ranges(project[group] if group == "dependencies" else project["optional-dependencies"][group]))
    pins = _pins(pins_file)
    # sounddevice is pinned only because pocketsphinx pulls it in.
    missing = set(pins) - set(declared) - {"sounddevice"}
    assert not missing, f"{pins_file} pins {sorted(missing)} that pyproject.toml does not declare"
    for name, version in pins.items():
        if name in declared:
            assert declared[name].specifier.contains(version, prereleases=True), (
                f"{name}=={version} ({pins_file}) is outside pyproject.toml's {declared[name].specifier}")


def test_one_version_number():
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "hmm_engine.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", hmm_engine.__version__)


def test_console_script_is_the_cli(capsys):
    assert PYPROJECT["project"]["scripts"] == {"hmm-engine": "hmm_engine.cli:main"}
    for argv in (["--help"], ["align", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert capsys.readouterr().out.startswith("usage: hmm-engine")


@pytest.mark.slow
def test_the_wheel_holds_every_engine_module_and_only_those(tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info next to the sources.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "hmm_engine", source / "hmm_engine", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path), str(source)], check=True, capture_output=True, timeout=300,
                   cwd=tmp_path)
    (wheel,) = tmp_path.glob("hmm_engine-*.whl")
    assert wheel.name.startswith(f"hmm_engine-{hmm_engine.__version__}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    engine = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hmm_engine").rglob("*.py")}
    assert engine <= names
    packaged = {n for n in names if n.endswith(".py")}
    assert packaged == engine, f"unexpected files in the wheel: {sorted(packaged - engine)}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "hmm-engine = hmm_engine.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
