"""The documentation: every page the navigation names exists and every page is in it, and the site builds in strict
mode (under a second: it stays in the default suite)."""

import subprocess
import sys
from pathlib import Path

import yaml


ROOT = Path(__file__).resolve().parents[1]


def nav_pages() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return [page for entry in config["nav"] for page in entry.values()]


def test_the_navigation_names_every_page_and_only_pages_that_exist():
    pages = nav_pages()
    assert all((ROOT / "docs" / page).is_file() for page in pages)
    assert sorted(pages) == sorted(p.name for p in (ROOT / "docs").glob("*.md"))


def test_links_between_pages_point_to_pages():
    import re

    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([a-z_]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (ROOT / "docs" / target).is_file(), f"{page.name} links to {target}"


def test_docs_build_in_strict_mode(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
