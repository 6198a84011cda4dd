"""Shared fixtures. Real third-party data lives outside the repository, in ../shared/data."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    # The reference data is never committed; CI clones the project next to ../shared.
    if not SHARED_DATA.is_dir():
        pytest.fail(f"reference data not found at {SHARED_DATA}; clone the project next to shared/")
    return SHARED_DATA


@pytest.fixture(scope="session")
def facegood_dir(shared_data) -> Path:
    return shared_data / "facegood_audio2face"
