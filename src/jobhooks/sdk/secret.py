"""Secret values for handler properties and settings: never printed, logged or serialised."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jobhooks.errors import SecretError

__all__ = ["MASK", "Secret"]

MASK = "**********"


class Secret:
    """A secret given literally or as a reference: ``env:NAME`` or ``file:/path``.

    The value is resolved when the Secret is made, so a missing variable or
    file is reported at registration rather than on the first run.
    ``repr``, ``str`` and ``format`` show a mask (and, for a reference, where
    it points, which is not secret); only :meth:`reveal` returns the value.
    """

    __slots__ = ("_reference", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise SecretError(f"a secret must be a string, got {type(value).__name__}")
        self._reference: str | None = None
        if value.startswith("env:"):
            name = value[4:].strip()
            if not name:
                raise SecretError("'env:' needs a variable name, as in 'env:SMTP_PASSWORD'")
            resolved = os.environ.get(name)
            if resolved is None:
                raise SecretError(
                    f"environment variable {name} is not set (referenced as 'env:{name}')"
                )
            self._reference = f"env:{name}"
            self._value = resolved
        elif value.startswith("file:"):
            path = Path(value[5:].strip())
            try:
                self._value = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"cannot read secret file {path}: {exc.strerror}") from None
            self._reference = f"file:{path}"
        else:
            self._value = value

    @property
    def reference(self) -> str | None:
        """``env:NAME`` or ``file:PATH`` when the secret came from a reference, else None."""
        return self._reference

    def reveal(self) -> str:
        """Return the secret value itself. Use it only where the value is needed."""
        return self._value

    def masked(self) -> str:
        """What may be shown of this secret: the reference, or a mask."""
        return self._reference if self._reference else MASK

    def __repr__(self) -> str:
        return f"Secret({self.masked()!r})"

    def __str__(self) -> str:
        return self.masked()

    def __format__(self, format_spec: str) -> str:
        return format(self.masked(), format_spec)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:
        # Pickling (for process isolation) keeps the value; it never leaves the host.
        return (_restore, (self._value, self._reference))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda secret: secret.masked(), when_used="always"
            ),
        )


def _validate(value: object) -> Secret:
    if isinstance(value, Secret):
        return value
    if isinstance(value, str):
        return Secret(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Secret(str(value))  # a number given unquoted, as web.config values are text
    raise SecretError(f"expected a string or a Secret, got {type(value).__name__}")


def _restore(value: str, reference: str | None) -> Secret:
    secret = Secret.__new__(Secret)
    secret._value = value
    secret._reference = reference
    return secret
