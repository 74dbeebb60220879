"""turnout-protocol-thrift: ``protocol: thrift``, Linkerd 1's Thrift router on the core request
stack (framed and buffered transports, binary and compact protocols, Finagle's TTwitter
upgrade)."""

__version__ = "0.1.0"
