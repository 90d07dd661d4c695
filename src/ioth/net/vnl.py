"""VNL (Virtual Network Locator) parsing, compatible with vdeplug4.

A VNL is ``module://args``; the module is everything before the first ``://``.  A string without
``://`` is a path meaning ``vde://PATH``; an empty string means the user's default switch.

Plugs use one of three argument styles (see ``shared/specs/vde.md`` section 1):

``slash``    ``addr/key=val/key``        (vxvde, vxlan, udp, slirp)
``bracket``  ``path[key=val/key]``       (vde, hub, switch, ptp, tap, cmd)
``wrapper``  ``prefix[key=val]{VNL}``    (vlan, agno, impair, capture); the prefix is bracket style

Quoting works everywhere: ``'...'``, ``"..."``, ``\\x`` escapes one character and ``%XX``
percent-decodes.  Keys may be abbreviated to any unique prefix; an unknown or ambiguous key is an
error that names it.  This module is pure: the only I/O is :func:`default_vnl`, which reads the
user's default-switch files.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from ioth.errors import VNLError

Style = Literal["slash", "bracket", "wrapper", "raw"]

_QUOTES = "'\""


@dataclass(frozen=True)
class VNL:
    """A parsed VNL.

    ``address`` is the decoded address or path part, ``options`` maps full key names to their
    values ("" for a bare flag), ``args`` holds bare tokens that are not keys (a port number or
    port-group name for ``vde://``), ``nested`` is the raw text of a wrapped VNL.
    """

    scheme: str
    address: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()
    nested: str | None = None
    text: str = ""

    def get(self, key: str, default: str | None = None) -> str | None:
        """Return option ``key`` or ``default``."""
        return self.options.get(key, default)

    def flag(self, key: str) -> bool:
        """True if option ``key`` is present (as a flag or with any value)."""
        return key in self.options

    def int_option(self, key: str, default: int) -> int:
        """Return option ``key`` as an integer (decimal, 0x hex or 0o octal)."""
        value = self.options.get(key)
        if value is None or value == "":
            return default
        try:
            return int(value, 0)
        except ValueError:
            raise VNLError(
                f"VNL {self.text!r}: option {key}={value!r} is not an integer"
            ) from None


def split_scheme(text: str) -> tuple[str, str]:
    """Split ``module://rest``; a string without ``://`` is ``vde://text``."""
    idx = text.find("://")
    if idx < 0:
        return "vde", text
    scheme = text[:idx]
    if not scheme or not all(c.isalnum() or c in "_-+." for c in scheme):
        raise VNLError(f"VNL {text!r}: bad module name {scheme!r}")
    return scheme.lower(), text[idx + 3 :]


def decode(token: str) -> str:
    """Remove quotes, resolve ``\\x`` escapes and ``%XX`` percent escapes."""
    out: list[str] = []
    i = 0
    quote = ""
    n = len(token)
    while i < n:
        c = token[i]
        if quote:
            if c == quote:
                quote = ""
            else:
                out.append(c)
            i += 1
        elif c in _QUOTES:
            quote = c
            i += 1
        elif c == "\\" and i + 1 < n:
            out.append(token[i + 1])
            i += 2
        elif c == "%" and _is_hex(token[i + 1 : i + 3]):
            out.append(chr(int(token[i + 1 : i + 3], 16)))
            i += 3
        else:
            out.append(c)
            i += 1
    if quote:
        raise VNLError(f"unterminated quote in {token!r}")
    return "".join(out)


def _is_hex(s: str) -> bool:
    return len(s) == 2 and all(c in "0123456789abcdefABCDEF" for c in s)


def _scan(text: str, seps: str) -> list[tuple[int, str]]:
    """Positions of unquoted, unescaped characters of ``seps`` at brace depth 0."""
    hits: list[tuple[int, str]] = []
    quote = ""
    depth = 0
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
        elif c in _QUOTES:
            quote = c
        elif c == "\\":
            i += 1
        elif c == "{":
            if depth == 0 and c in seps:
                hits.append((i, c))
            depth += 1
        elif c == "}":
            depth -= 1
            if depth < 0:
                raise VNLError(f"unbalanced '}}' at position {i} in {text!r}")
            if depth == 0 and c in seps:
                hits.append((i, c))
        elif depth == 0 and c in seps:
            hits.append((i, c))
        i += 1
    if quote:
        raise VNLError(f"unterminated quote in {text!r}")
    if depth:
        raise VNLError(f"unbalanced '{{' in {text!r}")
    return hits


def split_unquoted(text: str, sep: str) -> list[str]:
    """Split ``text`` on unquoted ``sep`` characters outside braces (tokens stay encoded)."""
    parts: list[str] = []
    start = 0
    for pos, _ in _scan(text, sep):
        parts.append(text[start:pos])
        start = pos + 1
    parts.append(text[start:])
    return parts


def resolve_key(token: str, keys: Iterable[str], text: str) -> str | None:
    """Full key name for a possibly abbreviated ``token``; None if it matches no key."""
    keys = tuple(keys)
    if token in keys:
        return token
    matches = [k for k in keys if k.startswith(token)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise VNLError(
            f"VNL {text!r}: ambiguous key {token!r} (could be {', '.join(sorted(matches))})"
        )
    return None


def parse_options(
    body: str, keys: Iterable[str], text: str, bare_args: bool = False
) -> tuple[dict[str, str], tuple[str, ...]]:
    """Parse ``key=val/key/...``; returns (options, bare args)."""
    keys = tuple(keys)
    options: dict[str, str] = {}
    args: list[str] = []
    for raw in split_unquoted(body, "/"):
        if raw == "":
            continue
        eq = _scan(raw, "=")
        if eq:
            rawkey, rawval = raw[: eq[0][0]], raw[eq[0][0] + 1 :]
        else:
            rawkey, rawval = raw, None
        name = decode(rawkey).strip().lower()
        key = resolve_key(name, keys, text) if name else None
        if key is None:
            if rawval is None and bare_args:
                args.append(decode(raw))
                continue
            raise VNLError(f"VNL {text!r}: unknown key {name!r}")
        options[key] = decode(rawval) if rawval is not None else ""
    return options, tuple(args)


def parse(
    text: str,
    style: Style = "bracket",
    keys: Iterable[str] = (),
    bare_args: bool = False,
) -> VNL:
    """Parse ``text`` in ``style`` with the plug's known ``keys``."""
    scheme, rest = split_scheme(text)
    keys = tuple(keys)
    if style == "raw":
        return VNL(scheme, decode(rest), {}, (), None, text)
    nested: str | None = None
    if style == "wrapper":
        hits = _scan(rest, "{")
        if not hits:
            raise VNLError(f"VNL {text!r}: {scheme}:// needs a nested VNL in {{braces}}")
        open_pos = hits[0][0]
        if not rest.endswith("}"):
            raise VNLError(f"VNL {text!r}: text after the nested VNL's closing brace")
        nested = rest[open_pos + 1 : -1]
        rest = rest[:open_pos]
        if nested.strip() == "":
            raise VNLError(f"VNL {text!r}: empty nested VNL")
    if style == "slash":
        parts = _scan(rest, "/")
        if parts:
            addr, body = rest[: parts[0][0]], rest[parts[0][0] + 1 :]
        else:
            addr, body = rest, ""
        options, args = parse_options(body, keys, text, bare_args)
        return VNL(scheme, decode(addr), options, args, nested, text)
    # bracket and wrapper: path[opts][opts]...
    brackets = _scan(rest, "[]")
    address_end = brackets[0][0] if brackets else len(rest)
    address = decode(rest[:address_end])
    options = {}
    args_list: list[str] = []
    i = 0
    while i < len(brackets):
        pos, ch = brackets[i]
        if ch != "[" or i + 1 >= len(brackets) or brackets[i + 1][1] != "]":
            raise VNLError(f"VNL {text!r}: unbalanced brackets")
        end = brackets[i + 1][0]
        next_pos = brackets[i + 2][0] if i + 2 < len(brackets) else len(rest)
        between = rest[end + 1 : next_pos]
        if between.strip():
            raise VNLError(f"VNL {text!r}: unexpected text {between!r} after ']'")
        opts, args = parse_options(rest[pos + 1 : end], keys, text, bare_args)
        options.update(opts)
        args_list.extend(args)
        i += 2
    return VNL(scheme, address, options, tuple(args_list), nested, text)


def default_vnl(home: str | None = None) -> str:
    """The user's default VNL: ``~/.vdeplug/default`` then ``~/.vde2/default.switch``.

    If the file is a regular file its first line is the VNL; if it is anything else (a switch
    directory or a symlink to one) it is used as a vde switch path.  With neither, ``vde://``
    (the plug's own default directory).
    """
    home = home if home is not None else os.path.expanduser("~")
    for candidate in (os.path.join(home, ".vdeplug", "default"),
                      os.path.join(home, ".vde2", "default.switch")):
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                line = f.readline().strip()
            if line:
                return line
        elif os.path.exists(candidate):
            return "vde://" + candidate
    return "vde://"
