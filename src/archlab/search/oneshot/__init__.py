"""archlab.search.oneshot: weight-sharing search on a supernet compiled from any space of module decisions.

``space.supernet(mode)`` (:class:`Supernet`) holds one instance of every option of every module decision (a
:class:`LayerChoice` where ``space.build`` would put the chosen module) and runs one forward as a single path
(``"spos"``), a softmax(alpha)-weighted mixture (``"darts"``) or a Gumbel-softmax hard sample (``"gdas"``);
``extract(arch)`` is ``space.build(arch)`` with the inherited weights, ``derive()`` the arch of largest alpha.
The methods train it with :func:`archlab.train.fit` and hooks:

- :func:`spos`: Guo et al., "Single Path One-Shot Neural Architecture Search with Uniform Sampling", ECCV 2020
  (reference: megvii-model/SinglePathOneShot);
- :func:`darts`: Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search", ICLR 2019 (reference:
  quark0/darts, ``Architect``; NAS-Bench-201's baseline in D-X-Y/AutoDL-Projects), first and second order;
- :func:`gdas`: Dong and Yang, "Searching for A Robust Neural Architecture in Four GPU Hours", CVPR 2019
  (reference: D-X-Y/AutoDL-Projects, ``search_model_gdas.py``);
- :func:`sharpdarts`: Hundt, Jain and Hager, "sharpDARTS", 2019 (Max-W weighting, cosine power annealing; its
  primitives in the ``sharp_cell`` space);
- :func:`sd_darts`: "Improving Differentiable Architecture Search via Self-Distillation" (SD-DARTS;
  reconstructed: no official code);
- as ``archlab search`` strategies (:mod:`archlab.search.oneshot.strategy`): darts, gdas, sharpdarts, sd-darts,
  spos.

The architecture parameters are named ``alpha`` (one vector per decision, as NNI's and DARTS' ``alphas_*``);
the mixed operation's candidates are ``candidates.<i>`` in the order of the decision's options.
"""

from archlab.search.oneshot._common import OneShotResult, accuracy, arch_optimizer, classification_loss
from archlab.search.oneshot._supernet import (
           MODES,
           LayerChoice,
           MixedFactory,
           Supernet,
           compile_space,
           gumbel_softmax_hard,
)
from archlab.search.oneshot.darts import UnrolledArchStep, darts
from archlab.search.oneshot.gdas import gdas, gdas_tau
from archlab.search.oneshot.sd_darts import SelfDistillation, sd_darts
from archlab.search.oneshot.sharpdarts import cosine_power_annealing, power_annealing_schedule, sharpdarts
from archlab.search.oneshot.spos import inherited_accuracy, recalibrate_batchnorm, spos, spos_train

__all__ = ["MODES", "LayerChoice", "MixedFactory", "OneShotResult", "SelfDistillation", "Supernet",
           "UnrolledArchStep", "accuracy", "arch_optimizer", "classification_loss", "compile_space",
           "cosine_power_annealing", "darts", "gdas", "gdas_tau", "gumbel_softmax_hard", "inherited_accuracy",
           "power_annealing_schedule", "recalibrate_batchnorm", "sd_darts", "sharpdarts", "spos", "spos_train"]
