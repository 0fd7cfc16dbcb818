import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=UserWarning, module="timm")


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Generated datasets and decoded-image caches go to a per-session folder, not ~/.cache/bench."""
    os.environ["BENCH_CACHE_DIR"] = str(tmp_path_factory.mktemp("bench-cache"))
    yield


@pytest.fixture
def suite_file(tmp_path):
    """Write a suite YAML text to a file and return its path."""

    def write(text: str, name: str = "suite.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
