"""Recipes read from files someone else made: huge or deeply nested tags, files that changed size,
LoRA entries without a name. Each is refused with a RecipeError that says what is wrong, at once."""
import json
import tracemalloc

import numpy as np
import pytest

import wan_nb
from wan_nb import Generator
from wan_nb.models import tiny
from wan_nb.runs.recipe import FORMAT, RecipeError
from _recipe_helpers import tagged_mp4


def _read_bytes() -> int:
    """Bytes this process has read through read() calls so far (Linux /proc/self/io, rchar)."""
    with open("/proc/self/io") as handle:
        return int(next(line for line in handle if line.startswith("rchar:")).split()[1])


@pytest.fixture(scope="module")
def huge_tag(tmp_path_factory):
    """A valid recipe whose prompt is 20 MB (the issue's attack was 100 MB: 20 s and 1.1 GB)."""
    recipe = {"format": FORMAT, "prompt": "a fox " * 3_500_000, "model": {"name": "tiny"}}
    return tagged_mp4(tmp_path_factory.mktemp("tags") / "huge.mp4", json.dumps(recipe))


def test_a_huge_recipe_tag_is_refused_without_reading_it_whole(huge_tag):
    tracemalloc.start()
    try:
        with pytest.raises(RecipeError, match="larger than 1,048,576 bytes"):
            wan_nb.recipe(huge_tag)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 10e6, f"peak {peak / 1e6:.0f} MB while refusing a 20 MB tag"


def test_a_tag_nested_too_deeply_is_a_recipe_error_not_a_recursion_error(tmp_path):
    path = tagged_mp4(tmp_path / "deep.mp4", "[" * 100_000)
    with pytest.raises(RecipeError, match="nests too deeply"):
        wan_nb.recipe(path)
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(RecipeError, match="nests too deeply"):
        wan_nb.recipe({"format": FORMAT, "prompt": "a fox", "loras": deep})
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "task.json").write_text('{"recipe": ' + "[" * 100_000)
    with pytest.raises(RecipeError, match="nests too deeply"):
        wan_nb.recipe(folder)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    """A real tiny run with a LoRA on, and its generator (the LoRA unloaded again)."""
    from wan_nb.models import specs

    folder = tmp_path_factory.mktemp("lora")
    transformer = specs.load_pipeline(specs.resolve("tiny"), device="cpu", dtype="fp32").transformer
    path = tiny.make_lora(transformer, folder / "ink.safetensors", seed=1)
    with Generator("tiny", runs_dir=folder / "runs", previews=False) as gen:
        gen.load_lora(path, name="ink", weight=0.8)
        result = gen.generate("a fox", height=16, width=16, num_frames=1, steps=1, seed=3, progress=False)
        gen.unload_lora("ink")
        yield gen, result, path


def test_the_recipe_records_file_sizes(lora_run):
    _, result, path = lora_run
    entry = wan_nb.recipe(result)["loras"][0]
    assert entry["size"] == path.stat().st_size and entry["name"] == "ink"


def test_a_lora_file_of_another_size_is_refused_before_it_is_hashed(lora_run, tmp_path):
    """The recorded LoRA replaced by a 4 GB sparse file: refused on its size, without reading it
    (hashing it took 12 s; the bytes this process read show it was not)."""
    gen, result, path = lora_run
    saved = path.read_bytes()
    try:
        with open(path, "wb") as handle:
            handle.truncate(4 << 30)
        before = _read_bytes()
        with pytest.raises(RecipeError, match=r"LoRA 'ink' at .* has changed .*4,294,967,296 bytes, recorded"):
            gen.rerun(result, progress=False)
        assert _read_bytes() - before < 64 << 20
    finally:
        path.write_bytes(saved)
    again = gen.rerun(result, progress=False)      # the original back: the rerun runs
    assert np.array_equal(wan_nb.models.video_io.read_frames(again.video_path),
                          wan_nb.models.video_io.read_frames(result.video_path))
    gen.unload_lora("ink")


def test_a_recipe_lora_entry_without_a_name_is_refused_by_name(lora_run):
    gen, result, _ = lora_run
    made = wan_nb.recipe(result)
    del made["loras"][0]["name"]
    with pytest.raises(RecipeError, match=r"LoRA entry 1 of this recipe has no usable name"):
        gen.rerun(made, progress=False)
    made["loras"] = [{"name": "ink", "weight": "heavy"}]
    with pytest.raises(RecipeError, match=r"LoRA 'ink' of this recipe has weight 'heavy'"):
        gen.rerun(made, progress=False)


def test_an_adapter_name_is_capped(lora_run):
    gen, _, path = lora_run
    with pytest.raises(ValueError, match=r"10,000 characters long; an adapter name may have at most 128"):
        gen.load_lora(path, name="x" * 10_000)
    assert "x" * 10_000 not in gen.lora_registry.entries
