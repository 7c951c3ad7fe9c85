"""A statement run on the driver (``app.platform.driver``) belongs to the session's
transaction like any other: it commits and rolls back with it, even when it is the
transaction's first statement; its values are converted as SQLAlchemy converts them."""

from __future__ import annotations

import uuid
from typing import Any, cast

import asyncpg
import pytest
from click.testing import CliRunner
from sqlalchemy import Table, bindparam, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    PendingRollbackError,
    UnboundExecutionError,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cli import main
from app.delivery import partner_news
from app.delivery import service as delivery_service
from app.delivery.models import CourierStatus, Delivery, DeliveryStatus
from app.delivery.service import DELIVERIES
from app.ordering import service as ordering
from app.ordering.models import Order, OrderLine, OrderStatus
from app.payment import tasks as payment_tasks
from app.payment.events import PaymentCaptured
from app.payment.models import Payment, PaymentStatus
from app.payment.provider import PaymentMethod
from app.payment.service import PAYMENTS, open_payment, payment_for_order
from app.platform import uow
from app.platform.db import (
    asyncpg_dsn,
    create_engine,
    create_session_factory,
    lookup,
    read_only,
    utcnow,
    violated_constraint,
)
from app.platform.driver import Statement, write_added
from app.platform.handlers import handle_once
from app.platform.outbox import InboxRow, OutboxRow, claim
from app.platform.settings import get_settings
from app.platform.uow import complete
from devtools.bench_statements import statement_costs
from devtools.bench_statements import table as statements_table
from tests.support.inproc import as_in_the_web, events_of, place
from tests.support.sent import SentStatements

Factory = async_sessionmaker[AsyncSession]

_INBOX = cast(Table, InboxRow.__table__)
_NOTE = Statement(insert(_INBOX))
_OUTBOX_TABLE = cast(Table, OutboxRow.__table__)
_OUTBOX = Statement(insert(_OUTBOX_TABLE))
_PAYMENT_STATUS = Statement(select(Payment.status).where(Payment.id == bindparam("id")))


async def _noted(factory: Factory, event_id: uuid.UUID) -> int:
    async with factory() as session:
        query = select(func.count()).select_from(_INBOX).where(_INBOX.c.event_id == event_id)
        return int(await session.scalar(query) or 0)


def _row(event_id: uuid.UUID) -> dict[str, object]:
    return {"handler": "test.driver", "event_id": event_id, "processed_at": utcnow()}


def _outbox_row(event_id: uuid.UUID) -> dict[str, object]:
    """An event for no one, written already published (no relay is woken for it)."""
    now = utcnow()
    return {
        "id": event_id,
        "type": "TestHappened",
        "aggregate_type": "test",
        "aggregate_id": "a",
        "correlation_id": "c",
        "causation_id": None,
        "occurred_at": now,
        "payload": {"n": 1},
        "follow_ups": None,
        "published_at": now,
        "enqueued_at": now,
        "finished_at": now,
    }


async def test_a_first_statement_rolls_back_with_its_transaction(session_factory: Factory) -> None:
    event_id = uuid.uuid4()
    async with session_factory() as session:
        await _NOTE.execute_many(session, [_row(event_id)])
        await session.rollback()
    assert await _noted(session_factory, event_id) == 0, "it did not commit on its own"


async def test_it_commits_with_the_statements_sqlalchemy_ran(session_factory: Factory) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    async with session_factory() as session:
        await session.execute(insert(_INBOX), [_row(first)])
        await _NOTE.execute_many(session, [_row(second)])
        await session.commit()
    assert await _noted(session_factory, first) == await _noted(session_factory, second) == 1

    third = uuid.uuid4()
    async with session_factory() as session:
        await _NOTE.execute_many(session, [_row(third)])
        with pytest.raises(IntegrityError):  # a duplicate: the transaction fails, all of it
            await session.execute(insert(_INBOX), [_row(first)])
        await session.rollback()
    assert await _noted(session_factory, third) == 0


_BACKEND = Statement(select(func.pg_backend_pid().label("pid")))


async def _backend(session: AsyncSession) -> int:
    """The backend of the session's transaction, as a driver statement finds it."""
    row = await _BACKEND.fetchrow(session, {})
    assert row is not None
    return int(row["pid"])


async def test_each_transaction_runs_on_its_own_connection(session_factory: Factory) -> None:
    """The driver keeps a transaction's connection for its next statements, never past
    its end: the connection goes back to the pool then, and another session may hold it."""
    async with session_factory() as session:
        first = await _backend(session)
        assert await _backend(session) == first
        assert await session.scalar(select(func.pg_backend_pid())) == first
        await session.commit()
        async with session_factory() as other:
            held = await other.scalar(select(func.pg_backend_pid()))  # maybe ``first``
            now = await _backend(session)
            assert now != held, "a statement ran on another session's connection"
            assert await session.scalar(select(func.pg_backend_pid())) == now
        await session.rollback()
        event_id = uuid.uuid4()
        with pytest.raises(IntegrityError):
            await _NOTE.execute_many(session, [_row(event_id), _row(event_id)])
        await session.rollback()
        assert await _backend(session) == await session.scalar(select(func.pg_backend_pid()))


async def test_a_transaction_a_failed_flush_ended_is_not_used_again(
    session_factory: Factory,
) -> None:
    """A flush that fails rolls the transaction back and deactivates it (the same
    object): the next driver statement is refused as SQLAlchemy refuses one, never run
    in a fresh transaction of its own on the kept connection; so is one after a failed
    savepoint."""
    first = uuid.uuid4()
    async with session_factory() as session:
        await _NOTE.execute_many(session, [_row(first)])
        await session.commit()
    for nested in (False, True):
        async with session_factory() as session:
            await _backend(session)  # the connection is kept for this transaction
            savepoint = await session.begin_nested() if nested else None
            await _backend(session)
            session.add(InboxRow(**_row(first)))  # a duplicate
            with pytest.raises(IntegrityError):
                await session.flush()
            with pytest.raises(PendingRollbackError):
                await _backend(session)
            if savepoint is not None:
                await savepoint.rollback()
                assert await _backend(session) > 0  # the outer transaction goes on
            await session.rollback()


_STATE = Statement(
    select(text("state")).select_from(text("pg_stat_activity")).where(text("pid = :pid"))
)


async def test_a_lookup_reads_outside_any_transaction_and_gives_its_connection_back(
    session_factory: Factory,
) -> None:
    """A ``Lookup`` holds no transaction open while it lives (each statement commits on
    its own), runs no ORM statement (it would take a second connection), and returns its
    connection to the pool when it ends, or drops it when it was lost under it."""
    pool = session_factory.kw["bind"].sync_engine.pool
    out_before = pool.checkedout()
    async with lookup(session_factory) as looking:
        pid = await _backend(looking)
        assert await _backend(looking) == pid, "one connection for the whole look-up"
        async with read_only(session_factory) as other:
            state = await _STATE.fetchrow(other, {"pid": pid})
        assert state is not None
        assert state["state"] == "idle", "a look-up held a transaction open"
        with pytest.raises(UnboundExecutionError):
            await looking.execute(select(func.pg_backend_pid()))
    assert pool.checkedout() == out_before

    dropped: list[object] = []

    def note_dropped(connection: object, *_: object) -> None:
        dropped.append(connection)

    event.listen(pool, "invalidate", note_dropped)
    try:
        async with lookup(session_factory) as looking:
            pid = await _backend(looking)
            async with read_only(session_factory) as other:
                await other.execute(select(func.pg_terminate_backend(pid)))
            with pytest.raises(DBAPIError) as lost:
                await _backend(looking)
            assert lost.value.connection_invalidated
    finally:
        event.remove(pool, "invalidate", note_dropped)
    assert len(dropped) == 1, "a lost connection went back to the pool"
    assert pool.checkedout() == out_before
    async with lookup(session_factory) as looking:  # the pool hands out a live connection
        assert await _backend(looking) != pid


async def test_values_are_converted_as_sqlalchemy_converts_them(
    session_factory: Factory,
) -> None:
    """JSON, arrays, and (read back) what SQLAlchemy wrote from an enum."""
    event_id = uuid.uuid4()
    payload = {"orderId": str(uuid.uuid4()), "items": [{"qty": 2}], "note": "ünïcode"}
    async with session_factory() as session:
        row = {**_outbox_row(event_id), "payload": payload, "follow_ups": ["payment.capture"]}
        await _OUTBOX.execute_many(session, [row])
        await session.commit()
    async with session_factory() as session:
        row = (await session.scalars(select(OutboxRow).where(OutboxRow.id == event_id))).one()
    assert (row.payload, row.follow_ups) == (payload, ["payment.capture"])

    async with session_factory() as session:  # an enum, written on the driver
        payment_id = open_payment(
            session,
            order_id=uuid.uuid4(),
            amount=1000,
            currency="KRW",
            card=PaymentMethod(id="pm_test", brand="visa", last4="4242"),
        )
        await session.commit()
    async with session_factory() as session:
        payment = await session.get(Payment, payment_id)
    assert payment is not None
    assert (payment.status, payment.version, payment.cancel_requested) == (
        PaymentStatus.pending,
        1,
        False,
    )
    async with read_only(session_factory) as session:  # autocommit: nothing to begin
        row = await _PAYMENT_STATUS.fetchrow(session, {"id": payment_id})
    assert row is not None and row["status"] == PaymentStatus.pending


async def test_a_value_left_out_is_an_error_not_a_null(session_factory: Factory) -> None:
    async with session_factory() as session:
        with pytest.raises(KeyError, match="processed_at"):
            await _NOTE.execute_many(
                session, [{"handler": "test.driver", "event_id": uuid.uuid4()}]
            )


async def test_the_statements_bench_reports_each_way(migrated_db: str) -> None:
    """``pizzeria bench statements``: the three ways run the same read, and say so, and
    so do the two kinds of look-up."""
    costs = await statement_costs(migrated_db, 20)
    assert set(costs) == {"sqlalchemy", "driver", "asyncpg", "read_only", "lookup"}
    assert all(us > 0 for us in costs.values())
    assert "saved on the driver" in statements_table(costs, 20)


def test_the_statements_bench_runs_from_the_command_line(migrated_db: str) -> None:
    """The command itself, options and all: it once took an option its function did not
    (``--alone``), so every run of ``pizzeria bench statements`` ended in a TypeError."""
    ran = CliRunner().invoke(
        main, ["bench", "statements", "--database-url", migrated_db, "--count", "10"]
    )
    assert ran.exit_code == 0, ran.output + repr(ran.exception)
    assert "a look-up in a Lookup" in ran.output


async def test_a_database_error_is_raised_as_sqlalchemy_raises_it(session_factory: Factory) -> None:
    """Error pages and job retries read SQLAlchemy's errors: a refused row is its
    ``IntegrityError``; a connection lost under the statement is a ``DBAPIError`` that
    says so, and the connection does not go back to the pool."""
    event_id = uuid.uuid4()
    async with session_factory() as session:
        await _NOTE.execute_many(session, [_row(event_id)])
        await session.commit()
    async with session_factory() as session:
        with pytest.raises(IntegrityError, match="duplicate key"):
            await _NOTE.execute_many(session, [_row(event_id)])

    async with session_factory() as session:
        backend = await session.scalar(select(func.pg_backend_pid()))
        async with session_factory() as other:
            await other.execute(select(func.pg_terminate_backend(backend)))
        with pytest.raises(DBAPIError) as lost:
            await _NOTE.execute_many(session, [_row(uuid.uuid4())])
        assert lost.value.connection_invalidated
        await session.rollback()
    async with session_factory() as session:  # the pool hands out a live connection
        assert await _NOTE.fetchrow(session, _row(uuid.uuid4())) is None


@pytest.mark.parametrize("way", ["lookup", "transaction"])
async def test_a_lost_connection_retires_every_connection_the_pool_made_before_it(
    migrated_db: str, way: str
) -> None:
    """A database that dropped one connection (a restart, a failover) dropped them all:
    as SQLAlchemy's own execution does, the first statement that finds its connection
    lost retires the pool's older connections too, so the next request gets a fresh one
    instead of the next dead one (a restarted PostgreSQL otherwise cost one failed
    request, a 503, per pooled connection). At most one request fails."""
    engine = create_engine(get_settings(), pool_size=2)  # a pool of 4, as each web has 20
    factory = create_session_factory(engine)
    try:
        held = [await engine.connect() for _ in range(4)]  # the pool opens all four
        pids = [(await c.execute(select(func.pg_backend_pid()))).scalar_one() for c in held]
        for connection in held:
            await connection.close()
        killer = await asyncpg.connect(asyncpg_dsn(get_settings().db.url))
        try:  # what a restart does to all of them
            await killer.execute(
                "SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) pid", pids
            )
        finally:
            await killer.close()

        async def backend() -> int:
            if way == "lookup":
                async with lookup(factory) as looking:
                    return await _backend(looking)
            async with factory() as session:
                return await _backend(session)

        # asyncpg may already have read the server's goodbye: the pool's checkout hook
        # (app.platform.db) then replaces the closed connection and nothing fails;
        # otherwise the first statement fails and retires the rest
        first: int | DBAPIError
        try:
            first = await backend()
        except DBAPIError as lost:
            first = lost
        if isinstance(first, DBAPIError):
            assert first.connection_invalidated
        else:
            assert first not in pids
        for _ in range(4):  # fresh connections, never the next dead one
            assert await backend() not in pids
    finally:
        await engine.dispose()


async def _new_payment(factory: Factory) -> uuid.UUID:
    async with factory() as session:
        payment_id = open_payment(
            session,
            order_id=uuid.uuid4(),
            amount=1000,
            currency="KRW",
            card=PaymentMethod(id="pm_test", brand="visa", last4="4242"),
        )
        await session.commit()
    return payment_id


_LOCK_PAYMENT = Statement(PAYMENTS.select().where(Payment.id == bindparam("id")).with_for_update())


async def test_an_aggregate_read_on_the_driver_is_saved_with_what_changed(
    session_factory: Factory,
) -> None:
    """``AggregateRows``: the row becomes the model (its status the enum member), moves
    through its own state machine, and ``record`` writes back only the columns that
    changed, with the events, in the caller's transaction (where the order, read the
    same way, is paid by its reaction)."""
    order_id, other_id = await place(session_factory), await _new_payment(session_factory)
    async with session_factory() as session:
        found = await payment_for_order(session, order_id)
        assert found is not None
        payment_id = found.id
    async with session_factory() as session:
        row = await _LOCK_PAYMENT.fetchrow(session, {"id": payment_id})
        payment = PAYMENTS.loaded(row)
        assert payment.status is PaymentStatus.pending and payment.card_last4 == "4242"
        payment.provider_ref = "ch_1"
        payment.move_to(PaymentStatus.captured)
        payment.emit(PaymentCaptured)
        [event] = await PAYMENTS.record(session, payment)
        await PAYMENTS.save(session, payment)  # nothing changed since: nothing to write
        assert [e.type for e in await complete(session)][:2] == ["PaymentCaptured", "OrderPaid"]
    assert event.type == "PaymentCaptured" and event.aggregate_id == str(payment_id)
    async with session_factory() as session:
        saved = await session.get(Payment, payment_id)
        untouched = await session.get(Payment, other_id)
        order = await session.get(Order, order_id)
        outboxed = await session.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.id == event.id)
        )
    assert saved is not None and untouched is not None
    assert (saved.status, saved.version, saved.provider_ref, saved.card_last4) == (
        PaymentStatus.captured,
        2,
        "ch_1",
        "4242",
    )
    assert order is not None and (order.status, order.version) == (OrderStatus.paid, 2)
    assert (untouched.status, untouched.version) == (PaymentStatus.pending, 1)
    assert outboxed == 1

    async with session_factory() as session:  # rolled back: neither change nor event
        payment = PAYMENTS.loaded(await _LOCK_PAYMENT.fetchrow(session, {"id": payment_id}))
        payment.move_to(PaymentStatus.refunded)
        await PAYMENTS.save(session, payment)
        await session.rollback()
    async with session_factory() as session:
        assert (await session.get(Payment, payment_id)).status == PaymentStatus.captured  # type: ignore[union-attr]

    with pytest.raises(ValueError, match="not read through AggregateRows"):
        async with session_factory() as session:
            await PAYMENTS.save(session, Payment(id=payment_id))


async def test_a_json_value_changed_in_place_is_saved(session_factory: Factory) -> None:
    """A delivery's history appended to in place (not replaced) is a change all the same:
    ``AggregateRows`` keeps a copy of each JSON value as read to compare with, and
    writes a copy, so a second change after a ``save`` is written by the next one."""
    delivery_id, now = uuid.uuid4(), utcnow()
    queued = {"status": "queued", "at": now.isoformat()}
    async with session_factory() as session, session.begin():
        session.add(
            Delivery(
                id=delivery_id,
                order_id=uuid.uuid4(),
                customer_id=uuid.uuid4(),
                status=DeliveryStatus.queued,
                address="1 Crust Lane",
                items=[],
                history=[queued],
                version=1,
            )
        )
    async with session_factory() as session, session.begin():
        delivery = await delivery_service.get(session, delivery_id)
        assert delivery is not None and delivery.history == [queued]
        delivery.history.append({"status": "preparing", "at": now.isoformat()})
        await DELIVERIES.save(session, delivery)
        delivery.history.append({"status": "baking", "at": now.isoformat()})
        await DELIVERIES.save(session, delivery)
        await DELIVERIES.save(session, delivery)  # nothing changed since: nothing to write
    async with session_factory() as session:
        saved = await session.get(Delivery, delivery_id)
    assert saved is not None
    assert [stage["status"] for stage in saved.history] == ["queued", "preparing", "baking"]


async def test_a_rider_s_news_is_one_statement_with_its_card_view_and_events(
    session_factory: Factory, ctx: dict[str, Any]
) -> None:
    """The courier webhook's transaction (the web runs one per rider's news, a few per
    order): the delivery read under its lock on the driver, its change written with the
    board's card, the order's view and the event by the last statement before the
    commit, as the capture's are; no ORM flush of its own."""
    factory = as_in_the_web(create_session_factory(session_factory.kw["bind"]))
    order_id = await place(factory)
    [placed] = await events_of(factory, order_id, "OrderPlaced")
    assert await payment_tasks.capture(ctx, placed.to_event().to_job_arg()) == "captured"
    [captured] = await events_of(factory, order_id, "PaymentCaptured")
    await handle_once(factory, "test.paid", captured.to_event(), ordering.on_payment_captured)
    [paid] = await events_of(factory, order_id, "OrderPaid")
    pickup = f"pk_{uuid.uuid4().hex[:12]}"
    async with uow.transaction(factory) as session:
        await delivery_service.create_for_paid_order(session, paid.to_event(), pickup)

    with SentStatements(factory) as sent:
        async with factory() as session:
            assert await claim(session, "test.webhook", uuid.uuid4())
            await partner_news.apply(
                session, pickup, delivery_service.RIDER_ASSIGNED, "Rita", utcnow()
            )
            [told] = await complete(session)

    assert told.type == "CourierAssigned"
    [written] = sent.containing("UPDATE delivery.deliveries")
    for part in (
        "INSERT INTO status.board_cards",
        "UPDATE status.order_views",
        "INSERT INTO platform.outbox",
    ):
        assert part in written, part
    assert sent.queries[-2:] == [written, "COMMIT;"], sent.queries
    # BEGIN, the claim, the delivery's lock (its pickup: no return trip's looked for), the
    # view's lock, that one, COMMIT
    assert len(sent.queries) == 6, sent.queries
    async with factory() as session:
        saved = await delivery_service.delivery_for_order(session, order_id)
    assert saved is not None
    assert (saved.courier_status, saved.rider, saved.version) == (CourierStatus.assigned, "Rita", 3)


def test_a_value_given_for_a_bind_that_holds_its_own_is_refused() -> None:
    """SQLAlchemy would use the given value; the driver used the statement's: refused."""
    holding = Statement(select(_INBOX.c.handler).where(_INBOX.c.handler == bindparam("h", "x")))
    with pytest.raises(ValueError, match="holds a value of its own"):
        holding.compiled(postgresql.asyncpg.dialect(), ("h",))
    assert holding.compiled(postgresql.asyncpg.dialect(), ()).args({}) == ["x"]


# -- rows added: written with the next statement or at the commit ------------------------


async def test_added_rows_are_one_statement_sent_alone_at_the_unit_of_work_s_commit(
    session_factory: Factory,
) -> None:
    """Two tables' rows, three rows: one statement, no BEGIN, no COMMIT. A commit outside
    the unit of work writes them too, in a transaction (its other checks come after)."""
    event_id, other_id, third_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            _NOTE.add(session, [_row(event_id), _row(other_id)])
            _OUTBOX.add(session, [_outbox_row(event_id)])
            await complete(session)
    assert sent.queries and len(sent.queries) == 1, sent.queries
    assert sent.starting("WITH") == sent.queries
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            _NOTE.add(session, [_row(third_id)])
            await session.commit()
    assert [q.split()[0] for q in sent.queries] == ["BEGIN;", "INSERT", "COMMIT;"]
    assert await _noted(session_factory, third_id) == 1
    assert await _noted(session_factory, event_id) == 1
    assert await _noted(session_factory, other_id) == 1
    async with session_factory() as session:
        written = select(OutboxRow.type).where(OutboxRow.id == event_id)
        assert await session.scalar(written) == "TestHappened"


async def test_added_rows_are_written_before_what_runs_next(session_factory: Factory) -> None:
    """A driver statement and an ORM query both find the rows added before them, in the
    transaction (which BEGINs, as it has more than one statement); a rollback takes them."""
    event_id = uuid.uuid4()
    count = Statement(
        select(func.count()).select_from(_INBOX).where(_INBOX.c.event_id == bindparam("id"))
    )
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            _NOTE.add(session, [_row(event_id)])
            assert (await count.fetchrow(session, {"id": event_id}))[0] == 1
            _NOTE.add(session, [_row(uuid.uuid4())])
            query = select(func.count()).select_from(_INBOX).where(_INBOX.c.event_id == event_id)
            assert await session.scalar(query) == 1
            await session.rollback()
    assert len(sent.starting("BEGIN")) == 1
    assert len(sent.containing("INSERT INTO platform.inbox")) == 2
    assert await _noted(session_factory, event_id) == 0


async def test_added_rows_wait_past_a_driver_statement_on_other_tables(
    session_factory: Factory,
) -> None:
    """A driver statement on tables the added rows are not in, and no foreign key links
    them to, runs first: the rows go in one statement with those added after it."""
    event_id = uuid.uuid4()
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            _NOTE.add(session, [_row(event_id)])
            assert await _PAYMENT_STATUS.fetchrow(session, {"id": uuid.uuid4()}) is None
            assert sent.containing("INSERT INTO platform.inbox") == [], "not yet"
            _OUTBOX.add(session, [_outbox_row(event_id)])
            await session.commit()
    [written] = sent.containing("INSERT INTO platform.inbox")
    assert "INSERT INTO platform.outbox" in written
    assert sent.queries.index(written) > sent.queries.index(sent.starting("SELECT")[0])
    assert await _noted(session_factory, event_id) == 1


_LINES_TABLE = cast(Table, OrderLine.__table__)
_NEW_LINE = Statement(insert(_LINES_TABLE))
_ORDER_STATUS = Statement(select(Order.status).where(Order.id == bindparam("id")))


async def test_added_rows_are_written_before_a_statement_on_a_table_linked_to_theirs(
    session_factory: Factory,
) -> None:
    """An order's line names its order (a foreign key): a statement on the orders finds
    the line added before it written (a delete of the order would take it with it)."""
    order_id = await place(session_factory)
    line = {
        "order_id": order_id,
        "position": 99,
        "pizza_id": 1,
        "name": "Margherita",
        "qty": 1,
        "unit_price": 950,
    }
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            _NEW_LINE.add(session, [line])
            assert (await _ORDER_STATUS.fetchrow(session, {"id": order_id}))[0] is not None
            [written] = sent.containing("INSERT INTO ordering.order_lines")
            await session.rollback()
    assert sent.queries.index(written) < sent.queries.index(sent.containing("ordering.orders")[0])


async def test_rows_added_and_rolled_back_are_never_written(session_factory: Factory) -> None:
    event_id = uuid.uuid4()
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            _NOTE.add(session, [_row(event_id)])
            await session.rollback()
            await session.commit()
    assert sent.containing("INSERT") == []
    assert await _noted(session_factory, event_id) == 0


async def test_an_added_row_that_breaks_a_key_fails_the_commit_and_writes_nothing(
    session_factory: Factory,
) -> None:
    event_id, other_id = uuid.uuid4(), uuid.uuid4()
    async with session_factory() as session:
        _NOTE.add(session, [_row(other_id)])
        _NOTE.add(session, [_row(event_id), _row(event_id)])  # the same inbox key twice
        with pytest.raises(IntegrityError) as failed:
            await session.commit()
    assert violated_constraint(failed.value) == "pk_inbox"
    assert await _noted(session_factory, other_id) == 0, "all of the statement, or nothing"


def test_only_an_insert_or_update_without_returning_can_be_added() -> None:
    for refused in (
        Statement(insert(_INBOX).returning(_INBOX.c.event_id)),
        Statement(select(_INBOX.c.event_id)),
    ):
        with pytest.raises(TypeError, match="RETURNING"):
            refused.add(cast(AsyncSession, None), [])


_RETYPE = Statement(update(_OUTBOX_TABLE).where(_OUTBOX_TABLE.c.id == bindparam("at_id")))


async def test_a_row_added_then_changed_is_changed_by_a_statement_after_it(
    session_factory: Factory,
) -> None:
    """The CTEs of one statement all see the tables as they were before it: an UPDATE in
    the same statement as the INSERT of its row would change nothing, and two UPDATEs of
    one row would keep one. Such parts go in statements one after the other."""
    event_id = uuid.uuid4()
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            _OUTBOX.add(session, [_outbox_row(event_id)])
            _NOTE.add(session, [_row(event_id)])
            _RETYPE.add(session, [{"type": "Retyped", "at_id": event_id}])
            _RETYPE.add(session, [{"aggregate_id": "b", "at_id": event_id}])
            await session.commit()
    assert len(sent.containing("INSERT INTO platform.outbox")) == 1, "with the inbox row"
    assert len(sent.starting("UPDATE platform.outbox")) == 2
    assert len(sent.starting("BEGIN")) == 1, "three statements: a transaction"
    async with session_factory() as session:
        written = select(OutboxRow.type, OutboxRow.aggregate_id).where(OutboxRow.id == event_id)
        assert (await session.execute(written)).one() == ("Retyped", "b")
    assert await _noted(session_factory, event_id) == 1


async def test_rows_added_to_a_session_closed_without_commit_are_never_written(
    session_factory: Factory,
) -> None:
    """Closing ends the transaction without a rollback event: the rows go with it, and a
    later transaction of the same session does not write them."""
    event_id, later_id = uuid.uuid4(), uuid.uuid4()
    session = session_factory()
    _NOTE.add(session, [_row(event_id)])
    await session.close()
    _NOTE.add(session, [_row(later_id)])
    await session.commit()
    await session.close()
    assert await _noted(session_factory, event_id) == 0
    assert await _noted(session_factory, later_id) == 1


async def test_rows_are_added_to_a_transaction_only(session_factory: Factory) -> None:
    async with lookup(session_factory) as looking, read_only(session_factory) as reader:
        for session in (looking, reader):
            with pytest.raises(TypeError, match="look-up or a reader"):
                _NOTE.add(session, [_row(uuid.uuid4())])


async def test_added_rows_wait_for_a_transaction_when_orm_objects_go_with_the_commit(
    session_factory: Factory,
) -> None:
    """The commit flushes the session's ORM objects after the added rows: both in one
    transaction (BEGIN), never the rows committed alone before the objects."""
    event_id, orm_id = uuid.uuid4(), uuid.uuid4()
    with SentStatements(session_factory) as sent:
        async with session_factory() as session:
            session.add(InboxRow(handler="test.driver", event_id=orm_id, processed_at=utcnow()))
            _NOTE.add(session, [_row(event_id)])
            await complete(session)
    assert len(sent.starting("BEGIN")) == 1 and len(sent.starting("COMMIT")) == 1
    assert await _noted(session_factory, event_id) == 1
    assert await _noted(session_factory, orm_id) == 1


async def test_rows_added_before_a_savepoint_outlive_its_rollback(
    session_factory: Factory,
) -> None:
    """A savepoint over rows not yet written is refused (they would be written inside it
    and rolled back with it); written first, they stay."""
    event_id = uuid.uuid4()
    async with session_factory() as session:
        _NOTE.add(session, [_row(event_id)])
        with pytest.raises(RuntimeError, match="before a savepoint"):
            await session.begin_nested()
        await write_added(session)
        savepoint = await session.begin_nested()
        with pytest.raises(TypeError, match="savepoint"):
            _NOTE.add(session, [_row(uuid.uuid4())])
        await savepoint.rollback()
        await session.commit()
    assert await _noted(session_factory, event_id) == 1
