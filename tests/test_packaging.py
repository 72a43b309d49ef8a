"""Packaging (README, "Install"): what the wheel ships, the desktop files, the icon set, the wheel installed
into a fresh virtual environment, and on demand the built bundle.

Everything here runs in `make test` except the bundle's smoke test: building the bundle takes minutes, so that
one runs only with INSPECTOR_SLOW_TESTS=1 after `make dist` (or as `make bundle-smoke`).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from inspector.resources import resource_path

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
NAME = "memorization-inspector"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
PROMPT = "astronaut eileen collins"

on_demand = pytest.mark.skipif(os.environ.get("INSPECTOR_SLOW_TESTS") != "1",
                               reason="takes minutes; run with INSPECTOR_SLOW_TESTS=1")


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def shipped_package_data() -> dict[str, list[str]]:
    """What setuptools' build_py would put in the wheel as package data, per package, without building it."""
    code = (
        "import json\n"
        "from setuptools.dist import Distribution\n"
        "from setuptools.config.pyprojecttoml import apply_configuration\n"
        "dist = apply_configuration(Distribution(), 'pyproject.toml')\n"
        "cmd = dist.get_command_obj('build_py'); cmd.ensure_finalized()\n"
        "print(json.dumps({pkg: files for pkg, _src, _build, files in cmd.data_files}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the wheel's contents -----------------------------------------------------------------------------------


def test_every_package_of_inspector_is_listed_for_the_wheel():
    setuptools = pyproject()["tool"]["setuptools"]
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "inspector").rglob("__init__.py") if "__pycache__" not in p.parts
    }
    listed = set(setuptools["packages"])
    assert on_disk - listed == set(), "add these to [tool.setuptools] packages in pyproject.toml"
    assert listed - on_disk == {"inspector._resources"}
    assert setuptools["package-dir"] == {"inspector._resources": "resources"}


def test_the_wheel_ships_resources_as_the_package_data_folder_inspector_resources():
    shipped = set(shipped_package_data()["inspector._resources"])
    expected = {f"icons/{NAME}.svg", "demo/model/model_index.json", "demo/prompts.json",
                *(f"icons/hicolor/{n}x{n}/apps/{NAME}.png" for n in ICON_SIZES)}
    assert expected <= shipped, sorted(expected - shipped)
    resources = ROOT / "resources"
    on_disk = {p.relative_to(resources).as_posix() for p in resources.rglob("*") if p.is_file()}
    assert on_disk <= shipped, sorted(on_disk - shipped)[:10]  # every training image too


def test_the_wheel_ships_the_report_templates():
    shipped = set(shipped_package_data()["inspector.report"])
    on_disk = {p.relative_to(ROOT / "inspector" / "report").as_posix()
               for p in (ROOT / "inspector" / "report" / "templates").iterdir() if p.is_file()}
    assert {"templates/report.html.j2", "templates/report.css"} <= on_disk <= shipped, sorted(on_disk - shipped)


def test_resource_path_finds_the_icon_and_the_demo_in_a_checkout():
    assert resource_path("icons", f"{NAME}.svg").is_file()
    assert resource_path("demo", "model", "model_index.json").is_file()


def test_python_m_inspector_still_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "inspector", "--version"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("inspector ")


# --- the Makefile ---------------------------------------------------------------------------------------------


def make_target_environment(tmp_path: Path, target: str, env: dict[str, str]) -> str:
    """Runs `make TARGET` with a stand-in venv whose `inspector` and `python` print the QT_QPA_PLATFORM they got."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    for program in ("inspector", "python"):
        stand_in = venv / "bin" / program
        stand_in.write_text('#!/bin/sh\necho "QT_QPA_PLATFORM=${QT_QPA_PLATFORM-unset}"\n')
        stand_in.chmod(0o755)
    # newer than pyproject.toml, so make takes the venv as installed and runs the target's own recipe
    (venv / ".installed-stamp").touch()
    done = subprocess.run(["make", "--no-print-directory", "-s", target, f"VENV={venv}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_run_opens_the_window_on_the_users_display_not_offscreen(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    assert make_target_environment(tmp_path, "run", env) == "QT_QPA_PLATFORM=unset"
    # a user who chose a platform keeps it
    assert make_target_environment(tmp_path, "run", dict(env, QT_QPA_PLATFORM="xcb")) == "QT_QPA_PLATFORM=xcb"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["pytest", "bundle-smoke"])
def test_make_runs_the_tests_and_the_bundle_smoke_test_offscreen(tmp_path, target):
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    assert make_target_environment(tmp_path, target, env) == "QT_QPA_PLATFORM=offscreen"


# --- the icon set -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ICON_SIZES)
def test_each_icon_size_is_a_transparent_png_with_a_picture(size):
    path = ROOT / "resources" / "icons" / "hicolor" / f"{size}x{size}" / "apps" / f"{NAME}.png"
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (size, size) and image.mode == "RGBA"
        alpha = image.getchannel("A")
        assert alpha.getextrema() == (0, 255)  # transparent corners, opaque drawing
        assert len(image.convert("RGB").getcolors(maxcolors=size * size)) >= 8


def test_the_icon_source_is_an_svg_qt_can_draw():
    root = ET.parse(ROOT / "resources" / "icons" / f"{NAME}.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    # Qt's renderer (SVG Tiny 1.2) ignores clipping and filters: the icon must not rely on them
    assert not [el.tag for el in root.iter() if el.tag.split("}")[-1] in ("clipPath", "mask", "filter")]


# --- desktop integration ------------------------------------------------------------------------------------


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(PACKAGING / f"{NAME}.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_the_desktop_entry_starts_the_app_with_its_icon_in_graphics_and_science():
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Exec"].split()[0] == NAME
    assert entry["Icon"] == NAME
    assert {"Graphics", "Science"} <= set(filter(None, entry["Categories"].split(";")))


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed")
def test_the_desktop_entry_passes_desktop_file_validate():
    done = subprocess.run(["desktop-file-validate", str(PACKAGING / f"{NAME}.desktop")],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "error:" not in done.stdout, done.stdout


def test_the_appstream_metainfo_names_the_desktop_entry_and_the_program():
    root = ET.parse(PACKAGING / f"{NAME}.metainfo.xml").getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert root.findtext("id") == NAME
    assert root.findtext("launchable") == f"{NAME}.desktop"
    assert NAME in [b.text for b in root.iter("binary")]
    assert root.findtext("project_license") == pyproject()["project"]["license"]["text"]
    assert root.find("releases/release").get("version") == pyproject()["project"]["version"]


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream not installed")
def test_the_appstream_metainfo_passes_appstreamcli_validate():
    # the id is not reverse-DNS (see the comment in the file): that one warning is demoted
    args = ["appstreamcli", "validate", "--no-net", "--override=cid-desktopapp-is-not-rdns=info",
            str(PACKAGING / f"{NAME}.metainfo.xml")]
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_install_desktop_puts_the_entry_icons_and_a_launcher_in_the_users_folders(tmp_path):
    program = tmp_path / "app" / NAME
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    env = dict(os.environ, HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "share"))
    done = subprocess.run(["sh", str(PACKAGING / "install_desktop.sh"), str(program)], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    share = tmp_path / "share"
    assert (share / "applications" / f"{NAME}.desktop").is_file()
    assert (share / "metainfo" / f"{NAME}.metainfo.xml").is_file()
    assert (share / "icons" / "hicolor" / "scalable" / "apps" / f"{NAME}.svg").is_file()
    hicolor = share / "icons" / "hicolor"
    assert all((hicolor / f"{n}x{n}" / "apps" / f"{NAME}.png").is_file() for n in ICON_SIZES)
    assert (tmp_path / "home" / ".local" / "bin" / NAME).resolve() == program.resolve()


def test_install_desktop_refuses_a_program_that_does_not_exist(tmp_path):
    env = dict(os.environ, HOME=str(tmp_path), XDG_DATA_HOME=str(tmp_path / "share"))
    done = subprocess.run(["sh", str(PACKAGING / "install_desktop.sh"), str(tmp_path / "nothing")], env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2 and "not an executable" in done.stderr
    assert not (tmp_path / "share").exists()


def test_the_pyinstaller_spec_bundles_the_entry_point_and_the_resources():
    text = (PACKAGING / f"{NAME}.spec").read_text(encoding="utf-8")
    compile(text, "memorization-inspector.spec", "exec")
    assert '"inspector" / "__main__.py"' in text
    assert '"inspector/_resources"' in text and 'collect_submodules("inspector")' in text


# --- end to end: the wheel in a fresh environment; on demand, the bundle ------------------------------------


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_its_inspector_takes_a_screenshot(tmp_path):
    dist, venv = tmp_path / "dist", tmp_path / "venv"
    pip = ["-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([sys.executable, *pip, "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT)],
                   check=True)
    (wheel,) = dist.glob("*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    try:
        # the CPU torch pinned with the wheel, as the Makefile does, so nothing pulls a CUDA build
        subprocess.run([python, *pip, "install", "torch==2.13.0", str(wheel)], check=True)
        code = "from inspector.resources import resource_path; print(resource_path('demo'))"
        where = subprocess.run([python, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                               check=True).stdout.strip()
        assert "site-packages" in where and Path(where, "model", "model_index.json").is_file()

        shot = tmp_path / "shot.png"
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", INSPECTOR_DATA_DIR=str(tmp_path / "data"),
                   INSPECTOR_CACHE_DIR=str(tmp_path / "cache"))
        args = [str(venv / "bin" / "inspector"), "--screenshot", str(shot), "--prompt", PROMPT, "--n", "2"]
        done = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stderr
        with Image.open(shot) as image:
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 24)) >= 64
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # about 1.5 GB, mostly torch


@pytest.mark.slow
@on_demand
@pytest.mark.skipif(not (ROOT / "dist" / NAME / NAME).exists(), reason="no bundle: run `make dist` first")
def test_the_built_bundle_passes_its_smoke_test():
    done = subprocess.run([sys.executable, str(PACKAGING / "smoke_test.py")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
