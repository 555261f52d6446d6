"""Built-in strategies covering every peer's (see ``docs`` table in the module of each):

=====================  ============================================================  ==========
name                   order / rule                                                  peers
=====================  ============================================================  ==========
``ring-all``           every qualified routable agent rings; first answer wins        AST, FS
``longest-idle``       penalty, then longest since becoming idle                     AST, FS, TR, AC
``fewest-calls``       penalty, then fewest calls answered (agent-wide)              AST, FS
``least-talk-time``    penalty, then least total talk time                           FS
``round-robin``        penalty, then position, starting after the last one offered    AST rrmemory
``linear``             penalty, then position (top-down)                             AST, FS
``random``             uniform among the lowest tier                                 AST, FS
``weighted-random``    proportional to the membership ``weight``                     AST wrandom
``ring-progressively`` position order; ``batch`` more every ``step_seconds``         FS
``skills-best-match``  highest mean level on the call's required skills               GC, Wazo
``weighted``           sum of normalised criteria times supervisor weights            (ours)
=====================  ============================================================  ==========
"""

from __future__ import annotations

from routing.strategies.basic import (
    FewestCalls,
    LeastTalkTime,
    Linear,
    LongestIdle,
    RandomPick,
    RingAll,
    RingProgressively,
    RoundRobin,
    SkillsBestMatch,
    WeightedRandom,
)
from routing.strategies.weighted import Weighted
from routing.strategy import register_strategy

for _cls in (
    RingAll,
    LongestIdle,
    FewestCalls,
    LeastTalkTime,
    RoundRobin,
    Linear,
    RandomPick,
    WeightedRandom,
    RingProgressively,
    SkillsBestMatch,
    Weighted,
):
    register_strategy(_cls.name, _cls)

__all__ = [
    "FewestCalls",
    "LeastTalkTime",
    "Linear",
    "LongestIdle",
    "RandomPick",
    "RingAll",
    "RingProgressively",
    "RoundRobin",
    "SkillsBestMatch",
    "Weighted",
    "WeightedRandom",
]
