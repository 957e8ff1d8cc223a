"""The Python worker's list of masters (mlitb/worker/masters.py): follow `moved`, fail over in turn."""

from mlitb.worker.masters import MasterList, http_base


def test_moved_with_a_url_is_followed_and_its_masters_kept():
    masters = MasterList("http://127.0.0.1:8000/")
    masters.moved("http://127.0.0.1:8002", ["http://127.0.0.1:8000", "http://127.0.0.1:8004"])
    assert masters.current == "http://127.0.0.1:8002"
    assert masters.known == ["http://127.0.0.1:8000", "http://127.0.0.1:8004", "http://127.0.0.1:8002"]


def test_without_an_owner_or_after_a_failure_the_next_master_is_tried_in_turn():
    masters = MasterList("ws://a:1/ws")
    assert masters.current == "http://a:1"
    masters.failed()
    assert masters.current == "http://a:1"  # alone: stays
    masters.moved(None, ["http://b:2", "file:///etc/passwd", 7])
    assert masters.current == "http://b:2" and masters.known == ["http://a:1", "http://b:2"]
    masters.failed()
    assert masters.current == "http://a:1"


def test_urls_compare_by_their_http_base():
    assert http_base("wss://m.example.org/ws") == "https://m.example.org"
    assert http_base("http://m:8000/") == "http://m:8000"
