import os
import warnings

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
warnings.filterwarnings("ignore", category=UserWarning, module="timm")


@pytest.fixture
def suite_file(tmp_path):
    """Write a suite YAML text to a file and return its path."""

    def write(text: str, name: str = "suite.yaml"):
        path = tmp_path / name
        path.write_text(text)
        return path

    return write
