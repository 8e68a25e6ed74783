"""A fast version of examples/trainability.py: depth beyond 6 xi_c does not train, the edge of chaos does.

tanh at ``sb^2 = 0.05``, depth 24, width 64, 200 SGD steps on digits, three networks each at
``sW^2 = 0.5`` (ordered: ``xi_c = 1.19``, so ``6 xi_c = 7.1 < 24``) and at the critical
``sW^2 = 1.761`` (``xi_c = inf``). Statistical tolerance, from six seeds of this very setup:
ordered networks end at training accuracy 0.099 to 0.102 (chance is 0.1: the inputs have
collapsed to one representation, and the network predicts one class), critical ones at 0.86
to 0.95 (mean 0.92, sd 0.03). The thresholds 0.3 and 0.7 are over 60 and 6 sd away from those
outcomes: the test fails when the effect is absent, not by bad luck.
"""

import importlib.util
import pathlib

import numpy as np
import pytest

import jaxsig

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def deepnets():
    spec = importlib.util.spec_from_file_location("deepnets", EXAMPLES / "deepnets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_depth_beyond_six_xi_c_does_not_train_and_the_edge_of_chaos_does(deepnets):
    sb2, depth = 0.05, 24
    critical = float(jaxsig.dynamics.critical_init("tanh", sb2).sigma_w2)
    sw2 = np.array([0.5, critical])
    xi = np.asarray(jaxsig.dynamics.depth_scales("tanh", sw2, sb2).xi_c)
    assert 6 * xi[0] < depth < 6 * xi[1]  # the theory's prediction for the two columns
    data = deepnets.load_digits()
    out = deepnets.train(
        jaxsig.activations.get("tanh").fn,
        depth,
        data,
        sw2[:, None],
        sb2,
        1.0,
        np.arange(3)[None, :],
        width=64,
        steps=200,
    )
    acc = out.train_accuracy
    assert np.all(acc[0] <= 0.3), acc
    assert np.all(acc[1] >= 0.7), acc
