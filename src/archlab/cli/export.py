"""``archlab export``: the best model of a run to ONNX, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archlab.cli._app import EXIT_INTERNAL, app, fail, flag, out, print_json, user_errors


@app.command(epilog="Example: archlab export runs/search-20261126-120000 --out model.onnx")
def export(
    run_dir: Annotated[Path, typer.Argument(help="a finished run folder")],
    output: Annotated[Path | None, typer.Option("--out", help="ONNX file (default: RUN/best/model.onnx)")]
    = None,
    atol: Annotated[float, typer.Option(help="largest allowed |ONNX - PyTorch| difference")] = 1e-4,
    as_json: Annotated[bool, flag("--json", "print the result as JSON on stdout")] = False,
) -> None:
    """Export the best model of a run to ONNX and check it against PyTorch with ONNX Runtime."""
    from archlab.export import OnnxMismatch
    from archlab.study import export_best

    with user_errors():
        try:
            result = export_best(run_dir, output, atol=atol)
        except OnnxMismatch as e:  # the export itself went wrong, not the input: an internal failure
            fail(str(e), code=EXIT_INTERNAL)
    if as_json:
        print_json(result)
    else:
        out.print(f"wrote {result['onnx']} (max |ONNX - PyTorch| = {result['max_abs_diff']:.2e})")
