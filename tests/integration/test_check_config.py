"""`python -m fanout --check-config`: every element of a real config is either implemented
or warned about by name, and a refused value names its element (issue 11)."""
from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import pytest

from fanout.config.support import NOT_YET
from fanout.config.tables import ROOT
from fanout.config.tagtable import ReadContext, Section, Tag, TagTable, element_paths, generic_path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "config.sample.xml"
DEBIAN = Path("/etc/icecast2/icecast.xml")
ACCEPTED = frozenset(element_paths(ROOT, "icecast"))
WARNING = re.compile(r"^fanout: warning: (icecast/\S+?): (.*)$")
NOT_YET_MARK = "not implemented yet, ignored: "


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fanout", "--check-config", "-c", str(path)],
                          capture_output=True, text=True, timeout=30, cwd=REPO)


def warnings_of(result: subprocess.CompletedProcess[str]) -> list[tuple[str, str]]:
    """(path, message) of every warning line the run printed."""
    return [match.groups() for line in result.stderr.splitlines() if (match := WARNING.search(line))]


def elements_in(path: Path) -> Iterator[tuple[str, str]]:
    """(generic path, text) of every element and attribute in the file, document order."""
    def walk(node: ElementTree.Element, where: str) -> Iterator[tuple[str, str]]:
        for name, value in node.attrib.items():
            yield f"{where}/@{name}", value
        for child in node:
            yield f"{where}/{child.tag}", (child.text or "").strip()
            yield from walk(child, f"{where}/{child.tag}")
    yield from walk(ElementTree.parse(path).getroot(), "icecast")


def tag_at(path: str) -> Tag:
    rows: TagTable = ROOT
    names = path.split("/")[1:]
    for name in names[:-1]:
        reader = rows[name].read
        assert isinstance(reader, Section)
        rows = reader.rows
    return rows[names[-1]]


def asks_for_missing_feature(path: str, text: str) -> bool:
    """Whether this element, with this value, is one fanout does not implement yet."""
    pending = NOT_YET.get(path)
    if pending is None:
        return False
    tag = tag_at(path)
    value: Any = None
    if tag.read is not None and not isinstance(tag.read, Section):
        value = tag.read(text, path, ReadContext())
    return pending.applies(value)


def test_debian_config_every_element_is_implemented_or_warned_by_name() -> None:
    if not DEBIAN.exists():
        pytest.skip("Debian's icecast2 is not installed")
    result = check_config(DEBIAN)
    assert result.returncode == 0 and "is valid" in result.stdout
    present = list(elements_in(DEBIAN))
    assert sorted({path for path, _ in present} - ACCEPTED) == []  # nothing unknown
    warned = warnings_of(result)
    assert all(message.startswith(NOT_YET_MARK) for _, message in warned), warned
    expected = Counter(path for path, text in present if asks_for_missing_feature(path, text))
    assert Counter(generic_path(path) for path, _ in warned) == expected
    # What that means for Debian's file today, spelled out:
    assert [path for path, _ in warned] == ["icecast/paths/adminroot"]


def test_repo_sample_has_only_implemented_elements() -> None:
    result = check_config(SAMPLE)
    assert result.returncode == 0 and "is valid" in result.stdout
    assert warnings_of(result) == []
    present = list(elements_in(SAMPLE))
    assert sorted({path for path, _ in present} - ACCEPTED) == []
    assert [path for path, text in present if asks_for_missing_feature(path, text)] == []


# The elements issue 11 asks to be implemented, in the order of the file below.
ISSUE_11_ELEMENTS = [
    "icecast/security/chroot", "icecast/security/changeowner", "icecast/paths/pidfile",
    "icecast/paths/webroot", "icecast/paths/allow-ip", "icecast/paths/deny-ip",
    "icecast/paths/alias[1]", "icecast/directory[1]", "icecast/logging/playlistlog",
    "icecast/logging/logsize", "icecast/logging/logarchive", "icecast/mount[1]/intro", "icecast/mount[1]/dump-file",
    "icecast/mount[1]/on-connect", "icecast/mount[1]/on-disconnect"]


def test_each_not_implemented_element_is_named_by_check_config(tmp_path: Path) -> None:
    config = tmp_path / "icecast.xml"
    config.write_text(
        "<icecast><security><chroot>1</chroot><changeowner><user>icecast2</user>"
        "<group>icecast</group></changeowner></security><paths><pidfile>/run/f.pid</pidfile>"
        "<webroot>/w</webroot><allow-ip>/etc/icecast2/allow</allow-ip>"
        "<deny-ip>/etc/icecast2/deny</deny-ip><alias source='/' destination='/status.xsl'/></paths>"
        "<directory><yp-url>http://dir.example/cgi-bin/yp-cgi</yp-url></directory>"
        "<logging><playlistlog>playlist.log</playlistlog><logsize>10000</logsize>"
        "<logarchive>1</logarchive></logging>"
        "<mount><mount-name>/live</mount-name><intro>/intro.mp3</intro><dump-file>/tmp/d.mp3</dump-file>"
        "<on-connect>/bin/true</on-connect><on-disconnect>/bin/true</on-disconnect></mount></icecast>")
    result = check_config(config)
    assert result.returncode == 0
    assert [path for path, _ in warnings_of(result)] == [
        path for path in ISSUE_11_ELEMENTS if generic_path(path) in NOT_YET]


@pytest.mark.parametrize("body, expected", [
    ("<paths><alias source='/' destination='/s' port='http'/></paths>",
     "icecast/paths/alias[1]/@port: 'http' is not valid: expected an integer from 1 to 65535"),
    ("<security><changeowner><user>u</user></changeowner></security>",
     "icecast/security/changeowner/group: missing: expected a group name: changeowner needs both"),
    ("<directory><yp-url>dir.xiph.org</yp-url></directory>",
     "icecast/directory[1]/yp-url: 'dir.xiph.org' is not valid: expected an http:// or https:// URL"),
])
def test_refused_value_names_its_element(tmp_path: Path, body: str, expected: str) -> None:
    config = tmp_path / "icecast.xml"
    config.write_text(f"<icecast>{body}</icecast>")
    result = check_config(config)
    assert result.returncode == 2
    assert f"fanout: config error: {expected}" in result.stderr
