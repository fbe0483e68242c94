"""Delivery: one rendered message to one destination, and whether to retry.

    registry = build_registry(config)            # channel:NAME, person:NAME/KIND
    delivery = await registry["channel:ops"].send(message)
    if not delivery.ok and delivery.retry: try again after delivery.retry_after (or backoff)

See docs/decisions/0002-notifications.md and docs/webhook.md.
"""

from .apprise_notifier import AppriseNotifier, AppriseUrlError
from .base import (
    KINDS,
    Delivery,
    DeliveryError,
    ErrorKind,
    Kind,
    Message,
    Notifier,
    Related,
    classify_exception,
    parse_retry_after,
)
from .email import EmailNotifier, SmtpSettings
from .registry import (
    PERSON_KINDS,
    NotifyConfigError,
    Registry,
    build_registry,
    describe,
    make_test_message,
    notify_test,
    people_channel,
    registry_problems,
)
from .render import FORMATS, Renderer, TemplateError, sample_message
from .slack import SlackNotifier
from .webhook import WEBHOOK_VERSION, WebhookNotifier, webhook_body

__all__ = [
    "FORMATS", "KINDS", "PERSON_KINDS", "WEBHOOK_VERSION", "AppriseNotifier", "AppriseUrlError",
    "Delivery", "DeliveryError", "EmailNotifier", "ErrorKind", "Kind", "Message", "Notifier",
    "NotifyConfigError", "Registry", "Related", "Renderer", "SlackNotifier", "SmtpSettings",
    "TemplateError", "WebhookNotifier", "build_registry", "classify_exception", "describe",
    "make_test_message", "notify_test", "parse_retry_after", "people_channel",
    "registry_problems", "sample_message", "webhook_body",
]
