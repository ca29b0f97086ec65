"""``archlab compress``: the best model of a run made smaller or faster, measured before and after."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from archlab.cli._app import app, err, flag, out, print_json, user_errors


@app.command(epilog="Examples: archlab compress runs/search-20261204-101500 --method int8-static  |  "
                    "archlab compress runs/search-20261204-101500 --method maestro --rank 0.5 --epochs 3")
def compress(
    run_dir: Annotated[Path, typer.Argument(help="a finished run folder")],
    method: Annotated[str, typer.Option(help="svd: truncated SVD of the linear layers; maestro: trainable "
                                             "low-rank decomposition (ordered dropout); int8-dynamic, int8-static, "
                                             "int8-mixed: ONNX Runtime post-training quantisation (int8-mixed keeps "
                                             "the most sensitive layers in float32); qat: quantisation-aware "
                                             "training exported as QDQ",
                                        metavar="svd|maestro|int8-dynamic|int8-static|int8-mixed|qat")],
    output: Annotated[Path | None, typer.Option("--out", help="new folder (default: RUN-METHOD beside the run; "
                                                              "an existing folder is refused)")] = None,
    rank: Annotated[float, typer.Option(help="svd, maestro: fraction of each linear layer's rank kept")] = 0.5,
    epochs: Annotated[int | None, typer.Option(help="training epochs (default: svd 0, maestro 3, qat 2)")] = None,
    max_drop: Annotated[float, typer.Option(help="int8-mixed: largest validation accuracy drop from float32 "
                                                 "(absolute: 0.01 is one point)")] = 0.01,
    lr: Annotated[float, typer.Option(help="learning rate of the training")] = 1e-3,
    seed: Annotated[int, typer.Option(help="seed of the training")] = 0,
    as_json: Annotated[bool, flag("--json", "print the result as JSON on stdout")] = False,
) -> None:
    """Compress the best model of a run; write the compressed model, its ONNX file and a report to a new folder."""
    from archlab.compress._run import CompressSettings, compress_run, report_markdown

    with user_errors():
        settings = CompressSettings(rank=rank, epochs=epochs, max_drop=max_drop, lr=lr, seed=seed)
        with err.status("compressing") as status:
            result = compress_run(run_dir, method, output, settings, progress=lambda m: status.update(m))
    folder = output if output is not None else run_dir.parent / f"{run_dir.name}-{method}"
    if as_json:
        print_json({**result, "out": str(folder)})
        return
    out.print(report_markdown(result), markup=False, highlight=False)
    out.print(f"wrote {folder} (model.onnx, report.md, compress.json)")
