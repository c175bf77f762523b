"""``biv demo``: the thin runner (``run.py``) over the scenarios ``verifier._scenarios`` builds."""
