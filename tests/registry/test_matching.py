"""The registry: which handlers run for a job type, in registration order; never changes."""

import dataclasses
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobhooks import JobCompleteContext, JobCompleteHandler
from jobhooks.registry import DeliveryPolicy, RegisteredHandler, Registry

INVENTORY = uuid.UUID("7B6BBC1B-D802-4B09-BEC9-F5C221083130")
MANAGEMENT = uuid.UUID("44340A94-9B99-410D-8011-598FB176C3C5")
DISCOVERY = uuid.UUID("d4a1e0c2-4f1b-4c8a-9a7d-3c2b1a0f9e8d")
UNSEEN = uuid.UUID("00000000-0000-0000-0000-00000000abcd")


class Nothing(JobCompleteHandler):
    def run_handler(self, context: JobCompleteContext) -> bool:
        return True


def registered(name: str, *job_types: uuid.UUID, every: bool = False) -> RegisteredHandler:
    return RegisteredHandler(
        name=name,
        type_name="nothing",
        handler=Nothing(),
        job_types=None if every else tuple(job_types),
    )


def names(handlers: tuple[RegisteredHandler, ...]) -> list[str]:
    return [h.name for h in handlers]


@pytest.fixture
def registry() -> Registry:
    return Registry(
        [
            registered("inventory-mail", INVENTORY),
            registered("audit", every=True),
            registered("both", MANAGEMENT, INVENTORY),
            registered("management-only", MANAGEMENT),
            registered("audit-2", every=True),
        ]
    )


def test_handlers_for_a_job_type_plus_every_star_handler_in_registration_order(
    registry: Registry,
) -> None:
    assert names(registry.for_job_type(INVENTORY)) == [
        "inventory-mail",
        "audit",
        "both",
        "audit-2",
    ]
    assert names(registry.for_job_type(MANAGEMENT)) == [
        "audit",
        "both",
        "management-only",
        "audit-2",
    ]


def test_unknown_job_type_gets_only_the_star_handlers(registry: Registry) -> None:
    assert names(registry.for_job_type(UNSEEN)) == ["audit", "audit-2"]


def test_nothing_runs_without_a_match() -> None:
    registry = Registry([registered("inventory-mail", INVENTORY)])
    assert registry.for_job_type(MANAGEMENT) == ()
    assert Registry().for_job_type(INVENTORY) == ()


def test_lookup_by_name_length_and_iteration(registry: Registry) -> None:
    found = registry.get("both")
    assert found is not None and found.job_types == (MANAGEMENT, INVENTORY)
    assert registry.get("absent") is None
    assert len(registry) == 5
    assert names(tuple(registry)) == names(registry.handlers)


def test_runs_for_all() -> None:
    assert registered("audit", every=True).runs_for_all
    assert not registered("mail", INVENTORY).runs_for_all


def test_handlers_is_a_tuple_and_cannot_be_replaced(registry: Registry) -> None:
    assert isinstance(registry.handlers, tuple)
    with pytest.raises(AttributeError):
        registry.handlers = ()  # type: ignore[misc]
    with pytest.raises(AttributeError):
        registry.extra = 1  # type: ignore[attr-defined]


def test_results_are_tuples(registry: Registry) -> None:
    assert isinstance(registry.for_job_type(INVENTORY), tuple)
    assert isinstance(registry.for_job_type(UNSEEN), tuple)


def test_no_public_mutators() -> None:
    public = {name for name in dir(Registry) if not name.startswith("_")}
    assert public == {"for_job_type", "get", "handlers", "held_for", "problems", "quarantined"}


def test_building_from_a_list_copies_it() -> None:
    handlers = [registered("mail", INVENTORY)]
    registry = Registry(handlers)
    handlers.append(registered("late", INVENTORY))
    assert names(registry.for_job_type(INVENTORY)) == ["mail"]
    assert len(registry) == 1


def test_registrations_and_policies_are_frozen() -> None:
    registration = registered("mail", INVENTORY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        registration.job_types = None  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        registration.policy.timeout = 1  # type: ignore[misc]
    assert DeliveryPolicy() == DeliveryPolicy(timeout=30.0, max_attempts=5, backoff=10.0)


_job_types = st.sampled_from([INVENTORY, MANAGEMENT, DISCOVERY])
_registrations = st.lists(
    st.one_of(st.none(), st.lists(_job_types, min_size=1, max_size=3, unique=True)),
    max_size=8,
)


@settings(max_examples=100, deadline=None)
@given(_registrations, st.sampled_from([INVENTORY, MANAGEMENT, DISCOVERY, UNSEEN]))
def test_matching_agrees_with_a_plain_filter(
    spec: list[list[uuid.UUID] | None], job_type: uuid.UUID
) -> None:
    handlers = [
        registered(f"h{i}", *(types or ()), every=types is None) for i, types in enumerate(spec)
    ]
    expected = [h.name for h in handlers if h.job_types is None or job_type in h.job_types]
    assert names(Registry(handlers).for_job_type(job_type)) == expected
