"""What an analysis is judged against and how much of it is computed."""

from __future__ import annotations

from dataclasses import field
from datetime import datetime

from verifier.analysis_cache import AnalysisCache
from verifier.record import record
from verifier.signing import algorithms, apple
from verifier.signing.trust import TrustConfig


@record
class AnalysisContext:
    """Trust roots and the time to verify signatures at; the facts cache; the level."""

    trust: TrustConfig | None = None
    at: datetime | None = None
    verify_signatures: bool = True
    # facts by content (``inventory`` uses it); not part of what the context means
    cache: AnalysisCache | None = field(default=None, compare=False)
    # "full": every digest. "core": everything but the digests only a comparison with a
    # *different* file needs (section digests; a PE's normalised digest unless the
    # Authenticode digest gives it for free); ``inventory.complete`` adds them where needed.
    level: str = "full"

    @property
    def core(self) -> bool:
        return self.level == "core"

    @property
    def judging_time(self) -> datetime | None:
        """``at``, else the trust configuration's ``at`` (None: a timestamp's time, or now)."""
        if self.at is not None:
            return self.at
        return self.trust.at if self.trust is not None else None


def preload(ctx: AnalysisContext) -> None:
    """Load once what signature checks read (trust roots, Apple's certificates,
    cryptography's modules), before forked workers start: each would load its own."""
    if not ctx.verify_signatures:
        return
    trust = ctx.trust or TrustConfig()
    trust.roots()
    apple.macho_roots(tuple(str(p) for p in trust.extra_pem))
    apple.apple_certificates()
    algorithms.preload()
