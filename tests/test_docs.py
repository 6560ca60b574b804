"""The documentation site, built with `mkdocs build` and checked in a real browser (headless Chromium over the DevTools protocol).

Builds the site into a temporary folder, serves it on 127.0.0.1 (a free port) and opens every page: the home page,
every chapter (`nbs/[0-9]*.ipynb`, in file-name order in the nav), the benchmarks page and every API page. Asserts no console errors or
failed requests, no broken internal links, the GRPO bandit curve displayed, equations typeset by the local MathJax,
search finding "advantage", and every public name of `r1_ref` (its `__all__`) in the API reference.
Screenshots go to docs/_screenshots/ (gitignored). Skipped only when no Chromium is installed.
"""
import ast, functools, http.server, json, os, shutil, subprocess, sys, tempfile, threading, time, urllib.error, urllib.parse, urllib.request
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "docs" / "_screenshots"
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install chromium); .ci/run installs it", allow_module_level=True)

import importlib.util  # noqa: E402
_spec = importlib.util.spec_from_file_location("r1_ref_docs_hooks", ROOT / "docs_src" / "hooks.py")
hooks = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(hooks)  # the chapters and modules the site is built from


class Tab:
    "One browser tab driven over the Chrome DevTools Protocol."
    def __init__(self, ws_url):
        import websocket
        self.ws = websocket.create_connection(ws_url, timeout=60, suppress_origin=True, enable_multithread=False)
        self.n, self.events = 0, []
        for domain in ("Page", "Runtime", "Log"): self.send(f"{domain}.enable")

    def _recv(self):
        msg = json.loads(self.ws.recv())
        if "method" in msg: self.events.append(msg)
        return msg

    def send(self, method, **params):
        self.n += 1; mid = self.n
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg.get("id") == mid:
                if "error" in msg: raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def js(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r: raise RuntimeError(f"JS error in {expr[:80]!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout=60, what=None):
        end = time.time() + timeout
        while time.time() < end:
            v = self.js(expr)
            if v: return v
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout}s waiting for {what or expr}")

    def goto(self, url, timeout=60):
        self.events.clear()
        self.send("Page.navigate", url=url)
        end = time.time() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            if time.time() > end: raise AssertionError(f"{url} did not load in {timeout}s")
            self._recv()
        # Notebook pages load MathJax 3 (async, from the site); wait until it has typeset the page.
        if self.js("!!document.querySelector('script[src*=\"mathjax/load.js\"]')"):
            self.wait("!!(window.MathJax && MathJax.startup && MathJax.startup.promise)", what="MathJax to load")
            self.js("MathJax.startup.promise.then(() => 1)")
        self.js("document.fonts.ready.then(() => 1)")

    def errors(self):
        "Console errors, uncaught exceptions and failed loads since the last `goto`."
        out = []
        for e in self.events:
            m, p = e["method"], e.get("params", {})
            if m == "Runtime.exceptionThrown": out.append(f"exception: {p['exceptionDetails'].get('exception', {}).get('description') or p['exceptionDetails'].get('text')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error": out.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        return out

    def screenshot(self, name, full=False):
        SHOTS.mkdir(parents=True, exist_ok=True)
        import base64
        data = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=full)["data"]
        (SHOTS / f"{name}.png").write_bytes(base64.b64decode(data))


@pytest.fixture(scope="module")
def site():
    "Build the site with the project's one command (into a temp folder), serve it, start Chromium; yield (base url, tab)."
    tmp = Path(tempfile.mkdtemp(prefix="r1_ref_docs_"))
    out = tmp / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "-q", "-d", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"mkdocs build failed:\n{r.stdout}\n{r.stderr}"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a): pass
    class Server(http.server.ThreadingHTTPServer):
        def handle_error(self, request, client_address): pass  # the browser drops requests when it navigates away
    httpd = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(out)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}/"

    profile = tmp / "profile"
    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--disable-background-networking", "--disable-component-update", "--no-first-run",
                             "--disable-sync", "--disable-extensions", "--no-default-browser-check",
                             "--window-size=1280,900", f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tab = None
    try:
        port_file, end = profile / "DevToolsActivePort", time.time() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert proc.poll() is None, "chromium exited at start"
            assert time.time() < end, "chromium did not open its DevTools port in 60 s"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10))
        tab = Tab(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        yield base, tab, out
    finally:
        if tab: tab.ws.close()
        proc.terminate()
        try: proc.wait(10)
        except subprocess.TimeoutExpired: proc.kill()
        httpd.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        print(f"\nscreenshots of the docs site: {SHOTS}")


def pages():
    "Every page of the site, as (screenshot name, path)."
    return ([("index", "index.html")] + [(p.stem, f"{p.stem}.html") for p in hooks.chapters()]
            + [(p.stem, f"{p.stem}.html") for p in hooks.solutions()]          # the exercises' solutions (issue 18)
            + [(p.stem, f"{p.stem}.html") for p in hooks.EXTRA_PAGES] + [(f"api_{m}", f"api/{m}.html") for m in hooks.modules()])

_status = {}
def http_status(url):
    if url not in _status:
        try: _status[url] = urllib.request.urlopen(url, timeout=10).status
        except urllib.error.HTTPError as e: _status[url] = e.code
    return _status[url]

LINKS_JS = """(() => {
  const here = location.href.split('#')[0];
  const links = [...document.querySelectorAll('a[href]')].map(a => a.href).filter(h => h.startsWith(location.origin));
  const missingAnchors = links.filter(h => h.split('#')[0] === here && h.includes('#') && h.split('#')[1])
        .map(h => decodeURIComponent(h.split('#')[1])).filter(id => !document.getElementById(id));
  const badImages = [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src.slice(0, 80));
  return {links: [...new Set(links.map(h => h.split('#')[0]))], missingAnchors, badImages};
})()"""


def test_every_page_loads_cleanly(site):
    "Home, every chapter, the benchmarks page and every API page: no console errors, no failed loads, no broken internal links or images."
    base, tab, _ = site
    problems = []
    for name, path in pages():
        tab.goto(base + path)
        assert tab.js("document.querySelector('article h1, .md-content h1') !== null"), f"{path}: no title"
        problems += [f"{path}: {e}" for e in tab.errors()]
        found = tab.js(LINKS_JS)
        problems += [f"{path}: missing anchor #{a}" for a in found["missingAnchors"]]
        problems += [f"{path}: image not loaded {s}" for s in found["badImages"]]
        problems += [f"{path}: broken link {u} ({http_status(u)})" for u in found["links"] if http_status(u) != 200]
        tab.screenshot(name)
    assert not problems, "\n".join(problems)


def test_nav_lists_every_chapter_in_order(site):
    base, tab, _ = site
    tab.goto(base + "index.html")
    hrefs = tab.js("[...document.querySelectorAll('.md-nav--primary a.md-nav__link[href]')].map(a => a.getAttribute('href'))")
    chapters = [f"{p.stem}.html" for p in hooks.chapters()]
    assert len(chapters) >= 8
    in_nav = [h.split("#")[0].lstrip("./") for h in hrefs if h.split("#")[0].lstrip("./") in chapters]
    assert list(dict.fromkeys(in_nav)) == chapters


def test_bandit_curve_and_equations_render(site):
    "01_grpo: the GRPO bandit curve is a loaded image; equations are typeset by MathJax, no raw `$$` left."
    base, tab, _ = site
    tab.goto(base + "01_grpo.html")
    w = tab.js("""(() => {
      const cell = [...document.querySelectorAll('.jp-CodeCell')].find(c => c.innerText.includes('grpo_bandit()'));
      const img = cell && cell.querySelector('.jp-OutputArea img');
      if (!img) return -1;
      img.scrollIntoView({block: 'center'});
      return img.complete ? img.naturalWidth : 0;
    })()""")
    assert w > 0, f"bandit curve image not displayed (naturalWidth={w})"
    tab.screenshot("01_grpo_bandit_curve")
    math = tab.js("""({
      display: document.querySelectorAll('mjx-container[display="true"]').length,
      inline: document.querySelectorAll('mjx-container:not([display="true"])').length,
      errors: document.querySelectorAll('mjx-merror, [data-mjx-error]').length,
      rawDisplay: document.body.innerText.includes('$$'),
      rawFrac: document.body.innerText.replace(/```[\\s\\S]*?```/g, '').includes('\\\\frac{'),
      src: [...document.querySelectorAll('script[src*="mathjax/"]')].map(s => s.src)})""")
    assert math["src"] and all(s.startswith(base) for s in math["src"]), f"MathJax must be served by the site: {math['src']}"
    assert math["display"] > 0 and math["inline"] > math["display"], math
    assert math["errors"] == 0 and not math["rawDisplay"] and not math["rawFrac"], math
    tab.js("document.querySelector('mjx-container[display=\"true\"]').scrollIntoView({block: 'center'})")
    tab.screenshot("01_grpo_equation")
    tab.goto(base + "api/grpo.html")  # docstrings carry math too
    assert tab.js("document.querySelectorAll('mjx-container').length") > 0
    assert tab.js("document.querySelectorAll('[data-mjx-error]').length") == 0


def test_search_finds_advantage(site):
    base, tab, _ = site
    tab.goto(base + "index.html")
    tab.js("document.querySelector('label.md-search__icon, .md-header__button[for=__search]') && document.getElementById('__search').click(); 1")
    tab.wait("(() => { const i = document.querySelector('input.md-search__input'); if (!i) return false; i.focus(); return document.activeElement === i; })()",
             what="the search box")
    tab.send("Input.insertText", text="advantage")
    hits = tab.wait("""(() => { const r = [...document.querySelectorAll('.md-search-result__item a')].map(a => a.getAttribute('href'));
                                 return r.length ? r : null; })()""", timeout=60, what="search results for 'advantage'")
    tab.screenshot("search_advantage")
    assert any("01_grpo.html" in h for h in hits), hits
    assert not tab.errors(), tab.errors()


def test_api_reference_lists_every_public_name(site):
    "Each module's `__all__` (nbdev writes it from the exported cells) is documented on its API page."
    _, _, out = site
    missing = []
    for mod in hooks.modules():
        tree = ast.parse((ROOT / "r1_ref" / f"{mod}.py").read_text())
        names = next((ast.literal_eval(s.value) for s in tree.body if isinstance(s, ast.Assign)
                      and any(getattr(t, "id", None) == "__all__" for t in s.targets)), [])
        publics = names or [s.name for s in tree.body if isinstance(s, (ast.FunctionDef, ast.ClassDef)) and not s.name.startswith("_")]
        html = (out / "api" / f"{mod}.html").read_text()
        missing += [f"r1_ref.{mod}.{n}" for n in publics if f'id="r1_ref.{mod}.{n}"' not in html]
    assert not missing, f"not in the API reference: {missing}"
