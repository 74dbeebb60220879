"""turnout-namerd-mesh: Linkerd's ``io.l5d.mesh`` gRPC API, both sides: namerd's interface
(the ``io.linkerd.mesh`` Interpreter, Resolver, Delegator and Codec services) and the
linkers' interpreter that binds through it."""

__version__ = "0.1.0"
