"""Golden tests of configuration checking (what ``turnout check`` reports).

Each bad config must be refused with a :class:`ConfigError` whose problems say exactly where
(file:line:col and dotted path) and what is wrong, with a hint where one can be given.
"""

from __future__ import annotations

import textwrap

import pytest
from turnout.config import load_text
from turnout.errors import ConfigError
from turnout.plugin_manager import load_plugins


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# (id, config, [(line, column, dotted path, message)]); a message ending in "..." is a prefix.
CASES = [
    (
        "unknown-key-did-you-mean",
        """
        routers:
        - protocol: http
          servers:
          - port: 4140
            ipp: 0.0.0.0
        """,
        [
            (
                5,
                5,
                "routers[0].servers[0].ipp",
                "unknown key 'ipp' (did you mean 'ip'?); allowed keys of server options: "
                "announce, clearContext, ip, label, maxConcurrentRequests, port, serverSession, "
                "socketOptions, timeoutMs, tls",
            )
        ],
    ),
    (
        "unknown-top-level-key",
        """
        namer: []
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """,
        [(1, 1, "namer", "unknown key 'namer' (did you mean 'namers'?); allowed keys of ...")],
    ),
    (
        "unknown-key-in-plugin-kind",
        """
        namers:
        - kind: io.l5d.fs
          rootdir: /srv/disco
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """,
        [
            (2, 3, "namers[0]", "missing required key 'rootDir' (namer kind 'io.l5d.fs'): ..."),
            (
                3,
                3,
                "namers[0].rootdir",
                "unknown key 'rootdir' (did you mean 'rootDir'?); allowed keys of namer kind "
                "'io.l5d.fs': experimental, pollIntervalMs, prefix, rootDir, transformers, kind",
            ),
        ],
    ),
    (
        "typo-kind",
        """
        namers:
        - kind: io.l5d.fss
          rootDir: /srv/disco
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """,
        [
            (
                2,
                9,
                "namers[0].kind",
                "unknown namer kind 'io.l5d.fss' (did you mean 'io.l5d.fs'?); installed namer "
                "kinds: io.l5d.fs, io.l5d.rewrite, test.experimental, test.secret",
            )
        ],
    ),
    (
        "typo-protocol",
        """
        routers:
        - protocol: htttp
          servers: [{port: 4140}]
        """,
        [
            (
                2,
                13,
                "routers[0].protocol",
                "unknown router protocol 'htttp' (did you mean 'http'?)...",
            )
        ],
    ),
    (
        "typo-interpreter-kind",
        """
        routers:
        - protocol: http
          interpreter: {kind: defualt}
          servers: [{port: 4140}]
        """,
        [
            (
                3,
                23,
                "routers[0].interpreter.kind",
                "unknown interpreter kind 'defualt' (did you mean 'default'?)...",
            )
        ],
    ),
    (
        "first-party-identifier-kind",
        """
        routers:
        - protocol: http
          identifier:
            kind: io.l5d.methodAndHost
          servers: [{port: 4140}]
        """,
        [
            (
                4,
                11,
                "routers[0].identifier.kind",
                "unknown http identifier kind 'io.l5d.methodAndHost'; it is provided by the plugin "
                "'turnout-protocol-http': pip install turnout-protocol-http; installed http "
                "identifier kinds: io.l5d.header.token",
            )
        ],
    ),
    (
        "wrong-types",
        """
        admin: 9990
        routers:
        - protocol: http
          bindingTimeoutMs: soon
          originator: maybe
          dtab: 5
          servers: {port: 4140}
        """,
        [
            (1, 8, "admin", "expected a mapping (admin options), got 9990"),
            (4, 21, "routers[0].bindingTimeoutMs", "expected an integer, got 'soon'"),
            (5, 15, "routers[0].originator", "expected true or false, got 'maybe'"),
            (6, 9, "routers[0].dtab", "expected a Dtab string, got 5"),
            (7, 12, "routers[0].servers", "expected a list, got a mapping"),
        ],
    ),
    (
        "port-70000",
        """
        routers:
        - protocol: http
          servers:
          - port: 70000
        """,
        [(4, 11, "routers[0].servers[0].port", "must be between 0 and 65535, got 70000")],
    ),
    (
        "negative-admin-port",
        """
        admin: {port: -1}
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """,
        [(1, 15, "admin.port", "must be between 0 and 65535, got -1")],
    ),
    (
        "no-routers",
        """
        namers: []
        """,
        [(1, 1, "", "missing required key 'routers' (linker options): Routers (at least one).")],
    ),
    (
        "empty-routers",
        """
        routers: []
        """,
        [(1, 10, "routers", "at least one router is required")],
    ),
    (
        "not-a-mapping",
        """
        - protocol: http
        """,
        [(1, 1, "", "expected a mapping (linker options), got a list")],
    ),
    (
        "kind-not-a-string",
        """
        namers:
        - kind: 5
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """,
        [(2, 9, "namers[0].kind", "expected a namer kind name, got 5")],
    ),
    (
        "experimental-not-enabled",
        """
        namers:
        - kind: test.experimental
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """,
        [
            (
                2,
                3,
                "namers[0]",
                "namer kind 'test.experimental' is experimental and must be enabled explicitly: "
                "add 'experimental: true' to this object",
            )
        ],
    ),
    (
        "invalid-dtab-column",
        """
        routers:
        - protocol: http
          dtab: /svc=>/#/io.l5d.fs;/host=>svc
          servers: [{port: 4140}]
        """,
        [
            (
                3,
                35,
                "routers[0].dtab",
                "invalid dtab: simple expected but 's' found at '/svc=>/#/io.l5d.fs;/host=>[s]vc'",
            )
        ],
    ),
    (
        "invalid-path",
        """
        routers:
        - protocol: http
          dstPrefix: svc
          servers: [{port: 4140}]
        """,
        [(3, 14, "routers[0].dstPrefix", "invalid path: '/' expected but 's' found at '[s]vc'")],
    ),
    (
        "yes-is-not-a-string",
        """
        routers:
        - protocol: http
          label: yes
          servers: [{port: 4140}]
        """,
        [
            (
                3,
                10,
                "routers[0].label",
                "expected a string, got true; YAML reads 'yes' as true, quote it: \"yes\"",
            )
        ],
    ),
    (
        "null-is-not-a-string",
        """
        routers:
        - protocol: http
          identifier: {kind: io.l5d.header.token, header: ~}
          servers: [{port: 4140}]
        """,
        [
            (
                3,
                51,
                "routers[0].identifier.header",
                "expected a string, got null; YAML reads '~' as null, quote it: \"~\"",
            )
        ],
    ),
    (
        "jittered-backoff-semantic-check",
        """
        routers:
        - protocol: http
          client:
            failureAccrual:
              kind: io.l5d.consecutiveFailures
              backoff: {kind: jittered, minMs: 100, maxMs: 10}
          servers: [{port: 4140}]
        """,
        [
            (
                6,
                52,
                "routers[0].client.failureAccrual.backoff.maxMs",
                "must be at least minMs (100), got 10",
            )
        ],
    ),
]


CASES_MISSING_KIND = [
    (
        "missing-protocol",
        """
        routers:
        - servers: [{port: 4140}]
        """,
        [(2, 3, "routers[0]", "missing required key 'protocol' (router protocol; ...")],
    ),
    (
        "missing-namer-kind",
        """
        namers:
        - rootDir: /srv/disco
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """,
        [(2, 3, "namers[0]", "missing required key 'kind' (namer kind; installed: ...")],
    ),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(y(t), e, id=i) for i, t, e in CASES]
    + [pytest.param(y(t), e, id=i) for i, t, e in CASES_MISSING_KIND],
)
def test_bad_config_golden(problems, text, expected):
    got = problems(text)
    assert [(p.line, p.column, p.path) for p in got] == [e[:3] for e in expected], [
        str(p) for p in got
    ]
    for problem, (*_, message) in zip(got, expected, strict=True):
        assert problem.source == "l5d.yaml"
        if message.endswith("..."):
            assert problem.message.startswith(message[:-3]), problem.message
        else:
            assert problem.message == message


def test_str_of_problem_is_file_line_col_path_message(problems):
    [problem] = problems(y(CASES[0][1]))
    assert str(problem).startswith(
        "l5d.yaml:5:5: routers[0].servers[0].ipp: unknown key 'ipp' (did you mean 'ip'?);"
    )
    assert problem.as_dict()["line"] == 5
    assert problem.as_dict()["path"] == "routers[0].servers[0].ipp"


def test_unknown_first_party_protocol_gives_pip_install_hint():
    """Without any protocol plugin, ``protocol: http`` says which distribution to install."""
    registry = load_plugins({}, autoload=False).registry
    text = y(
        """
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """
    )
    with pytest.raises(ConfigError) as info:
        load_text(text, "l5d.yaml", registry=registry, environ={})
    [problem] = info.value.problems
    assert (problem.line, problem.column, problem.path) == (2, 13, "routers[0].protocol")
    assert problem.message == (
        "unknown router protocol 'http'; it is provided by the plugin 'turnout-protocol-http': "
        "pip install turnout-protocol-http; installed router protocols: none"
    )


def test_experimental_kind_enabled_is_accepted(registry):
    text = y(
        """
        namers:
        - kind: test.experimental
          experimental: true
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """
    )
    loaded = load_text(text, "l5d.yaml", registry=registry, environ={})
    assert loaded.config.namers[0].experimental is True


def test_empty_document_is_one_problem(problems):
    for text in ("", "\n\n", "# only a comment\n"):
        [problem] = problems(text)
        assert problem.line is None
        assert str(problem) == "l5d.yaml: the configuration is empty; it needs 'routers'"


MULTI = y(
    """
    admin:
      port: 9990
      prot: 9991
    namers:
    - kind: io.l5d.fss
      rootDir: /srv/disco
    routers:
    - protocol: http
      label: ${MISSING}
      dtab: /svc=>/#/io.l5d.fs;oops
      servers:
      - port: 70000
      - port: 9990
      bindingTimeoutMs: 5
      bindingTimeoutMs: 6
      identifier: {kind: io.l5d.path}
    """
)


def test_every_problem_of_a_file_in_one_error_sorted_by_position(problems):
    got = problems(MULTI)
    assert [(p.line, p.column, p.path) for p in got] == [
        (3, 3, "admin.prot"),
        (5, 9, "namers[0].kind"),
        (9, 10, "routers[0].label"),
        (10, 28, "routers[0].dtab"),
        (12, 11, "routers[0].servers[0].port"),
        (13, 11, "routers[0].servers[1].port"),
        (15, 3, "routers[0].bindingTimeoutMs"),
        (16, 22, "routers[0].identifier.kind"),
    ], [str(p) for p in got]
    messages = [p.message for p in got]
    assert "did you mean 'port'?" in messages[0]
    assert "did you mean 'io.l5d.fs'?" in messages[1]
    assert "'MISSING' is not set" in messages[2]
    assert messages[3].startswith("invalid dtab: ")
    assert messages[4] == "must be between 0 and 65535, got 70000"
    assert messages[5].startswith("server conflict on 127.0.0.1:9990: the admin server")
    assert messages[6].startswith("duplicate key 'bindingTimeoutMs' (first defined at line 14")
    assert "pip install turnout-protocol-http" in messages[7]


def test_config_error_str_lists_every_problem_one_per_line(registry):
    with pytest.raises(ConfigError) as info:
        load_text(MULTI, "l5d.yaml", registry=registry, environ={})
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems) == 8
    assert all(line.startswith("l5d.yaml:") for line in lines)
    assert lines[0].startswith("l5d.yaml:3:3: admin.prot: unknown key 'prot'")


def test_problem_in_a_list_of_plugin_objects_names_the_index(problems):
    text = y(
        """
        namers:
        - kind: io.l5d.fs
          rootDir: /a
        - kind: io.l5d.fs
          rootDir: /b
          pollIntervalMs: 1
        routers:
        - protocol: http
          servers: [{port: 4140}]
        """
    )
    [problem] = problems(text)
    assert (problem.line, problem.column, problem.path) == (6, 19, "namers[1].pollIntervalMs")
    assert problem.message == "must be between 10 and 60000, got 1"


def test_an_unsupported_key_warns_only_for_values_turnout_does_not_honour(registry) -> None:
    """``failFast: false`` (Linkerd's default, what turnout does) loads quietly; ``true``
    warns."""
    from turnout.config import load_text as load

    def warnings(value: str) -> list[str]:
        text = (
            "routers:\n- protocol: http\n  servers: [{port: 0}]\n"
            f"  client: {{kind: io.l5d.global, failFast: {value}}}\n"
        )
        return [w.message for w in load(text, "l5d.yaml", registry=registry, environ={}).warnings]

    assert warnings("false") == []
    assert warnings("true") == ["failFast: true is not implemented yet; ignored"]
