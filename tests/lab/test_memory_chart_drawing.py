"""The memory chart as Chromium draws it: stage labels never run into each other, and the
header and the legend give the machine's memory as the same figure in the same unit."""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _widget_page import chromium_page, draw_widget  # noqa: E402

from wan_nb.widgets.panel import ProgressPanel  # noqa: E402
from wan_nb.widgets.vram_plot import VramPlot  # noqa: E402

LABEL_BOXES = """() => Array.from(document.querySelectorAll('.wan-nb-vram text.band-label')).map((t) => {
    const b = t.getBoundingClientRect(); return {text: t.textContent, left: b.left, right: b.right}; })"""


def _reading(total_mb=24_000.0, used_mb=9_000.0):
    return {"allocated_mb": 2_000.0, "reserved_mb": 0.0, "free_mb": total_mb - used_mb, "total_mb": total_mb,
            "allocated_percent": 100 * used_mb / total_mb, "device_name": "cpu", "warning_level": "normal"}


def _assert_labels_apart(boxes):
    for before, after in zip(boxes, boxes[1:]):
        assert before["right"] <= after["left"] + 0.5, boxes


def test_short_neighbouring_stages_do_not_print_over_each_other():
    """Denoise then decode, each just over the old 28-unit threshold: 'denoise' ran into 'decode'."""
    chart = VramPlot()
    t0 = 1_000.0
    samples = [VramPlot.reading(t0 + i, _reading()) for i in range(0, 101, 5)]
    # 100 s drawn over ~560 units: a 6 s band is ~34 units, wider than 28 but narrower than "denoise".
    bands = [{"stage": "initializing", "start": t0, "end": t0 + 80},
             {"stage": "generating", "start": t0 + 80, "end": t0 + 86},
             {"stage": "post_processing", "start": t0 + 86, "end": t0 + 93},
             {"stage": "saving", "start": t0 + 93, "end": t0 + 100}]
    chart.set_series(samples, bands, *VramPlot.describe(_reading()))
    with chromium_page() as page:
        draw_widget(page, chart)
        boxes = page.evaluate(LABEL_BOXES)
        assert boxes and boxes[0]["text"] == "init"
        _assert_labels_apart(boxes)


def test_a_real_runs_chart_has_one_memory_figure_and_unit(gen):
    task = gen.submit("a fox", seed=0, height=32, width=32, num_frames=9, steps=4)
    panel = ProgressPanel(task)
    task.result(timeout=120)
    gen.bus.drain()
    panel.throttle.flush()
    with chromium_page() as page:
        draw_widget(page, panel.memory)
        title = page.locator(".wan-nb-vram-title").text_content()
        legend = page.locator(".wan-nb-vram-legend").text_content()
        _assert_labels_apart(page.evaluate(LABEL_BOXES))
    machine = re.search(r"· ([\d.]+ (?:GiB|MiB|GB|MB)) machine", title).group(1)
    totals = set(re.findall(r"of ([\d.]+ (?:GiB|MiB|GB|MB))", legend))
    assert totals == {machine}, (title, legend)
    assert not re.search(r"\bGB\b|\bMB\b", title + legend), (title, legend)  # binary units only
