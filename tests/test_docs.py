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


def demo_table(text: str) -> dict[str, dict[str, float]]:
    """The first metrics table (`| model | acc_t1 | ...`) in `text`, by row name: what `make demo` prints, and the
    README's and docs/results.md's copies of it."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | acc_t1 |"))
    header = [cell.strip() for cell in lines[start].strip("|").split("|")]
    table = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        table[cells[0]] = {key: float(value) for key, value in zip(header[1:], cells[1:], strict=True)}
    return table


def test_the_readme_and_results_show_the_same_demo_table():
    readme = demo_table((ROOT / "README.md").read_text())
    assert list(readme) == ["base", "stage I", "SCoRe"]
    assert demo_table((ROOT / "docs" / "results.md").read_text()) == readme


def test_license_and_citation():
    from score_trl.trainers.multi_turn_rloo_trainer import SCORE_PAPER

    license_text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert 'license = { text = "Apache-2.0" }' in (ROOT / "pyproject.toml").read_text()
    readme = (ROOT / "README.md").read_text()
    assert SCORE_PAPER["citation"] in readme  # the model card's citation and the README's are one text
    assert "@software{score_trl," in readme
