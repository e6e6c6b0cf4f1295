"""Domain discovery (DeepSeekMath §2.1 step 3): find math-related domains from one round's collected
pages, propose their math URL paths, and read the approvals a person made.

A domain is math-related when more than `domain_share` (paper: 10%) of its pages were collected.
Within such a domain, path prefixes ("site.example/questions") are ranked by how many collected
pages they hold; those holding at least `min_prefix_pages` collected pages and a collected share of
at least `min_prefix_share` and at least the domain's own share are proposed (a math path is richer
in collected pages than its domain as a whole; a profile or shop path is poorer). Proposals go to an
approvals file that a person edits:

    ? homeworkhelp1.example/questions   # 412 of 1630 pages collected (25%)   <- pending
    + proofexchange1.example/questions                                          <- approved
    - proofexchange1.example/users                                              <- rejected

Uncollected pages under approved prefixes become new positives for the next round.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


def url_prefix(url: str, depth: int = 1) -> tuple[str, str]:
    """(domain, "domain/first/segments") of a URL: lowercased host without "www.", `depth` segments."""
    parts = urlsplit(url if "//" in url else "//" + url)
    domain = (parts.hostname or "").lower().removeprefix("www.")
    segments = [s for s in parts.path.split("/") if s][:depth]
    return domain, "/".join([domain, *segments])


def under_prefix(url: str, prefix: str) -> bool:
    """True when the URL lies under an approved "domain/path" prefix (on a segment boundary)."""
    domain, full = url_prefix(url, depth=64)
    return full == prefix or full.startswith(prefix + "/") or (prefix == domain and bool(domain))


@dataclass
class PrefixStats:
    prefix: str
    pages: int = 0
    collected: int = 0
    proposed: bool = False

    @property
    def share(self) -> float:
        return self.collected / self.pages if self.pages else 0.0


@dataclass
class DomainStats:
    domain: str
    pages: int = 0
    collected: int = 0
    math_related: bool = False
    prefixes: list[PrefixStats] = field(default_factory=list)

    @property
    def share(self) -> float:
        return self.collected / self.pages if self.pages else 0.0


@dataclass
class DomainReport:
    domains: list[DomainStats]

    @property
    def math_domains(self) -> list[str]:
        return sorted(d.domain for d in self.domains if d.math_related)

    @property
    def proposals(self) -> list[PrefixStats]:
        return [p for d in self.domains if d.math_related for p in d.prefixes if p.proposed]

    def as_dict(self) -> dict[str, object]:
        return {
            "math_domains": self.math_domains,
            "domains": [{**asdict(d), "share": round(d.share, 4)} for d in self.domains],
        }


def discover_domains(
    pages: Iterable[tuple[str, bool]],
    domain_share: float = 0.10,
    prefix_depth: int = 1,
    min_prefix_pages: int = 5,
    min_prefix_share: float = 0.1,
) -> DomainReport:
    """Groups (url, collected) pairs by domain and path prefix and flags math-related domains."""
    counts = PrefixCounts()
    for url, collected in pages:
        counts.add(url, prefix_depth, collected)
    return discover_from_counts(counts, domain_share, min_prefix_pages, min_prefix_share)


class PrefixCounts(dict[str, list]):
    """Pages and collected pages per URL prefix: {prefix: [domain, pages, collected]}. All that
    domain discovery needs of a web, mergeable across shards (memory grows with prefixes, not pages)."""

    def add(self, url: str, depth: int, collected: bool, pages: int = 1) -> None:
        domain, prefix = url_prefix(url, depth)
        entry = self.get(prefix)
        if entry is None:
            self[prefix] = [domain, pages, int(collected)]
        else:
            entry[1] += pages
            entry[2] += int(collected)

    def merge(self, other: dict[str, list]) -> None:
        for prefix, (domain, pages, collected) in other.items():
            entry = self.get(prefix)
            if entry is None:
                self[prefix] = [domain, pages, collected]
            else:
                entry[1] += pages
                entry[2] += collected


def discover_from_counts(
    counts: dict[str, list],
    domain_share: float = 0.10,
    min_prefix_pages: int = 5,
    min_prefix_share: float = 0.1,
) -> DomainReport:
    """Flags math-related domains and proposes prefixes from per-prefix counts (PrefixCounts)."""
    domains: dict[str, DomainStats] = {}
    prefixes: dict[str, list[PrefixStats]] = defaultdict(list)
    for prefix, (domain, pages, collected) in counts.items():
        stats = domains.get(domain) or domains.setdefault(domain, DomainStats(domain))
        stats.pages += pages
        stats.collected += collected
        prefixes[domain].append(PrefixStats(prefix, pages, collected))
    for domain, stats in domains.items():
        stats.math_related = stats.share > domain_share
        stats.prefixes = sorted(prefixes[domain], key=lambda p: (-p.collected, p.prefix))
        for p in stats.prefixes:
            # A math path holds a larger share of collected pages than its domain as a whole.
            floor = max(min_prefix_share, stats.share)
            p.proposed = stats.math_related and p.collected >= min_prefix_pages and p.share >= floor
    ordered = sorted(domains.values(), key=lambda d: (-d.share, d.domain))
    return DomainReport(ordered)


@dataclass
class Approvals:
    approved: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)
    pending: set[str] = field(default_factory=set)

    def decided(self, prefix: str) -> bool:
        return prefix in self.approved or prefix in self.rejected


def read_approvals(path: Path) -> Approvals:
    """Parses an approvals file (missing file = nothing decided); ValueError names a bad line."""
    approvals = Approvals()
    if not path.exists():
        return approvals
    marks = {"+": approvals.approved, "-": approvals.rejected, "?": approvals.pending}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        mark, _, prefix = line.partition(" ")
        prefix = prefix.strip().rstrip("/")
        if mark not in marks or not prefix or " " in prefix:
            raise ValueError(f"{path}:{number}: expected '+ PREFIX', '- PREFIX' or '? PREFIX', got {raw!r}")
        marks[mark].add(prefix)
    approvals.pending -= approvals.approved | approvals.rejected
    return approvals


def add_proposals(
    path: Path, round_number: int, proposals: list[PrefixStats], auto_approve: bool
) -> Approvals:
    """Appends undecided proposals to the approvals file (as '+' with auto_approve, else '?') and
    returns the file's decisions afterwards."""
    approvals = read_approvals(path)
    new = [p for p in proposals if not approvals.decided(p.prefix) and p.prefix not in approvals.pending]
    if new:
        mark = "+" if auto_approve else "?"
        how = (
            "auto-approved" if auto_approve else "pending: change ? to + (approve) or - (reject), then rerun"
        )
        lines = [f"# round {round_number} proposals, {how}"]
        width = max(len(p.prefix) for p in new)
        lines += [
            f"{mark} {p.prefix:<{width}}  # {p.collected} of {p.pages} pages collected ({p.share:.0%})"
            for p in new
        ]
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(old + ("\n" if old and not old.endswith("\n") else "") + "\n".join(lines) + "\n")
        os.replace(temporary, path)
    return read_approvals(path)
