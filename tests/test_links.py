"""Links between notebooks: every markdown link to a notebook, or to a `#section` of one, must resolve.

Checked in `nbs/*.ipynb` and `nbs/solutions/*.ipynb`: a link to a `.ipynb` must name a notebook that exists (relative to
the linking notebook's folder; for the README notebook, `nbs/index.ipynb`, relative to the repository root, where its
README.md lives), and a `#anchor` (in that notebook, or in the same one for `(#anchor)`) must be an id of the rendered
page. Anchors are derived the way the published site (mkdocs.yml) makes them: mkdocs-jupyter renders markdown with
nbconvert's mistune filter and patches its heading ids to `slugify(heading text)` (lowercase, punctuation dropped,
spaces to hyphens: `## 1. The task` -> `#1-the-task`); explicit `<a id="...">` anchors count too.
"""
import html, json, re
from functools import cache
from pathlib import Path
from urllib.parse import unquote
import pytest

pytest.importorskip("mkdocs_jupyter", reason="the docs site's generator (the dev extra) derives the anchors")
import mkdocs_jupyter.convert  # noqa: E402,F401  (patches nbconvert's heading ids exactly as the site build does)
from nbconvert.filters.markdown_mistune import markdown2html_mistune  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / "nbs"
_readme = re.search(r'^readme_nb\s*=\s*"([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)   # [tool.nbdev]
README_NB = NBS / (_readme.group(1) if _readme else "index.ipynb")
NOTEBOOKS = sorted(NBS.glob("*.ipynb")) + sorted((NBS / "solutions").glob("*.ipynb"))
LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)   # links inside code are not links
ID = re.compile(r"""\bid=["']([^"']+)["']""")


def _markdown(path:Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


@cache
def anchors(path:Path) -> frozenset:
    "Every id the site's page for `path` has in its markdown: heading slugs and explicit anchors."
    return frozenset(unquote(html.unescape(i)) for md in _markdown(path) for i in ID.findall(markdown2html_mistune(md)))


def links(path:Path) -> list[tuple[str, str]]:
    "(text, target) of every markdown link in `path`'s markdown cells."
    return [(m.group(1), m.group(2)) for md in _markdown(path) for m in LINK.finditer(CODE.sub("", md))]


def broken_links(path:Path) -> list[str]:
    "A line for each link of `path` to a missing notebook or a missing anchor."
    base = ROOT if path == README_NB else path.parent
    out = []
    for text, target in links(path):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"): continue   # http:, mailto:, ...
        file, _, frag = target.partition("#")
        if file and not file.endswith(".ipynb"): continue
        dest = (base / unquote(file)).resolve() if file else path
        if not dest.exists():
            out.append(f"[{text}]({target}): no notebook {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}")
        elif frag and unquote(frag) not in anchors(dest):
            out.append(f"[{text}]({target}): no section #{frag} in {dest.relative_to(ROOT)}")
    return out


def test_anchors_are_the_sites():
    "The ids match what mkdocs-jupyter writes for headings (lowercase slugs), not nbconvert's own (case kept)."
    ids = anchors(NBS / "01_grpo.ipynb")
    assert "1-group-relative-advantages" in ids and "what-we-learned" in ids
    assert not any(i != i.lower() for i in ids)


def test_links_are_found():
    "The scan sees links (the syllabus links every chapter), ignores code spans and resolves the README's `nbs/` links."
    assert ("chapter 2", "02_rewards.ipynb") in links(NBS / "01_grpo.ipynb")
    assert len(links(NBS / "00_syllabus.ipynb")) >= 10
    assert not broken_links(README_NB)


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: str(p.relative_to(NBS)))
def test_no_broken_notebook_links(nb):
    bad = broken_links(nb)
    assert not bad, f"{nb.relative_to(ROOT)}:\n" + "\n".join(bad)
