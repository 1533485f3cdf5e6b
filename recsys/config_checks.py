"""Checks of ``RECSYS_*`` values beyond their types: variable names (misspellings), whole-section JSON, the database
URL, the logging variables and a few settings whose valid values the code elsewhere knows (Pillow's image formats,
the item text fields). Each raises :class:`~recsys.errors.ConfigError` naming the variable, said in one line by the
CLI. :mod:`recsys.config` calls them, passing its ``Settings`` class where they need its fields (this module never
imports it)."""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from typing import Any, get_args, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel

from recsys.errors import ConfigError

TOOL_VARIABLES = frozenset({"LOG_LEVEL", "LOG_FORMAT", "KEY", "TEST_POSTGRES_URL", "TEST_REDIS_URL", "E2E_HOME",
                            "CHROMIUM", "UPDATE_SCREENSHOTS", "NB_DATA"})
TOOL_PREFIXES = ("NB_", "TEST_", "BENCH_")
"""``RECSYS_*`` variables that are not settings: logging, the client's key, the test suite's, notebooks' and
benchmarks' own."""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DATABASE_FORMS = ("sqlite:///PATH (a file; the default is RECSYS_HOME/recsys.db) or "
                  "postgresql+psycopg://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?OPTION=VALUE...]")


_QUERY_PASSWORD = re.compile(r"(?i)((?:^|[?&;])[^=&;?]*password=)[^&;#]*")
"""``password=`` (libpq's and redis-py's form for a password with special characters), ``sslpassword=``... in a
query string."""


def without_password(url: str) -> str:
    """``url`` with its passwords, if any, shown as ``***`` (a database or Redis URL printed or logged): the one in
    ``user:password@host`` and any ``...password=`` query option."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # unparsable (a bad IPv6 host): the query form is still masked
        return _QUERY_PASSWORD.sub(r"\1***", url)
    if password:
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{parts.netloc.rsplit('@', 1)[1]}")
    return urlunsplit(parts._replace(query=_QUERY_PASSWORD.sub(r"\1***", parts.query))) if (
        password or _QUERY_PASSWORD.search(parts.query)) else url


def _sections(settings_cls: type[BaseModel]) -> dict[str, type[BaseModel]]:
    return {name: f.annotation for name, f in settings_cls.model_fields.items()
            if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}


def check_environment(environ: Mapping[str, str], settings_cls: type[BaseModel]) -> None:
    """Refuse a ``RECSYS_*`` variable that names no setting but looks like one (``RECSYS_DATABASE__URL``,
    ``RECSYS_EXPERIMENTS__FIEL``, ``RECSYS_RANKING_SEED``), or a whole section's JSON with such a key
    (``RECSYS_RANKING='{"exclude_purchsed": true}'``): ignored, it would quietly leave the default in place, such as
    another store. Unknown names unlike any setting are left alone (other tools may share the prefix)."""
    sections = _sections(settings_cls)
    _check_section_json(environ, sections)
    known = {n.upper() for n in settings_cls.model_fields} | {f"{s.upper()}__{k.upper()}" for s, m in sections.items()
                                                          for k in m.model_fields}
    spellings = {k.replace("__", "_"): k for k in known} | {k: k for k in known}  # one underscore for two, too
    for var in sorted(environ):
        if not var.startswith("RECSYS_"):
            continue
        name = var[len("RECSYS_"):]
        if name in known or name in TOOL_VARIABLES or name.startswith(TOOL_PREFIXES):
            continue
        head = name.split("__", 1)[0]
        close = difflib.get_close_matches(name, list(spellings), n=1, cutoff=0.8)
        if "__" not in name and not close:
            continue
        hint = spellings[close[0]] if close else None
        if hint is None and head.lower() in sections:
            keys = sorted(sections[head.lower()].model_fields)
            raise ConfigError(f"{var} names no setting of {head.lower()!r}; its settings are {', '.join(keys)} "
                              f"(RECSYS_{head}__NAME); fix or unset it")
        raise ConfigError(f"{var} names no setting" + (f"; did you mean RECSYS_{hint}?" if hint else ".")
                          + " Fix or unset it (ignored, it would leave the default in place); with it unset, "
                            "`recsys config` lists every setting")


def _check_section_json(environ: Mapping[str, str], sections: Mapping[str, type[BaseModel]]) -> None:
    """A key of ``RECSYS_<SECTION>='{...}'`` that names no setting is refused as its ``__`` form is: pydantic
    ignores it, leaving the default in place."""
    for section, model in sections.items():
        var = f"RECSYS_{section.upper()}"
        try:
            value = json.loads(environ[var]) if var in environ else None
        except ValueError:
            continue  # said by not_json, when the source parses it
        if not isinstance(value, dict):
            continue
        for key in sorted(set(value) - set(model.model_fields)):
            close = difflib.get_close_matches(str(key), list(model.model_fields), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? Its" if close else "its"
            raise ConfigError(f"{var} has {key!r}, which names no setting of {section!r}; {hint} settings are "
                              f"{', '.join(sorted(model.model_fields))}; fix the key (ignored, it would leave the "
                              "default in place)")


def not_json(environ: Mapping[str, str], settings_cls: type[BaseModel]) -> str | None:
    """What is wrong with the first ``RECSYS_<SECTION>`` or ``RECSYS_<SECTION>__<NAME>`` whose setting is a section,
    a list or a mapping and whose value is not JSON (``RECSYS_API__CORS_ORIGINS=https://shop.example``), or None."""
    sections = {n.upper(): m for n, m in _sections(settings_cls).items()}
    for var in sorted(environ):
        section, _, name = var.removeprefix("RECSYS_").partition("__")
        model = sections.get(section) if var.startswith("RECSYS_") else None
        if model is not None and not name and not _is_json(environ[var]):
            first = next(iter(model.model_fields.items()))
            example = json.dumps({first[0]: first[1].get_default(call_default_factory=True)}, default=str)
            return (f"{var} is not JSON: write the section as a JSON object, e.g. '{example}', or set its settings "
                    f"one by one (RECSYS_{section}__{first[0].upper()})")
        field = model.model_fields.get(name.lower()) if model is not None else None
        kinds = {get_origin(a) or a for a in (field.annotation, *get_args(field.annotation))} if field else set()
        if field is None or not kinds & {list, dict}:
            continue
        if not _is_json(environ[var]):
            return f"{var} is not JSON: write it as a JSON {_json_example(field.annotation, environ[var])}"
    return None


def _is_json(value: str) -> bool:
    try:
        json.loads(value)
    except ValueError:
        return False
    return True


def _json_example(annotation: Any, value: str) -> str:
    """'list, e.g. ...' or 'object, e.g. ...' for a setting of type ``annotation`` set to ``value``: a list of
    objects (experiment definitions) gets an object in its example, not the raw value, which it would refuse too."""
    kinds = {get_origin(a) or a for a in (annotation, *get_args(annotation))}
    if list not in kinds:
        return f"object, e.g. '{json.dumps({'name': value})}'"
    items = [a for a in get_args(annotation) if (get_origin(a) or a) is not list]
    of_objects = any((get_origin(a) or a) is dict or (isinstance(a, type) and issubclass(a, BaseModel)) for a in items)
    return (f"list of objects, e.g. '[{{\"name\": {json.dumps(value)}, ...}}]' (see the README)" if of_objects
            else f"list, e.g. '{json.dumps([value])}'")


def check_database_url(url: str) -> str:
    """``url`` if it is a database URL recsys can open; else ConfigError naming RECSYS_DATABASE_URL and the forms it
    takes. Checked when settings are read: the engine is made later, outside the CLI's error mapping, where a
    misspelt driver or a bad port was a traceback."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if not url.strip():
        raise ConfigError("RECSYS_DATABASE_URL is set but empty; unset it for the SQLite file in RECSYS_HOME, or "
                          f"give a database URL: {DATABASE_FORMS}")
    try:
        u = make_url(url)
        why = _unsupported(u.get_backend_name(), u.get_driver_name(), u.drivername) or _pg_options(u)
    except (ArgumentError, ValueError) as e:
        why = f"not a URL: {str(e).splitlines()[0]}"
    if why:
        raise ConfigError(f"RECSYS_DATABASE_URL {without_password(url)!r} cannot be used ({why}); write "
                          f"{DATABASE_FORMS}")
    return url


def _unsupported(backend: str, driver: str, written: str) -> str | None:
    if backend == "sqlite" and driver == "pysqlite":
        return None
    if backend == "postgresql":  # psycopg 3: the server's request bounds and event-loop reads use its API
        return None if driver == "psycopg" else f"the driver of {written!r} is not psycopg"
    return f"{written!r} is not a database recsys supports"


def _pg_options(u: Any) -> str | None:
    """What psycopg would refuse in a PostgreSQL URL's port and options (an unknown name, a connect_timeout that is
    not a number, a value libpq does not take), found without connecting."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo, timeout_from_conninfo
    from sqlalchemy import create_engine

    if u.get_backend_name() != "postgresql":
        return None
    if u.port is not None and not 1 <= u.port <= 65535:  # SQLAlchemy drops a port 0: the default port was used
        return f"port {str(u.port)!r} is not a port number: give one from 1 to 65535"
    _, params = create_engine(u).dialect.create_connect_args(u)  # what SQLAlchemy hands psycopg.connect
    params.pop("context", None)
    try:
        parsed = conninfo_to_dict(make_conninfo(**params))  # libpq parses the names
        timeout_from_conninfo(parsed)
    except psycopg.Error as e:
        return str(e).splitlines()[0]
    info = {k: str(v) for k, v in parsed.items() if v is not None}  # libpq's values are strings
    return _pg_ports(info) or _pg_values(info)


_PG_CHOICES = {
    "sslmode": ("disable", "allow", "prefer", "require", "verify-ca", "verify-full"),
    "gssencmode": ("disable", "prefer", "require"),
    "channel_binding": ("disable", "prefer", "require"),
    "target_session_attrs": ("any", "read-write", "read-only", "primary", "standby", "prefer-standby"),
    "load_balance_hosts": ("disable", "random"),
    "sslnegotiation": ("postgres", "direct"),
    "sslcertmode": ("disable", "allow", "require"),
    "min_protocol_version": ("3.0", "3.2", "latest"),
    "max_protocol_version": ("3.0", "3.2", "latest"),
}
"""libpq's options whose values are a fixed set (written exactly so, in that case): libpq refuses any other only at
connect, which recsys then said as "the server is unreachable". Options a libpq does not know are refused by name
before these are looked at."""
_PG_CHOICES_UNTIL = 190000
"""The table is libpq 18's: with a later libpq (psycopg.pq.version()) the values are left to it, at connect."""
_PG_TLS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""ssl_min_protocol_version and ssl_max_protocol_version (any case)."""
_PG_AUTH = ("password", "md5", "gss", "sspi", "scram-sha-256", "oauth", "none")
"""require_auth's methods: a comma-separated list, all or none of them negated with "!"."""
_PG_INTEGERS = ("keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout")
_PG_INTEGER = re.compile(r"\s*[+-]?\d{1,10}\s*")
"""How libpq reads an integer option (strtol, spaces around it allowed), to a C int."""


def _pg_int(value: str) -> int | None:
    return int(value) if _PG_INTEGER.fullmatch(value) and abs(int(value)) < 2**31 else None


def _pg_ports(info: Mapping[str, str]) -> str | None:
    """What libpq would refuse in the port(s) at connect: one out of 1-65535, or more ports than hosts."""
    ports = info.get("port", "").split(",")
    for port in filter(None, ports):  # an empty one is the default port
        number = _pg_int(port)
        if number is None or not 1 <= number <= 65535:
            return f"port {port.strip()!r} is not a port number: give one from 1 to 65535"
    hosts = info.get("hostaddr") or info.get("host")  # without either, PGHOST may give the hosts
    if hosts and len(ports) > 1 and len(ports) != len(hosts.split(",")):
        return f"{len(ports)} ports for {len(hosts.split(','))} host(s): give one port for all, or one per host"
    return None


def _pg_values(info: Mapping[str, str]) -> str | None:
    """What libpq would refuse in an option's value at connect (``sslmode=bogus``, ``keepalives=yes``)."""
    import psycopg

    known = psycopg.pq.version() < _PG_CHOICES_UNTIL  # a later libpq may take values the table lacks: it judges
    for name, choices in _PG_CHOICES.items() if known else ():
        if name in info and info[name] not in choices:
            return f"{name}={info[name]!r} is not one of {', '.join(choices)}"
    for name in ("ssl_min_protocol_version", "ssl_max_protocol_version"):
        if info.get(name) and info[name].lower() not in {v.lower() for v in _PG_TLS}:
            return f"{name}={info[name]!r} is not one of {', '.join(_PG_TLS)}"
    for name in _PG_INTEGERS:
        if name in info and _pg_int(info[name]) is None:
            return f"{name}={info[name]!r} is not a whole number"
    if info.get("sslnegotiation") == "direct" and info.get("sslmode") in ("disable", "allow", "prefer"):
        return f"sslnegotiation=direct needs sslmode=require, verify-ca or verify-full, not {info['sslmode']}"
    methods = info.get("require_auth", "").split(",") if info.get("require_auth") else []
    if any(m.removeprefix("!") not in _PG_AUTH for m in methods) or len(set(methods)) != len(methods):
        return (f"require_auth={info['require_auth']!r} is not a list of {', '.join(_PG_AUTH)}, each once "
                "(all or none of them with a leading '!')")
    if len({m.startswith("!") for m in methods}) > 1:
        return f"require_auth={info['require_auth']!r} mixes methods with and without '!': use one kind"
    return None


def nonempty_home(value: Any) -> Any:
    """RECSYS_HOME='' would make the current directory the data directory (Path('') is '.'), not ./.recsys."""
    if isinstance(value, str) and not value.strip():
        raise ConfigError("RECSYS_HOME is set but empty; unset it for ./.recsys, or name the data directory")
    return value


def log_level(environ: Mapping[str, str], default: str) -> str:
    """``RECSYS_LOG_LEVEL`` in upper case (any case accepted), ``default`` when unset; ConfigError otherwise."""
    value = environ.get("RECSYS_LOG_LEVEL")
    if value is None:
        return default
    if value.strip().upper() not in LOG_LEVELS:
        raise ConfigError(f"RECSYS_LOG_LEVEL={value!r} is not a log level; use one of "
                          f"{', '.join(LOG_LEVELS).lower()} (any case), or unset it")
    return value.strip().upper()


def log_format(environ: Mapping[str, str], default: str) -> str:
    """``RECSYS_LOG_FORMAT``: ``json`` or ``text`` (any case), ``default`` when unset; ConfigError otherwise."""
    value = environ.get("RECSYS_LOG_FORMAT")
    if value is None:
        return default
    if value.strip().lower() not in ("json", "text"):
        raise ConfigError(f"RECSYS_LOG_FORMAT={value!r} is not a log format; use json or text, or unset it")
    return value.strip().lower()


def image_formats(names: list[str]) -> list[str]:
    """Pillow's names of the formats (upper case); ConfigError naming one it does not know (``JPG``: JPEG)."""
    from PIL import Image

    Image.init()
    known = set(Image.OPEN)
    by_extension = {ext.lstrip(".").upper(): fmt for ext, fmt in Image.registered_extensions().items()}
    out = [n.strip().upper() for n in names]
    for name in out:
        if name not in known:
            hint = f"did you mean {by_extension[name]}? Use" if name in by_extension else "use"
            raise ConfigError(f"RECSYS_API__IMAGE_FORMATS has {name!r}, which is not an image format Pillow "
                              f"reads; {hint} Pillow's names, e.g. JPEG, PNG, WEBP, GIF, BMP")
    return out


def text_fields(fields: dict[str, float]) -> dict[str, float]:
    """Field names the item text is made of (a column, ``generated_description`` or ``attributes.KEY``), weights
    finite and >= 0: a misspelt field is never present, so it would give no text without a word."""
    from recsys.encoders.text import COLUMNS, GENERATED

    forms = f"{', '.join(COLUMNS)}, {GENERATED} or attributes.KEY"
    for name, weight in fields.items():
        known = name in COLUMNS or name == GENERATED or (name.startswith("attributes.") and len(name) > 11)
        if not known:
            raise ConfigError(f"RECSYS_ENCODER__TEXT_FIELDS has {name!r}, which is no item text field; use {forms}")
        if not (math.isfinite(weight) and weight >= 0):
            raise ConfigError(f"RECSYS_ENCODER__TEXT_FIELDS weight of {name!r} is {weight}; weights are finite "
                              "and >= 0 (0 leaves the field out)")
    return fields


def forwarded_allow_ips(value: str) -> str:
    """Comma-separated addresses or networks, or ``*``: uvicorn treats anything else as a literal host name the
    peer never has, so a typo would trust no proxy without a word."""
    for part in filter(None, (p.strip() for p in value.split(","))):
        if part == "*":
            continue
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ConfigError(f"RECSYS_API__FORWARDED_ALLOW_IPS has {part!r}, which is not an IP address or "
                              "network; give comma-separated addresses or networks (10.0.0.1, 10.0.0.0/8), or *"
                              ) from None
    return value
