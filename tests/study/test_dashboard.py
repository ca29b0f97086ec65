"""optuna-dashboard serves an archlab study unchanged (its JSON API lists the study and its trials)."""

from __future__ import annotations

import json
import threading
import urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

from archlab.search import create_strategy
from archlab.space import Space, choice, integer
from archlab.study import EvalResult, Ledger


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def test_optuna_dashboard_reads_an_archlab_ledger(tmp_path):
    from optuna_dashboard import wsgi

    url = f"sqlite:///{tmp_path}/ledger.db"
    space = Space(width=choice([16, 32]), depth=integer(1, 3))
    ledger = Ledger(url, ["accuracy", "latency_ms"], space=space)
    strategy = create_strategy("random", space, objectives=["accuracy", "latency_ms"])
    for i in range(4):
        arch = strategy.ask()
        metrics = {"val_accuracy": 0.5 + 0.1 * i, "latency_ms": 1.0 + i, "params": 10, "flops": 10}
        strategy.tell(ledger.finish(ledger.start(arch), EvalResult("complete", metrics)))

    server = make_server("127.0.0.1", 0, wsgi(url), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        studies = json.load(urllib.request.urlopen(f"{base}/api/studies", timeout=30))["study_summaries"]
        assert [s["study_name"] for s in studies] == ["archlab"]
        detail = json.load(urllib.request.urlopen(f"{base}/api/studies/{studies[0]['study_id']}?after=0",
                                                  timeout=30))
        assert len(detail["trials"]) == 4
        assert {p["name"] for p in detail["trials"][0]["params"]} == {"width", "depth"}
    finally:
        server.shutdown()
