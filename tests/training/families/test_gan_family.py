"""The ``gan`` training family (MLP networks): exact resume through D's dropout."""

from imgsynth.training.loop import train


def test_gan_family_resumes_exactly_through_dropout(tmp_path, final_state, compare_runs, tiny):
    """The MLP discriminator's dropout draws from the global torch RNG, which resume restores."""

    def cfg(out, steps):
        return tiny(tmp_path, out, run={"steps": steps}, model={
            "family": "gan", "generator": {"z_dim": 4, "hidden_sizes": [16]},
            "discriminator": {"hidden_sizes": [16], "dropout": 0.5}})

    train(cfg("full", 4))
    train(cfg("split", 2))
    train(cfg("split", 4), resume=True)
    full, split = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    assert full["arch"] == "gan"
    assert full["generator_config"] == {"z_dim": 4, "hidden_sizes": [16], "img_channels": 1,
                                        "img_resolution": 8}
    compare_runs(full, split, history=False)
