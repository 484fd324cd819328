// wan_nb video player: plain ES module for anywidget (no build step).
// The MP4 arrives once as a binary buffer; one blob: URL feeds both the <video> and the
// download link, so nothing depends on a server route or on base64 in the notebook.

function toBytes(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof DataView) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(0);
}

function size(bytes) {
  return bytes >= 1048576 ? `${(bytes / 1048576).toFixed(1)} MB` : `${Math.max(1, Math.round(bytes / 1024))} KB`;
}

export default {
  render({ model, el }) {
    const root = document.createElement("div");
    root.className = "wan-nb-player";
    const video = document.createElement("video");
    video.controls = true;
    video.loop = true;
    video.muted = true;         // muted autoplay is allowed by every browser
    video.playsInline = true;
    video.preload = "auto";
    const link = document.createElement("a");
    link.className = "wan-nb-download";
    root.append(video, link);
    el.appendChild(root);
    let url = null;

    const update = () => {
      const bytes = toBytes(model.get("value"));
      if (url) URL.revokeObjectURL(url);
      url = bytes.length ? URL.createObjectURL(new Blob([bytes], { type: model.get("mime") })) : null;
      const width = model.get("display_width");
      video.style.width = width ? `${width}px` : "";
      video.autoplay = model.get("autoplay");
      if (url) video.src = url; else video.removeAttribute("src");
      const name = model.get("filename") || "video.mp4";
      link.textContent = url ? `⬇ Download ${name} (${size(bytes.length)})` : "";
      link.download = name;
      if (url) link.href = url; else link.removeAttribute("href");
      root.dataset.bytes = String(bytes.length);
    };
    model.on("change:value", update);
    model.on("change:display_width", update);
    update();
    return () => {
      model.off("change:value", update);
      model.off("change:display_width", update);
      if (url) URL.revokeObjectURL(url);
    };
  },
};
