"""Training metrics: JSON lines on stdout and pushes to a Pushgateway that never stop training."""

from __future__ import annotations

import http.server
import json
import threading

from mathforge.training.config import MetricsConfig
from mathforge.training.metrics import TrainMetrics


class _Gateway(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, str]] = []

    def do_PUT(self):
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        _Gateway.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_step_lines_are_json_and_reach_the_pushgateway(capsys):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = MetricsConfig(log_every=2, pushgateway=f"127.0.0.1:{server.server_port}", progress_bar="off")
        metrics = TrainMetrics(config, stage="sft", total_steps=4)
        for step in range(1, 5):
            metrics.log(step, {"loss": 2.0 / step, "lr": 5e-5, "grad_norm": 0.5, "tokens_per_s": 1000.0})
    finally:
        server.shutdown()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["step"] for line in lines] == [2, 4]
    assert lines[1]["loss"] == 0.5 and lines[1]["stage"] == "sft"
    path, body = _Gateway.received[-1]
    assert path == "/metrics/job/mathforge-training/stage/sft"
    assert "mathforge_train_loss" in body and "0.5" in body


def test_unreachable_pushgateway_is_logged_not_raised(capsys):
    metrics = TrainMetrics(MetricsConfig(pushgateway="127.0.0.1:9", progress_bar="off"), "pretrain", 1)
    metrics.log(1, {"loss": 1.0})
    assert json.loads(capsys.readouterr().out)["loss"] == 1.0


def test_only_the_main_process_reports(capsys):
    TrainMetrics(MetricsConfig(progress_bar="off"), "sft", 1, enabled=False).log(1, {"loss": 1.0})
    assert capsys.readouterr().out == ""
