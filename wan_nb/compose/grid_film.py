"""A grid as one labelled film (``to_mp4``) or as one page with the lockstep player (``to_html``).

``to_mp4`` tiles each z page's clips with ffmpeg's ``xstack`` and lays the tiles over a canvas
whose margins carry the axis names and values (drawn with Pillow): the x values above the
columns, the y values left of the rows, the page's z value above both. Pages follow each other
in time. A clip shorter than the longest of its page holds its last frame; clips of another
frame rate are resampled to the film's (the highest of the page). Small clips are scaled up by
a whole factor to at least ``min_tile`` pixels, so the labels stay readable next to them;
the whole film is kept within ``max_width`` x ``max_height`` by shrinking the tiles (the labels
keep their size). The grid's recipe travels in the MP4's ``comment`` tag as JSON, written by
``wan_nb.recipe.embed`` like a single run's (:func:`read_recipe` gets it back).
"""

from __future__ import annotations

import json
import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

__all__ = ["Layout", "layout", "to_mp4", "read_recipe", "probe"]

# A grid's recipe repeats each cell's arguments: 1,000 cells of 10,000-character prompts are 20 MB.
GRID_RECIPE_BYTES = 32 << 20
GAP = 4            # pixels between tiles
PAD = 6            # pixels around label text
FONT_SIZE = 14
BACKGROUND = (24, 24, 24)
TEXT = (235, 235, 235)
DIM = (150, 150, 150)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def probe(path: Path) -> dict[str, Any]:
    """width, height, fps and frame count of a video (decoded count: exact, unlike the header's)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    finally:
        reader.close()
    frames = imageio_ffmpeg.count_frames_and_secs(str(path))[0]
    width, height = meta["size"]
    return {"width": width, "height": height, "fps": float(meta["fps"]), "frames": int(frames)}


def _font(size: int = FONT_SIZE):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _wrap(text: str, font: Any, width: int, max_lines: int = 3) -> list[str]:
    """Greedy word wrap to ``width`` pixels; an over-long last line ends in an ellipsis."""
    words, lines, line = text.split(), [], ""
    for word in words:
        candidate = f"{line} {word}".strip()
        if font.getlength(candidate) <= width or not line:
            line = candidate
        else:
            lines.append(line)
            line = word
    lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] += " …"
    for i, text_line in enumerate(lines):
        while font.getlength(text_line) > width and len(text_line) > 1:
            text_line = text_line[:-2] + "…"
        lines[i] = text_line
    return lines


def _even(value: float) -> int:
    return max(2, int(math.ceil(value / 2.0)) * 2)


@dataclass(frozen=True)
class Layout:
    """Where everything sits in the film, in pixels: margins, tiles, the whole frame."""

    columns: int
    rows: int
    tile_width: int
    tile_height: int
    left: int          # the margin holding the y labels
    top: int           # the margin holding the z title, the x axis name and the x labels
    gap: int
    width: int
    height: int

    def tile(self, x: int, y: int) -> tuple[int, int]:
        return self.left + x * (self.tile_width + self.gap), self.top + y * (self.tile_height + self.gap)


def _line_height(font: Any) -> int:
    box = font.getbbox("Ag")
    return box[3] - box[1] + 4


def layout(grid: Any, clips: Sequence[dict[str, Any]], *, min_tile: int = 128, max_width: int = 1920,
           max_height: int = 1080) -> Layout:
    """The film's geometry for ``grid`` whose clips measure ``clips`` (see :func:`probe`)."""
    for name, value in (("max_width", max_width), ("max_height", max_height), ("min_tile", min_tile)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 16:
            raise ValueError(f"{name}={value!r}: give a whole number of pixels >= 16")
    _, rows, columns = grid.shape
    width = max(c["width"] for c in clips)
    height = max(c["height"] for c in clips)
    factor = max(1, math.ceil(min_tile / min(width, height)))
    tile_w, tile_h = width * factor, height * factor
    font = _font()
    line = _line_height(font)
    y_texts = list(grid.y.labels) if grid.y else []
    left = 0
    if grid.y:
        widest = max([font.getlength(t) for t in y_texts] + [font.getlength(grid.y.name)])
        left = _even(min(widest, 220) + 2 * PAD)
    top_lines = (1 if grid.z else 0) + 1 + (1 if grid.x else 0)   # z title, x axis name, x values (up to 3 lines)
    x_lines = max((len(_wrap(t, font, tile_w - 2 * PAD)) for t in grid.x.labels), default=1)
    top = _even(top_lines * line + (x_lines - 1) * line + 2 * PAD)
    frame_w = left + columns * tile_w + (columns - 1) * GAP
    frame_h = top + rows * tile_h + (rows - 1) * GAP
    if frame_w > max_width or frame_h > max_height:
        shrink = min((max_width - left - (columns - 1) * GAP) / (columns * tile_w),
                     (max_height - top - (rows - 1) * GAP) / (rows * tile_h))
        if shrink * min(tile_w, tile_h) < 16:
            raise ValueError(f"a {columns}x{rows} grid does not fit in {max_width}x{max_height} pixels with its "
                             "labels; raise max_width= / max_height= or split the grid")
        tile_w, tile_h = _even(tile_w * shrink - 1), _even(tile_h * shrink - 1)
        frame_w = left + columns * tile_w + (columns - 1) * GAP
        frame_h = top + rows * tile_h + (rows - 1) * GAP
    # Even sizes throughout: H.264 in yuv420p needs them.
    tile_w, tile_h = _even(tile_w), _even(tile_h)
    frame_w = _even(left + columns * tile_w + (columns - 1) * GAP)
    frame_h = _even(top + rows * tile_h + (rows - 1) * GAP)
    return Layout(columns, rows, tile_w, tile_h, left, top, GAP, frame_w, frame_h)


def _canvas(grid: Any, geometry: Layout, page: int, path: Path) -> Path:
    """The page's still background: dark tiles' frame plus every label."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (geometry.width, geometry.height), BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = _font()
    bold = _font(FONT_SIZE + 1)
    line = _line_height(font)
    y_pos = PAD
    if grid.z:
        draw.text((PAD, y_pos), f"{grid.z.name}: {grid.z.labels[page]}", font=bold, fill=TEXT)
        y_pos += line
    draw.text((geometry.left + PAD, y_pos), grid.x.name, font=font, fill=DIM)
    y_pos += line
    for column, text in enumerate(grid.x.labels):
        x0, _ = geometry.tile(column, 0)
        for n, text_line in enumerate(_wrap(text, font, geometry.tile_width - 2 * PAD)):
            draw.text((x0 + PAD, y_pos + n * line), text_line, font=font, fill=TEXT)
    if grid.y:
        draw.text((PAD, y_pos), grid.y.name, font=font, fill=DIM)
        for row, text in enumerate(grid.y.labels):
            _, y0 = geometry.tile(0, row)
            for n, text_line in enumerate(_wrap(text, font, geometry.left - 2 * PAD, max_lines=6)):
                draw.text((PAD, y0 + PAD + n * line), text_line, font=font, fill=TEXT)
    image.save(path)
    return path


def _run(command: list[str], out: Path) -> None:
    done = subprocess.run(command, capture_output=True)
    if done.returncode != 0 or not out.is_file():
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise OSError(f"ffmpeg could not write {out}: {reason[-1] if reason else 'no output'} "
                      f"(exit {done.returncode})")


def _page_film(grid: Any, geometry: Layout, page: int, clips: list[dict[str, Any]], fps: float,
               work: Path) -> tuple[Path, int]:
    """One z page as an MP4 in ``work``; returns (path, frame count)."""
    cells = [c for row in grid.page(page) for c in row]
    frames = max(math.ceil(clip["frames"] * fps / clip["fps"] - 1e-6) for clip in clips)
    background = _canvas(grid, geometry, page, work / f"page{page}.png")
    command = [_ffmpeg(), "-y", "-loglevel", "error", "-loop", "1", "-framerate", f"{fps:g}", "-i", str(background)]
    for cell in cells:
        command += ["-i", str(cell.task.result().video_path)]
    tw, th = geometry.tile_width, geometry.tile_height
    chains, names, positions = [], [], []
    for i, (cell, clip) in enumerate(zip(cells, clips), start=1):
        scaler = "neighbor" if tw % clip["width"] == 0 and th % clip["height"] == 0 else "bicubic"
        chains.append(f"[{i}:v]fps={fps:g},scale={tw}:{th}:force_original_aspect_ratio=decrease:flags={scaler},"
                      f"pad={tw}:{th}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,"
                      f"tpad=stop_mode=clone:stop=-1[c{i}]")
        names.append(f"[c{i}]")
        x, y = geometry.tile(cell.x, cell.y)
        positions.append(f"{x - geometry.left}_{y - geometry.top}")
    if len(cells) > 1:
        chains.append(f"{''.join(names)}xstack=inputs={len(cells)}:layout={'|'.join(positions)}:fill=black[tiles]")
    else:
        chains.append("[c1]null[tiles]")
    chains.append(f"[0:v][tiles]overlay={geometry.left}:{geometry.top}:shortest=0,format=yuv420p[out]")
    out = work / f"page{page}.mp4"
    command += ["-filter_complex", ";".join(chains), "-map", "[out]", "-frames:v", str(frames), "-an",
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-r", f"{fps:g}", str(out)]
    _run(command, out)
    return out, frames


def to_mp4(grid: Any, path: Any, *, min_tile: int = 128, max_width: int = 1920, max_height: int = 1080,
           timeout: float | None = None) -> Path:
    """Write the grid as one labelled MP4 at ``path`` (waits for its cells first); returns the path."""
    results = grid.results(timeout)   # a failed cell raises here, before any ffmpeg work
    clips_by_task = {}
    for result in results:
        if result.task_id not in clips_by_task:
            clips_by_task[result.task_id] = probe(Path(result.video_path))
    clips = [clips_by_task[c.task.result().task_id] for c in grid.cells]
    geometry = layout(grid, clips, min_tile=min_tile, max_width=max_width, max_height=max_height)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pages, rows, columns = grid.shape
    per_page = rows * columns
    with tempfile.TemporaryDirectory(prefix="wan_nb-grid-") as tmp:
        work = Path(tmp)
        films = []
        for page in range(pages):
            page_clips = clips[page * per_page:(page + 1) * per_page]
            fps = max(c["fps"] for c in page_clips)
            films.append(_page_film(grid, geometry, page, page_clips, fps, work)[0])
        listing = work / "pages.txt"
        listing.write_text("".join(f"file '{f}'\n" for f in films))
        joined = path.with_name(path.name + ".part.mp4")   # beside the target: the rename is atomic
        _run([_ffmpeg(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i", str(listing),
              "-c", "copy", str(joined)], joined)
        # Where a single run keeps its recipe (the comment tag), written the same way: through a
        # metadata file, as the prompts of every cell can pass the 128 KiB a command-line argument may hold.
        from wan_nb.runs.recipe import embed

        embed(joined, json.loads(json.dumps(grid.recipe(), default=str)), tags={"title": f"wan_nb grid: {grid.prompt}"})
        joined.replace(path)
    return path


def read_recipe(path: Any) -> dict[str, Any] | None:
    """The grid recipe embedded by :func:`to_mp4` (None if the file carries none). Read as a run's
    recipe is: at most :data:`GRID_RECIPE_BYTES` of tags, nesting too deep refused (RecipeError)."""
    from wan_nb.runs.recipe import METADATA_TAG, loads_recipe, read_tags

    text = read_tags(path, limit=GRID_RECIPE_BYTES).get(METADATA_TAG)
    found = loads_recipe(text, path) if text else None
    return found if isinstance(found, dict) and found.get("kind") == "wan_nb.grid" else None
