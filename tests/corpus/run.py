"""``make corpus``: every row of the real-world corpus, then the table.

Usage: python tests/corpus/run.py [--tier test|corpus|all] [ID...]
Exit 0 when every row passes, 1 otherwise (a package that cannot be fetched is a failure here:
the corpus gate is never passed by default).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1]), str(Path(__file__).resolve().parents[2])]

from corpus import check  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tier", choices=("test", "corpus", "all"), default="all")
    ap.add_argument("ids", nargs="*", help="only these package ids")
    args = ap.parse_args(argv)
    m = check.load()
    wanted = set(args.ids)

    def keep(pid: str) -> bool:
        p = m.package(pid)
        return (not wanted or pid in wanted) and args.tier in ("all", p.tier)

    jobs = [(p.id, lambda p=p: check.check_self(p)) for p in m.packages if keep(p.id)]
    jobs += [
        (f"pair {x.newer}", lambda x=x: check.check_pair(m, x))
        for x in m.pairs
        if keep(x.newer) and keep(x.older)
    ]
    jobs += [
        (f"tamper {t.package}", lambda t=t: check.check_tamper(m, t))
        for t in m.tampers
        if keep(t.package)
    ]
    rows = []
    for name, job in jobs:
        print(f"... {name}", file=sys.stderr, flush=True)
        try:
            rows.append(job())
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            row = check.Row(name)
            row.problems.append(f"{type(exc).__name__}: {exc}")
            rows.append(row)
    print(check.table(rows))
    failed = [r for r in rows if not r.ok]
    print(f"\n{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
