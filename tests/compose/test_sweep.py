"""Sweep expansion: the cross product of list-valued arguments, labelled by what varies."""
import pytest

from wan_nb.compose.sweep import MAX_RUNS, expand, label_text


def test_cross_product_in_the_order_given_labels_hold_only_what_varies():
    runs = expand(prompt=["a fox", "a cat"], seed=[0, 1, 2], steps=8)
    assert len(runs) == 6
    assert [label for label, _ in runs][:4] == [
        {"prompt": "a fox", "seed": 0}, {"prompt": "a fox", "seed": 1},
        {"prompt": "a fox", "seed": 2}, {"prompt": "a cat", "seed": 0}]
    assert all(kwargs["steps"] == 8 for _, kwargs in runs)
    assert runs[-1][1] == {"prompt": "a cat", "seed": 2, "steps": 8}


def test_lora_settings_sweep_as_a_list_of_dicts_and_each_run_owns_its_copy():
    styles = [{}, {"ink": 0.5}, {"ink": 1.0}]
    runs = expand(prompt="a fox", seed=[7], loras=styles)
    assert [label for label, _ in runs] == [{"loras": {}}, {"loras": {"ink": 0.5}}, {"loras": {"ink": 1.0}}]
    assert all(kwargs["seed"] == 7 and kwargs["prompt"] == "a fox" for _, kwargs in runs)
    runs[1][1]["loras"]["ink"] = 9.0
    assert styles[1] == {"ink": 0.5} and runs[1][0]["loras"] == {"ink": 0.5}


def test_fixed_values_are_passed_through_unchanged():
    image = object()
    ((label, kwargs),) = expand(prompt="a fox", image=image, guidance_scale=5.0)
    assert label == {} and kwargs["image"] is image and kwargs["guidance_scale"] == 5.0


def test_empty_axes_and_huge_sweeps_are_refused():
    with pytest.raises(ValueError, match=r"seed=\[\]"):
        expand(prompt="a fox", seed=[])
    with pytest.raises(ValueError, match="more than"):
        expand(prompt="a fox", seed=list(range(MAX_RUNS)), steps=[1, 2])


def test_label_text_is_a_short_caption():
    text = label_text({"prompt": "a very long prompt " * 5, "seed": 3, "loras": {"ink": 0.5}})
    assert text.startswith("prompt='a very long") and "…" in text
    assert "seed=3" in text and "loras={ink: 0.5}" in text
