"""The embedded broker on an event loop: it hands out what QoS allows and never waits.

These run kombu's own hub and consumers against a real SQLite broker file, the way
a worker does, with a second connection publishing synchronously as the API does.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection, Consumer, Exchange, Message, Producer, Queue
from kombu.asynchronous import Hub

from workers.sql_broker import POLL_MAX_SECONDS, celery_url

QUEUE = Queue("documents", Exchange("documents", "direct"), "documents")


@pytest.fixture
def url(tmp_path: Path) -> str:
    return celery_url(f"sqla+sqlite:///{tmp_path / 'broker.sqlite'}")


@pytest.fixture
def hub() -> Iterator[Hub]:
    loop = Hub()
    yield loop
    loop.close()


@pytest.fixture
def worker_connection(url: str, hub: Hub) -> Iterator[Connection]:
    with Connection(url) as connection:
        connection.connect()
        connection.transport.register_with_event_loop(connection.connection, hub)
        yield connection


def publish(url: str, count: int) -> None:
    with Connection(url) as connection:
        producer = Producer(connection.default_channel)
        for index in range(count):
            producer.publish({"n": index}, exchange=QUEUE.exchange, routing_key="documents",
                             declare=[QUEUE])


def consume(connection: Connection, prefetch: int) -> list[Message]:
    received: list[Message] = []
    consumer = Consumer(connection.default_channel, [QUEUE], callbacks=[
        lambda _body, message: received.append(message)])
    consumer.qos(prefetch_count=prefetch)
    consumer.consume()
    return received


def run(hub: Hub, seconds: float) -> None:
    loop = hub.create_loop()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        next(loop)


def waiting(connection: Connection) -> int:
    return connection.default_channel._size("documents")


def test_the_hub_hands_out_no_more_than_the_prefetch_count(
        url: str, hub: Hub, worker_connection: Connection) -> None:
    publish(url, 5)
    received = consume(worker_connection, prefetch=2)

    run(hub, 0.5)

    assert [m.payload["n"] for m in received] == [0, 1]
    assert waiting(worker_connection) == 3


def test_an_acknowledgement_lets_the_next_message_through_at_once(
        url: str, hub: Hub, worker_connection: Connection) -> None:
    publish(url, 3)
    received = consume(worker_connection, prefetch=1)
    run(hub, 0.3)  # long enough for the poll to settle on its idle interval
    assert len(received) == 1

    received[0].ack()
    run(hub, 0.02)

    assert [m.payload["n"] for m in received] == [0, 1]


def test_a_message_published_later_is_delivered(
        url: str, hub: Hub, worker_connection: Connection) -> None:
    received = consume(worker_connection, prefetch=2)
    run(hub, 0.3)
    publish(url, 1)

    run(hub, POLL_MAX_SECONDS + 0.2)

    assert [m.payload["n"] for m in received] == [0]


def test_polling_backs_off_while_the_queue_stays_empty(
        hub: Hub, worker_connection: Connection) -> None:
    consume(worker_connection, prefetch=2)

    run(hub, 1.0)

    assert worker_connection.transport.polling_interval == POLL_MAX_SECONDS


def test_a_closed_connection_stops_polling(
        url: str, hub: Hub, worker_connection: Connection) -> None:
    consume(worker_connection, prefetch=2)
    run(hub, 0.1)

    worker_connection.close()
    publish(url, 1)
    run(hub, POLL_MAX_SECONDS + 0.1)

    with Connection(url) as connection:
        assert connection.default_channel._size("documents") == 1
