"""Linux packages as their real extractors see them (docs/contract.md "Archives as real
extractors see them").

* An .rpm built by ``rpmbuild`` with absolute and relative symlinks, a hard-link group and a
  file name holding a backslash: biv's tree equals ``rpm2cpio X.rpm | cpio -idm``'s, and the
  package verified against itself passes.
* Hostile cpio payloads put into a real .rpm (``rpm2cpio`` reads them): the data of one
  hard-linked file stored twice, link names whose data comes under a hostile name, a symlink
  target longer than PATH_MAX, a target that escapes with ``\\`` read as a separator. Names
  whose data never comes are one empty file, as GNU cpio makes them.
* Debian's ``systemd`` (names such as ``system-systemd\\x2dcryptsetup.slice``): biv's tree
  equals ``dpkg-deb -x``'s and the package verified against itself passes.
* For Windows, ``app\\x.dll`` and ``app/x.dll`` in one zip collide.
"""

from __future__ import annotations

import io
import subprocess
import zipfile
from pathlib import Path

import pytest
from support.fetch import fetch_pinned
from support.linux_packages import (
    biv_json,
    biv_tree,
    build_rpm,
    cpio_extract,
    disk_tree,
    need,
    newc,
    rules,
    with_payload,
)

from verifier._scenarios import pewriter

REG, LNK = 0o100644, 0o120777
BACKSLASH_NAME = "dev-disk-by\\x2dlabel.device"  # a systemd unit name: one file, no directory

INSTALL = r"""
d=$RPM_BUILD_ROOT/usr/lib/app
mkdir -p $d $RPM_BUILD_ROOT/usr/bin
echo data > $d/data.txt
head -c 20000 /dev/zero | tr '\0' p > $d/pad.bin
ln -s /usr/lib/app/data.txt $RPM_BUILD_ROOT/usr/bin/app
ln -s data.txt $d/rel
echo hard > $d/h1
ln $d/h1 $d/h2
ln $d/h1 $d/h3
echo unit > "$d/dev-disk-by\x2dlabel.device"
"""


@pytest.fixture(scope="module")
def rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real noarch .rpm (gzip payload) built by rpmbuild."""
    need("rpm2cpio")
    need("cpio")
    work = tmp_path_factory.mktemp("rpm")
    return build_rpm(work, "biv-links", INSTALL, ["/usr/lib/app", "/usr/bin/app"])


def test_rpm_tree_equals_cpio_tree_and_verifies_against_itself(rpm: Path, tmp_path: Path) -> None:
    want = disk_tree(cpio_extract(rpm, tmp_path / "cpio"))
    # the package holds what this test is about, as the real extractor wrote it
    assert want.symlinks["usr/bin/app"] == "../lib/app/data.txt"  # absolute in the rpm
    assert want.symlinks["usr/lib/app/rel"] == "data.txt"
    assert frozenset({f"usr/lib/app/h{i}" for i in (1, 2, 3)}) in want.groups
    assert f"usr/lib/app/{BACKSLASH_NAME}" in want.files
    assert biv_tree(rpm, tmp_path / "w") == want
    rc, report = biv_json(str(rpm), "--against", f"path:{rpm}", "--fail-on", "info")
    assert rc == 0 and report["verdict"] == "pass", report["findings"]
    (note,) = [n for n in report["notes"] if n["kind"] == "rpm-absolute-links"]
    assert "1 symlink(s)" in note["message"]


# --- hostile payloads in a real .rpm --------------------------------------------------------

HOSTILE = {
    # one inode's data on two names: GNU cpio keeps the first, a naive extractor the last
    "twice": [("./usr/a", REG, b"genuine", 5, 2), ("./usr/b", REG, b"tampered", 5, 2)],
    # the link names' data comes under a name that is never extracted
    "dropped": [("./usr/a", REG, b"", 6, 2), ("../usr/b", REG, b"evil", 6, 2)],
    # a symlink target longer than PATH_MAX
    "long-target": [("./usr/l", LNK, b"a/" * 2500, 7, 1)],
    # harmless text for the kernel, an escape for an extractor on Windows
    "backslash-escape": [("./usr/e", LNK, b"..\\..\\etc\\passwd", 8, 1)],
}
FLAGGED = {  # the location (the member's name as stored) and why
    "twice": ("./usr/b", "stored twice"),
    "dropped": ("./usr/a", "hard link to a member that was not extracted"),
    "long-target": ("./usr/l", "longer than 4096 bytes"),
    "backslash-escape": ("usr/e", "symlink escapes the archive"),
}


@pytest.fixture(scope="module")
def hostile(rpm: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("hostile")
    return {k: with_payload(rpm, work / f"{k}.rpm", newc(v)) for k, v in HOSTILE.items()}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_rpm_payload_is_malformed_input(case: str, hostile: dict[str, Path]) -> None:
    art = hostile[case]
    rc, report = biv_json(str(art), "--against", f"path:{art}")
    assert rc == 1 and report["verdict"] == "fail"
    where, why = FLAGGED[case]
    found = {f["location"]: f["message"] for f in rules(report)["malformed-input"]}
    assert why in found.get(f"{art.name}!/{where}", ""), found


def test_stored_twice_gnu_cpio_keeps_the_first(hostile: dict[str, Path], tmp_path: Path) -> None:
    """Why "twice" is hostile: the real extractor's tree is not what the last entry says."""
    tree = disk_tree(cpio_extract(hostile["twice"], tmp_path / "cpio"))
    assert tree.groups == {frozenset({"usr/a", "usr/b"})}
    assert tree.files["usr/b"] == tree.files["usr/a"]


def test_link_names_without_data_are_one_empty_file(rpm: Path, tmp_path: Path) -> None:
    """GNU cpio makes names whose data never comes one empty file (create_final_defers)."""
    entries = [("./usr/x", REG, b"", 9, 3), ("./usr/y", REG, b"", 9, 3), ("./z", REG, b"z", 1, 1)]
    art = with_payload(rpm, tmp_path / "nodata.rpm", newc(entries))
    want = disk_tree(cpio_extract(art, tmp_path / "cpio"))
    assert want.groups == {frozenset({"usr/x", "usr/y"})}
    assert biv_tree(art, tmp_path / "w") == want


# --- a real Debian package with backslashes in its names -----------------------------------

SYSTEMD = (
    "s/systemd/systemd_252.39-1~deb12u2_amd64.deb",
    "286f879c537bfba92e59d580c075ad20ab49020244c79634656850a306dd462b",
)


def test_debian_systemd_backslash_names(tmp_path: Path) -> None:
    pool, sha = SYSTEMD
    deb = fetch_pinned(f"https://deb.debian.org/debian/pool/main/{pool}", sha)
    x = tmp_path / "x"
    subprocess.run([need("dpkg-deb"), "-x", str(deb), str(x)], check=True, capture_output=True)
    want = disk_tree(x)
    assert "lib/systemd/system/system-systemd\\x2dcryptsetup.slice" in want.files
    assert biv_tree(deb, tmp_path / "w") == want
    rc, report = biv_json(str(deb), "--against", f"path:{deb}", "--fail-on", "info")
    assert rc == 0 and report["verdict"] == "pass", report["findings"]


# --- Windows: a backslash separates ---------------------------------------------------------


def test_backslash_and_slash_collide_for_windows(tmp_path: Path) -> None:
    dll = pewriter.build_pe(pewriter.ffmpeg_dll())
    up = tmp_path / "up" / "app"
    up.mkdir(parents=True)
    (up / "x.dll").write_bytes(dll)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # made on Unix: 'app\\x.dll' is one name
        z.writestr("app/x.dll", dll)
        z.writestr("app\\x.dll", b"MZ not the genuine one")
    art = tmp_path / "app.zip"
    art.write_bytes(buf.getvalue())
    rc, report = biv_json(str(art), "--against", f"path:{tmp_path / 'up'}")
    assert rc == 1
    (f,) = rules(report)["name-collision"]
    assert f["severity"] == "high" and "backslash" in f["message"]
