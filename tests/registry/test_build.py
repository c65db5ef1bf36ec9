"""From jobhooks.toml to a registry: types, properties and job types checked, every problem told."""

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from jobhooks import Secret
from jobhooks.errors import ConfigError
from jobhooks.handlers.log import LogHandler
from jobhooks.handlers.repeated_failure_email import RepeatedFailureEmailHandler
from jobhooks.registry import LoadedConfig, load, load_for_serving

WriteConfig = Callable[[str], Path]

INVENTORY = uuid.UUID("7B6BBC1B-D802-4B09-BEC9-F5C221083130")
MANAGEMENT = uuid.UUID("44340A94-9B99-410D-8011-598FB176C3C5")

SEED_PROPERTIES = """
[handlers.properties]
SmtpServer = "smtp.example.com"
SmtpPort = 587
Username = "jobhooks@example.com"
Password = "env:SMTP_PASSWORD"
MailFrom = "jobhooks@example.com"
EmailRecipients = "a,b"
RetryThreshold = 2
"""


def seed(job_types: str = f'["{INVENTORY}", "{MANAGEMENT}"]', **replace: str) -> str:
    """The seed registration, with some lines replaced (``None`` drops a line)."""
    head = f"""
[[handlers]]
name = "SendEmail_RepeatedFailureHandler"
type = "repeated-failure-email"
job_types = {job_types}
"""
    text = head + SEED_PROPERTIES
    for key, value in replace.items():
        old = next(line for line in text.splitlines() if line.startswith(f"{key} = "))
        text = text.replace(old + "\n", f"{key} = {value}\n" if value else "")
    return text


def problems_of(write_config: WriteConfig, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(write_config(text))
    assert caught.value.problems, "a ConfigError lists its problems"
    for problem in caught.value.problems:
        assert problem in str(caught.value)
    return list(caught.value.problems)


def only(problems: list[str], *words: str) -> str:
    found = [problem for problem in problems if all(word in problem for word in words)]
    assert len(found) == 1, (words, problems)
    return found[0]


def line_of(text: str, start: str) -> int:
    """The 1-based line of ``text`` that starts with ``start``."""
    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith(start):
            return number
    raise AssertionError(start)


def test_the_seed_registration_validates(write_config: WriteConfig, smtp_password: str) -> None:
    loaded = load(write_config(seed()))
    assert isinstance(loaded, LoadedConfig)
    (registered,) = loaded.registry.handlers
    assert registered.name == "SendEmail_RepeatedFailureHandler"
    assert registered.type_name == "repeated-failure-email"
    assert registered.job_types == (INVENTORY, MANAGEMENT)
    handler = registered.handler
    assert isinstance(handler, RepeatedFailureEmailHandler)
    assert handler.name == "SendEmail_RepeatedFailureHandler"
    assert handler.smtp_server == "smtp.example.com"
    assert handler.smtp_port == 587
    assert handler.username == "jobhooks@example.com"
    assert isinstance(handler.password, Secret)
    assert handler.password.reveal() == smtp_password
    assert handler.mail_from == "jobhooks@example.com"
    assert handler.email_recipients == ["a", "b"]
    assert handler.retry_threshold == 2


def test_seed_with_web_config_strings_validates(
    write_config: WriteConfig, smtp_password: str
) -> None:
    text = seed(SmtpPort='"587"', RetryThreshold='"3"')
    handler = load(write_config(text)).registry.handlers[0].handler
    assert isinstance(handler, RepeatedFailureEmailHandler)
    assert (handler.smtp_port, handler.retry_threshold) == (587, 3)


def test_unknown_type_suggests_the_installed_one(
    write_config: WriteConfig, smtp_password: str
) -> None:
    text = seed().replace('"repeated-failure-email"', '"repeated-failure-emial"')
    problem = only(problems_of(write_config, text), "type")
    assert "'SendEmail_RepeatedFailureHandler'" in problem
    assert "unknown handler type 'repeated-failure-emial'" in problem
    assert "did you mean 'repeated-failure-email'?" in problem
    assert "log" in problem and "send-email" in problem, "lists what is installed"
    assert f"line {line_of(text, 'type =')}" in problem


def test_missing_required_property(write_config: WriteConfig, smtp_password: str) -> None:
    text = seed(EmailRecipients="")
    problem = only(problems_of(write_config, text), "EmailRecipients")
    assert "'SendEmail_RepeatedFailureHandler'" in problem
    assert "is required" in problem
    assert "list of strings" in problem


def test_wrong_property_type(write_config: WriteConfig, smtp_password: str) -> None:
    text = seed(SmtpPort='"abc"')
    problem = only(problems_of(write_config, text), "SmtpPort")
    assert problem.startswith("handlers[0] 'SendEmail_RepeatedFailureHandler': property SmtpPort")
    assert "expected an integer, got 'abc'" in problem
    assert f"line {line_of(text, 'SmtpPort')}" in problem


def test_malformed_guid_in_job_types(write_config: WriteConfig, smtp_password: str) -> None:
    text = seed(job_types='["7B6BBC1B-D802-4B09-BEC9-F5C22108313"]')
    problem = only(problems_of(write_config, text), "job_types")
    assert "'SendEmail_RepeatedFailureHandler'" in problem
    assert "'7B6BBC1B-D802-4B09-BEC9-F5C22108313' is not a valid GUID" in problem
    assert f"line {line_of(text, 'job_types')}" in problem


def test_empty_job_types(write_config: WriteConfig, smtp_password: str) -> None:
    for empty in ("[]", '""', '" "'):
        problem = only(problems_of(write_config, seed(job_types=empty)), "job_types")
        assert "empty" in problem and "'SendEmail_RepeatedFailureHandler'" in problem


def test_missing_job_types(write_config: WriteConfig, smtp_password: str) -> None:
    text = seed().replace(f'job_types = ["{INVENTORY}", "{MANAGEMENT}"]\n', "")
    problem = only(problems_of(write_config, text), "job_types")
    assert "job_types is required" in problem
    assert "'SendEmail_RepeatedFailureHandler'" in problem


def test_job_types_must_be_text(write_config: WriteConfig) -> None:
    text = '[[handlers]]\nname = "audit"\ntype = "log"\njob_types = [1, 2]\n'
    assert problems_of(write_config, text)


def test_duplicate_handler_names(write_config: WriteConfig, smtp_password: str) -> None:
    problem = only(problems_of(write_config, seed() + seed()), "duplicate")
    assert "handlers[1] 'SendEmail_RepeatedFailureHandler'" in problem


def test_unknown_registration_key(write_config: WriteConfig, smtp_password: str) -> None:
    text = seed().replace("job_types =", "timeot = 5\njob_types =")
    problem = only(problems_of(write_config, text), "timeot")
    assert "did you mean 'timeout'?" in problem
    assert "'SendEmail_RepeatedFailureHandler'" in problem
    assert f"line {line_of(text, 'timeot')}" in problem


def test_unknown_top_level_section(write_config: WriteConfig, smtp_password: str) -> None:
    problem = only(problems_of(write_config, "[smpt]\nhost = 'x'\n" + seed()), "smpt")
    assert "did you mean 'smtp'?" in problem


def test_unset_env_secret(write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    text = seed()
    problem = only(problems_of(write_config, text), "Password")
    assert "'SendEmail_RepeatedFailureHandler'" in problem
    assert "SMTP_PASSWORD is not set" in problem
    assert f"line {line_of(text, 'Password')}" in problem


def test_unreadable_secret_file(write_config: WriteConfig, tmp_path: Path) -> None:
    absent = tmp_path / "absent-password"
    problem = only(problems_of(write_config, seed(Password=f'"file:{absent}"')), "Password")
    assert "cannot read secret file" in problem and str(absent) in problem


def test_every_problem_of_a_file_is_reported_at_once(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    text = (
        "[smpt]\nhost = 'x'\n"
        + seed(job_types='["not-a-guid-0000-1111-2222", ""]', SmtpPort='"abc"', MailFrom="")
        + '\n[[handlers]]\nname = "audit"\ntype = "lgo"\njob_types = "*"\n'
        + '\n[[handlers]]\nname = "audit-2"\ntype = "log"\njob_types = []\n'
        + '\n[[handlers]]\nname = "audit-2"\ntype = "log"\njob_types = "*"\ntimeot = 1\n'
    )
    problems = problems_of(write_config, text)
    only(problems, "smpt")
    only(problems, "'SendEmail_RepeatedFailureHandler'", "not-a-guid")
    only(problems, "'SendEmail_RepeatedFailureHandler'", "SmtpPort")
    only(problems, "'SendEmail_RepeatedFailureHandler'", "SMTP_PASSWORD")
    only(problems, "'audit'", "'lgo'", "did you mean 'log'?")
    only(problems, "handlers[2] 'audit-2'", "empty")
    only(problems, "handlers[3] 'audit-2'", "timeot")
    assert len(problems) >= 7


def test_job_types_inside_properties_web_config_style(
    write_config: WriteConfig, smtp_password: str
) -> None:
    inline = f'[handlers.properties]\nJobTypes = "{INVENTORY}, {MANAGEMENT}"\n'
    text = seed().replace(f'job_types = ["{INVENTORY}", "{MANAGEMENT}"]\n', "")
    text = text.replace("[handlers.properties]\n", inline)
    (registered,) = load(write_config(text)).registry.handlers
    assert registered.job_types == (INVENTORY, MANAGEMENT)
    assert registered.handler.retry_threshold == 2  # type: ignore[attr-defined]


def test_job_types_given_twice(write_config: WriteConfig, smtp_password: str) -> None:
    text = seed().replace(
        "[handlers.properties]\n", f'[handlers.properties]\nJobTypes = "{INVENTORY}"\n'
    )
    only(problems_of(write_config, text), "JobTypes", "twice")


def test_job_types_as_a_comma_separated_string(
    write_config: WriteConfig, smtp_password: str
) -> None:
    (registered,) = load(write_config(seed(job_types=f'"{INVENTORY},{MANAGEMENT}"'))).registry
    assert registered.job_types == (INVENTORY, MANAGEMENT)


JOB_TYPE_NAMES = f"""
[job_types]
"Nightly PEM inventory" = "{INVENTORY}"
"WinCertInventory" = "{MANAGEMENT}"
"""


def test_names_from_the_job_types_table(write_config: WriteConfig, smtp_password: str) -> None:
    text = JOB_TYPE_NAMES + seed(job_types='["Nightly PEM inventory", "wincert-inventory"]')
    (registered,) = load(write_config(text)).registry
    assert registered.job_types == (INVENTORY, MANAGEMENT)
    assert registered.job_type_labels[0] == f"Nightly PEM inventory ({INVENTORY})"


def test_unknown_job_type_name_lists_near_matches(
    write_config: WriteConfig, smtp_password: str
) -> None:
    text = JOB_TYPE_NAMES + seed(job_types='["Nightly PEM inventry"]')
    problem = only(problems_of(write_config, text), "job_types")
    assert "unknown job type name 'Nightly PEM inventry'" in problem
    assert "did you mean 'Nightly PEM inventory'?" in problem


def test_names_from_a_catalog(write_config: WriteConfig, smtp_password: str) -> None:
    path = write_config(seed(job_types='["IISUInventory"]'))
    with pytest.raises(ConfigError):
        load(path)
    catalog = {"IISUInventory": MANAGEMENT}
    assert load(path, catalog=catalog).registry.handlers[0].job_types == (MANAGEMENT,)


def test_star_runs_for_every_job_type(write_config: WriteConfig, smtp_password: str) -> None:
    (registered,) = load(write_config(seed(job_types='"*"'))).registry
    assert registered.runs_for_all
    registry = load(write_config(seed(job_types='["*"]'))).registry
    assert registry.for_job_type(uuid.uuid4()) == registry.handlers


def test_star_with_other_job_types_is_a_problem(
    write_config: WriteConfig, smtp_password: str
) -> None:
    only(problems_of(write_config, seed(job_types=f'["*", "{INVENTORY}"]')), '"*"')


DISABLED = f"""
[[handlers]]
name = "first"
type = "log"
job_types = ["{INVENTORY}"]

[[handlers]]
name = "off"
type = "log"
enabled = false
job_types = "*"

[[handlers]]
name = "last"
type = "log"
job_types = "*"
"""


def test_disabled_handlers_are_not_in_the_registry(write_config: WriteConfig) -> None:
    registry = load(write_config(DISABLED)).registry
    assert [h.name for h in registry] == ["first", "last"]
    assert registry.get("off") is None
    assert [h.name for h in registry.for_job_type(INVENTORY)] == ["first", "last"]
    assert [h.name for h in registry.for_job_type(MANAGEMENT)] == ["last"]


@pytest.mark.parametrize(
    "broken",
    ["job_types = []", 'job_types = "*"\ntype = "lgo"', 'job_types = "*"\ntimeot = 5'],
)
def test_a_disabled_registration_is_inert_like_a_commented_out_one(
    write_config: WriteConfig, broken: str
) -> None:
    text = DISABLED.replace('enabled = false\njob_types = "*"', f"enabled = false\n{broken}")
    text = text.replace('name = "off"\ntype = "log"', 'name = "off"') if "lgo" in broken else text
    registry = load(write_config(text)).registry
    assert [h.name for h in registry] == ["first", "last"]
    assert registry.problems == ()


def test_delivery_policy(write_config: WriteConfig) -> None:
    text = '[[handlers]]\nname = "a"\ntype = "log"\njob_types = "*"\n'
    default = load(write_config(text)).registry.handlers[0].policy
    assert (default.timeout, default.max_attempts, default.backoff) == (30, 5, 10)
    tuned = text + "timeout = 2.5\nmax_attempts = 1\nbackoff = 0\n"
    policy = load(write_config(tuned)).registry.handlers[0].policy
    assert (policy.timeout, policy.max_attempts, policy.backoff) == (2.5, 1, 0)


def test_builtin_log_handler_properties(write_config: WriteConfig) -> None:
    text = '[[handlers]]\nname = "a"\ntype = "log"\njob_types = "*"\n'
    handler = load(write_config(text + '[handlers.properties]\nLevel = "warning"\n'))
    assert isinstance(handler.registry.handlers[0].handler, LogHandler)
    assert handler.registry.handlers[0].handler.level == "warning"  # type: ignore[attr-defined]
    only(problems_of(write_config, text + '[handlers.properties]\nlevel = "loud"\n'), "level")


def test_smtp_section_fills_email_properties(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "from-smtp-section")
    text = f"""
[smtp]
host = "smtp.example.com"
port = 2525
username = "relay"
password = "env:SMTP_PASSWORD"
mail_from = "jobhooks@example.com"

[[handlers]]
name = "mail"
type = "repeated-failure-email"
job_types = ["{INVENTORY}"]
[handlers.properties]
EmailRecipients = "pki@example.com"
SmtpPort = 587
"""
    handler = load(write_config(text)).registry.handlers[0].handler
    assert isinstance(handler, RepeatedFailureEmailHandler)
    assert handler.smtp_server == "smtp.example.com"
    assert handler.smtp_port == 587, "the handler's own property wins"
    assert handler.username == "relay"
    assert handler.password is not None and handler.password.reveal() == "from-smtp-section"


@pytest.mark.parametrize(
    ("server", "login"), [("SMTP.example.com", "relay"), ("relay-b.example.com", None)]
)
def test_the_smtp_section_login_goes_to_its_own_host_only(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, server: str, login: str | None
) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "from-smtp-section")
    text = f"""
[smtp]
host = "smtp.example.com"
username = "relay"
password = "env:SMTP_PASSWORD"
mail_from = "jobhooks@example.com"

[[handlers]]
name = "mail"
type = "repeated-failure-email"
job_types = ["{INVENTORY}"]
[handlers.properties]
SmtpServer = "{server}"
EmailRecipients = "pki@example.com"
"""
    handler = load(write_config(text)).registry.handlers[0].handler
    assert isinstance(handler, RepeatedFailureEmailHandler)
    assert handler.username == login
    assert (handler.password is not None) == (login is not None)
    assert handler.mail_from == "jobhooks@example.com", "the rest still comes from [smtp]"


def test_email_handler_without_any_smtp_server_is_refused(write_config: WriteConfig) -> None:
    text = f"""
[[handlers]]
name = "mail"
type = "repeated-failure-email"
job_types = ["{INVENTORY}"]
[handlers.properties]
EmailRecipients = "pki@example.com"
MailFrom = "jobhooks@example.com"
"""
    only(problems_of(write_config, text), "'mail'", "SmtpServer")


def test_module_class_types(write_config: WriteConfig, handler_types: str, tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    text = f"""
[[handlers]]
name = "recorder"
type = "{handler_types}:Recorder"
job_types = "*"
[handlers.properties]
Path = "{out}"
"""
    handler = load(write_config(text)).registry.handlers[0].handler
    assert type(handler).__name__ == "Recorder"
    assert handler.path == str(out)  # type: ignore[attr-defined]
    assert handler.label == "recorded"  # type: ignore[attr-defined]


def test_a_module_whose_dependency_is_missing_names_the_dependency(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "modules"
    folder.mkdir()
    (folder / "needs_more.py").write_text("import not_installed_zz\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(folder))
    text = '[[handlers]]\nname = "x"\ntype = "needs_more:Thing"\njob_types = "*"\n'
    problem = only(problems_of(write_config, text), "'x'", "type")
    assert "module 'needs_more' (for type 'needs_more:Thing') imports 'not_installed_zz'" in (
        problem
    )
    assert "which is not installed" in problem


@pytest.mark.parametrize(
    ("type_ref", "words"),
    [
        (
            "no_such_module_zz:Thing",
            ("no module named 'no_such_module_zz'", "must be importable", "PYTHONPATH"),
        ),
        ("{mod}:Absent", ("has no attribute 'Absent'",)),
        ("{mod}:Path", ("not a subclass of jobhooks.JobCompleteHandler",)),
    ],
)
def test_bad_module_class_types(
    write_config: WriteConfig, handler_types: str, type_ref: str, words: tuple[str, ...]
) -> None:
    text = f"""
[[handlers]]
name = "x"
type = "{type_ref.format(mod=handler_types)}"
job_types = "*"
"""
    only(problems_of(write_config, text), "'x'", "type", *words)


def test_setup_can_reject_a_registration(write_config: WriteConfig, handler_types: str) -> None:
    text = f"""
[[handlers]]
name = "picky"
type = "{handler_types}:Picky"
job_types = "*"
[handlers.properties]
Level = 9
"""
    problem = only(problems_of(write_config, text), "'picky'")
    assert "property Level: at most 3" in problem


@pytest.mark.parametrize(
    ("handler_type", "problem"),
    [
        ("SetupExits", "'broken': SystemExit: no settings file"),
        (
            "SetupRaisesUnprintable",
            "'broken': _Unprintable: (its message could not be read: AttributeError in __str__)",
        ),
        (
            # Called and never awaited: its checks never ran, and validate said "valid".
            "AsyncSetup",
            "'broken': TypeError: setup() is async: jobhooks calls it without awaiting it, "
            "so it would never run; make it a plain def (run_handler may be async)",
        ),
    ],
)
def test_a_setup_that_exits_raises_the_unprintable_or_is_async_is_refused_alone(
    write_config: WriteConfig, handler_types: str, handler_type: str, problem: str
) -> None:
    """sys.exit() in setup() (a ported script) ended the node's start, or a reload's
    process; an exception whose message cannot be read broke the whole load; an async
    setup() never ran. Each is its registration's problem alone."""
    found = the_problem_of_broken_beside_fine(
        write_config, handler_types, f"support.misbehaving:{handler_type}"
    )
    assert problem in found, found


@pytest.mark.parametrize(
    ("handler_type", "problem"),
    [
        (
            "UnreadableProperty",
            "cannot be used: the annotations of UnreadableProperty cannot be read "
            "(NameError: name 'Endpiont' is not defined)",
        ),
        (
            "UnusableProperty",
            "cannot be used: property connection: its type <class 'socket.socket'> is not "
            "one a property can have",
        ),
    ],
)
def test_a_type_whose_property_annotation_cannot_be_used_quarantines_only_its_registration(
    write_config: WriteConfig, handler_types: str, handler_type: str, problem: str
) -> None:
    """An annotation that names nothing, or a type no property can have, broke the whole
    load with a raw NameError or pydantic error: no node started, no reload applied."""
    found = the_problem_of_broken_beside_fine(
        write_config, handler_types, f"support.misbehaving:{handler_type}"
    )
    assert f"'broken': type: 'support.misbehaving:{handler_type}' {problem}" in found, found


def test_a_module_that_exits_as_it_is_imported_quarantines_only_its_registration(
    write_config: WriteConfig,
    handler_types: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A script turned into a handler module that calls sys.exit() at import (no settings
    file) ended 'jobhooks serve' at start, and a reload that met it ended the node."""
    (tmp_path / "exits_on_import.py").write_text(
        "import sys\n\nsys.exit('no settings file')\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    found = the_problem_of_broken_beside_fine(
        write_config, handler_types, "exits_on_import:Handler"
    )
    assert "importing 'exits_on_import' failed: SystemExit: no settings file" in found, found


def test_a_list_default_a_setup_adds_to_is_each_registrations_own(
    write_config: WriteConfig,
) -> None:
    """The class's default list was every instance's: each registration of the type, and
    each reload, appended to the same list (two registrations and one reload: the
    auditor three times in each)."""
    text = """
[[handlers]]
name = "first"
type = "support.handlers:AddsAnAuditor"
job_types = "*"
[[handlers]]
name = "second"
type = "support.handlers:AddsAnAuditor"
job_types = "*"
"""
    path = write_config(text)
    load(path)  # as validate or an earlier load did
    handlers = [registered.handler for registered in load(path).registry.handlers]

    assert [handler.recipients for handler in handlers] == [  # type: ignore[attr-defined]
        ["audit@example.com"],
        ["audit@example.com"],
    ]


def test_typed_properties_from_web_config_strings(
    write_config: WriteConfig, handler_types: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TYPED_API_KEY", "typed-key-value")
    text = f"""
[[handlers]]
name = "typed"
type = "{handler_types}:Typed"
job_types = "*"
[handlers.properties]
SmtpPort = "2525"
EmailRecipients = "a@x.example,b@y.example"
UseTls = "true"
ratio = "0.25"
ApiKey = "env:TYPED_API_KEY"
"""
    handler = load(write_config(text)).registry.handlers[0].handler
    assert handler.smtp_port == 2525  # type: ignore[attr-defined]
    assert handler.email_recipients == ["a@x.example", "b@y.example"]  # type: ignore[attr-defined]
    assert handler.use_tls is True  # type: ignore[attr-defined]
    assert handler.ratio == 0.25  # type: ignore[attr-defined]
    assert handler.api_key.reveal() == "typed-key-value"  # type: ignore[attr-defined]
    assert handler.note == "default note"  # type: ignore[attr-defined]


def test_a_valid_handler_survives_beside_an_invalid_one(
    write_config: WriteConfig, smtp_password: str
) -> None:
    from jobhooks.config import read_config
    from jobhooks.registry import build_registry

    audit = '\n[[handlers]]\nname = "audit"\ntype = "log"\njob_types = "*"\n'
    text = seed(SmtpPort='"abc"') + audit
    config, problems = read_config(write_config(text))
    registry, handler_problems = build_registry(config)
    assert problems == []
    assert [h.name for h in registry] == ["audit"]
    assert len(handler_problems) == 1


QUARANTINE = f"""
[[handlers]]
name = "audit"
type = "log"
job_types = "*"

[[handlers]]
name = "needs-secret"
type = "webhook"
job_types = ["{INVENTORY}"]
when = ["failure-streak", "recovered"]
streak = 2
max_attempts = 2
[handlers.properties]
url = "env:JOBHOOKS_TEST_UNSET_HOOK"

[[handlers]]
name = "typo"
type = "log"
job_types = ["{MANAGEMENT}"]
timeot = 5

[[handlers]]
name = "no-job-types"
type = "lgo"
job_types = []
"""


def test_registrations_with_problems_are_quarantined_beside_the_valid_ones(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOBHOOKS_TEST_UNSET_HOOK", raising=False)
    path = write_config(QUARANTINE)
    with pytest.raises(ConfigError):
        load(path)
    registry = load_for_serving(path).registry
    assert [h.name for h in registry] == ["audit"]
    secret, typo, nothing = registry.quarantined
    assert (secret.name, secret.holds, secret.job_types) == ("needs-secret", True, (INVENTORY,))
    assert secret.when.triggers == ("failure-streak", "recovered") and secret.when.streak == 2
    assert secret.policy.max_attempts == 2
    assert "JOBHOOKS_TEST_UNSET_HOOK is not set" in secret.problems[0]
    # A table that did not validate: its name, job types and rules are read all the same.
    assert (typo.name, typo.holds, typo.job_types) == ("typo", True, (MANAGEMENT,))
    assert "timeot" in typo.problems[0]
    assert (nothing.name, nothing.holds) == ("no-job-types", False)
    assert len(nothing.problems) == 2, "job types and type, both"
    assert registry.held_for(INVENTORY) == (secret,)
    assert registry.held_for(MANAGEMENT) == (typo,)
    assert registry.held_for(uuid.uuid4()) == ()


def test_strict_serving_refuses_every_problem_and_a_bad_file_is_refused_anyway(
    write_config: WriteConfig,
) -> None:
    path = write_config(QUARANTINE)
    with pytest.raises(ConfigError) as strict:
        load_for_serving(path, strict=True)
    assert len(strict.value.problems) == 4
    with pytest.raises(ConfigError) as unusable:
        load_for_serving(write_config('[server]\nlisten = "nowhere"\n' + QUARANTINE))
    assert len(unusable.value.problems) == 1
    assert "[server] listen" in unusable.value.problems[0]


def test_a_reload_keeps_the_last_good_version_of_a_registration_with_problems(
    write_config: WriteConfig,
) -> None:
    good = '[[handlers]]\nname = "audit"\ntype = "log"\njob_types = "*"\n'
    previous = load_for_serving(write_config(good)).registry
    broken = good.replace('type = "log"', 'type = "lgo"') + good.replace("audit", "fresh").replace(
        'type = "log"', 'type = "lgo"'
    )
    registry = load_for_serving(write_config(broken), previous=previous).registry
    assert list(registry) == list(previous), "the very same running registration"
    kept, fresh = registry.problems
    assert (kept.name, kept.kept) == ("audit", True)
    assert (fresh.name, fresh.kept, fresh.holds) == ("fresh", False, True)
    assert registry.quarantined == (fresh,)
    assert registry.held_for(INVENTORY) == (fresh,)


def test_a_duplicate_name_is_quarantined_without_holding_runs(
    write_config: WriteConfig,
) -> None:
    good = '[[handlers]]\nname = "audit"\ntype = "log"\njob_types = "*"\n'
    registry = load_for_serving(write_config(good + good)).registry
    assert [h.name for h in registry] == ["audit"]
    (duplicate,) = registry.quarantined
    assert duplicate.holds is False and "duplicate handler name" in duplicate.problems[0]


def test_an_isolated_handler_that_cannot_reach_its_child_process_is_refused(
    write_config: WriteConfig,
) -> None:
    text = """
[[handlers]]
name = "locked"
type = "support.handlers:KeepsALock"
job_types = "*"
isolation = "process"
"""
    problem = only(problems_of(write_config, text), "'locked'", "isolation")
    assert "cannot be sent (TypeError: cannot pickle '_thread.lock' object)" in problem
    assert 'use isolation = "none"' in problem
    assert "line 6" in problem
    inline = text.replace('isolation = "process"', 'isolation = "none"')
    assert load(write_config(inline)).registry.handlers[0].name == "locked"


def test_the_installed_types_are_read_once_per_load_not_once_per_registration(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the environment's entry points takes tens of milliseconds; done for each
    registration, a file of a few hundred made every reload (run on the server's event
    loop) stall check-ins for seconds."""
    from jobhooks.registry import discovery

    scans: list[str] = []
    real = discovery.entry_points

    def counted(**kwargs: str):  # type: ignore[no-untyped-def]
        scans.append(kwargs.get("group", ""))
        return real(**kwargs)

    monkeypatch.setattr(discovery, "entry_points", counted)
    text = "".join(
        f'[[handlers]]\nname = "log-{n}"\ntype = "log"\njob_types = "*"\n' for n in range(50)
    )
    loaded = load_for_serving(write_config(text))
    assert len(loaded.registry) == 50
    assert len(scans) == 1


def the_problem_of_broken_beside_fine(
    write_config: WriteConfig, handler_types: str, broken_type: str
) -> str:
    """Load a registration "broken" of ``broken_type`` beside a good one, "fine": only
    "broken" is refused (with one problem, returned), and "fine" is served."""
    text = f"""
[[handlers]]
name = "broken"
type = "{broken_type}"
job_types = "*"
[[handlers]]
name = "fine"
type = "{handler_types}:ReturnsFalse"
job_types = "*"
"""
    loaded = load_for_serving(write_config(text))

    assert [registered.name for registered in loaded.registry.handlers] == ["fine"]
    [quarantined] = loaded.registry.problems
    assert quarantined.name == "broken"
    [found] = quarantined.problems
    return found
