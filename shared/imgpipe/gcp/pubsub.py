"""The Pub/Sub event sink: the CloudEvent as the message data, `type` and `subject` as
attributes (PUBSUB_EMULATOR_HOST is honoured by the client library itself)."""

from __future__ import annotations

from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from imgpipe.gcp._errors import translated

PUBLISH_TIMEOUT = 30.0


class PubSubSink:
    def __init__(self, project: str, topic: str) -> None:
        self._client = pubsub_v1.PublisherClient()
        self.topic = (
            topic if topic.startswith("projects/") else self._client.topic_path(project, topic)
        )

    def send(self, body: bytes, event_type: str, subject: str) -> None:
        with translated(f"publishing to {self.topic}", "event topic"):
            future = self._client.publish(self.topic, body, type=event_type, subject=subject)
            future.result(timeout=PUBLISH_TIMEOUT)
