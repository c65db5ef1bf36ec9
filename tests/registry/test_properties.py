"""Handler properties: declared on the class, coerced from TOML values or web.config strings."""

from typing import Any, ClassVar, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobhooks import JobCompleteContext, JobCompleteHandler, Secret
from jobhooks.registry.properties import coerce_properties, property_specs

SECRET = "prop-secret-Wd5-value"


class Mailer(JobCompleteHandler):
    smtp_server: str
    smtp_port: int = 25
    email_recipients: list[str]
    starttls: bool = False
    timeout: float = 30.0
    password: Secret | None = None
    level: Literal["info", "error"] = "info"
    registry_note: ClassVar[str] = "not a property"
    _private: int = 0

    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


class ExtendedMailer(Mailer):
    retry_threshold: int = 2
    smtp_port: int = 587


REQUIRED = {"SmtpServer": "smtp.example.com", "EmailRecipients": "a@example.com"}


def coerce(**given: Any) -> tuple[dict[str, Any], dict[str, str]]:
    values, problems = coerce_properties(Mailer, {**REQUIRED, **given})
    return values, dict(problems)


def test_specs_are_the_annotated_attributes_in_order() -> None:
    specs = property_specs(Mailer)
    assert [spec.name for spec in specs] == [
        "smtp_server",
        "smtp_port",
        "email_recipients",
        "starttls",
        "timeout",
        "password",
        "level",
    ]
    by_name = {spec.name: spec for spec in specs}
    assert by_name["smtp_server"].required
    assert not by_name["smtp_port"].required
    assert by_name["smtp_port"].pascal_name == "SmtpPort"
    assert by_name["password"].secret
    assert not by_name["smtp_server"].secret
    assert by_name["smtp_port"].type_text == "an integer"
    assert "comma-separated" in by_name["email_recipients"].type_text


def test_subclass_inherits_and_overrides_properties() -> None:
    specs = {spec.name: spec for spec in property_specs(ExtendedMailer)}
    assert specs["smtp_port"].default == 587
    assert "retry_threshold" in specs
    assert "smtp_server" in specs


def test_the_base_class_declares_no_property() -> None:
    assert property_specs(JobCompleteHandler) == ()


def test_web_config_strings_are_coerced() -> None:
    values, problems = coerce(
        SmtpPort="587",
        EmailRecipients="a@x.example, b@y.example;c@z.example",
        Starttls="true",
        Timeout="2.5",
    )
    assert problems == {}
    assert values["smtp_port"] == 587
    assert values["email_recipients"] == ["a@x.example", "b@y.example", "c@z.example"]
    assert values["starttls"] is True
    assert values["timeout"] == 2.5


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False)],
)
def test_booleans_from_strings(text: str, expected: bool) -> None:
    values, problems = coerce(Starttls=text)
    assert problems == {}
    assert values["starttls"] is expected


def test_toml_native_values() -> None:
    values, problems = coerce(SmtpPort=587, EmailRecipients=["a@x", "b@y"], Starttls=True)
    assert problems == {}
    assert values == {
        "smtp_server": "smtp.example.com",
        "smtp_port": 587,
        "email_recipients": ["a@x", "b@y"],
        "starttls": True,
    }


def test_snake_case_and_pascal_case_keys() -> None:
    snake, snake_problems = coerce_properties(
        Mailer, {"smtp_server": "s", "email_recipients": "a@x", "smtp_port": 2525}
    )
    pascal, pascal_problems = coerce_properties(
        Mailer, {"SmtpServer": "s", "EmailRecipients": "a@x", "SmtpPort": 2525}
    )
    assert snake_problems == pascal_problems == []
    assert snake == pascal


def test_defaults_are_not_filled_in_but_stay_on_the_class() -> None:
    values, problems = coerce()
    assert problems == {}
    assert set(values) == {"smtp_server", "email_recipients"}
    assert Mailer.smtp_port == 25


def test_a_property_given_twice_is_a_problem() -> None:
    _values, problems = coerce(smtp_port=1, SmtpPort=2)
    assert "given twice" in problems["SmtpPort"]


def test_wrong_type_names_property_and_expected_type() -> None:
    _values, problems = coerce(SmtpPort="abc", Starttls="maybe", Level="loud")
    assert problems["SmtpPort"] == "expected an integer, got 'abc'"
    assert "true or false" in problems["Starttls"]
    assert "'maybe'" in problems["Starttls"]
    assert "'info'" in problems["Level"] and "'error'" in problems["Level"]


def test_a_huge_wrong_value_is_shown_cut_short() -> None:
    """A megabyte pasted into the wrong property was shown whole in its problem: logged,
    printed by validate and served by /readyz on every request."""
    _values, problems = coerce(SmtpPort="9" * 99 + "x" * 1_000_000)
    assert problems["SmtpPort"] == (
        f"expected an integer, got '{'9' * 99}... (1,000,101 characters)"
    )


def test_missing_required_properties() -> None:
    _values, problems = coerce_properties(Mailer, {})
    assert set(problems) == {
        ("SmtpServer", "is required (a string)"),
        (
            "EmailRecipients",
            "is required (a list of strings (or a comma-separated string))",
        ),
    }


def test_unknown_property_suggests_and_lists_what_the_type_takes() -> None:
    _values, problems = coerce(SmtpPrt=25, Bogus=1)
    assert "did you mean 'SmtpPort'?" in problems["SmtpPrt"]
    assert "SmtpServer" in problems["Bogus"] and "EmailRecipients" in problems["Bogus"]


def test_class_vars_and_private_attributes_are_not_properties() -> None:
    _values, problems = coerce(RegistryNote="x", _private=1)
    assert "unknown property" in problems["RegistryNote"]
    assert "unknown property" in problems["_private"]


def test_secret_properties_resolve_and_never_show_their_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    values, problems = coerce(Password=SECRET)
    assert problems == {}
    assert isinstance(values["password"], Secret)
    assert values["password"].reveal() == SECRET
    monkeypatch.setenv("MAILER_PASSWORD", SECRET)
    values, problems = coerce(Password="env:MAILER_PASSWORD")
    assert problems == {}
    assert values["password"].reveal() == SECRET
    assert values["password"].reference == "env:MAILER_PASSWORD"


def test_unresolvable_secret_property_is_a_problem_without_the_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("MAILER_UNSET", raising=False)
    _values, problems = coerce(Password="env:MAILER_UNSET")
    assert "MAILER_UNSET is not set" in problems["Password"]
    _values, problems = coerce(Password=[SECRET])
    assert SECRET not in problems["Password"]


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=-(2**63), max_value=2**63))
def test_any_integer_written_as_text_coerces_back(number: int) -> None:
    values, problems = coerce(SmtpPort=str(number))
    assert problems == {}
    assert values["smtp_port"] == number


_local = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._+-", min_size=1, max_size=12)
_domain = st.from_regex(r"[a-z0-9]{1,10}(\.[a-z]{2,6}){1,2}", fullmatch=True)
_emails = st.builds(lambda local, domain: f"{local}@{domain}", _local, _domain)


@settings(max_examples=100, deadline=None)
@given(st.lists(_emails, min_size=1, max_size=6), st.sampled_from([",", ", ", " , ", ";"]))
def test_any_list_of_emails_joined_by_commas_splits_back(emails: list[str], separator: str) -> None:
    values, problems = coerce(EmailRecipients=separator.join(emails))
    assert problems == {}
    assert values["email_recipients"] == emails


@settings(max_examples=50, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_any_float_written_as_text_coerces_back(number: float) -> None:
    values, problems = coerce(Timeout=repr(number))
    assert problems == {}
    assert values["timeout"] == number


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=1).filter(lambda s: not s.startswith(("env:", "file:"))))
def test_any_literal_secret_is_kept_and_masked(value: str) -> None:
    values, problems = coerce(Password=value)
    assert problems == {}
    secret = values["password"]
    assert secret.reveal() == value
    assert repr(secret) == "Secret('**********')"
    assert str(secret) == "**********"
