"""The configuration of the main job (:func:`archlab.study.run_search` from names, as the CLI gives them), apart
from the procedure: :class:`SearchConfig` (saved in ``run.json``), the space and training configurations it
resolves to, and the picklable factory that rebuilds its training evaluator in a worker process.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from archlab._urls import drop_password
from archlab.data import Dataset, load_dataset
from archlab.errors import SpaceError, UserError
from archlab.search import DEFAULT_STRATEGY, Constraint, check_objectives
from archlab.space import Space, create_space
from archlab.study._budget import Budget
from archlab.study._evaluator import TrainingEvaluator
from archlab.study._loop import EXECUTORS
from archlab.train import PRECISIONS, TrainConfig

__all__ = ["FINAL_LABEL_SMOOTHING", "FINAL_SHIFT", "STOPPINGS", "WARMSTARTS", "SearchConfig",
           "TrainingEvaluatorFactory", "final_shift", "final_train_config", "check_fingerprint", "make_space",
           "rebuild_space", "space_from_spec", "space_pin"]

FINAL_LABEL_SMOOTHING = 0.1
FINAL_SHIFT = 1  # pixels of random translation in the final training (images of >= 16 pixels a side)
#: ``SearchConfig.warmstart``: "proxies" picks the first trials of any strategy by zero-cost proxies in accuracy-only
#: runs (:meth:`archlab.search.Strategy.set_warmstart`); "none" leaves every proposal to the strategy
WARMSTARTS = ("proxies", "none")
#: ``SearchConfig.stopping``: how unpromising trials end early. "asha": successive halving at rungs of 1/9 and 1/3
#: of a trial's schedule (:class:`archlab.search.SuccessiveHalving`); "median": below the median of earlier curves
#: (:class:`archlab.search.MedianStopping`); "none": every trial trains to its fidelity
STOPPINGS = ("asha", "median", "none")


@dataclass(frozen=True)
class SearchConfig:
    """Everything that defines a search run (saved in ``run.json``)."""

    space: str = "image"
    data: str = "digits"
    mixers: tuple[str, ...] | None = None  # restrict the space's mixer choice (None: every registered mixer)
    strategy: str = DEFAULT_STRATEGY
    objectives: tuple[str, ...] = ("accuracy",)
    budget_s: float | None = 180.0
    n_trials: int | None = None
    seed: int = 0
    epochs: int = 20
    trial_seconds: float | None = None  # time fidelity per trial; None = derived from the budget
    train_subset: int | None = None  # 0: all; None: all of a small training split, 10,000 of a large one
    trial_timeout_s: float | None = None
    trial_memory_mb: float | None = None  # how much a trial may grow its process's address space (None: no limit)
    max_memory_mb: float | None = None  # a one-shot strategy's supernet must be estimated to fit (None: no check)
    final_epochs: int = 40  # 0 = no final retraining
    final_fraction: float | None = None  # None: 0.25, or 0.6 when the search trains on a subset
    max_params: int | None = None
    max_flops: int | None = None
    max_latency_ms: float | None = None
    batch_size: int | None = None  # None: 32 for small training splits (<= 5,000), 128 for larger ones
    lr: float = 3e-3
    #: training precision (archlab.train.PRECISIONS): "auto" trains in bfloat16 autocast where the device computes it
    #: natively and it pays (CUDA; images of >= 16 pixels a side on a CPU with avx512_bf16 / AMX), else in float32
    precision: str = "auto"
    storage: str | None = None
    export_onnx: bool = True
    warmstart: str = "proxies"  # one of WARMSTARTS: the first trials picked by zero-cost proxies, or not
    stopping: str = "asha"  # one of STOPPINGS
    portfolio: bool = True  # the first trials are the space's known-good archs (archlab.search.portfolio)
    workers: int = 1  # trials trained side by side, each in its own process with its share of the cores
    executor: str = "local"  # where trials run: local processes, or Ray actors ("ray")
    address: str = "local"  # the Ray cluster: local (started for the run), auto, or ray://host:port

    def __post_init__(self) -> None:
        object.__setattr__(self, "objectives", tuple(check_objectives(self.objectives)))
        if self.mixers is not None:
            object.__setattr__(self, "mixers", tuple(m.strip() for m in self.mixers if m.strip()))
            if not self.mixers:
                raise UserError("--mixers needs at least one mixer name")
        if self.budget_s is None and self.n_trials is None:
            raise UserError("give a time budget, a number of trials, or both")
        if self.budget_s is not None and not (self.budget_s > 0 and math.isfinite(self.budget_s)):
            raise UserError(f"budget must be a positive duration, got {self.budget_s}")
        if self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if self.trial_memory_mb is not None and not (self.trial_memory_mb > 0 and math.isfinite(self.trial_memory_mb)):
            raise UserError(f"--trial-memory must be a positive number of megabytes, got {self.trial_memory_mb}")
        if self.max_memory_mb is not None and not (self.max_memory_mb > 0 and math.isfinite(self.max_memory_mb)):
            raise UserError(f"--max-memory must be a positive number of megabytes, got {self.max_memory_mb}")
        if self.executor not in EXECUTORS:
            raise UserError(f"unknown --executor {self.executor!r}; choose from {', '.join(EXECUTORS)}")
        if self.precision not in PRECISIONS:
            raise UserError(f"unknown --precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")
        if self.stopping not in STOPPINGS:
            raise UserError(f"unknown --stopping {self.stopping!r}; choose from {', '.join(STOPPINGS)}")
        if self.warmstart not in WARMSTARTS:
            raise UserError(f"unknown --warmstart {self.warmstart!r}; choose from {', '.join(WARMSTARTS)}")
        if self.n_trials is not None and self.n_trials < 1:
            raise UserError(f"--trials must be >= 1, got {self.n_trials}")
        if self.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {self.epochs}")
        if self.final_epochs < 0:
            raise UserError(f"--final-epochs must be >= 0, got {self.final_epochs}")
        if self.final_fraction is not None and not 0.0 <= self.final_fraction < 1.0:
            raise UserError(f"final fraction must be in [0, 1), got {self.final_fraction}")
        if self.train_subset is not None and self.train_subset != 0 and self.train_subset < 10:
            raise UserError(f"--train-subset must be 0 (all) or >= 10, got {self.train_subset}")
        if (self.batch_size is not None and self.batch_size < 1) or not self.lr > 0:
            raise UserError("batch size must be >= 1 and learning rate > 0")
        for name in ("max_params", "max_flops", "max_latency_ms"):
            v = getattr(self, name)
            if v is not None and not (v > 0 and math.isfinite(v)):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {v}")

    @property
    def constraint_list(self) -> tuple[Constraint, ...]:
        """The ``--max-*`` limits as constraints ``metric <= bound``."""
        return tuple(Constraint(metric, float(bound)) for metric, bound in (
            ("params", self.max_params), ("flops", self.max_flops), ("latency_ms", self.max_latency_ms))
            if bound is not None)

    @property
    def final_share(self) -> float:
        """The share of the budget kept to train the best arch longer. A search on a subset of a large training
        split sees a fraction of the data, so the final model gets most of the budget to see all of it."""
        if not self.final_epochs:
            return 0.0
        if self.final_fraction is not None:
            return self.final_fraction
        return 0.6 if self.train_subset else 0.25

    @property
    def search_budget_s(self) -> float | None:
        if self.budget_s is None:
            return None
        return self.budget_s * (1.0 - self.final_share)

    def trial_seconds_effective(self) -> float | None:
        seconds = self.trial_seconds
        if seconds is None and self.search_budget_s is not None:
            # successive halving stops most trials at a ninth or a third of this, so a trial may be a third of
            # the search (the first one, and the few that stay in front, train that long); else ~10 trials fit
            seconds = max(5.0, self.search_budget_s / (3 if self.stopping == "asha" else 10))
        return seconds

    def expected_trials(self) -> int:
        """A rough count of the evaluations the budget allows (sizes the evolution's population)."""
        guesses = [self.n_trials] if self.n_trials is not None else []
        seconds = self.trial_seconds_effective()
        if self.search_budget_s is not None and seconds:
            # under successive halving a trial takes about a quarter of its fidelity on average
            guesses.append(int(self.search_budget_s / (seconds * (0.25 if self.stopping == "asha" else 1.0))))
        return max(1, min(guesses)) if guesses else 100

    def trial_config(self) -> TrainConfig:
        seconds = self.trial_seconds_effective()
        limit = self.trial_timeout_s
        if limit is None and seconds is not None:
            limit = 3 * seconds + 60  # generous: the time fidelity already ends training on time
        return TrainConfig(epochs=self.epochs, max_seconds=seconds, time_limit_s=limit, seed=self.seed,
                           batch_size=self.batch_size or 32, lr=self.lr, precision=self.precision)

    def resolve(self, n_train: int) -> SearchConfig:
        """The configuration with its automatic settings made concrete for a training split of ``n_train``."""
        subset = self.train_subset
        if subset is None:
            subset = 10_000 if n_train > 20_000 else 0
        if subset >= n_train:
            subset = 0
        return replace(self, train_subset=subset, batch_size=self.batch_size or (32 if n_train <= 5000 else 128))

    def budget(self) -> Budget:
        """The search's share of the budget as a :class:`Budget` (wall seconds and/or trials)."""
        return Budget(seconds=self.search_budget_s, trials=self.n_trials)

    def search_subset(self) -> int | None:
        return self.train_subset or None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["objectives"] = list(self.objectives)
        d["mixers"] = list(self.mixers) if self.mixers is not None else None
        d["storage"] = drop_password(self.storage) if self.storage else self.storage  # never saved
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SearchConfig:
        """The configuration a ``run.json`` saved (that of an older archlab too: its ``proxy_warmup`` flag is
        ``warmstart``, True "proxies" and False "none")."""
        d = dict(d)
        if "median_stopping" in d:  # an older archlab's flag: median stopping or none
            old = d.pop("median_stopping")
            d.setdefault("stopping", "median" if old else "none")
            d.setdefault("portfolio", False)
        d.setdefault("precision", "fp32")  # a run of an archlab before the precision setting trained in float32
        if "proxy_warmup" in d:
            old = d.pop("proxy_warmup")
            d.setdefault("warmstart", "proxies" if old else "none")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"run configuration has unknown keys {sorted(unknown)}")
        for key in ("objectives", "mixers"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


def final_train_config(trial_config: TrainConfig, data: Dataset, epochs: int, seconds: float | None) -> TrainConfig:
    """The final training's config: a trial's, for ``epochs`` or ``seconds``, without early stopping.

    It runs many more epochs than a trial, on all the data, so it is regularised against overfitting in those
    epochs: label smoothing (0.1, Szegedy et al. 2016), random one-pixel shifts of images of 16 pixels or more,
    and, on data whose labels survive a mirror image, random flips."""
    return replace(trial_config, epochs=epochs, max_seconds=seconds, time_limit_s=None, patience=None,
                   augment_flip=data.flip_invariant, augment_shift=final_shift(data.input_shape),
                   label_smoothing=FINAL_LABEL_SMOOTHING)


def final_shift(input_shape: tuple[int, ...]) -> int:
    """The final training's random translation: one pixel on images of at least 16 pixels a side (a pixel is
    a small move there, not on 8x8 digits); none on other inputs."""
    return FINAL_SHIFT if len(input_shape) == 3 and min(input_shape[1:]) >= 16 else 0


def make_space(cfg: SearchConfig, input_shape: tuple[int, ...], num_classes: int,
               vocab_size: int | None = None) -> Space:
    """The run's space (with its mixer restriction, if any); ``vocab_size`` for token-id data."""
    kwargs: dict[str, Any] = {"mixers": list(cfg.mixers)} if cfg.mixers is not None else {}
    if vocab_size is not None:
        kwargs["vocab_size"] = vocab_size
    try:
        return create_space(cfg.space, input_shape=input_shape, num_classes=num_classes, **kwargs)
    except (SpaceError, TypeError, ValueError) as e:
        kind = f"token ids (vocabulary {vocab_size})" if vocab_size is not None else \
            f"inputs of shape {tuple(input_shape)}"
        raise UserError(f"the {cfg.space} space does not fit the data {cfg.data!r}, {kind}: {e}") from None


class TrainingEvaluatorFactory:
    """Rebuilds a run's training evaluator from its configuration (picklable: a worker process loads the dataset
    and makes the space itself instead of receiving them)."""

    def __init__(self, config: dict[str, Any], space_spec: dict[str, Any] | None = None,
                 data: Dataset | None = None) -> None:
        self.config = config
        self.space_spec = space_spec
        self.data = data

    def with_data(self, data: Dataset) -> TrainingEvaluatorFactory:
        """This factory carrying the loaded dataset (for workers that may not have the data files: Ray's)."""
        return TrainingEvaluatorFactory(self.config, self.space_spec, data)

    def __call__(self) -> TrainingEvaluator:
        cfg = SearchConfig.from_dict(self.config)
        data = self.data if self.data is not None else load_dataset(cfg.data, seed=cfg.seed)
        if self.space_spec is not None:
            space = space_from_spec(self.space_spec)
        else:
            space = make_space(cfg, data.input_shape, data.num_classes, data.vocab_size)
        return TrainingEvaluator(space, data, cfg.trial_config(), cfg.constraint_list, cfg.search_subset(),
                                 factory=self)


def space_pin(space: Space) -> dict[str, Any]:
    """What pins a run's space: how to rebuild it (a predefined space's resolved arguments, when it has them) and
    the fingerprint of its decision tree."""
    spec = getattr(space, "spec", None)
    return {"name": space.name, "spec": spec, "fingerprint": space.fingerprint()}


def space_from_spec(spec: dict[str, Any]) -> Space:
    """A predefined space from the resolved arguments it recorded (``space.spec``)."""
    spec = dict(spec)
    kwargs = dict(spec["kwargs"]) if "kwargs" in spec else {k: v for k, v in spec.items() if k != "name"}
    return create_space(spec["name"], **kwargs)


def rebuild_space(pin: dict[str, Any] | None) -> Space:
    """The space a run pinned, rebuilt from its recorded arguments and checked against its fingerprint."""
    if not pin or not pin.get("spec"):
        name = (pin or {}).get("name", "?")
        raise UserError(f"this run's space ({name!r}) was not recorded with arguments that rebuild it (a custom "
                        "Space, or a run written by an older archlab): resume it from Python with "
                        "run_search(space=<the same Space>, ..., resume=True)")
    try:
        space = space_from_spec(pin["spec"])
    except UserError as e:
        raise UserError(f"this run's space {pin['spec'].get('name')!r} cannot be rebuilt: {e}") from None
    check_fingerprint(space, pin)
    return space


def check_fingerprint(space: Space, pin: dict[str, Any] | None) -> None:
    """Refuse a space that is not the one the run pinned."""
    if pin and pin.get("fingerprint") and space.fingerprint() != pin["fingerprint"]:
        raise UserError(f"the space {space.name!r} given is not the run's space (fingerprint "
                        f"{space.fingerprint()} != {pin['fingerprint']}): a run resumes on the space it started on")
