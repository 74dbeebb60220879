"""HTTP response classification: success, failure, or retryable failure."""

from __future__ import annotations

SUCCESS = 0
FAILURE = 1
RETRYABLE = 2


class Classifier:
    """Linkerd's HTTP classifiers: 5XX responses are failures; they are retryable when the
    request method is in ``retryable_methods`` and the request body was not streamed;
    a response carrying ``l5d-retryable: true`` is a retryable failure whatever the method."""

    __slots__ = ("all_successful", "retryable_methods")

    def __init__(self, retryable_methods: frozenset[bytes], *, all_successful: bool) -> None:
        self.retryable_methods = retryable_methods
        self.all_successful = all_successful

    def classify(self, method: bytes, status: int, l5d_retryable: bool) -> int:
        if self.all_successful:
            return SUCCESS
        if status < 500:
            return SUCCESS
        if l5d_retryable or method in self.retryable_methods:
            return RETRYABLE
        return FAILURE

    def classify_error(self, method: bytes, written: bool) -> int:
        """A request that failed without a response (reset, timeout)."""
        if not written or method in self.retryable_methods:
            return RETRYABLE
        return FAILURE


DEFAULT = Classifier(frozenset(), all_successful=False)
