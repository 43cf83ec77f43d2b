"""tune_cpu_allocator: applies on Linux glibc, leaves a user's own malloc configuration alone."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError, AttributeError):
        return False


SCRIPT = "import captum_fv as fv; print(fv.tune_cpu_allocator(), fv.tune_cpu_allocator())"


def _run(extra_env: dict) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, check=True
    ).stdout.split()


@pytest.mark.skipif(not _glibc(), reason="mallopt is glibc's")
def test_applies_once_per_process_on_glibc():
    assert _run({}) == ["True", "True"]


def test_a_users_malloc_settings_are_left_alone():
    assert _run({"MALLOC_ARENA_MAX": "2"}) == ["False", "False"]
