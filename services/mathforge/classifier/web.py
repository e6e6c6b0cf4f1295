"""A deterministic miniature web with ground truth: the test instrument of the recall pipeline.

    python -m mathforge.classifier.web OUT_DIR --pages 20000 --seed 0
    mathforge data recall --generate 20000 --out runs/recall     # generates, then recalls

Domains are sites of a kind (math Q&A, lecture notes, homework Q&A, statistics blogs, a Chinese
exercise site, a puzzle site, news, forums, shops, recipes, Chinese news, an aggregator); each kind
has URL sections holding pages of one writer (web_text.py), e.g. a math Q&A site's /questions/
holds math, /users/ and /meta/ do not. Pages carry site boilerplate; a few are near-duplicates of
an earlier page. The seed (the OpenWebMath stand-in) is part of the math pages of the "seeded"
kinds only, so reaching the other math sites takes domain discovery.

Output: pages/part-NNNNN.jsonl (id, url, text), seed/seed.jsonl (the seed pages), truth.jsonl (id,
is_math, domain, writer), manifest.json (counts, math_domains, seeded_domains).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mathforge.classifier.web_text import MATH_WRITERS, OTHER_WRITERS
from mathforge.corpus import write_records_atomic

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class SiteKind:
    name: str
    domains: int  # how many domains of this kind
    weight: float  # pages per domain, relative
    sections: tuple[tuple[str, str, float], ...]  # (path, writer, share)
    math_site: bool = False
    seeded: bool = False
    nav: str = "Home | About | Contact"


KINDS: tuple[SiteKind, ...] = (
    SiteKind(
        "proofexchange",
        2,
        3.0,
        (("questions", "formal", 0.8), ("users", "profile", 0.12), ("meta", "meta", 0.08)),
        True,
        True,
        "Questions | Tags | Users | Ask",
    ),
    SiteKind(
        "coursenotes",
        2,
        2.0,
        (("notes", "lecture", 0.85), ("events", "education_news", 0.15)),
        True,
        True,
        "Courses | Notes | Staff",
    ),
    SiteKind(
        "homeworkhelp",
        2,
        3.0,
        (("questions", "homework", 0.8), ("users", "profile", 0.1), ("community", "forum", 0.1)),
        True,
        False,
        "Questions | Tags | Users | Ask",
    ),
    SiteKind(
        "chancediary",
        2,
        2.0,
        (("posts", "stats", 0.75), ("life", "blog_life", 0.25)),
        True,
        False,
        "Blog | Archive | About me",
    ),
    SiteKind(
        "shuxue",
        1,
        3.0,
        (("tiku", "chinese_math", 0.8), ("zixun", "chinese_news", 0.2)),
        True,
        False,
        "首页 | 题库 | 资讯",
    ),
    SiteKind(
        "puzzlecorner",
        1,
        2.0,
        (("problems", "olympiad", 0.7), ("shop", "shop", 0.3)),
        True,
        False,
        "Problems | Shop | Forum",
    ),
    SiteKind(
        "dailynews",
        6,
        2.0,
        (("politics", "news", 0.45), ("sport", "news", 0.45), ("education", "education_news", 0.1)),
        nav="World | Business | Sport",
    ),
    SiteKind(
        "bigforum",
        1,
        3.0,
        (("t", "forum", 0.94), ("homework-help", "homework", 0.06)),
        nav="Forums | New posts | Members",
    ),
    SiteKind("chatboard", 4, 1.5, (("t", "forum", 1.0),), nav="Forums | New posts | Members"),
    SiteKind("shop", 6, 1.5, (("product", "shop", 1.0),), nav="Shop | Cart | Deals"),
    SiteKind("recipes", 4, 1.5, (("recipe", "recipe", 1.0),), nav="Recipes | Baking | Dinner"),
    SiteKind("xinwen", 2, 1.5, (("news", "chinese_news", 1.0),), nav="首页 | 新闻 | 体育"),
    SiteKind(
        "aggregator",
        1,
        2.0,
        (("a", "news", 0.5), ("b", "shop", 0.46), ("c", "formal", 0.04)),
        nav="Trending | Latest",
    ),
)

NEAR_DUPLICATE_SHARE = 0.03
COOKIE_BANNER = "We use cookies to improve your experience. Accept all | Manage settings"


@dataclass
class WebManifest:
    pages: int
    seed: int
    math_pages: int = 0
    seed_pages: int = 0
    generator_version: int = GENERATOR_VERSION
    math_domains: list[str] = field(default_factory=list)
    seeded_domains: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)


def _domains() -> list[tuple[str, SiteKind]]:
    return [(f"{kind.name}{i + 1}.example", kind) for kind in KINDS for i in range(kind.domains)]


def iter_pages(pages: int, seed: int = 0) -> Iterator[dict[str, object]]:
    """Yields `pages` page records (id, url, text, is_math, domain, writer), deterministic in `seed`."""
    rng = random.Random(seed)
    domains = _domains()
    weights = [kind.weight for _, kind in domains]
    recent: dict[str, list[dict[str, object]]] = {}
    for number in range(pages):
        domain, kind = rng.choices(domains, weights)[0]
        path, writer_name, _ = rng.choices(kind.sections, [s[2] for s in kind.sections])[0]
        is_math = writer_name in MATH_WRITERS
        earlier = recent.get(domain)
        if earlier and rng.random() < NEAR_DUPLICATE_SHARE:
            original = rng.choice(earlier)
            text = _near_copy(str(original["text"]), rng)
            path, writer_name, is_math = (
                str(original["section"]),
                str(original["writer"]),
                bool(original["is_math"]),
            )
        else:
            writer = MATH_WRITERS.get(writer_name) or OTHER_WRITERS[writer_name]
            title, body = writer(rng)
            site = domain.split(".")[0]
            footer = f"© {rng.randint(2012, 2026)} {site}. All rights reserved. Privacy | Terms"
            banner = f"{COOKIE_BANNER}\n" if rng.random() < 0.5 else ""
            text = f"{banner}{site} | {kind.nav}\n{title}\n{body}\n{footer}"
        page_id = f"p{number:07d}"
        record = {
            "id": page_id,
            "url": f"https://{domain}/{path}/{number}",
            "text": text,
            "is_math": is_math,
            "domain": domain,
            "writer": writer_name,
            "section": path,
        }
        bucket = recent.setdefault(domain, [])
        bucket.append(record)
        if len(bucket) > 50:
            bucket.pop(0)
        yield record


def _near_copy(text: str, rng: random.Random) -> str:
    tokens = text.split(" ")
    for _ in range(max(1, len(tokens) // 30)):
        tokens[rng.randrange(len(tokens))] = rng.choice(["very", "really", "also", "indeed"])
    return " ".join(tokens)


def is_seed_candidate(record: dict[str, object]) -> bool:
    """A math page of a seeded kind (the pages an OpenWebMath-like seed would hold)."""
    kind = _kind_of(str(record["domain"]))
    return kind.seeded and bool(record["is_math"])


def _kind_of(domain: str) -> SiteKind:
    name = domain.split(".")[0].rstrip("0123456789")
    return next(kind for kind in KINDS if kind.name == name)


def generate_web(
    out_dir: str | Path, pages: int, seed: int = 0, seed_fraction: float = 0.5, shard_pages: int = 10_000
) -> WebManifest:
    """Writes a miniature web of `pages` pages under `out_dir` and returns its manifest."""
    if pages < 100:
        raise ValueError(f"--generate {pages}: a miniature web needs at least 100 pages")
    out = Path(out_dir)
    rng = random.Random(seed + 1)
    manifest = WebManifest(pages=pages, seed=seed)
    shard: list[dict[str, object]] = []
    truth: list[dict[str, object]] = []
    seed_pages: list[dict[str, object]] = []
    shard_index = 0
    for record in iter_pages(pages, seed):
        shard.append({"id": record["id"], "url": record["url"], "text": record["text"]})
        truth.append({k: record[k] for k in ("id", "is_math", "domain", "writer")})
        manifest.math_pages += bool(record["is_math"])
        if is_seed_candidate(record) and rng.random() < seed_fraction:
            seed_pages.append(shard[-1])
        if len(shard) >= shard_pages:
            write_records_atomic(out / "pages" / f"part-{shard_index:05d}.jsonl", shard)
            shard, shard_index = [], shard_index + 1
    if shard:
        write_records_atomic(out / "pages" / f"part-{shard_index:05d}.jsonl", shard)
    write_records_atomic(out / "seed" / "seed.jsonl", seed_pages)
    write_records_atomic(out / "truth.jsonl", truth)
    manifest.seed_pages = len(seed_pages)
    manifest.domains = [d for d, _ in _domains()]
    manifest.math_domains = [d for d, kind in _domains() if kind.math_site]
    manifest.seeded_domains = [d for d, kind in _domains() if kind.seeded]
    (out / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a deterministic miniature web with ground truth.")
    parser.add_argument("out_dir")
    parser.add_argument("--pages", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = generate_web(args.out_dir, args.pages, args.seed)
    print(json.dumps(asdict(manifest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
