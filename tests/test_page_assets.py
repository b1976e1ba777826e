"""Every asset every page asks for answers 200 from a running server: a newcomer's first
`make demo` showed blank charts because the Chart.js and msgpack files were not installed."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from conftest import REPO

from tests.serverkit import make_settings, server

CLIENT = REPO / "client_js"
PAGES = ("agent.html", "supervisor.html", "analytics.html", "softphone.html")
_HTML_REF = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)=["']([^"'#]+)["']""", re.IGNORECASE)
_JS_IMPORT = re.compile(r"""(?:\bfrom\s+|\bimport\s*\(\s*)["'](\.{1,2}/[^"']+)["']""")


def _local(ref: str) -> bool:
    return not re.match(r"^(?:[a-z]+:|//)", ref, re.IGNORECASE)


async def test_every_page_asset_is_served(tmp_path: Path) -> None:
    if not (CLIENT / "node_modules" / "chart.js").is_dir():
        pytest.fail("client_js/node_modules is missing: `make demo` and `make test` run npm install (Makefile)")
    s = make_settings(tmp_path)
    async with server(s) as (base, _app):
        http_base = base.replace("ws://", "http://") + "/agent/"
        async with httpx.AsyncClient(timeout=10) as http:
            seen: set[str] = set()
            queue = [urljoin(http_base, p) for p in PAGES]
            while queue:
                url = queue.pop()
                if url in seen:
                    continue
                seen.add(url)
                r = await http.get(url)
                assert r.status_code == 200, f"{url}: {r.status_code}"
                if url.endswith(".html"):
                    refs = [m.group(1) for m in _HTML_REF.finditer(r.text)]
                elif url.endswith((".js", ".mjs")):
                    refs = [m.group(1) for m in _JS_IMPORT.finditer(r.text)]
                else:
                    refs = []
                queue += [urljoin(url, ref) for ref in refs if _local(ref)]
    assert any("chart.umd.js" in u for u in seen) and any("msgpack" in u for u in seen), sorted(seen)
