"""The ``stylegan2`` training family: regularisers and exact resume."""

import torch

from imgsynth.training.loop import train


def test_stylegan2_family_resumes_exactly(tmp_path, final_state, compare_runs, tiny):
    """Style mixing and random noise draw from the latent generator and the global RNG."""

    def cfg(out, steps):
        return tiny(tmp_path, out, run={"steps": steps},
                    data={"resolution": 16, "load_size": 0},
                    model={"family": "stylegan2", "options": {"style_mixing": 0.9, "pl_every": 2},
                           "generator": {"z_dim": 8, "w_dim": 8, "mapping_layers": 2, "channel_base": 64,
                                         "channel_max": 8},
                           "discriminator": {"channel_base": 64, "channel_max": 8}},
                    loss={"r1_gamma": 1.0, "r1_every": 2}, optim={"betas": [0.0, 0.99], "ema_decay": 0.9})

    full = train(cfg("full", 4))
    assert {"d", "g", "r1", "pl"} <= set(full.history[-1])
    train(cfg("split", 2))
    train(cfg("split", 4), resume=True)
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    assert a["arch"] == "stylegan2" and a["generator_config"]["img_resolution"] == 16
    compare_runs(a, b, history=False)
    assert a["family_state"]["pl_mean"] > 0 and torch.equal(a["family_state"]["pl_mean"], b["family_state"]["pl_mean"])
