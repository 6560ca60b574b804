"""MkDocs hooks that turn the nbdev sources into a site, so that `mkdocs build` alone builds it.

`on_config` writes the pages into `docs_src/_gen/` (gitignored) before MkDocs collects files, and sets the nav:
- `nbs/index.ipynb` is the home page; every `nbs/[0-9]*.ipynb` is a chapter, in file-name order;
- every `nbs/solutions/*.ipynb` is a page of the "Solutions" section, written next to the chapters (`NAME.html` at the
  site root, like every notebook page, so the relative MathJax path holds);
- one API page per public module of `r1_ref/` (`r1_ref/*.py` not starting with `_`), rendered by mkdocstrings;
- the hand-written pages in `EXTRA_PAGES` (docs/benchmarks.md) with their images.
Notebooks are copied with their stored outputs and cleaned the way nbdev's docs are: `#| hide` cells dropped,
directive lines removed, `.ipynb` links (`solutions/NAME.ipynb` from a chapter, `../NAME.ipynb` from a solution)
pointed at the rendered pages.
`on_post_build` copies MathJax 3 (from the `django-static-mathjax` wheel) into the site, so math renders offline.
"""
from __future__ import annotations
import json, re, shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NBS, LIB, GEN = ROOT / "nbs", ROOT / "r1_ref", HERE / "_gen"
EXTRA_PAGES = [ROOT / "docs" / "benchmarks.md"]   # hand-written pages; the PNGs next to them named after them come along
MATHJAX_DIR = "assets/mathjax"  # where MathJax lands in the site; mkdocs.yml's custom_mathjax_url points here

def chapters() -> list[Path]:
    "The chapter notebooks, in file-name (= reading) order."
    return sorted(NBS.glob("[0-9]*.ipynb"))

def solutions() -> list[Path]:
    "The solutions notebooks, in file-name (= chapter) order."
    return sorted((NBS / "solutions").glob("*.ipynb"))

def modules() -> list[str]:
    "The public modules of the library, e.g. `['cli', 'evaluate', 'grpo', ...]`."
    return sorted(p.stem for p in LIB.glob("*.py") if not p.stem.startswith("_"))

def _src(cell) -> str:
    s = cell.get("source", "")
    return "".join(s) if isinstance(s, list) else s

def nb_title(path: Path) -> str:
    "The notebook's H1 (nbdev frontmatter), else its file name."
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell["cell_type"] == "markdown":
            m = re.search(r"^#\s+(.+?)\s*$", _src(cell), re.M)
            if m: return m.group(1)
    return path.stem

_DIRECTIVE = re.compile(r"^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$")
# a link to a notebook: NAME.ipynb, nbs/NAME.ipynb (README), solutions/NAME.ipynb (chapter), ../NAME.ipynb (solution)
_NB_LINK = re.compile(r"\[([^\]]*)\]\((?:\.{1,2}/)?(?:nbs/)?(?:solutions/)?([\w.-]+)\.ipynb(#[^)\s]*)?\)")
_WIDGET = "application/vnd.jupyter.widget-view+json"  # tqdm bars etc.: no widget state is stored, keep text/plain

_MD_LINK = re.compile(r"\]\((?:\.?/?docs/)([\w.-]+)\.md(#[^)\s]*)?\)")   # a link to a hand-written page, docs/NAME.md

def _fix_links(md: str, pages: set[str], warn) -> str:
    def sub(m):
        label, stem, frag = m.group(1), m.group(2), m.group(3) or ""
        if stem in pages: return f"[{label}]({stem}.html{frag})"
        warn(f"link to missing notebook {stem}.ipynb rendered as plain text")
        return label
    md = _MD_LINK.sub(lambda m: f"]({m.group(1)}.html{m.group(2) or ''})" if any(p.stem == m.group(1) for p in EXTRA_PAGES) else m.group(0), md)
    return _NB_LINK.sub(sub, md)

def clean_notebook(nb: dict, pages: set[str], warn=print) -> dict:
    "A copy of `nb` as nbdev's docs show it."
    cells = []
    for cell in nb["cells"]:
        src = _src(cell)
        if cell["cell_type"] == "markdown":
            cells.append({**cell, "source": _fix_links(src, pages, warn)})
            continue
        if cell["cell_type"] != "code":
            cells.append(cell); continue
        lines, dirs = src.splitlines(), {}
        while lines and (m := _DIRECTIVE.match(lines[0])):
            dirs[m.group(1)] = m.group(2); lines.pop(0)
        if "hide" in dirs or dirs.get("include") == "false": continue
        outputs = []
        for out in cell.get("outputs", []):
            if "data" in out:
                data = {k: v for k, v in out["data"].items() if k != _WIDGET}
                if not data: continue
                out = {**out, "data": data}
            outputs.append(out)
        if dirs.get("output") == "false": outputs = []
        body = "\n".join(lines).strip("\n")
        if not body and not outputs: continue
        tags = list(cell.get("metadata", {}).get("tags", []))
        if dirs.get("echo") == "false": tags.append("remove_input")
        cells.append({**cell, "source": body, "outputs": outputs, "metadata": {"tags": tags} if tags else {}})
    meta = {k: v for k, v in nb.get("metadata", {}).items() if k not in ("widgets", "jupytext")}
    return {**nb, "cells": cells, "metadata": meta}

def _write(path: Path, text: str, written: set[Path]):
    "Write only when changed, so `mkdocs serve` does not rebuild forever."
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text(encoding="utf-8") != text: path.write_text(text, encoding="utf-8")
    written.add(path)

API_PAGE = """# `r1_ref.{mod}`

Generated from the docstrings of [`r1_ref/{mod}.py`]({src}); the prose, math and examples are in {chapter}.

::: r1_ref.{mod}
"""

def generate(warn=print) -> list:
    "Write the pages into `docs_src/_gen/`; return the nav."
    written: set[Path] = set()
    nbs, sols = chapters(), solutions()
    pages = {p.stem for p in nbs + sols} | {"index"}
    chapter_of = {}
    for p in [NBS / "index.ipynb", *nbs, *sols]:
        nb = json.loads(p.read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            m = re.match(r"\s*#\|\s*default_exp\s+(\S+)", _src(cell))
            if cell["cell_type"] == "code" and m: chapter_of[m.group(1)] = p
        _write(GEN / p.name, json.dumps(clean_notebook(nb, pages, warn), indent=1, ensure_ascii=False), written)
    api = []
    for mod in modules():
        nbp = chapter_of.get(mod)
        chapter = f"the chapter [{nb_title(nbp)}](../{nbp.name})" if nbp else "the notebooks"
        _write(GEN / "api" / f"{mod}.md", API_PAGE.format(mod=mod, src=f"https://github.com/r1-ref/r1_ref/blob/main/r1_ref/{mod}.py",
                                                         chapter=chapter), written)
        api.append({f"r1_ref.{mod}": f"api/{mod}.md"})
    for page in EXTRA_PAGES:
        _write(GEN / page.name, page.read_text(encoding="utf-8"), written)
        for img in page.parent.glob(f"{page.stem}*.png"):
            dst = GEN / img.name
            if not dst.exists() or dst.read_bytes() != img.read_bytes(): dst.write_bytes(img.read_bytes())
            written.add(dst)
    for extra in HERE.glob("*.css"):
        _write(GEN / "assets" / extra.name, extra.read_text(encoding="utf-8"), written)
    for f in GEN.rglob("*"):  # drop pages of notebooks/modules that are gone
        if f.is_file() and f not in written and not f.name.startswith("."): f.unlink()
    return ["index.ipynb",
            {"Chapters": [{nb_title(p): p.name} for p in nbs]},
            {"Solutions": [{nb_title(p): p.name} for p in sols]},
            {"Benchmarks": [{p.stem.capitalize(): p.name} for p in EXTRA_PAGES]},
            {"API reference": api}]

# ---- mkdocs hook events ----
def on_config(config, **kw):
    import logging
    log = logging.getLogger("mkdocs.hooks.r1_ref")
    config["nav"] = generate(warn=log.info)
    return config

_HEADING = re.compile(r"<h([1-6])[^>]*\bid=\"([^\"]+)\"")

def on_page_content(html, page, **kw):
    "Point a notebook page's table of contents at the heading ids nbconvert wrote (mkdocs-jupyter slugs headings with code differently)."
    if not page.file.src_uri.endswith(".ipynb"): return html
    headings = [(int(l), i) for l, i in _HEADING.findall(html)]
    def walk(items):
        for item in items:
            k = next((n for n, (level, _) in enumerate(headings) if level == item.level), None)
            if k is not None:
                item.id = headings[k][1]; del headings[: k + 1]
            walk(item.children)
    walk(page.toc.items if page.toc else [])
    return html

# MathJax 3 (the `django-static-mathjax` wheel ships MathJax 3.2.2 unmodified) with SVG output: one script, no web fonts.
# mkdocs-jupyter puts `<script src=custom_mathjax_url>` on every notebook page; that URL is this loader, which
# configures MathJax for the notebooks' `$...$` / `$$...$$` and then loads tex-svg.js from next to itself.
MATHJAX_LOADER = """window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true, processEnvironments: true, tags: 'ams'},
  svg: {fontCache: 'global'},
  // mkdocs-jupyter keeps each cell's source in a hidden div.clipboard-copy-txt for the copy button: not math.
  options: {ignoreHtmlClass: 'tex2jax_ignore|clipboard-copy-txt'}
};
(function () {
  var s = document.createElement('script');
  s.src = document.currentScript.src.replace(/load\\.js(\\?.*)?$/, 'tex-svg.js');
  s.async = true;
  document.head.appendChild(s);
})();
"""

def on_post_page(output, page, config, **kw):
    "Markdown pages (the API reference: docstrings carry `$...$` math) get the same local MathJax as the notebooks."
    if page.file.src_uri.endswith(".ipynb") or "</body>" not in output: return output
    src = "../" * page.url.count("/") + f"{MATHJAX_DIR}/load.js"
    return output.replace("</body>", f'<script src="{src}"></script>\n</body>', 1)

def on_post_build(config, **kw):
    import mathjax  # the django-static-mathjax wheel
    src = Path(mathjax.__file__).parent / "static" / "mathjax"
    dst = Path(config["site_dir"]) / MATHJAX_DIR
    if not (dst / "tex-svg.js").exists():
        shutil.copytree(src / "es5", dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.woff"))
        shutil.copy(src / "LICENSE", dst / "LICENSE")
    (dst / "load.js").write_text(MATHJAX_LOADER, encoding="utf-8")
