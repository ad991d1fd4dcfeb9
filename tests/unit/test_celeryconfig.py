"""Queues, routes and reliability settings the workers and the API share."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from audiojobs.config import Settings
from audiojobs.jobs.flow import pipeline_for
from audiojobs.jobs.states import Stage


def _conf(**env: str) -> dict:
    return celeryconfig.build(Settings.from_env({"REDIS_URL": "redis://127.0.0.1:1/0", **env}))


def test_reliability_settings() -> None:
    conf = _conf()
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    limits = [a["time_limit"] for a in conf["task_annotations"].values()]
    assert conf["broker_transport_options"]["visibility_timeout"] > max(limits)
    assert conf["result_backend"] is None and conf["task_ignore_result"]


def test_transcribe_is_routed_to_its_own_queue_and_the_rest_to_cpu() -> None:
    app = Celery("route-test", set_as_current=False)
    app.conf.update(_conf(AUDIO_TRANSCRIBE_QUEUE="gpu_pool"))
    router = app.amqp.router
    for stage in celeryconfig.STAGE_TASKS:
        expected = "gpu_pool" if stage == "audiojobs.audio_transcribe" else "audio_cpu"
        assert router.route({}, stage)["queue"].name == expected, stage
    for task in celeryconfig.CONTROL_TASKS:
        assert router.route({}, task)["queue"].name == "audio_control"


def test_chain_has_the_six_stages_in_order_each_taking_only_the_job_id() -> None:
    app = Celery("chain-test", set_as_current=False)
    app.conf.update(_conf())
    chain = pipeline_for(app, 42)
    assert [t.task for t in chain.tasks] == list(celeryconfig.STAGE_TASKS)
    assert all(t.args == (42, 1) and t.immutable for t in chain.tasks)
    retry = pipeline_for(app, 42, dispatch=3, first=Stage.TRANSCRIBE)
    assert [t.task for t in retry.tasks] == list(celeryconfig.STAGE_TASKS[2:])
    assert all(t.args == (42, 3) for t in retry.tasks)


def test_cpu_only_deployment_may_route_transcription_to_the_cpu_queue() -> None:
    conf = _conf(AUDIO_TRANSCRIBE_QUEUE="audio_cpu")
    assert [q.name for q in conf["task_queues"]] == ["audio_control", "audio_cpu"]


def test_messages_survive_a_redis_flush_between_publishes(redis_url: str) -> None:
    """Redis restarted empty: a long-running producer must still deliver (no binding keys needed)."""
    import redis

    app = Celery("flush-test", set_as_current=False)
    app.conf.update(celeryconfig.build(Settings.from_env({"REDIS_URL": redis_url})))
    client = redis.Redis.from_url(redis_url)
    app.send_task("audiojobs.audio_download", args=(1, 1))
    client.flushdb()
    app.send_task("audiojobs.audio_download", args=(2, 1))
    app.send_task("audiojobs.audio_transcribe", args=(2, 1))
    assert (client.llen("audio_cpu"), client.llen("audio_gpu")) == (1, 1)


def test_a_channel_closed_after_its_connection_was_collected_does_not_kill_the_worker(redis_url: str) -> None:
    """Celery's consumer, on losing the broker, collects the connection (the transport forgets its
    connection info) and then closes it; a channel still open then restores its unacknowledged
    messages as it closes. kombu's own transport raises AttributeError there, which the consumer
    treats as unrecoverable (the worker exits); ours raises a connection error, which the close
    ignores. The message stays in Redis, unacknowledged, for the visibility timeout to restore."""
    import redis
    from kombu import Connection
    from kombu.common import ignore_errors

    from audiojobs import redis_transport

    conf = celeryconfig.build(Settings.from_env({"REDIS_URL": redis_url}))
    assert conf["broker_transport"] == "audiojobs.redis_transport:Transport"
    assert celeryconfig.build(Settings.from_env({"REDIS_URL": "rediss://h:1/0"}))["broker_transport"] is None
    with Connection(redis_url, transport=conf["broker_transport"]) as conn:
        assert isinstance(conn.transport, redis_transport.Transport)
        channel = conn.default_channel
        channel.queue_declare("collected-test")
        with conn.Producer(channel) as producer:
            producer.publish({"n": 1}, routing_key="collected-test")
        message = channel.basic_get("collected-test", no_ack=False)
        assert message is not None and channel.qos._delivered  # taken, not acknowledged
        conn.transport.client = None  # what collect() leaves behind
        ignore_errors(conn, channel.close)  # raises nothing: the worker goes on
    unacked = redis.Redis.from_url(redis_url).hlen("unacked")
    assert unacked == 1
