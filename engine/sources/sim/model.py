"""The simulated districts: clubs, their course over the program year, and late revisions.

*Districts*: :data:`DISTRICTS`, numbered 1-130 with gaps plus the lettered F
and U; each has 40-160 clubs in divisions and areas. Every club follows its own
course through the program year (July-June): members grow or shrink from its
membership base, DCP goals and new members accumulate, renewals arrive in the
October and April periods. Distinguished levels follow the DCP rules
(:func:`distinguished_level`).

*Revisions*: a month's figures start from an opening state (:func:`opening_state`)
and receive revisions (late membership payments, club status changes, DCP goals
credited late, which can move distinguished levels). They land mostly in the
first days after the month end, occasionally later, always by the closing date.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

_GAPS = frozenset({45, 119})
DISTRICTS: tuple[str, ...] = tuple(str(n) for n in range(1, 131) if n not in _GAPS) + ("F", "U")
"""Every simulated district, numbered ones first: 130 in all, the size of a month-end close."""

# fmt: off
_PLACES = (
    "Harbor", "Sunrise", "Downtown", "Lakeside", "Capitol", "Riverside", "Summit", "Pioneer",
    "Golden Gate", "Maple Leaf", "Civic", "Airport", "Northside", "Valley", "Bayview", "Cedar",
)
_KINDS = ("Toastmasters", "Speakers", "Orators", "Communicators", "Speakeasy", "Club")
# A few names that need CSV quoting, as real club names do.
_ODD_NAMES = ('Speak, Lead & Grow', 'The "Early Birds"', "Voices, Unlimited")
# fmt: on


def distinguished_level(goals: int, members: int, base: int) -> str:
    """DCP level code ('' | D | S | P | M) by the rules in DESIGN.md section 2."""
    growth = members - base
    if goals >= 10 and members >= 25:
        return "M"
    if goals >= 9 and members >= 20:
        return "P"
    if goals >= 7 and (members >= 20 or growth >= 5):
        return "S"
    if goals >= 5 and (members >= 20 or growth >= 3):
        return "D"
    return ""


@dataclass(frozen=True, slots=True)
class Club:
    """A club's identity and its course over the program year."""

    number: int
    name: str
    division: str
    area: int
    base: int  # Mem. Base: members at the start of the program year
    growth: int  # net growth reached by June
    goals: int  # DCP goals reached by June
    new_members: int  # new members by June
    standing: str  # 'good', 'suspended' or 'ineligible' for the year


@dataclass(frozen=True, slots=True)
class ClubState:
    """A club's figures as published on one day."""

    club: Club
    standing: str
    active: int
    new: int
    goals: int
    oct_ren: int
    apr_ren: int
    late_ren: int

    @property
    def status(self) -> str:
        if self.standing != "good":
            return self.standing.capitalize()
        return "Low" if self.active < 8 else "Active"

    @property
    def level(self) -> str:
        """Distinguished level; only clubs in good standing qualify."""
        if self.standing != "good":
            return ""
        return distinguished_level(self.goals, self.active, self.club.base)

    @property
    def payments(self) -> int:
        return self.new + self.oct_ren + self.apr_ren + self.late_ren


@dataclass(frozen=True, slots=True)
class Revision:
    """A change to one club that the dashboard publishes from ``lands`` on."""

    club: int  # index in the district's clubs
    kind: str  # 'new' member, late 'renewal', 'goal' credited, 'status' change
    amount: int
    lands: date  # first collection date showing it

    def apply(self, state: ClubState) -> ClubState:
        s, n = state, self.amount
        active, new, goals, late, standing = s.active, s.new, s.goals, s.late_ren, s.standing
        if self.kind == "new":
            active, new = active + n, new + n
        elif self.kind == "renewal":
            active, late = active + n, late + n
        elif self.kind == "goal":
            goals = min(10, goals + n)
        else:
            # Status changes settle the year's standing: reinstated, or suspension processed.
            standing = "suspended" if s.club.standing == "good" else "good"
        # One constructor call, not dataclasses.replace: this runs for every landed
        # revision of every request, and replace costs several times more.
        return ClubState(s.club, standing, active, new, goals, s.oct_ren, s.apr_ren, late)



def make_club(rng: random.Random, number: int, index: int) -> Club:
    area = index // 5 + 1  # areas of five clubs, divisions of five areas
    name = (
        rng.choice(_ODD_NAMES)
        if rng.random() < 0.03
        else f"{rng.choice(_PLACES)} {rng.choice(_KINDS)}"
    )
    return Club(
        number=number,
        name=name,
        division=chr(ord("A") + (area - 1) // 5),
        area=area,
        base=round(rng.triangular(8, 40, 18)),
        growth=rng.randint(-6, 10),
        goals=min(10, max(0, round(rng.gauss(5.5, 3.0)))),
        new_members=rng.randint(0, 16),
        standing=rng.choices(("good", "suspended", "ineligible"), weights=(95, 3, 2))[0],
    )


def opening_state(club: Club, position: int, rng: random.Random) -> ClubState:
    """A club's figures for the month before any late revision."""
    share = (position + 1) / 12
    return ClubState(
        club=club,
        standing=club.standing,
        active=max(0, club.base + round(club.growth * share) + rng.randint(-1, 1)),
        new=round(club.new_members * share),
        goals=min(10, round(club.goals * share)),
        oct_ren=round(club.base * 0.9 * min(1.0, (position + 1) / 4)),
        apr_ren=round(club.base * 0.85 * min(1.0, max(0, position - 7) / 3)),
        late_ren=club.base // 10 if position >= 4 else 0,
    )


def draw_revision(rng: random.Random, clubs: int, end: date, span: int) -> Revision:
    kind = rng.choices(("new", "renewal", "goal", "status"), weights=(35, 35, 20, 10))[0]
    amount = rng.randint(1, 3) if kind in ("new", "renewal") else 1
    return Revision(rng.randrange(clubs), kind, amount, end + timedelta(days=_landing(rng, span)))


def _landing(rng: random.Random, span: int) -> int:
    """Days after month end a revision lands: mostly 1-4, sometimes up to the closing date."""
    if span <= 0:
        return 0
    if rng.random() < 0.8:
        return min(span, 1 + int(rng.expovariate(0.5)))
    return rng.randint(1, span)
