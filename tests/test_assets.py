"""The front end as files: nothing that the Content-Security-Policy would block, nothing
fetched from another host, and a module preload list that matches the import graph."""

from __future__ import annotations

import re
from pathlib import Path

from meshcall.paths import asset_dir

ASSETS = asset_dir()
PAGES = sorted(ASSETS.glob("*.html"))
SCRIPTS = sorted((ASSETS / "js").glob("*.js"))


def imports_of(module: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    text = (ASSETS / "js" / module).read_text()
    for dep in re.findall(r"""^import .* from ['"]\./([\w-]+\.js)['"];""", text, flags=re.M):
        if dep not in seen:
            seen.add(dep)
            imports_of(dep, seen)
    return seen


def test_pages_have_no_inline_script_or_style_and_no_foreign_host() -> None:
    assert PAGES, "no pages found"
    for page in PAGES:
        html = page.read_text()
        for tag in re.findall(r"<script\b[^>]*>", html):
            assert "src=" in tag, f"{page.name}: inline script {tag}"
        assert not re.search(r"<script\b[^>]*>(?!\s*</script>)", html), f"{page.name}: inline script body"
        assert not re.search(r"\sstyle\s*=", html), f"{page.name}: inline style attribute"
        assert not re.search(r"\son[a-z]+\s*=", html), f"{page.name}: inline event handler"
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html.replace("{{ url }}", "").replace("{{ here }}", "")), \
            f"{page.name}: a resource from another host"


def test_scripts_reach_no_other_host() -> None:
    for script in SCRIPTS:
        # XML namespace names are identifiers, never fetched.
        text = script.read_text().replace("http://www.w3.org/2000/svg", "")
        assert not re.search(r"""['"`](https?:)?//[a-z0-9.-]+\.[a-z]{2,}""", text, flags=re.I), \
            f"{script.name} names another host"
        assert "stun.l.google.com" not in text


def test_room_page_preloads_exactly_its_module_graph() -> None:
    html = (ASSETS / "room.html").read_text()
    preloaded = set(re.findall(r'<link rel="modulepreload" href="/static/js/([\w-]+\.js)">', html))
    assert preloaded == imports_of("room.js")


def test_front_end_jsdoc_types_check() -> None:
    import subprocess

    tsc = Path(__file__).resolve().parents[1] / ".tools" / "node_modules" / ".bin" / "tsc"
    assert tsc.exists(), "TypeScript is missing: ./scripts/test installs it into .tools/"
    res = subprocess.run([str(tsc), "-p", str(ASSETS / "jsconfig.json")], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
