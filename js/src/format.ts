/** Short human readings of times, rates and memory for the sidebar and the status bar. */

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function clock(seconds: number): string {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  const ss = String(s).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

/** Steps per second as a reader expects it: "2.4 it/s" when fast, "3.1 s/it" when slow. */
export function rate(stepsPerSecond: number | null): string {
  if (stepsPerSecond === null || !(stepsPerSecond > 0)) {
    return '';
  }
  if (stepsPerSecond >= 1) {
    return `${stepsPerSecond.toFixed(stepsPerSecond >= 10 ? 0 : 1)} it/s`;
  }
  const perStep = 1 / stepsPerSecond;
  return `${perStep.toFixed(perStep >= 10 ? 0 : 1)} s/it`;
}

/**
 * 1536 -> "1.5 GiB", 300 -> "300 MiB": readings are MiB, written in binary units like the notebook's
 * memory chart (wan_nb/widgets/vram_plot.py format_mib), so both name one figure one way.
 */
export function megabytes(mb: number | null): string {
  if (mb === null || !isFinite(mb)) {
    return '?';
  }
  return mb >= 1024 ? `${(mb / 1024).toFixed(1)} GiB` : `${Math.round(mb)} MiB`;
}

export function percent(value: number): string {
  return `${Math.round(value)} %`;
}

/** A stage name for people: "loading_model" -> "loading model". */
export function stageLabel(stage: string | null): string {
  return stage ? stage.replace(/_/g, ' ') : '';
}
