"""Lists bound as one parameter: the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Connection, select
from support.reports import new_completion
from support.storedb import StoreDb

from jobhooks.store.checkins import insert_checkins
from jobhooks.store.dialect import bind_list, bind_pairs, one_of, pairs_from
from jobhooks.store.tables import completions

NOW = 1_800_000_000.0


def _ids_among(connection: Connection, wanted: list[str]) -> list[str]:
    dialect = connection.dialect.name
    query = select(completions.c.id).where(one_of(dialect, completions.c.id, "ids"))
    return list(connection.execute(query, {"ids": bind_list(dialect, wanted)}).scalars())


def test_a_listed_value_matches_only_itself_not_a_stored_prefix_of_it(db: StoreDb) -> None:
    [stored] = db.apply(insert_checkins, [new_completion()], NOW)

    # Ids are 36 characters: a longer value must not be cut to the column's length.
    assert db.read(_ids_among, [stored.id]) == [stored.id]
    assert db.read(_ids_among, [stored.id + "-and-more", "unknown"]) == []
    assert db.read(_ids_among, []) == []


def test_pairs_match_on_both_values(db: StoreDb) -> None:
    [stored] = db.apply(insert_checkins, [new_completion(job_history_id=2**63 - 1)], NOW)
    agent = db.read(lambda c: c.execute(select(completions.c.agent_id)).scalar_one())

    def found(connection: Connection, pairs: list[tuple[str, int]]) -> list[str]:
        dialect = connection.dialect.name
        wanted = pairs_from(
            dialect, "pairs", ("agent", "history"), completions.c.job_history_id.type
        )
        query = (
            select(completions.c.id)
            .select_from(wanted)
            .join(
                completions,
                (completions.c.agent_id == wanted.c.agent)
                & (completions.c.job_history_id == wanted.c.history),
            )
        )
        return list(connection.execute(query, bind_pairs(dialect, "pairs", pairs)).scalars())

    assert db.read(found, [(agent, 2**63 - 1)]) == [stored.id]
    assert db.read(found, [(agent, 2**63 - 2), (agent + "x", 2**63 - 1)]) == []
