"""h2 response classifiers: Linkerd's ``io.l5d.h2.*`` (on ``:status``) and
``io.l5d.h2.grpc.*`` (on the ``grpc-status`` trailer).

A verdict is one of turnout's SUCCESS / FAILURE / RETRYABLE. :meth:`H2Classifier.early` is
asked when the response headers arrive: a verdict, or None when only the end of the stream
can tell (a gRPC response's status is in its trailers). :meth:`H2Classifier.final` is asked
when the response stream ends (``grpc_status`` from the trailers or a trailers-only response).
"""

from __future__ import annotations

from turnout.api import FAILURE, RETRYABLE, SUCCESS

#: HTTP statuses the gRPC ``compliant`` classifier retries
_COMPLIANT_HTTP = frozenset({429, 502, 503, 504})
#: RST_STREAM REFUSED_STREAM
_REFUSED_STREAM = 0x7


class H2Classifier:
    def early(self, method: bytes, status: int, grpc_status: int | None) -> int | None:
        raise NotImplementedError

    def final(self, method: bytes, status: int, grpc_status: int | None) -> int:
        raise NotImplementedError

    def reset(self, method: bytes, error_code: int, written: bool) -> int:
        """The verdict for an attempt reset by the endpoint before its response (or a
        connection lost): retryable when it was never processed."""
        if error_code == _REFUSED_STREAM or not written:
            return RETRYABLE
        return FAILURE


class StatusClassifier(H2Classifier):
    """``io.l5d.h2.{nonRetryable5XX, retryableRead5XX, retryableIdempotent5XX,
    retryableAll5XX, allSuccessful}``: 5XX statuses are failures, retryable for the methods
    given."""

    def __init__(self, retryable_methods: frozenset[bytes], *, all_successful: bool) -> None:
        self.retryable_methods = retryable_methods
        self.all_successful = all_successful

    def early(self, method: bytes, status: int, grpc_status: int | None) -> int | None:
        return self.final(method, status, grpc_status)

    def final(self, method: bytes, status: int, grpc_status: int | None) -> int:
        if self.all_successful or status < 500:
            return SUCCESS
        return RETRYABLE if method in self.retryable_methods else FAILURE

    def reset(self, method: bytes, error_code: int, written: bool) -> int:
        if error_code == _REFUSED_STREAM or not written or method in self.retryable_methods:
            return RETRYABLE
        return FAILURE


class GrpcClassifier(H2Classifier):
    """``io.l5d.h2.grpc.*``: ``grpc-status`` in ``success`` succeeds; a failure is retryable
    when its code is in ``retryable`` (None: every code); an HTTP error status (4XX, 5XX) is
    a failure (retryable for 429/502/503/504 with ``compliant``); a response that ends
    without a grpc-status is a failure."""

    def __init__(
        self, success: frozenset[int], retryable: frozenset[int] | None, *, compliant: bool
    ) -> None:
        self.success = success
        self.retryable = retryable
        self.compliant = compliant

    def early(self, method: bytes, status: int, grpc_status: int | None) -> int | None:
        if grpc_status is not None or status >= 400:
            return self.final(method, status, grpc_status)
        return None

    def final(self, method: bytes, status: int, grpc_status: int | None) -> int:
        if grpc_status is None:
            if status >= 400 and (
                (self.compliant and status in _COMPLIANT_HTTP) or self.retryable is None
            ):
                return RETRYABLE
            return FAILURE
        if grpc_status in self.success:
            return SUCCESS
        if self.retryable is None or grpc_status in self.retryable:
            return RETRYABLE
        return FAILURE

    def reset(self, method: bytes, error_code: int, written: bool) -> int:
        if not written or error_code == _REFUSED_STREAM:  # (never processed: RFC 9113 §8.7)
            return RETRYABLE
        return FAILURE


#: no responseClassifier: Linkerd's h2 default, io.l5d.h2.nonRetryable5XX (on :status only; a
#: gRPC status counts only when a io.l5d.h2.grpc.* classifier is configured)
DEFAULT = StatusClassifier(frozenset(), all_successful=False)
