"""``archlab bench nb201`` with the training-free strategies: NASWOT's protocol (one query, the best-scored of N
candidates) and RoBoT's (a query budget instead of simulated seconds)."""

from __future__ import annotations

import json

from test_cli_errors import assert_one_line_error
from typer.testing import CliRunner

from archlab.cli import app


def test_cli_replays_naswot_and_refuses_candidates_for_other_strategies(shared_data):
    runner = CliRunner()
    env = {"ARCHLAB_DATA": str(shared_data)}
    res = runner.invoke(app, ["bench", "nb201", "--strategy", "naswot", "--candidates", "10", "--queries", "1",
                              "--runs", "30", "--workers", "1", "--json"], env=env)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["runs"] == 30 and summary["queries_mean"] == 1 and summary["budget_seconds"] is None
    assert summary["published"]["source"].startswith("NASWOT") and "3,000" in summary["proxy_table"]
    bad = runner.invoke(app, ["bench", "nb201", "--strategy", "robot", "--candidates", "10", "--queries", "5"],
                        env=env)
    assert_one_line_error(bad, "--candidates is an option of the naswot strategy")
