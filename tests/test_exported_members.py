"""The public SDK is what DESIGN.md names plus what the README adds to it, and each
name is what it says."""

import enum
import importlib.metadata
import importlib.resources
from pathlib import Path

import jobhooks

DESIGN_NAMES = {
    "JobCompleteContext",
    "JobCompleteHandler",
    "JobResult",
    "OperationType",
    "Secret",
    "__version__",
}
ADDED_NAMES = {"PermanentFailure"}
"""Beyond the design, each documented in the README's SDK section."""


def test_all_is_exactly_the_designed_surface_and_what_the_readme_adds() -> None:
    assert set(jobhooks.__all__) == DESIGN_NAMES | ADDED_NAMES
    assert len(jobhooks.__all__) == len(DESIGN_NAMES | ADDED_NAMES), "no name is listed twice"


def test_each_added_name_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    sdk = readme.split("## The handler SDK", 1)[1].split("\n## ", 1)[0]
    for name in ADDED_NAMES:
        assert f"`{name}`" in sdk, name


def test_all_is_sorted() -> None:
    assert jobhooks.__all__ == sorted(jobhooks.__all__)


def test_every_exported_name_exists_and_is_owned_by_jobhooks() -> None:
    for name in jobhooks.__all__:
        member = getattr(jobhooks, name)
        if name != "__version__":
            assert member.__module__.startswith("jobhooks."), name


def test_exported_kinds() -> None:
    assert isinstance(jobhooks.JobCompleteHandler, type)
    assert issubclass(jobhooks.JobResult, enum.IntEnum)
    assert issubclass(jobhooks.OperationType, enum.IntEnum)
    assert issubclass(jobhooks.PermanentFailure, Exception)
    assert jobhooks.JobCompleteContext.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_version_matches_the_installed_distribution() -> None:
    assert jobhooks.__version__ == importlib.metadata.version("jobhooks")


def test_package_is_typed() -> None:
    assert importlib.resources.files("jobhooks").joinpath("py.typed").is_file()
