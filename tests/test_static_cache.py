"""The front end from the bundle: versioned URLs cached for good, compressed once at start,
pages revalidated with strong ETags."""

from __future__ import annotations

import gzip
import re
from unittest import mock

from meshcall.bundle import Bundle
from meshcall.paths import asset_dir
from test_signaling import ServerCase

ASSETS = asset_dir()


class StaticCacheTest(ServerCase):
    def _version(self) -> str:
        page = self.fetch("/r/some-room").body.decode()
        match = re.search(r'src="/static/([0-9a-f]{16})/js/room\.js"', page)
        assert match, page[:400]
        return match.group(1)

    def test_pages_load_their_assets_under_one_version(self) -> None:
        version = self._version()
        assert version == Bundle(ASSETS).version
        for page in ("/", "/r/some-room"):
            html = self.fetch(page).body.decode()
            refs = re.findall(r'(?:src|href)="(/static/[^"]+)"', html)
            assert refs and all(r.startswith(f"/static/{version}/") for r in refs), refs

    def test_versioned_assets_are_immutable_compressed_and_byte_exact(self) -> None:
        version = self._version()
        for name in ("js/room.js", "js/call.js", "app.css"):
            resp = self.fetch(f"/static/{version}/{name}", headers={"Accept-Encoding": "gzip"},
                              decompress_response=False)
            assert resp.code == 200
            assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert resp.headers["Content-Encoding"] == "gzip"
            assert re.fullmatch(r'"[0-9a-f]{32}"', resp.headers["ETag"])
            assert gzip.decompress(resp.body) == (ASSETS / name).read_bytes()
            plain = self.fetch(f"/static/{version}/{name}", decompress_response=False)
            assert "Content-Encoding" not in plain.headers and plain.body == (ASSETS / name).read_bytes()

    def test_a_client_that_has_the_file_gets_a_304(self) -> None:
        version = self._version()
        first = self.fetch(f"/static/{version}/js/peer.js")
        again = self.fetch(f"/static/{version}/js/peer.js", headers={"If-None-Match": first.headers["ETag"]})
        assert again.code == 304 and again.body == b""
        page = self.fetch("/r/some-room")
        assert page.headers["Cache-Control"] == "no-cache"
        assert self.fetch("/r/some-room", headers={"If-None-Match": page.headers["ETag"]}).code == 304

    def test_unversioned_and_old_version_urls_are_revalidated_not_cached_for_good(self) -> None:
        for path in ("/static/js/room.js", "/static/0000000000000000/js/room.js"):
            resp = self.fetch(path)
            if path.startswith("/static/js"):
                assert resp.code == 200 and resp.headers["Cache-Control"] == "no-cache"
            else:
                assert resp.code == 404  # an old version's files are gone with it

    def test_nothing_is_compressed_per_request(self) -> None:
        version = self._version()
        with mock.patch("gzip.compress", side_effect=AssertionError("compressed per request")), \
                mock.patch("zlib.compressobj", side_effect=AssertionError("compressed per request")):
            for name in ("js/room.js", "js/signaling.js", "app.css"):
                resp = self.fetch(f"/static/{version}/{name}", headers={"Accept-Encoding": "gzip"},
                                  decompress_response=False)
                assert resp.code == 200 and resp.headers["Content-Encoding"] == "gzip"


def test_the_version_follows_the_content(tmp_path: object) -> None:
    from pathlib import Path

    root = Path(str(tmp_path))
    (root / "js").mkdir()
    (root / "js" / "a.js").write_text("export const a = 1;\n")
    (root / "p.html").write_text('<script type="module" src="/static/js/a.js"></script>')
    first = Bundle(root)
    assert first.page("p.html").body.decode() == f'<script type="module" src="/static/{first.version}/js/a.js"></script>'
    (root / "js" / "a.js").write_text("export const a = 2;\n")
    assert Bundle(root).version != first.version
