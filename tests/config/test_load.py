"""Reading jobhooks.toml: the structure is checked, every problem is listed with its line."""

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from jobhooks.config import read_config
from jobhooks.config.schema import HandlerRegistration, JobhooksConfig
from jobhooks.errors import ConfigError

WriteConfig = Callable[[str], Path]

LOG_HANDLER = """
[[handlers]]
name = "audit"
type = "log"
job_types = "*"
"""


def problems_in(write_config: WriteConfig, text: str) -> list[str]:
    _config, problems = read_config(write_config(text))
    return problems


def only(problems: list[str], *words: str) -> str:
    """The one problem that contains every word."""
    found = [problem for problem in problems if all(word in problem for word in words)]
    assert len(found) == 1, (words, problems)
    return found[0]


def test_seed_registration_reads_without_problems(
    write_config: WriteConfig, seed_toml: str, smtp_password: str
) -> None:
    config, problems = read_config(write_config(seed_toml))
    assert problems == []
    (registration,) = config.handlers
    assert registration.name == "SendEmail_RepeatedFailureHandler"
    assert registration.type == "repeated-failure-email"
    assert registration.properties["SmtpPort"] == 587
    assert registration.properties["EmailRecipients"] == "pki-team@example.com,oncall@example.com"


def test_defaults_of_every_section(write_config: WriteConfig) -> None:
    config, problems = read_config(write_config(LOG_HANDLER))
    assert problems == []
    assert config.server.listen == "127.0.0.1:8080"
    assert config.server.database == "sqlite:///jobhooks-data/jobhooks.db"
    assert config.poll.enabled is False
    (registration,) = config.handlers
    assert (registration.timeout, registration.max_attempts, registration.backoff) == (30, 5, 10)
    assert registration.enabled is True


def test_the_designed_server_and_platform_sections(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KEYFACTOR_PASSWORD", "kf-pw-Lm4")
    config, problems = read_config(
        write_config(
            """
            [server]
            listen = "127.0.0.1:8080"
            database = "sqlite:///jobhooks-data/jobhooks.db"

            [platform]
            url = "https://keyfactor.example.com/KeyfactorAPI/"
            username = "DOMAIN\\\\svc-jobhooks"
            password = "env:KEYFACTOR_PASSWORD"

            [poll]
            enabled = true
            interval = 30
            start = "now"
            page_size = 500

            [smtp]
            host = "smtp.example.com"
            port = 587
            starttls = true
            """
        )
    )
    assert problems == []
    assert config.platform.url == "https://keyfactor.example.com/KeyfactorAPI"
    assert config.platform.username == "DOMAIN\\svc-jobhooks"
    assert config.platform.password is not None
    assert config.platform.password.reveal() == "kf-pw-Lm4"
    assert config.poll.enabled and config.poll.page_size == 500
    assert config.smtp.port == 587 and config.smtp.starttls


def test_job_types_table_gives_names_to_ids(write_config: WriteConfig) -> None:
    config, problems = read_config(
        write_config(
            """
            [job_types]
            "Nightly PEM inventory" = "5C0E9A43-8D1F-4B6E-A2C7-3F9B1D4E6A80"
            """
        )
    )
    assert problems == []
    nightly = uuid.UUID("5C0E9A43-8D1F-4B6E-A2C7-3F9B1D4E6A80")
    assert config.job_types == {"Nightly PEM inventory": nightly}


def test_unknown_key_in_a_handler_suggests_the_right_one(write_config: WriteConfig) -> None:
    problems = problems_in(
        write_config,
        """
        [[handlers]]
        name = "audit"
        type = "log"
        job_types = "*"
        timeot = 5
        """,
    )
    problem = only(problems, "timeot")
    assert "'audit'" in problem
    assert "did you mean 'timeout'?" in problem
    assert "line 6" in problem


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[sever]\nlisten = '127.0.0.1:1'\n", ("sever", "did you mean 'server'?", "line 1")),
        ("[smpt]\nhost = 'x'\n", ("smpt", "did you mean 'smtp'?", "line 1")),
        ("[frobnicate]\nx = 1\n", ("frobnicate", "unknown key", "line 1")),
        ("colour = 'blue'\n", ("colour", "unknown key", "line 1")),
        ("[[handler]]\nname = 'x'\n", ("handler", "did you mean 'handlers'?", "line 1")),
        ("[server]\nlisten = '127.0.0.1:1'\nlistn = 'x'\n", ("[server] listn", "line 3")),
        ("[platform]\npasword = 'x'\n", ("pasword", "did you mean 'password'?", "line 2")),
    ],
)
def test_unknown_sections_and_keys_are_named_with_their_line(
    write_config: WriteConfig, text: str, words: tuple[str, ...]
) -> None:
    only(problems_in(write_config, text), *words)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[server]\nlisten = 'localhost'\n", ("[server] listen", "HOST:PORT", "line 2")),
        ("[server]\ndatabase = 'mysql://x'\n", ("[server] database", "postgresql", "line 2")),
        ("[smtp]\nport = 'abc'\n", ("[smtp] port", "expected an integer", "'abc'", "line 2")),
        ("[platform]\nurl = 'ftp://x'\n", ("[platform] url", "https://", "line 2")),
        ("[poll]\ninterval = 0\n", ("[poll] interval", "greater than 0", "line 2")),
        ("[job_types]\nSSL = 'nope'\n", ("[job_types] SSL", "GUID", "line 2")),
        ("[[handlers]]\nname = 'x'\ntype = 'log'\nmax_attempts = 0\n", ("max_attempts",)),
        ("[[handlers]]\ntype = 'log'\n", ("handlers[0]", "name", "is required", "line 1")),
        ("handlers = 3\n", ("handlers", "[[handlers]]", "line 1")),
        (
            "[[handlers]]\nname = 'x'\ntype = 'log'\njob_types = 3\n",
            ("'x': job_types:", "expected a string or a list of strings, got 3", "line 4"),
        ),
        (
            "[[handlers]]\nname = 'x'\ntype = 'log'\njob_types = '*'\nwhen = ['failure', 3]\n",
            ("'x': when.1:", "expected a string, got 3", "line 5"),
        ),
        (
            "[[handlers]]\nname = 'x'\ntype = 'log'\njob_types = '*'\ngroup_by = ['machine']\n",
            ("group_by", "cannot group by 'machine'", "did you mean 'client_machine'?", "line 5"),
        ),
        (
            "[[handlers]]\nname = 'x'\ntype = 'log'\njob_types = '*'\ngroup_wait = '10s'\n",
            ("group_wait and group_max shape digests: set group_by too",),
        ),
        (
            "[[handlers]]\nname = 'x'\ntype = 'log'\njob_types = '*'\ngroup_by = []\n"
            "group_max = 0\n",
            ("group_max", "greater than or equal to 1", "line 6"),
        ),
    ],
)
def test_bad_values_are_named_with_their_line(
    write_config: WriteConfig, text: str, words: tuple[str, ...]
) -> None:
    only(problems_in(write_config, text), *words)


def test_duplicate_handler_names(write_config: WriteConfig) -> None:
    problems = problems_in(write_config, LOG_HANDLER + LOG_HANDLER)
    problem = only(problems, "duplicate")
    assert "handlers[1] 'audit'" in problem
    assert "already used by handlers[0]" in problem
    assert "line 8" in problem


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("ops/pager", "must not contain '/'"),
        ("pager\\u001b[2J", "must not contain control characters"),
        ("pager\\u202e", "or direction marks"),
        (" pager", "must not begin or end with spaces"),
    ],
)
def test_a_name_that_cannot_stand_in_an_address_or_a_line_is_refused(
    write_config: WriteConfig, name: str, said: str
) -> None:
    """A name is part of the addresses of its replay actions: with a '/' they could not be
    reached (a 404 from the dashboard's own button)."""
    problems = problems_in(write_config, LOG_HANDLER.replace('"audit"', f'"{name}"'))
    assert "line 3" in only(problems, "name:", said)


@pytest.mark.parametrize("name", ["Benach\u00adrichtigung", "\u182e\u1822\u182d\u1821\u180e\u1820"])
def test_a_name_with_a_character_that_shows_as_nothing_is_still_a_name(
    write_config: WriteConfig, name: str
) -> None:
    """A soft hyphen, a Mongolian vowel separator: parts of words, shown as escapes where
    they could mislead, and names before this version took them (a file that validated
    must still validate)."""
    config, problems = read_config(write_config(LOG_HANDLER.replace('"audit"', f'"{name}"')))
    assert problems == []
    assert [handler.name for handler in config.handlers] == [name]


def test_positions_stay_true_after_an_invalid_handler(write_config: WriteConfig) -> None:
    config, problems = read_config(
        write_config(
            """
            [[handlers]]
            name = "broken"
            type = "log"
            job_types = "*"
            timeot = 1

            [[handlers]]
            name = "audit"
            type = "log"
            job_types = "*"

            [[handlers]]
            name = "audit"
            type = "log"
            job_types = "*"
            """
        )
    )
    assert [h.name for h in config.handlers] == ["audit", "audit"]
    assert [h.position for h in config.handlers] == [1, 2]
    problem = only(problems, "duplicate")
    assert "handlers[2] 'audit'" in problem and "handlers[1]" in problem
    assert "line 14" in problem


def test_every_structural_problem_is_reported_at_once(write_config: WriteConfig) -> None:
    problems = problems_in(
        write_config,
        """
        [server]
        listen = "nowhere"
        colour = "blue"

        [smpt]
        host = "x"

        [[handlers]]
        name = "a"
        type = "log"
        job_types = "*"
        timeot = 5

        [[handlers]]
        name = "b"
        type = "log"
        job_types = "*"
        max_attempts = "many"
        """,
    )
    assert len(problems) == 5
    only(problems, "[server] listen")
    only(problems, "colour")
    only(problems, "smpt")
    only(problems, "'a'", "timeot")
    only(problems, "'b'", "max_attempts", "'many'")


def test_valid_parts_are_kept_beside_the_problems(write_config: WriteConfig) -> None:
    config, problems = read_config(
        write_config("[server]\nlisten = 'x'\n[smtp]\nhost = 'smtp.example.com'\n" + LOG_HANDLER)
    )
    assert len(problems) == 1
    assert config.smtp.host == "smtp.example.com"
    assert [h.name for h in config.handlers] == ["audit"]


def test_invalid_toml_is_a_config_error_with_the_line(write_config: WriteConfig) -> None:
    path = write_config("[server]\nlisten = \n")
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert "not valid TOML" in str(caught.value)
    assert "line 2" in str(caught.value)


def test_a_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """Notepad saves UTF-8 with a byte order mark; TOML parsers refuse it at line 1."""
    path = tmp_path / "jobhooks.toml"
    path.write_bytes(("[server]\nlisten = 'x'\n" + LOG_HANDLER).encode("utf-8-sig"))

    _config, problems = read_config(path)

    assert len(problems) == 1 and "line 2" in problems[0], problems


@pytest.mark.parametrize(
    ("content", "said"),
    [
        ('[smtp]\nhost = "caf\xe9"\n'.encode("latin-1"), "not UTF-8 text (line 2"),
        (("[server]\n" + LOG_HANDLER).encode("utf-16"), "is UTF-16"),
        (b"x = " + b"[" * 5000 + b"]" * 5000, "nested too deeply"),
        (b"[server]\nretention_days = " + b"9" * 5000, "not valid TOML"),
        (b"[x]\ny = " + b"{a = " * 3000 + b"1" + b"}" * 3000, "nested too deeply"),
    ],
)
def test_a_file_that_cannot_be_read_as_toml_is_a_config_error(
    tmp_path: Path, content: bytes, said: str
) -> None:
    path = tmp_path / "jobhooks.toml"
    path.write_bytes(content)

    with pytest.raises(ConfigError) as caught:
        read_config(path)

    assert said in str(caught.value)
    assert "jobhooks.toml" in str(caught.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        read_config(tmp_path / "absent.toml")


def test_an_unset_secret_in_a_section_is_reported(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEYFACTOR_PASSWORD", raising=False)
    problems = problems_in(write_config, "[platform]\npassword = 'env:KEYFACTOR_PASSWORD'\n")
    only(problems, "[platform] password", "KEYFACTOR_PASSWORD is not set", "line 2")


def test_the_valid_keys_of_a_section_with_an_invalid_one_are_kept(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SMTP_PASSWORD", raising=False)
    config, problems = read_config(
        write_config(
            "[smtp]\nhost = 'smtp.example.com'\nusername = 'jh'\n"
            "password = 'env:SMTP_PASSWORD'\nmail_from = 'jh@example.com'\n"
        )
    )
    assert len(problems) == 1
    only(problems, "[smtp] password", "SMTP_PASSWORD is not set", "line 4")
    assert config.smtp.host == "smtp.example.com"
    assert config.smtp.mail_from == "jh@example.com"


@pytest.mark.parametrize("section", ["platform", "smtp"])
def test_a_ca_bundle_that_does_not_exist_is_a_problem(
    write_config: WriteConfig, tmp_path: Path, section: str
) -> None:
    missing = tmp_path / "keyfactor-ca.pem"
    problems = problems_in(write_config, f"[{section}]\nca_bundle = '{missing}'\n")
    only(problems, f"[{section}] ca_bundle: no such file: {missing}", "line 2")


def test_a_ca_bundle_without_a_certificate_is_a_problem(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("not a certificate\n", encoding="utf-8")
    problems = problems_in(write_config, f"[platform]\nca_bundle = '{tmp_path / 'notes.txt'}'\n")
    only(problems, "[platform] ca_bundle:", "holds no PEM certificate", "line 2")
    problems = problems_in(write_config, f"[smtp]\nca_bundle = '{tmp_path}'\n")
    only(problems, "[smtp] ca_bundle:", "is a folder")


def test_a_ca_bundle_of_pem_certificates_is_accepted(
    write_config: WriteConfig, test_certificates
) -> None:
    text = f"[platform]\nca_bundle = '{test_certificates.ca}'\n"
    config, problems = read_config(write_config(text))
    assert problems == []
    assert config.platform.ca_bundle == str(test_certificates.ca)


SECRET = "literal-Kq9-secret-value"


def test_no_secret_in_the_dump_or_repr_of_a_config(
    write_config: WriteConfig, smtp_password: str
) -> None:
    config, problems = read_config(
        write_config(
            f"""
            [platform]
            url = "https://keyfactor.example.com/KeyfactorAPI"
            username = "DOMAIN\\\\svc-jobhooks"
            password = "{SECRET}-platform"
            token_url = "https://idp.example.com/token"
            client_id = "jobhooks"
            client_secret = "{SECRET}-oauth"

            [smtp]
            password = "{SECRET}-smtp"

            [[handlers]]
            name = "mail"
            type = "repeated-failure-email"
            job_types = "*"
            [handlers.properties]
            SmtpServer = "smtp.example.com"
            Username = "jobhooks@example.com"
            Password = "{SECRET}-handler"
            MailFrom = "jobhooks@example.com"
            EmailRecipients = ["a@example.com"]
            Extra = {{ nested = "{SECRET}-nested" }}
            SmtpPort = 587
            """
        )
    )
    assert problems == []
    dumps = [
        repr(config),
        str(config),
        str(config.model_dump()),
        config.model_dump_json(),
        str(config.model_dump(mode="json")),
        repr(config.handlers[0]),
        config.handlers[0].model_dump_json(),
    ]
    for text in dumps:
        assert SECRET not in text
        assert smtp_password not in text
    properties = config.model_dump()["handlers"][0]["properties"]
    assert properties["SmtpPort"] == 587, "numbers are not secrets"
    assert config.handlers[0].properties["Password"] == f"{SECRET}-handler", "the value is kept"


def test_env_references_stay_visible_in_the_dump(
    write_config: WriteConfig, seed_toml: str, smtp_password: str
) -> None:
    config, _problems = read_config(write_config(seed_toml))
    dumped = config.model_dump(mode="json")
    assert dumped["handlers"][0]["properties"]["Password"] == "env:SMTP_PASSWORD"
    assert smtp_password not in config.model_dump_json()


def test_configuration_is_frozen(write_config: WriteConfig) -> None:
    config, _problems = read_config(write_config(LOG_HANDLER))
    with pytest.raises(ValueError, match="frozen"):
        config.server = config.server  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        config.handlers[0].name = "other"  # type: ignore[misc]


def test_a_configuration_built_in_code_has_no_position() -> None:
    registration = HandlerRegistration(name="audit", type="log", job_types="*")
    config = JobhooksConfig(handlers=[registration])
    assert config.handlers[0].position is None
    assert "built-in" in config.origin.where(("handlers", 0))


def test_digest_settings_and_their_defaults(write_config: WriteConfig) -> None:
    from jobhooks.registry import load

    text = (
        LOG_HANDLER
        + 'group_by = "client_machine"\n'
        + LOG_HANDLER.replace("audit", "everything")
        + 'group_by = []\ngroup_wait = "2m"\ngroup_max = 7\n'
    )
    registry = load(write_config(text)).registry
    audit, everything = registry.get("audit"), registry.get("everything")
    assert audit is not None and everything is not None
    assert audit.grouping is not None
    assert (audit.grouping.fields, audit.grouping.wait, audit.grouping.most) == (
        ("client_machine",),
        30.0,
        100,
    )
    assert everything.grouping is not None
    assert (everything.grouping.fields, everything.grouping.wait, everything.grouping.most) == (
        (),
        120.0,
        7,
    )
    assert load(write_config(LOG_HANDLER)).registry.get("audit").grouping is None  # type: ignore[union-attr]


def test_a_poll_start_before_the_year_one_in_utc_is_a_problem(write_config: WriteConfig) -> None:
    problems = problems_in(write_config, '[poll]\nstart = "0001-01-01T00:00:00+05:30"\n')
    assert "is before the year 1 in UTC" in only(problems, "[poll] start")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("[server]\n" + "a." * 40_000 + "b = 1\n", 2),  # a key
        ("[" + "a." * 40_000 + "b]\nc = 1\n", 1),  # a table name
        ("\n\nx = {" + "'a' . " * 40_000 + "b = 1}\n", 3),  # inside an inline table
    ],
    ids=["key", "table", "inline-table"],
)
def test_a_key_of_too_many_dotted_parts_is_refused_at_once(
    write_config: WriteConfig, text: str, line: int
) -> None:
    """A 200 kB file of dotted key parts made the TOML reader (whose time grows with the
    square of the parts) and the line index take minutes and gigabytes: a reload blocked
    the server meanwhile."""
    import time

    path = write_config(text)
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        read_config(path)
    assert time.monotonic() - started < 5
    (problem,) = caught.value.problems
    assert problem.startswith(f"jobhooks.toml line {line}: a key or table name has more than 64")


def test_a_key_of_a_few_dotted_parts_is_read(write_config: WriteConfig) -> None:
    config, problems = read_config(
        write_config(LOG_HANDLER + "[handlers.properties]\n" + "a." * 20 + "b = 1\n")
    )
    assert problems == []
    assert config.handlers[0].properties == {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {
        "a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"a": {"b": 1}}}}}}}}}
    }}}}}}}}}}}}  # fmt: skip


@pytest.mark.parametrize("header", ["[[]]", "[[.]]", "[[=]]", '[["]]', "[]"])
def test_a_table_header_without_a_name_is_not_toml(write_config: WriteConfig, header: str) -> None:
    """Said as the TOML reader says it (it was an IndexError traceback: the line index
    reads the file first)."""
    with pytest.raises(ConfigError) as caught:
        read_config(write_config(f"[server]\n{header}\n"))
    assert "not valid TOML" in str(caught.value), caught.value
