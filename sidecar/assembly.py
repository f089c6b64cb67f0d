"""Builds the sidecar's group kind from the configuration: the one place that knows both kinds.

SIDECAR_GROUP_TYPE=consumer gives the classic pipeline (dispatcher, offset tracker, commits) and its
poll-thread member; share gives the share pipeline and its share consumers. The daemon and the
service get a ``Group`` and a ``Member`` (``sidecar.group``) and never ask which.
"""

from __future__ import annotations

import asyncio

from sidecar.config import Config
from sidecar.consumer.dispatcher import Dispatcher
from sidecar.consumer.handoff import Handoff
from sidecar.consumer.member import GroupMember
from sidecar.consumer.pipeline import Pipeline
from sidecar.core.delivery import Ordering, Policy
from sidecar.group import Group, Member
from sidecar.kafka.deadletter import DeadLetterProducer
from sidecar.share.dispatch import ShareDispatcher
from sidecar.share.handoff import GroupTerms, ShareHandoff
from sidecar.share.member import CAN_RENEW, ShareMember
from sidecar.share.pipeline import SharePipeline
from sidecar.share.terms import Terms, hold_seconds

#: Kafka's own default for max.poll.interval.ms
MAX_POLL_INTERVAL_MS = 300_000


def policy(config: Config) -> Policy:
    """The classic dispatcher's delivery policy from the SIDECAR_* settings."""
    return Policy(
        ordering=Ordering(config.ordering),
        ack_timeout_s=config.ack_timeout_ms / 1000,
        retry_backoff_s=config.retry_backoff_ms / 1000,
        retry_backoff_max_s=config.retry_backoff_max_ms / 1000,
        max_attempts=config.max_delivery_attempts,
        dead_letter=config.dlq_topic is not None,
        skip_exhausted=config.on_exhausted == "skip",
        gap_metadata_max_bytes=config.gap_metadata_max_bytes,
    )


def build(config: Config, loop: asyncio.AbstractEventLoop) -> tuple[Group, Member]:
    dead_letters = DeadLetterProducer(config.dlq_topic, config.kafka) if config.dlq_topic else None
    if config.share:
        return _share(config, loop, dead_letters)
    pipeline = Pipeline(
        Dispatcher(config.max_batch_records, config.max_batch_bytes, policy(config)),
        commit_interval_s=config.commit_interval_ms / 1000,
        revoke_grace_s=config.revoke_grace_ms / 1000,
        dead_letters=dead_letters,
    )
    handoff = Handoff(loop, pipeline, revoke_timeout_s=config.revoke_grace_ms / 1000 + 5)
    pipeline.attach(handoff)
    return pipeline, GroupMember(config, handoff)


def _share(
    config: Config, loop: asyncio.AbstractEventLoop, dead_letters: DeadLetterProducer | None
) -> tuple[Group, Member]:
    max_poll_s = int(config.kafka.get("max.poll.interval.ms", MAX_POLL_INTERVAL_MS)) / 1000
    defaults = GroupTerms()  # until the broker describes the group (see SharePipeline.on_group_terms)
    terms = Terms(
        hold_s=hold_seconds(defaults.lock_ms / 1000, max_poll_s),
        retry_backoff_s=config.retry_backoff_ms / 1000,
        retry_backoff_max_s=config.retry_backoff_max_ms / 1000,
        max_attempts=defaults.delivery_limit,
        dead_letter=dead_letters is not None,
    )
    dispatcher = ShareDispatcher(terms, config.max_batch_records, config.max_batch_bytes)
    dispatcher.can_renew = CAN_RENEW
    pipeline = SharePipeline(
        dispatcher,
        max_attempts=config.max_delivery_attempts,
        ack_timeout_s=config.ack_timeout_ms / 1000,
        max_poll_s=max_poll_s,
        dead_letters=dead_letters,
    )
    handoff = ShareHandoff(loop, pipeline, config.share_consumers)
    pipeline.attach(handoff)
    member = ShareMember(config, handoff)

    def held(count: int) -> None:
        member.held = count

    pipeline.held_by_member = held
    return pipeline, member
