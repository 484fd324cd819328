"""Recipes: written into the MP4 and task.json, read back anywhere, and made into the same video again."""
import json
import subprocess
import sys

import imageio_ffmpeg
import numpy as np
import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.models import tiny
from wan_nb.core.recipes import plan
from wan_nb.runs.recipe import FORMAT, RecipeError, embed, recipe_key
from wan_nb.compose.rerun import rerun_args
from wan_nb.models.video_io import read_frames

FFMPEG = imageio_ffmpeg.get_ffmpeg_exe()


@pytest.fixture(scope="module")
def first(gen):
    return gen.generate("a red fox running through snow", seed=3, progress=False)


def ffmetadata_comment(path):
    """The MP4's comment tag as another program sees it: ffmpeg in a process of its own."""
    out = subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(path), "-f", "ffmetadata", "-"],
                         capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("comment="))
    value = line[len("comment="):]
    out, i = [], 0
    while i < len(value):  # ffmetadata escapes = ; # \ with a backslash
        if value[i] == "\\":
            i += 1
        out.append(value[i])
        i += 1
    return json.loads("".join(out))


def h264(path):
    """The video stream's bytes, without the container (whose metadata holds the task id)."""
    return subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(path), "-map", "0:v", "-c", "copy",
                           "-f", "h264", "-"], capture_output=True, check=True).stdout


def test_the_recipe_is_in_the_mp4_for_any_program_to_read(first):
    stored = ffmetadata_comment(first.video_path)
    assert stored["format"] == FORMAT
    assert stored == json.loads((first.run_dir / "task.json").read_text())["recipe"]
    assert stored["prompt"] == "a red fox running through snow" and stored["seed"] == 3
    assert (stored["steps"], stored["height"], stored["width"], stored["num_frames"], stored["fps"]) == (4, 32, 32, 9, 8)
    assert stored["guidance_scale"] == 1.0 and stored["flow_shift"] == 3.0 and "guidance_scale_2" in stored
    assert stored["model"] == {"name": "tiny", "repo_id": None, "revision": "tiny-v1", "kind": "t2v"}
    assert stored["loras"] == [] and stored["image"] is None and stored["task_id"] == first.task_id
    assert set(stored["versions"]) == {"wan_nb", "diffusers", "torch"} and all(stored["versions"].values())
    # The video itself was not re-encoded to carry it, and still plays from the start.
    assert read_frames(first.video_path).shape == (9, 32, 32, 3)


def test_wan_nb_recipe_reads_it_back_from_a_new_process(first):
    # The contract's name (wan_nb.recipe), as a user's script calls it: nothing else imported first.
    code = ("import json, sys, wan_nb; r = wan_nb.recipe(sys.argv[1]); "
            "print(json.dumps({'recipe': r, 'key': wan_nb.recipe.recipe_key(r)}))")
    for source in (first.video_path, first.run_dir):
        done = subprocess.run([sys.executable, "-c", code, str(source)], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        read = json.loads(done.stdout)
        assert read["recipe"] == wan_nb.recipe(first)
        assert read["key"] == recipe_key(wan_nb.recipe(first))


def test_a_rerun_makes_the_identical_video(gen, first):
    again = gen.rerun(first.video_path, progress=False)
    assert again.task_id != first.task_id
    assert np.array_equal(read_frames(again.video_path), read_frames(first.video_path))
    assert h264(again.video_path) == h264(first.video_path)
    assert recipe_key(wan_nb.recipe(again)) == recipe_key(wan_nb.recipe(first))


def test_an_override_changes_only_that_field(gen, first):
    changed = gen.rerun(first, seed=5, progress=False)
    before, after = wan_nb.recipe(first), wan_nb.recipe(changed)
    differ = {k for k in before if before[k] != after[k]}
    # created_at has one-second resolution: two quick runs may share it.
    assert {"seed", "task_id"} <= differ <= {"seed", "task_id", "created_at"}
    assert after["seed"] == 5 and changed.seed == 5
    assert recipe_key(after) != recipe_key(before)
    assert not np.array_equal(read_frames(changed.video_path), read_frames(first.video_path))


def test_every_kind_of_source_gives_the_same_rerun(gen, first):
    expected = rerun_args(gen, first)
    for source in (first.video_path, first.run_dir, str(first.video_path), wan_nb.recipe(first)):
        assert rerun_args(gen, source) == expected
    prompt, kwargs = expected
    assert prompt == first.params["prompt"] and kwargs["seed"] == 3 and "image" not in kwargs
    assert rerun_args(gen, first, prompt="an owl", steps=2)[1]["steps"] == 2
    assert rerun_args(gen, first, prompt="an owl")[0] == "an owl"


def test_plan_predicts_the_key_of_the_run_it_would_make(gen, first):
    predicted = plan(gen, "a red fox running through snow", seed=3)
    assert recipe_key(predicted) == recipe_key(wan_nb.recipe(first))
    assert recipe_key(plan(gen, "a red fox running through snow", seed=4)) != recipe_key(predicted)


def test_the_key_ignores_versions_times_paths_and_names():
    base = {"format": FORMAT, "prompt": "p", "negative_prompt": "", "seed": 1, "steps": 4, "height": 32,
            "width": 32, "num_frames": 9, "fps": 8, "guidance_scale": 1.0, "guidance_scale_2": None,
            "flow_shift": 3.0, "model": {"name": "tiny", "repo_id": None, "revision": "tiny-v1"},
            "dtype": "float32", "loras": [{"name": "ink", "weight": 0.5, "sha256": "ab", "path": "/a"}],
            "image": None, "versions": {"torch": "1"}, "task_id": "x", "created_at": "t"}
    key = recipe_key(base)
    same = {**base, "versions": {"torch": "2"}, "task_id": "y", "created_at": "u", "fps": 8.0,
            "loras": [{"name": "style", "weight": 0.5, "sha256": "ab", "path": "/elsewhere"},
                      {"name": "off", "weight": 0.0, "sha256": "cd"}]}
    assert recipe_key(same) == key
    for change in ({"seed": 2}, {"loras": [{"name": "ink", "weight": 0.6, "sha256": "ab"}]},
                   {"loras": [{"name": "ink", "weight": 0.5, "sha256": "ff"}]}, {"dtype": "bfloat16"},
                   {"image": {"sha256": "12"}}, {"model": {"name": "tiny-i2v"}}, {"negative_prompt": "blur"}):
        assert recipe_key({**base, **change}) != key, change


def test_no_recipe_and_no_file_are_clear_errors(tmp_path, first):
    plain = tmp_path / "plain.mp4"
    subprocess.run([FFMPEG, "-loglevel", "error", "-i", str(first.video_path), "-map_metadata", "-1",
                    "-c", "copy", str(plain)], check=True)
    with pytest.raises(RecipeError, match="holds no wan_nb recipe"):
        wan_nb.recipe(plain)
    with pytest.raises(FileNotFoundError, match="gone.mp4"):
        wan_nb.recipe(tmp_path / "gone.mp4")
    with pytest.raises(RecipeError, match="not a wan_nb recipe"):
        wan_nb.recipe({"prompt": "x"})
    # Embedding is what makes a video carry one.
    embed(plain, wan_nb.recipe(first))
    assert wan_nb.recipe(plain) == wan_nb.recipe(first)


def test_a_recipe_of_another_model_is_refused(gen, first):
    other = {**wan_nb.recipe(first), "model": {"name": "tiny-i2v"}}
    with pytest.raises(RecipeError, match="made with model 'tiny-i2v'.*Generator\\(model='tiny-i2v'\\)"):
        gen.rerun(other)


def test_loras_are_reloaded_and_a_missing_or_changed_file_is_named_before_any_work(tmp_path, gen):
    transformer = tiny.pipeline("tiny").transformer
    path = tiny.make_lora(transformer, tmp_path / "ink.safetensors", seed=1)
    name = gen.load_lora(path, weight=0.7)
    try:
        styled = gen.generate("a lantern at night", seed=1, progress=False)
    finally:
        gen.unload_lora(name)
    stored = wan_nb.recipe(styled.video_path)
    assert [(l["name"], l["weight"]) for l in stored["loras"]] == [("ink", 0.7)]
    assert len(stored["loras"][0]["sha256"]) == 64

    # The LoRA is loaded again under its name and weight: the same video.
    again = gen.rerun(styled.video_path, progress=False)
    assert np.array_equal(read_frames(again.video_path), read_frames(styled.video_path))
    gen.unload_lora("ink")

    count = len(gen.tasks)
    tiny.make_lora(transformer, path, seed=2)  # same name, other numbers
    with pytest.raises(RecipeError, match="LoRA 'ink' at .*ink.safetensors has changed"):
        gen.rerun(styled)
    path.unlink()
    with pytest.raises(RecipeError, match="LoRA 'ink' of this recipe is no longer there: no file at .*ink.safetensors"):
        gen.rerun(styled)
    assert len(gen.tasks) == count and "ink" not in gen.loras  # nothing was queued or loaded
    # Leaving it out is an override like any other.
    prompt, kwargs = rerun_args(gen, styled, loras={"ink": 0})
    assert "loras" not in kwargs


def test_an_image_to_video_rerun_is_identical_and_a_missing_image_is_named(tmp_path):
    from PIL import Image

    picture = tmp_path / "first_frame.png"
    pixels = np.random.default_rng(0).integers(0, 255, (48, 40, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(picture)
    with Generator(model="tiny-i2v", runs_dir=tmp_path / "runs", previews=False) as gen:
        made = gen.generate("a boat", image=str(picture), seed=2, progress=False)
        stored = wan_nb.recipe(made.video_path)
        assert len(stored["image"]["sha256"]) == 64 and stored["image"]["path"].endswith("input.png")
        again = gen.rerun(made.video_path, progress=False)
        assert np.array_equal(read_frames(again.video_path), read_frames(made.video_path))
        (made.run_dir / "input.png").unlink()
        with pytest.raises(RecipeError, match="input image of this recipe is no longer there.*input.png"):
            gen.rerun(made)


def test_a_cancelled_run_keeps_its_recipe_and_can_be_run_again(gen):
    task = gen.submit("a heron in fog", seed=7, steps=1000)
    while task.current_step < 1:
        task.wait(0.02)
    task.cancel()
    task.wait(60)
    info = json.loads((task.run_dir / "task.json").read_text())
    assert info["status"] == "cancelled" and info["recipe"]["steps"] == 1000
    prompt, kwargs = rerun_args(gen, task.run_dir, steps=2)
    assert (prompt, kwargs["seed"], kwargs["steps"]) == ("a heron in fog", 7, 2)


def test_a_writer_that_did_not_add_the_recipe_is_caught_up_and_a_failure_there_loses_nothing(gen, monkeypatch, caplog):
    import wan_nb.runs.recipe as recipe_module

    monkeypatch.setattr(gen._recorder, "mp4_tags", lambda task_id: {})  # as if written without tags
    caught_up = gen.generate("a moth near a lamp", seed=8, progress=False)
    assert ffmetadata_comment(caught_up.video_path) == wan_nb.recipe(caught_up)

    monkeypatch.setattr(recipe_module, "_ffmpeg", lambda: "/bin/false")
    result = gen.generate("a moth near a lamp", seed=9, progress=False)
    assert "could not write the recipe" in caplog.text
    assert json.loads((result.run_dir / "task.json").read_text())["status"] == "completed"
    assert wan_nb.recipe(result)["seed"] == 9                    # from task.json
    assert wan_nb.history(gen.runs_dir, limit=1)[0].task_id == result.task_id


def test_a_plan_made_before_the_model_is_loaded_has_the_key_of_the_run(tmp_path):
    with Generator(model="tiny", runs_dir=tmp_path, previews=False) as fresh:
        assert fresh.pipeline is None
        key = recipe_key(plan(fresh, "a kite over dunes", seed=4, steps=2))
        made = fresh.generate("a kite over dunes", seed=4, steps=2, progress=False)
        assert recipe_key(wan_nb.recipe(made)) == key
        assert wan_nb.history.find_by_key(tmp_path, key).task_id == made.task_id


def test_two_expert_loras_a_pair_and_one_expert_only_are_remade_alike(tmp_path):
    pipe = tiny.pipeline("tiny-a14b")
    high = tiny.make_lora(pipe.transformer, tmp_path / "high.safetensors", seed=1)
    low = tiny.make_lora(pipe.transformer_2, tmp_path / "low.safetensors", seed=2)
    ink = tiny.make_lora(pipe.transformer_2, tmp_path / "ink.safetensors", seed=3)
    with Generator(model="tiny-a14b", runs_dir=tmp_path / "runs", previews=False) as gen:
        gen.load_lora((high, low), name="duo", weight=0.9)
        gen.load_lora(ink, name="ink", weight=0.5, experts="low")
        made = gen.generate("a lighthouse", seed=5, steps=4, progress=False)
        duo, late = sorted(wan_nb.recipe(made)["loras"], key=lambda l: l["name"])
        assert duo["targets"] == ["transformer", "transformer_2"] and set(duo["files"]) == set(duo["targets"])
        assert late["targets"] == ["transformer_2"] and late["path"].endswith("ink.safetensors")
        gen.unload_lora()
        again = gen.rerun(made.video_path, progress=False)
        assert sorted(wan_nb.recipe(again)["loras"], key=lambda l: l["name"]) == [duo, late]
        assert np.array_equal(read_frames(again.video_path), read_frames(made.video_path))
        gen.unload_lora()
        low.unlink()
        with pytest.raises(RecipeError, match="LoRA 'duo' of this recipe is no longer there: no file at .*low.safetensors"):
            gen.rerun(made)
