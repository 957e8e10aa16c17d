import hashlib
import http.server
import io
import threading
import zipfile

import pytest

from wlm.download import MEMBERS, download
from wlm.errors import WlmError

TEXTS = {"train": b"a b c\n", "valid": b"a b\n", "test": b"c a\n"}


@pytest.fixture
def server():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for split, member in MEMBERS.items():
            zf.writestr(member, TEXTS[split])
    archive = buffer.getvalue()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/wikitext-2-v1.zip":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(archive)))
            self.end_headers()
            self.wfile.write(archive)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def good_sums():
    return {split: hashlib.sha256(data).hexdigest() for split, data in TEXTS.items()}


def test_right_checksum_accepted(server, tmp_path):
    dest = download(tmp_path / "wt2", urls=(f"{server}/wikitext-2-v1.zip",), sha256=good_sums(), progress=False)
    assert {p.name for p in dest.iterdir()} == {"train.txt", "valid.txt", "test.txt"}
    assert (dest / "valid.txt").read_bytes() == TEXTS["valid"]
    assert [p.name for p in tmp_path.iterdir()] == ["wt2"]  # no temporary leftovers


def test_wrong_checksum_refused_and_nothing_left(server, tmp_path):
    sums = {**good_sums(), "test": "0" * 64}
    with pytest.raises(WlmError, match="sha256"):
        download(tmp_path / "wt2", urls=(f"{server}/wikitext-2-v1.zip",), sha256=sums, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_gives_clear_message(server, tmp_path):
    with pytest.raises(WlmError, match="could not download.*--data"):
        download(tmp_path / "wt2", urls=(f"{server}/missing.zip",), sha256=good_sums(), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_falls_back_to_the_next_address(server, tmp_path):
    urls = (f"{server}/missing.zip", f"{server}/wikitext-2-v1.zip")
    assert (download(tmp_path / "wt2", urls=urls, sha256=good_sums(), progress=False) / "train.txt").is_file()
