// wan_nb Cancel (and Pause / Resume) button: plain ES module for anywidget (no build step).
// A click goes two ways: to the kernel (a comm message, handled once the kernel's main thread is
// free) and to the Jupyter server's route for the button's action, which reaches the producing
// process through wan_nb's relay even while a foreground generate() keeps the kernel busy.

function jupyterConfig() {
  const node = document.getElementById("jupyter-config-data");
  if (!node) return null;  // not a Jupyter server's page (VS Code, Colab): the kernel path only
  try { return JSON.parse(node.textContent); } catch (err) { return null; }
}

function cookie(name) {
  const found = document.cookie.split("; ").find((part) => part.startsWith(`${name}=`));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

// Resolves to the HTTP status of the server's answer, 0 when there is no server to ask.
async function askServer(taskId, action) {
  const config = jupyterConfig();
  if (!config || !taskId) return 0;
  const base = (config.baseUrl || "/").replace(/\/?$/, "/");
  // The same credentials JupyterLab's own requests carry: the token when the page has one,
  // and the XSRF cookie echoed in a header (the server checks it for cookie-authenticated POSTs).
  const headers = {};
  if (config.token) headers.Authorization = `token ${config.token}`;
  const xsrf = cookie("_xsrf");
  if (xsrf) headers["X-XSRFToken"] = xsrf;
  try {
    const answer = await fetch(`${base}wan-nb/api/tasks/${encodeURIComponent(taskId)}/${action}`,
                               { method: "POST", headers, credentials: "same-origin" });
    return answer.status;
  } catch (err) {
    return 0;
  }
}

export default {
  render({ model, el: host }) {
    const button = document.createElement("button");
    button.type = "button";
    const icon = document.createElement("i");
    const label = document.createElement("span");
    button.append(icon, label);
    host.appendChild(button);

    const draw = () => {
      const style = model.get("button_style");
      button.className = "jupyter-button widget-button wan-nb-cancel-button" + (style ? ` mod-${style}` : "");
      button.disabled = model.get("disabled");
      button.title = model.get("tooltip");
      icon.className = `fa fa-${model.get("icon") || "stop"}`;
      label.textContent = ` ${model.get("description")}`;
    };
    let kernelAnswered = false;  // any change from the kernel after a click means it is listening
    const onChange = () => { kernelAnswered = true; draw(); };
    const names = ["description", "disabled", "button_style", "tooltip", "icon"];
    for (const name of names) model.on(`change:${name}`, onChange);
    draw();

    button.addEventListener("click", async () => {
      if (model.get("disabled")) return;
      const taskId = model.get("task_id");
      const action = model.get("action") || "cancel";
      const pending = ` ${model.get("pending")}`;
      kernelAnswered = false;
      // Show the request at once: the kernel may not answer until the generation stops.
      button.disabled = true;
      label.textContent = pending;
      model.send({ event: "click" });
      const status = await askServer(taskId, action);
      if (status !== 202 && action === "cancel") {
        // No server took the request (no wan_nb extension, or it does not know the task): only
        // the kernel can act, and a busy kernel (a foreground generate) answers late. Say so.
        setTimeout(() => {
          if (!kernelAnswered && button.disabled && label.textContent === pending) {
            label.textContent = " Cancelling… (kernel busy? ■ Interrupt stops it now)";
          }
        }, 2000);
      }
    });
    return () => { for (const name of names) model.off(`change:${name}`, onChange); };
  },
};
