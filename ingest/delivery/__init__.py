"""Alert delivery (#20): channels, the persisted outbox and its worker.

* :mod:`ingest.delivery.channels`: what a channel is, its validation and masking;
* :mod:`ingest.delivery.senders`: one attempt to one channel (webhook with HMAC and
  ``Idempotency-Key``; Slack, Discord, Telegram and e-mail through apprise);
* :mod:`ingest.delivery.worker`: the outbox worker thread (claims due rows, sends,
  retries with backoff and full jitter up to a max age, honours ``Retry-After``).

Events are enqueued by the alert store in the transaction that stores them
(:meth:`ingest.store.alert_sql.SqlAlertStore.save`), never sent on the evaluation path.
"""

from ingest.delivery.channels import (
    KINDS,
    ChannelError,
    ChannelNotFound,
    ChannelSpec,
    channel_json,
    mask_url,
    parse_channel,
    scrub,
)

__all__ = [
    "KINDS",
    "ChannelError",
    "ChannelNotFound",
    "ChannelSpec",
    "channel_json",
    "mask_url",
    "parse_channel",
    "scrub",
]
