"""Allocation of a pool's target power to one power limit per charging session.

Sign convention: positive power is consumption (charging), negative is discharging (V2G).

Priorities, strongest first:
1. physical bounds ``[min_kw, max_kw]`` (plus the optional guaranteed energy floor folded into ``min_kw``);
2. group caps (DSO congestion points, sites, devices under curtailment): ``max_kw`` is never exceeded,
   ``min_kw`` is kept when the members can reach it;
3. departure needs (``energy_needed_kwh / hours_to_departure`` clipped to ``max_kw``), unless
   ``needs_outrank_target`` is False;
4. the market target.

The allocation moves from the current plan: when the target is below it, the sessions with the most laxity
(``hours_to_departure - energy_needed_kwh / max_kw``) give up power first, and power above need floors goes
before power below them; when the target is above it, the least-laxity sessions get power first.

Method: every phase is a greedy move in priority order over a box with group capacities. The groups are split
once per pool (``prepare``) into levels of pairwise disjoint groups, innermost first (device, site, congestion
point; derived from how the groups nest, not from a hint). A round offers every free session its headroom; each
level, in that order, cuts its over-capacity groups to their highest-priority members (cumulative sum per group),
and then the amount is cut to the highest-priority sessions (cumulative sum). Caps hold exactly after every
round because a session's move is never larger than what each of its groups allows it. When the groups form a
laminar family (see ``groups_are_laminar``) one round is exactly the sequential greedy, and the feasible moves
form a polymatroid, where every maximal move has the maximum total, so the total equals the target clipped to
what is feasible. Crossing groups take more rounds (each fills a session or a group, or exhausts the amount);
the result still respects every cap but its total may fall short of the LP optimum.

Hot path: the dispatcher calls ``prepare(problem)`` when a pool's sessions or groups change and
``allocate_prepared(pool, problem)`` every cycle with the new values; ``allocate(problem)`` does both and gives
the same setpoints. Ties in laxity go to the lower session index, so results do not depend on the path taken.
"""

from vpp.algorithms.allocation._solve import PreparedPool, allocate, allocate_prepared, prepare
from vpp.algorithms.allocation._structure import groups_are_laminar
from vpp.algorithms.allocation._types import Allocation, AllocationProblem
from vpp.algorithms.allocation.instance import allocate_instance

__all__ = [
    "Allocation",
    "AllocationProblem",
    "PreparedPool",
    "allocate",
    "allocate_instance",
    "allocate_prepared",
    "groups_are_laminar",
    "prepare",
]
