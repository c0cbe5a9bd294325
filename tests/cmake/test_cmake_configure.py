"""mpy_module/micropython.cmake configures in a CMake port-like build."""
import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
MICROPY_DIR = pathlib.Path(os.environ.get("MICROPY_DIR", ROOT / "micropython" / "src"))


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake not installed (make deps installs it)")
def test_cmake_module_configures(tmp_path):
    r = subprocess.run(
        ["cmake", "-S", str(ROOT / "tests" / "cmake"), "-B", str(tmp_path),
         f"-DMICROPY_DIR={MICROPY_DIR}",
         f"-DUSER_C_MODULES={ROOT / 'mpy_module' / 'micropython.cmake'}"],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Found User C Module(s): usermod_mqtt" in r.stdout + r.stderr
    assert "modmqtt.c" in r.stdout
    # the custom command that builds the Rust core is part of the build
    assert (tmp_path / "CMakeFiles" / "mqtt_core.dir").is_dir()
