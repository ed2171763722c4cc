"""The wheels carried to the GPU machine (``make gpu-wheels``: constraints/gpu-wheels.txt) for its Python 3.12 on
x86-64: they download from the package index, every requirement of every wheel is met by the set itself or by
the GPU image (constraints/gpu-image.txt), pydantic's closure resolves from the set alone, and the set installs
offline into a clean directory. No Python 3.12 is needed here: pip installs for 3.12 into a ``--target``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

FOR_312 = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp"]
FOR_312 += [
    arg for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64") for arg in ("--platform", p)
]
# The device's interpreter as markers see it (python3 there: CPython 3.12.3 on Linux x86-64)
MARKERS = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}


def _pins(path: Path) -> dict[str, str | None]:
    """name -> pinned version (None: any) of a requirements file's lines."""
    out = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            spec = next(iter(req.specifier), None)
            out[canonicalize_name(req.name)] = spec.version if spec else None
    return out


def _metadata(wheel: Path) -> tuple[str, str, list[Requirement]]:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(z.read(name).decode())
    reqs = [Requirement(r) for r in meta.get_all("Requires-Dist") or []]
    return canonicalize_name(meta["Name"]), meta["Version"], reqs


def test_the_gpu_wheel_set_resolves_for_python_3_12_and_installs_offline(tmp_path):
    wheels = tmp_path / "whl"
    r = subprocess.run(
        [str(ROOT / "scripts" / "gpu_wheels.sh"), str(wheels)],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    pins, image = _pins(ROOT / "constraints" / "gpu-wheels.txt"), _pins(ROOT / "constraints" / "gpu-image.txt")
    found = {name: (version, reqs) for name, version, reqs in map(_metadata, wheels.glob("*.whl"))}
    assert len(list(wheels.glob("*.whl"))) == len(pins)  # one version of each: two stop the whole install
    assert {name: version for name, (version, _) in found.items()} == pins
    unmet = []
    for name, (_, reqs) in found.items():
        for req in reqs:
            if req.marker is not None and not req.marker.evaluate(MARKERS):
                continue  # an extra, or another platform's
            dep = canonicalize_name(req.name)
            have = found[dep][0] if dep in found else image.get(dep, "missing")
            if have == "missing" or (have is not None and not req.specifier.contains(have, prereleases=True)):
                unmet.append(f"{name} needs {req} (the set or the image has: {have})")
    assert not unmet, unmet

    clean = {**os.environ, "PIP_CONFIG_FILE": os.devnull}  # no index, no find-links, no constraints from config
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-compile", *FOR_312]
    r = subprocess.run(  # pydantic and everything it needs, from the set alone
        [
            *pip,
            "--dry-run",
            "--find-links",
            str(wheels),
            "--target",
            str(tmp_path / "x"),
            f"pydantic=={pins['pydantic']}",
        ],
        env=clean,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    site = tmp_path / "site"
    r = subprocess.run(  # as the device installs them (scripts/gpu_check.sh), for 3.12
        [*pip, "--no-deps", "--target", str(site), *map(str, sorted(wheels.glob("*.whl")))],
        env=clean,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    installed = {canonicalize_name(p.name.split("-")[0]) for p in site.glob("*.dist-info")}
    assert installed == set(pins)
    assert list(site.glob("pydantic_core/_pydantic_core.cpython-312-x86_64-linux-gnu.so"))  # built for 3.12
