"""Where a request may point a service: the files (by kind, under configured roots) and the
endpoints (by kind, from an allow-list) named in request fields.

    path = self.access.require_path("model", request.path)      # a resolved Path under a root
    target = self.access.require_target("sampler", request.sampler)

Every path is resolved with symlinks followed before it is compared with the roots, and anything
outside them gets one message that echoes only the request's own text, so the error says nothing
about which other files exist. A relative path is taken under the kind's first root.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from mathforge.runtime.auth import effective_mode
from mathforge.runtime.errors import RequestError


class AccessRoots:
    """The roots and allowed targets of one service (ServiceConfig path_roots / allowed_targets).

    `open_when_unset`: a kind with no roots (targets) accepts any path (target); true only in the
    local and off auth modes, where the caller is the machine's own user.
    """

    def __init__(
        self,
        roots: Mapping[str, Sequence[str]],
        targets: Mapping[str, Sequence[str]],
        open_when_unset: bool,
    ):
        self.roots = {
            kind: [Path(os.path.realpath(root)) for root in paths] for kind, paths in roots.items() if paths
        }
        self.targets = {kind: set(items) for kind, items in targets.items() if items}
        self.open_when_unset = open_when_unset

    @classmethod
    def from_config(cls, config: Any) -> AccessRoots:
        mode = effective_mode(config.auth, config.host, config.caller_token_file, config.admin_token_file)
        return cls(config.path_roots, config.allowed_targets, open_when_unset=mode != "token")

    def require_path(self, kind: str, path: str, what: str = "path") -> Path:
        """`path` resolved (symlinks followed), or INVALID_ARGUMENT when it is outside the roots
        configured for `kind`; the message is the same whatever lies at that path."""
        if not path:
            raise RequestError.invalid(f"{what} is empty")
        if "\x00" in path:
            raise _outside(kind, path, what)
        roots = self.roots.get(kind)
        if roots is None:
            if self.open_when_unset:
                return Path(os.path.realpath(path))
            raise _outside(kind, path, what)
        candidate = Path(path) if os.path.isabs(path) else roots[0] / path
        resolved = Path(os.path.realpath(candidate))
        if any(resolved == root or resolved.is_relative_to(root) for root in roots):
            return resolved
        raise _outside(kind, path, what)

    def require_target(self, kind: str, target: str, what: str = "target") -> str:
        """`target` when it is on the allow-list for `kind`; INVALID_ARGUMENT otherwise."""
        if not target:
            raise RequestError.invalid(f"{what} is empty")
        allowed = self.targets.get(kind)
        if allowed is None and self.open_when_unset:
            return target
        if allowed is None or target not in allowed:
            raise RequestError.invalid(
                f"{what} {target!r} is not a {kind} this server may call (its allow-list is "
                f"--allowed-targets {kind})"
            )
        return target


def _outside(kind: str, path: str, what: str) -> RequestError:
    return RequestError.invalid(
        f"{what} {path!r} is not a {kind} path this server may read (the {kind} roots are "
        f"--path-roots {kind})"
    )
