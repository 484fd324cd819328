"""The recipe keeps post-processing only where it differs from the defaults: a default run's recipe and
reuse key are what they were before these options existed; each option changes the key."""
from wan_nb.core.recipes import plan
from wan_nb.runs.recipe import recipe_key


def test_defaults_leave_the_recipe_and_its_key_as_before(gen):
    default = plan(gen, "a fox", seed=1)
    assert not {"decode", "interpolate", "fps_out", "interpolator", "upscale", "upscaler", "previews"} & set(default)
    explicit = plan(gen, "a fox", seed=1, decode="vae", interpolate=1, upscale=1)
    assert recipe_key(explicit) == recipe_key(default)


def test_each_option_is_recorded_and_changes_the_key(gen):
    keys = {recipe_key(plan(gen, "a fox", seed=1))}
    for option in ({"decode": "taehv"}, {"interpolate": 2}, {"interpolate": "ffmpeg", "fps_out": 12},
                   {"upscale": 2}, {"previews": "latent2rgb"}):
        made = plan(gen, "a fox", seed=1, **option)
        assert {k: made[k] for k in option} == option
        keys.add(recipe_key(made))
    assert len(keys) == 6
