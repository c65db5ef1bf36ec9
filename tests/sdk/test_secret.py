"""Secret: the value is reachable only through reveal(); references resolve or fail clearly."""

import logging
import pickle
from pathlib import Path

import pytest
from pydantic import BaseModel

from jobhooks import Secret
from jobhooks.errors import JobhooksError, SecretError

VALUE = "s3cr3t-Hq7vX-do-not-print"


def test_literal_secret_is_masked_everywhere_it_could_be_shown() -> None:
    secret = Secret(VALUE)
    shown = [
        repr(secret),
        str(secret),
        f"{secret}",
        f"{secret!r}",
        f"{secret:>40}",
        "%s" % secret,  # noqa: UP031
        "{}".format(secret),  # noqa: UP032
        repr([secret]),
        repr({"password": secret}),
    ]
    for text in shown:
        assert VALUE not in text
        assert "*" in text
    assert secret.reveal() == VALUE


def test_a_secret_in_a_log_record_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("test").info("connecting with %s / %r", Secret(VALUE), Secret(VALUE))
    assert VALUE not in caplog.text


def test_env_reference_resolves_and_shows_only_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOBHOOKS_TEST_SECRET", VALUE)
    secret = Secret("env:JOBHOOKS_TEST_SECRET")
    assert secret.reveal() == VALUE
    assert secret.reference == "env:JOBHOOKS_TEST_SECRET"
    assert str(secret) == "env:JOBHOOKS_TEST_SECRET"
    assert VALUE not in repr(secret)


def test_unset_env_reference_is_a_clear_secret_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JOBHOOKS_TEST_UNSET", raising=False)
    with pytest.raises(SecretError, match=r"JOBHOOKS_TEST_UNSET is not set"):
        Secret("env:JOBHOOKS_TEST_UNSET")


def test_env_reference_needs_a_name() -> None:
    with pytest.raises(SecretError, match="variable name"):
        Secret("env:")


def test_file_reference_resolves_without_the_trailing_newline(tmp_path: Path) -> None:
    path = tmp_path / "smtp-password"
    path.write_text(VALUE + "\n", encoding="utf-8")
    secret = Secret(f"file:{path}")
    assert secret.reveal() == VALUE
    assert secret.reference == f"file:{path}"
    assert VALUE not in repr(secret)


def test_missing_file_is_a_clear_secret_error(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(SecretError) as caught:
        Secret(f"file:{path}")
    assert str(path) in str(caught.value)
    assert "cannot read" in str(caught.value)


def test_a_directory_is_not_a_secret_file(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="cannot read secret file"):
        Secret(f"file:{tmp_path}")


def test_secret_errors_are_jobhooks_errors_and_value_errors() -> None:
    assert issubclass(SecretError, JobhooksError)
    assert issubclass(SecretError, ValueError)


def test_non_string_is_refused() -> None:
    with pytest.raises(SecretError, match="must be a string"):
        Secret(1234)  # type: ignore[arg-type]


def test_equality_compares_values_without_showing_them() -> None:
    assert Secret(VALUE) == Secret(VALUE)
    assert Secret(VALUE) != Secret("other")
    assert Secret(VALUE) != VALUE
    assert len({Secret(VALUE), Secret(VALUE)}) == 1


def test_pickling_keeps_value_and_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBHOOKS_TEST_SECRET", VALUE)
    restored = pickle.loads(pickle.dumps(Secret("env:JOBHOOKS_TEST_SECRET")))
    assert restored.reveal() == VALUE
    assert restored.reference == "env:JOBHOOKS_TEST_SECRET"


class _Settings(BaseModel):
    password: Secret
    token: Secret | None = None


def test_pydantic_validates_and_dumps_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBHOOKS_TEST_SECRET", "from-the-env-Vb2")
    settings = _Settings.model_validate({"password": VALUE, "token": "env:JOBHOOKS_TEST_SECRET"})
    assert settings.password.reveal() == VALUE
    assert settings.token is not None and settings.token.reveal() == "from-the-env-Vb2"
    for text in (
        repr(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        str(settings.model_dump(mode="json")),
    ):
        assert VALUE not in text
        assert "from-the-env-Vb2" not in text
    assert settings.model_dump()["token"] == "env:JOBHOOKS_TEST_SECRET"


def test_pydantic_reports_an_unset_reference_as_a_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pydantic import ValidationError

    monkeypatch.delenv("JOBHOOKS_TEST_UNSET", raising=False)
    with pytest.raises(ValidationError, match="JOBHOOKS_TEST_UNSET is not set"):
        _Settings.model_validate({"password": "env:JOBHOOKS_TEST_UNSET"})
