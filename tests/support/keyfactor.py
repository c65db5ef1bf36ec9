"""A stand-in for a Keyfactor Command instance's REST API, served over HTTP on loopback.

It follows the documented fields and behaviour of the endpoints pull mode uses:

* ``GET /KeyfactorAPI/OrchestratorJobs/JobHistory``: a bare JSON array;
  ``pq.queryString`` (clauses ``Field -op "value"`` joined by ``-and``),
  ``pq.pageReturned`` (1-based), ``pq.returnLimit`` (capped at ``max_page``),
  ``pq.sortField``, ``pq.sortAscending`` (0 ascending). ``strict`` refuses
  (400) query and sort fields the documentation does not name, such as
  JobHistoryId, and takes times in one format only.
* ``GET /Agents``, ``GET /CertificateStoreTypes``, ``GET /JobTypes/Custom``.
* ``POST /OrchestratorJobs/Acknowledge`` with ``{"JobAuditIds": [...]}``.
* ``POST /token``: an OAuth 2 token endpoint (client credentials), when
  ``auth="oauth"``.

Rows are created running (Status 2, no OperationEnd) and finish later, as on the
platform. ``hooks`` run before each history answer, so a test can add, finish
or delete rows between two pages of one poll. ``raw_answers`` may answer any
request themselves (headers such as Retry-After or Location, trickled, oversized
or streamed bodies), through :class:`RawRequest`.
"""

from __future__ import annotations

import base64
import bisect
import http.server
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from support.loopback import LoopbackServer

BASE = "/KeyfactorAPI"
HISTORY = f"{BASE}/OrchestratorJobs/JobHistory"
DOCUMENTED_FIELDS = {
    "agentid",
    "agent",
    "jobid",
    "result",
    "status",
    "jobtype",
    "message",
    "operationstart",
    "scheduletype",
    "targetpath",
}
STATUS_NAMES = [
    "Unknown",
    "Waiting",
    "InProcess",
    "Completed",
    "Acknowledged",
    "CompletedWillRetry",
]
RESULT_NAMES = ["Unknown", "InProcess", "Success", "Warning", "Failure"]
STRICT_DATE = "%m/%d/%Y %H:%M:%S"
"""The only time format a ``strict`` platform takes in a query."""

INVENTORY_ID = uuid.UUID("7b6bbc1b-d802-4b09-bec9-f5c221083130")
MANAGEMENT_ID = uuid.UUID("44340a94-9b99-410d-8011-598fb176c3c5")
DISCOVERY_ID = uuid.UUID("d4e8f2c1-8a3b-4c5d-9e6f-0a1b2c3d4e5f")
CUSTOM_ID = uuid.UUID("a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d")
AGENT_1 = uuid.UUID("3b0c8f5e-6a1d-4c57-9f0e-2a7c1d9b4e21")
AGENT_1_OLD = uuid.UUID("11111111-2222-4333-8444-555555555555")
AGENT_2 = uuid.UUID("9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a")


@dataclass
class HistoryRow:
    """One run of a job, as the fake stores it."""

    id: int
    job_id: str
    machine: str
    job_type: str
    start: datetime
    end: datetime | None = None
    status: int = 2
    result: int = 0
    message: str = ""
    store_path: str = "My"
    client_machine: str = "iis01.example.com"
    raw: dict[str, Any] | None = None
    """Served as is instead of the fields above (a malformed row)."""


@dataclass
class Served:
    """One request the fake answered."""

    method: str
    path: str
    query: dict[str, str]
    status: int
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class RawRequest:
    """One request as a raw answer sees it, with ways to answer it."""

    handler: http.server.BaseHTTPRequestHandler
    method: str
    path: str
    query: dict[str, str]

    def send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """Answer with ``status``, ``headers`` and ``body`` (a content-length is added)."""
        self.handler.send_response(status)
        for name, value in (headers or {}).items():
            self.handler.send_header(name, value)
        self.handler.send_header("content-length", str(len(body)))
        self.handler.end_headers()
        self.handler.wfile.write(body)

    def send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        """Answer ``data`` as JSON."""
        extra = {"content-type": "application/json; charset=utf-8", **(headers or {})}
        self.send(status, json.dumps(data).encode(), extra)

    def stream(self, chunks: Iterable[bytes], pause: float = 0.0) -> None:
        """Answer 200 with a chunked JSON body, ``pause`` seconds before each chunk; stops
        quietly when the client hangs up."""
        self.handler.send_response(200)
        self.handler.send_header("content-type", "application/json; charset=utf-8")
        self.handler.send_header("transfer-encoding", "chunked")
        self.handler.end_headers()
        try:
            for chunk in chunks:
                if pause:
                    time.sleep(pause)
                if chunk:
                    self.handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.handler.wfile.flush()
            self.handler.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.handler.close_connection = True


@dataclass
class Fault:
    """Answer the next ``count`` history requests with ``status`` (0: drop the connection)."""

    count: int
    status: int = 500


def _default_agents() -> list[dict[str, Any]]:
    return [
        {
            "AgentId": str(AGENT_1_OLD),
            "ClientMachine": "orch01",
            "Username": "DOMAIN\\orch01-old",
            "Status": 3,
            "LastSeen": "2025-01-01T00:00:00",
        },
        {
            "AgentId": str(AGENT_1),
            "ClientMachine": "orch01",
            "Username": "DOMAIN\\orch01",
            "Status": 2,
            "LastSeen": "2026-11-22T09:00:00",
        },
        {
            "AgentId": str(AGENT_2),
            "ClientMachine": "orch02.example.com",
            "Username": "DOMAIN\\orch02",
            "Status": 2,
            "LastSeen": "2026-11-22T09:00:00",
        },
    ]


def _default_store_types() -> list[dict[str, Any]]:
    return [
        {
            "StoreType": 2,
            "Name": "Windows Certificate",
            "ShortName": "WinCert",
            "InventoryJobType": str(INVENTORY_ID),
            "ManagementJobType": str(MANAGEMENT_ID),
            "DiscoveryJobType": str(DISCOVERY_ID),
            "EnrollmentJobType": None,
        },
        {
            "StoreType": 5,
            "Name": "PEM File",
            "ShortName": "PEM",
            "InventoryJobType": "00000000-0000-0000-0000-000000000000",
            "ManagementJobType": None,
            "DiscoveryJobType": None,
            "EnrollmentJobType": None,
        },
    ]


@dataclass
class FakeKeyfactor:
    """The platform: its rows, agents and catalog, and how it behaves."""

    enums: str = "names"
    """``names`` (``"Failure"``) or ``ints`` (``4``) for Result and Status."""
    strict: bool = False
    date_format: str = STRICT_DATE
    """The only time format a ``strict`` platform takes in a query."""
    max_page: int = 1000
    default_order: str = "id_asc"
    """Order without a sortField: ``id_asc`` or ``id_desc``."""
    auth: str | None = "basic"
    """``basic``, ``oauth`` or None."""
    username: str = "DOMAIN\\svc-jobhooks"
    password: str = "kf-pw-9Lr2-never-print-me"
    client_id: str = "jobhooks"
    client_secret: str = "kf-secret-Qw8-never-print-me"
    token_lifetime: float = 300.0
    rows: dict[int, HistoryRow] = field(default_factory=dict)
    agents: list[dict[str, Any]] = field(default_factory=_default_agents)
    store_types: list[dict[str, Any]] = field(default_factory=_default_store_types)
    custom_job_types: list[dict[str, Any]] = field(
        default_factory=lambda: [{"Id": str(CUSTOM_ID), "JobTypeName": "RebootServer"}]
    )
    hooks: list[Callable[[dict[str, str]], None]] = field(default_factory=list)
    """Called with each history request's query before it is answered."""
    faults: list[Fault] = field(default_factory=list)
    raw_answers: list[Callable[[RawRequest], bool]] = field(default_factory=list)
    """Called with each request before the fake answers it; the first that returns True
    has answered it itself (such requests are not in ``served``)."""
    served: list[Served] = field(default_factory=list)
    acknowledged: list[int] = field(default_factory=list)
    tokens: dict[str, float] = field(default_factory=dict)
    """Issued OAuth tokens and when each expires (the fake's clock)."""
    record: bool = True
    clock_ahead: float = 0.0
    """Seconds the platform's clock (its ``Date`` header) runs ahead of this machine's."""
    _next_id: int = 1000
    _ids: list[int] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock)

    # -- building a history -----------------------------------------------------------

    def start_run(
        self,
        job_type: str = "WinCertInventory",
        machine: str = "orch01",
        job_id: uuid.UUID | str | None = None,
        at: datetime | None = None,
    ) -> int:
        """A run that has started (Status InProcess); returns its JobHistoryId."""
        with self.lock:
            self._next_id += 1
            identifier = self._next_id
            self.rows[identifier] = HistoryRow(
                identifier,
                str(job_id or uuid.uuid4()),
                machine,
                job_type,
                at or datetime.now(UTC).replace(tzinfo=None),
            )
            bisect.insort(self._ids, identifier)
            return identifier

    def finish(
        self,
        identifier: int,
        result: int = 2,
        status: int = 3,
        message: str = "",
        at: datetime | None = None,
    ) -> None:
        """End a run: Completed (3) or CompletedWillRetry (5), with a result."""
        with self.lock:
            row = self.rows[identifier]
            row.status, row.result, row.message = status, result, message
            row.end = at or max(row.start, datetime.now(UTC).replace(tzinfo=None))

    def add(self, result: int = 2, status: int = 3, message: str = "", **run: Any) -> int:
        """A run that started and finished (both at ``at`` if given); returns its id."""
        identifier = self.start_run(**run)
        self.finish(identifier, result, status, message, at=run.get("at"))
        return identifier

    def add_raw(self, raw: dict[str, Any]) -> int:
        """A row served exactly as given (for malformed rows); returns the id it sorts at."""
        with self.lock:
            self._next_id += 1
            identifier = self._next_id
            self.rows[identifier] = HistoryRow(
                identifier, "", "", "", datetime.now(UTC).replace(tzinfo=None), raw=raw
            )
            bisect.insort(self._ids, identifier)
            return identifier

    def acknowledge(self, identifier: int) -> None:
        """As an operator acknowledging a run: Status 4."""
        with self.lock:
            self.rows[identifier].status = 4

    def delete(self, identifier: int) -> None:
        """Remove a row from the history."""
        with self.lock:
            del self.rows[identifier]
            self._ids.remove(identifier)

    def finished_ids(self) -> list[int]:
        """Every row that has ended (Status 3, 4 or 5), ascending."""
        with self.lock:
            return [i for i in self._ids if self.rows[i].raw is None and self.rows[i].status >= 3]

    def history_requests(self) -> list[Served]:
        """The history requests answered so far."""
        with self.lock:
            return [s for s in self.served if s.path == HISTORY]

    # -- serving ---------------------------------------------------------------------

    def _enum(self, value: int, names: list[str]) -> Any:
        return names[value] if self.enums == "names" else value

    def to_json(self, row: HistoryRow) -> dict[str, Any]:
        """A row as the platform serves it (times UTC without an offset)."""
        if row.raw is not None:
            return row.raw
        return {
            "JobHistoryId": row.id,
            "AgentMachine": row.machine,
            "JobId": row.job_id,
            "Schedule": {"Immediate": True},
            "JobType": row.job_type,
            "OperationStart": row.start.isoformat(),
            "OperationEnd": row.end.isoformat() if row.end else None,
            "Message": row.message,
            "Result": self._enum(row.result, RESULT_NAMES),
            "Status": self._enum(row.status, STATUS_NAMES),
            "StorePath": row.store_path,
            "ClientMachine": row.client_machine,
        }

    def _time(self, text: str) -> datetime:
        if self.strict:
            return datetime.strptime(text, self.date_format)
        moment = datetime.fromisoformat(text)
        return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment

    def _predicate(self, clause: str) -> tuple[str, str, Any]:
        match = re.fullmatch(r'\s*(\w+)\s+-(eq|ne|gt|ge|lt|le)\s+"([^"]*)"\s*', clause, re.I)
        if match is None:
            raise ValueError(f"cannot parse the query clause {clause!r}")
        name, op, text = match.group(1).lower(), match.group(2).lower(), match.group(3)
        if self.strict and name not in DOCUMENTED_FIELDS:
            raise ValueError(f"Unknown query field '{match.group(1)}'")
        if name == "jobhistoryid":
            return name, op, int(text)
        if name in ("status", "result"):
            names = STATUS_NAMES if name == "status" else RESULT_NAMES
            lowered = [n.lower() for n in names]
            return name, op, int(text) if text.isdigit() else lowered.index(text.lower())
        if name == "operationstart":
            try:
                return name, op, self._time(text)
            except ValueError:
                raise ValueError(f"'{text}' is not a valid date for OperationStart") from None
        if name in ("jobid", "jobtype", "agent", "message"):
            return name, op, text.lower()
        raise ValueError(f"Unknown query field '{match.group(1)}'")

    @staticmethod
    def _value(row: HistoryRow, name: str) -> Any:
        return {
            "jobhistoryid": row.id,
            "status": row.status,
            "result": row.result,
            "operationstart": row.start,
            "jobid": row.job_id.lower(),
            "jobtype": row.job_type.lower(),
            "agent": row.machine.lower(),
            "message": row.message.lower(),
        }[name]

    def _select(self, query: dict[str, str]) -> Iterable[HistoryRow]:
        clauses = [
            self._predicate(part)
            for part in re.split(r"\s+-and\s+", query.get("pq.queryString", ""), flags=re.I)
            if part.strip()
        ]
        sort = query.get("pq.sortField")
        descending = query.get("pq.sortAscending", "0") == "1"
        if sort is not None:
            if sort.lower() not in {
                "jobhistoryid",
                "operationstart",
                "jobtype",
                "status",
                "result",
            }:
                raise ValueError(f"'{sort}' is not a sortable field")
            if self.strict and sort.lower() not in DOCUMENTED_FIELDS:
                raise ValueError(f"'{sort}' is not a sortable field")
        ops = {
            "eq": lambda a, b: a == b,
            "ne": lambda a, b: a != b,
            "gt": lambda a, b: a > b,
            "ge": lambda a, b: a >= b,
            "lt": lambda a, b: a < b,
            "le": lambda a, b: a <= b,
        }
        ids = self._ids
        start = 0
        if sort is None or sort.lower() == "jobhistoryid":
            for name, op, value in clauses:
                if name == "jobhistoryid" and op in ("gt", "ge") and not descending:
                    point = (
                        bisect.bisect_right(ids, value)
                        if op == "gt"
                        else bisect.bisect_left(ids, value)
                    )
                    start = max(start, point)
        ordered: Iterable[int] = itertools.islice(ids, start, None)
        if (sort is None and self.default_order == "id_desc") or (
            sort is not None and sort.lower() == "jobhistoryid" and descending
        ):
            ordered = reversed(ids)
        selected = (
            row
            for row in (self.rows[i] for i in ordered)
            if all(ops[op](self._value(row, name), value) for name, op, value in clauses)
        )
        if sort is not None and sort.lower() != "jobhistoryid":
            key = sort.lower()
            return sorted(
                selected, key=lambda row: (self._value(row, key), row.id), reverse=descending
            )
        return selected

    def history(self, query: dict[str, str]) -> tuple[int, Any]:
        """Answer one history request: (status, JSON body)."""
        for hook in list(self.hooks):
            hook(query)
        with self.lock:
            if self.faults:
                fault = self.faults[0]
                fault.count -= 1
                if fault.count <= 0:
                    self.faults.pop(0)
                return fault.status, {"ErrorCode": "0xA0000000", "Message": "Internal error"}
            page = max(1, int(query.get("pq.pageReturned", "1")))
            limit = max(1, min(int(query.get("pq.returnLimit", "50")), self.max_page))
            try:
                selected = self._select(query)
                chosen = list(itertools.islice(selected, (page - 1) * limit, page * limit))
            except ValueError as exc:
                return 400, {"ErrorCode": "0xA0110001", "Message": str(exc)}
            return 200, [self.to_json(row) for row in chosen]

    def paged(self, items: list[dict[str, Any]], query: dict[str, str]) -> list[dict[str, Any]]:
        page = max(1, int(query.get("pq.pageReturned", "1")))
        limit = max(1, min(int(query.get("pq.returnLimit", "50")), self.max_page))
        return items[(page - 1) * limit : page * limit]

    def authorized(self, headers: dict[str, str]) -> bool:
        """Whether a request carries this platform's credential."""
        header = headers.get("authorization", "")
        if self.auth is None:
            return True
        if self.auth == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return header == f"Basic {expected}"
        token = header.removeprefix("Bearer ")
        with self.lock:
            return token in self.tokens and self.tokens[token] > time.monotonic()

    def issue_token(self, form: dict[str, str]) -> tuple[int, Any]:
        """The OAuth token endpoint."""
        if form.get("grant_type") != "client_credentials":
            return 400, {"error": "unsupported_grant_type"}
        if (form.get("client_id"), form.get("client_secret")) != (
            self.client_id,
            self.client_secret,
        ):
            return 401, {
                "error": "invalid_client",
                "error_description": "Invalid client credentials",
            }
        token = secrets.token_urlsafe(16)
        with self.lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        answer = {"access_token": token, "expires_in": self.token_lifetime, "token_type": "Bearer"}
        return 200, answer

    def revoke_tokens(self) -> None:
        """Forget every issued token (the next request with one gets 401)."""
        with self.lock:
            self.tokens.clear()

    def answer(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """Route one request."""
        if path == "/token" and method == "POST":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            return self.issue_token(form)
        if not path.startswith(BASE + "/"):
            return 404, {"Message": "not found"}
        if not self.authorized(headers):
            return 401, {"Message": "Unauthorized"}
        if headers.get("x-keyfactor-requested-with") != "APIClient":
            return 400, {"Message": "x-keyfactor-requested-with is required"}
        route = path.removeprefix(BASE)
        if method == "GET" and route == "/OrchestratorJobs/JobHistory":
            return self.history(query)
        if method == "GET" and route == "/Agents":
            return 200, self.paged(self.agents, query)
        if method == "GET" and route == "/CertificateStoreTypes":
            return 200, self.paged(self.store_types, query)
        if method == "GET" and route == "/JobTypes/Custom":
            return 200, self.custom_job_types  # this endpoint ignores paging
        if method == "POST" and route == "/OrchestratorJobs/Acknowledge":
            ids = json.loads(body).get("JobAuditIds", [])
            with self.lock:
                self.acknowledged.extend(ids)
                for identifier in ids:
                    if identifier in self.rows:
                        self.rows[identifier].status = 4
            return 204, None
        return 404, {"Message": "no such endpoint"}


class KeyfactorServer:
    """Serves a :class:`FakeKeyfactor` on 127.0.0.1 (HTTP/1.1, keep-alive)."""

    def __init__(self, fake: FakeKeyfactor) -> None:
        self.fake = fake
        served = fake

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = 10
            disable_nagle_algorithm = True  # headers and body are two writes

            def date_time_string(self, timestamp: float | None = None) -> str:
                moment = time.time() if timestamp is None else timestamp
                return super().date_time_string(moment + served.clock_ahead)

            def _handle(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
                headers = {name.lower(): value for name, value in self.headers.items()}
                raw = RawRequest(self, self.command, parts.path, query)
                if any(answer(raw) for answer in list(served.raw_answers)):
                    return
                status, data = served.answer(self.command, parts.path, query, headers, body)
                if served.record:
                    with served.lock:
                        served.served.append(
                            Served(self.command, parts.path, query, status, headers, body)
                        )
                if status == 0:
                    self.close_connection = True
                    return
                payload = b"" if data is None else json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeout tests) is not an error here

        self._serving = LoopbackServer(Handler, Server)
        self.port: int = self._serving.port
        self.origin = self._serving.origin
        self.url = self.origin + BASE
        self.token_url = self.origin + "/token"

    def close(self) -> None:
        """Stop serving and close every socket."""
        self._serving.close()


def platform_toml(server: KeyfactorServer, *, oauth: bool = False) -> str:
    """The ``[platform]`` table for this server (secrets as env: references)."""
    fake = server.fake
    if oauth:
        return (
            "[platform]\n"
            f'url = "{server.url}"\n'
            f'token_url = "{server.token_url}"\n'
            f'client_id = "{fake.client_id}"\n'
            'client_secret = "env:KEYFACTOR_CLIENT_SECRET"\n'
        )
    user = fake.username.replace("\\", "\\\\")
    return (
        "[platform]\n"
        f'url = "{server.url}"\n'
        f'username = "{user}"\n'
        'password = "env:KEYFACTOR_PASSWORD"\n'
    )


def platform_env(fake: FakeKeyfactor) -> dict[str, str]:
    """The environment :func:`platform_toml`'s references need."""
    return {"KEYFACTOR_PASSWORD": fake.password, "KEYFACTOR_CLIENT_SECRET": fake.client_secret}


def past(seconds: float) -> datetime:
    """A naive UTC time ``seconds`` ago (for rows that ran before a test began)."""
    return datetime.now(UTC).replace(tzinfo=None) - timedelta(seconds=seconds)
