"""Page bodies for the miniature web: math in several styles (formal LaTeX, plain word problems,
MathML-like blog markup, Chinese exercises, olympiad problems) and non-math pages that borrow math's
surface (prices, scores, fractions in recipes, exam news, user profiles listing math tags).

Each writer takes a random.Random and returns (title, body). A "formula density" drawn per page
decides how much explicit notation a math page carries, so a classifier trained on formal seed
pages finds some of each style easily and misses the rest, as on the real web.
"""

from __future__ import annotations

import random
from collections.abc import Callable

Writer = Callable[[random.Random], tuple[str, str]]


def vocabulary(text: str) -> list[str]:
    """The words of a space-separated word list."""
    return text.split()


GLUE = vocabulary(
    "the a of and to in is that it for on with as this we be by at or from so if then but not "
    "can one all there when what which also just more some very"
)
FORMAL = vocabulary(
    "theorem lemma proof corollary suppose assume hence therefore converges bounded continuous "
    "integral derivative manifold group ring ideal prime field vector space eigenvalue matrix "
    "polynomial sequence series limit compact subset measure function homomorphism isomorphism "
    "topology metric norm finite infinite countable coefficient determinant kernel basis "
    "inequality identity equivalently contradiction induction"
)
PLAIN_MATH = vocabulary(
    "how many total each altogether left remaining twice half third times shared equally "
    "between per hour minutes miles faster slower average answer work out figure check "
    "worksheet problem step got book teacher class"
)
EVERYDAY = vocabulary(
    "train apples oranges price buys sells store car trip friends party pizza tickets money "
    "dollars cents garden fence box marbles students bus people water tank pool bakery cookies "
    "cake cups sugar flour game team score week days saturday"
)
STATS = vocabulary(
    "probability chance expected value variance distribution random coin dice roll sample mean "
    "median outcome independent events likely estimate survey data spread normal"
)
BLOG = vocabulary(
    "today wrote post readers comment think nice idea picture life lately coffee walk weekend "
    "favourite share thoughts story morning friend"
)
CN_MATH = vocabulary(
    "已知 函数 求 方程 解 证明 三角形 面积 概率 数列 整数 实数 集合 "
    "不等式 最小值 最大值 因为 所以 设 则 的 是 为 且"
)
CN_NEWS = vocabulary(
    "经济 政府 市场 发展 记者 报道 公司 比赛 球队 天气 城市 居民 今天 表示 活动 新闻 的 是 在 了"
)
NEWS = vocabulary(
    "government minister election vote parliament policy economy market shares investors "
    "inflation percent rate bank growth report officials said city council police weather storm"
)
SPORTS = vocabulary("match goal season league coach players win lost final points scored against half minute")
EDU = vocabulary(
    "students schools exam results teachers curriculum math scores improved pupils district "
    "test algebra reading national ranking"
)
FORUM = vocabulary(
    "anyone thread reply thanks guys engine tyres game level boss server patch hotel flight "
    "beach tips recommend problem fixed bought upgrade"
)
SHOP = vocabulary(
    "buy cart price sale discount shipping delivery size colour cotton model warranty reviews "
    "stock order free returns inch cm kg pack"
)
RECIPE = vocabulary(
    "cup sugar flour butter eggs oven bake minutes stir mix salt pepper tablespoon teaspoon "
    "serve chop onion garlic heat pan degrees"
)
PROFILE = vocabulary(
    "member since reputation badges answers questions top tags profile location website joined "
    "last seen votes cast impact people reached"
)
META = vocabulary(
    "moderators close vote community guidelines site policy duplicate flag discussion proposal "
    "feature request bug chat election review queue"
)


def words(rng: random.Random, topic: list[str], n: int, topic_share: float = 0.45) -> str:
    """n words mixing `topic` words with glue words."""
    picks = [rng.choice(topic) if rng.random() < topic_share else rng.choice(GLUE) for _ in range(n)]
    return " ".join(picks)


def sentences(
    rng: random.Random,
    topic: list[str],
    count: int,
    extra: Callable[[], str] | None = None,
    extra_share: float = 0.0,
) -> str:
    parts = []
    for _ in range(count):
        sentence = words(rng, topic, rng.randint(8, 18))
        if extra is not None and rng.random() < extra_share:
            sentence += " " + extra()
        parts.append(sentence.capitalize() + ".")
    return " ".join(parts)


def latex(rng: random.Random) -> str:
    a, b, n = rng.randint(2, 9), rng.randint(1, 20), rng.choice("nkmx")
    forms = [
        f"$\\int_0^{a} x^{b} \\, dx = \\frac{{{a}^{{{b + 1}}}}}{{{b + 1}}}$",
        f"$\\sum_{{{n}=1}}^\\infty \\frac{{1}}{{{n}^{a}}}$",
        f"$\\lim_{{{n} \\to \\infty}} a_{n} = {b}$",
        f"$f(x) = x^{a} + {b}x$",
        "$\\det(A - \\lambda I) = 0$",
        f"$|x - {b}| < \\epsilon$",
        f"$G / H \\cong \\mathbb{{Z}}_{a}$",
        "$\\forall \\epsilon > 0 \\, \\exists \\delta$",
    ]
    return rng.choice(forms)


def equation(rng: random.Random) -> str:
    a, b, c = rng.randint(2, 12), rng.randint(1, 30), rng.randint(20, 99)
    return rng.choice(
        [
            f"{a}x + {b} = {c}",
            f"x = ({c} - {b}) / {a}",
            f"{a} * {b} = {a * b}",
            f"{c} / {a} = {c / a:.2f}",
            f"x^2 - {a}x + {b} = 0",
        ]
    )


def mathml(rng: random.Random) -> str:
    a, b = rng.randint(1, 9), rng.randint(2, 9)
    return rng.choice(
        [
            f"<math><mi>P</mi><mo>(</mo><mi>A</mi><mo>)</mo><mo>=</mo><mfrac><mn>{a}</mn><mn>{b}</mn></mfrac></math>",
            f"<math><msup><mi>x</mi><mn>{b}</mn></msup><mo>+</mo><mn>{a}</mn></math>",
            f"<math><mi>E</mi><mo>[</mo><mi>X</mi><mo>]</mo><mo>=</mo><mn>{a}.{b}</mn></math>",
        ]
    )


def mixed(
    rng: random.Random,
    topic: list[str],
    count: int,
    density: float,
    extra: Callable[[], str],
    extra_share: float,
) -> str:
    """Sentences of `topic`; with probability `density` a sentence is formal math instead."""
    parts = []
    for _ in range(count):
        if rng.random() < density:
            parts.append(sentences(rng, FORMAL, 1, lambda: latex(rng), 0.7))
        else:
            parts.append(sentences(rng, topic, 1, extra, extra_share))
    return " ".join(parts)


def formal_math(rng: random.Random) -> tuple[str, str]:
    density = rng.random()
    title = words(rng, FORMAL, rng.randint(4, 8), 0.7)
    body = sentences(rng, FORMAL, rng.randint(5, 10), lambda: latex(rng), 0.3 + 0.6 * density)
    return title, body


def lecture_notes(rng: random.Random) -> tuple[str, str]:
    number = f"{rng.randint(1, 12)}.{rng.randint(1, 9)}"
    kind = rng.choice(["Definition", "Theorem", "Example", "Exercise", "Proposition"])
    body = f"{kind} {number}. " + sentences(rng, FORMAL, rng.randint(6, 11), lambda: latex(rng), 0.7)
    return f"Lecture {rng.randint(1, 24)}: " + words(rng, FORMAL, 4, 0.8), body


def olympiad_math(rng: random.Random) -> tuple[str, str]:
    n = rng.randint(2, 2025)
    start = f"Find all positive integers n such that n^2 + {n % 17 + 1} divides {n}^n - 1. "
    density = 0.2 + 0.6 * rng.random()
    body = start + mixed(rng, PLAIN_MATH + EVERYDAY, rng.randint(4, 8), density, lambda: equation(rng), 0.5)
    return f"Problem {n}", body


def homework_math(rng: random.Random) -> tuple[str, str]:
    # Plain words about everyday things: close to shops, recipes and forums for a bag of words.
    density = rng.random()
    a, b, c = rng.randint(2, 20), rng.randint(2, 12), rng.randint(3, 60)
    thing = rng.choice(EVERYDAY)
    opener = rng.choice(
        [
            f"If {a} friends share {a * b} {thing} equally how many does each get?",
            f"A {thing} costs {b} dollars and she buys {a} of them, how much is the total?",
            f"The bus travels {c} miles in {b} hours, what is its average speed?",
            f"Tom has {a} {thing} and gives away half, then buys {b} more. How many are left?",
        ]
    )
    body = (
        opener
        + " "
        + mixed(rng, PLAIN_MATH + EVERYDAY, rng.randint(4, 9), density, lambda: equation(rng), 0.3)
    )
    return f"Help with {thing} problem", body


def stats_blog(rng: random.Random) -> tuple[str, str]:
    density = rng.random()
    body = mixed(rng, STATS + BLOG, rng.randint(5, 10), density, lambda: mathml(rng), 0.4)
    return "What are the chances " + words(rng, STATS + BLOG, 4, 0.6), body


def chinese_math(rng: random.Random) -> tuple[str, str]:
    density = rng.random()
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    parts = []
    for _ in range(rng.randint(4, 8)):
        phrase = "".join(rng.choice(CN_MATH) for _ in range(rng.randint(3, 8)))
        # Chinese math pages carry their formulas in LaTeX, the notation the seed shares with them.
        if rng.random() < 0.2 + 0.8 * density:
            phrase += " " + sentences(rng, FORMAL, 1, lambda: latex(rng), 0.8) + " "
        else:
            phrase += rng.choice([f" f(x)=x^2+{a}x+{b} ", f" {a}x+{b}=0 ", " " + latex(rng) + " "])
        parts.append(phrase + "。")
    return "数学题" + "".join(rng.choice(CN_MATH) for _ in range(4)), "".join(parts)


def chinese_news(rng: random.Random) -> tuple[str, str]:
    parts = [
        "".join(rng.choice(CN_NEWS) for _ in range(rng.randint(8, 16))) + "。"
        for _ in range(rng.randint(4, 8))
    ]
    return "新闻" + "".join(rng.choice(CN_NEWS) for _ in range(4)), f"{rng.randint(2010, 2026)}年" + "".join(
        parts
    )


def news(rng: random.Random) -> tuple[str, str]:
    topic = rng.choice([NEWS, SPORTS])

    def numbers() -> str:
        return rng.choice(
            [
                f"{rng.randint(1, 99)} percent",
                f"{rng.randint(0, 5)}-{rng.randint(0, 5)}",
                f"${rng.randint(2, 900)} million",
                f"{rng.randint(1990, 2026)}",
            ]
        )

    return words(rng, topic, 6, 0.8).title(), sentences(rng, topic, rng.randint(5, 10), numbers, 0.5)


def education_news(rng: random.Random) -> tuple[str, str]:
    def figure() -> str:
        return (
            f"up {rng.randint(1, 12)} percent to {rng.randint(40, 95)} points"
            if rng.random() < 0.8
            else "one exam question asked for " + latex(rng)
        )

    return "Math results " + words(rng, EDU, 4, 0.8), sentences(
        rng, EDU + NEWS, rng.randint(5, 9), figure, 0.4
    )


def forum_post(rng: random.Random) -> tuple[str, str]:
    return words(rng, FORUM, 6, 0.8), sentences(
        rng, FORUM, rng.randint(4, 9), lambda: f"{rng.randint(2, 400)}", 0.3
    )


def shop_page(rng: random.Random) -> tuple[str, str]:
    def spec() -> str:
        return rng.choice(
            [
                f"{rng.randint(5, 99)}.99 dollars",
                f"{rng.randint(10, 90)} x {rng.randint(10, 90)} cm",
                f"save {rng.randint(5, 50)} percent",
                f"buy {rng.randint(2, 3)} get 1 free",
            ]
        )

    return words(rng, SHOP, 5, 0.8).title(), sentences(rng, SHOP, rng.randint(4, 8), spec, 0.6)


def recipe_page(rng: random.Random) -> tuple[str, str]:
    def qty() -> str:
        return rng.choice(
            [
                f"{rng.randint(1, 3)}/{rng.randint(2, 4)} cup",
                f"{rng.randint(150, 230)} degrees",
                f"{rng.randint(10, 60)} minutes",
                f"{rng.randint(1, 4)} x {rng.randint(100, 500)} g",
            ]
        )

    return "Easy " + words(rng, RECIPE, 3, 0.9), sentences(
        rng, RECIPE + EVERYDAY, rng.randint(5, 9), qty, 0.6
    )


def profile_page(rng: random.Random) -> tuple[str, str]:
    tags = ", ".join(
        rng.sample(
            [
                "algebra",
                "calculus",
                "probability",
                "geometry",
                "linear-algebra",
                "number-theory",
                "homework",
                "statistics",
            ],
            3,
        )
    )
    body = (
        sentences(rng, PROFILE, rng.randint(3, 6)) + f" Top tags: {tags}. Reputation {rng.randint(1, 99999)}."
    )
    if rng.random() < 0.1:
        body += " Favourite identity: " + latex(rng)
    return f"User {rng.randint(1, 99999)}", body


def meta_page(rng: random.Random) -> tuple[str, str]:
    return words(rng, META, 6, 0.8), sentences(rng, META, rng.randint(4, 8))


def blog_life(rng: random.Random) -> tuple[str, str]:
    return words(rng, BLOG, 5, 0.8), sentences(rng, BLOG + FORUM, rng.randint(4, 8))


MATH_WRITERS: dict[str, Writer] = {
    "formal": formal_math,
    "lecture": lecture_notes,
    "olympiad": olympiad_math,
    "homework": homework_math,
    "stats": stats_blog,
    "chinese_math": chinese_math,
}
OTHER_WRITERS: dict[str, Writer] = {
    "news": news,
    "education_news": education_news,
    "forum": forum_post,
    "shop": shop_page,
    "recipe": recipe_page,
    "profile": profile_page,
    "meta": meta_page,
    "blog_life": blog_life,
    "chinese_news": chinese_news,
}
